import CHPSSupport

/// The hot loop of ``HashMapDatabase/fetch(table:keys:values:valueSize:onMiss:)`` over one contiguous chunk of
/// keys, in input order, with every partition's lock held shared by the caller.
///
/// Three stages run over the keys, each a fixed distance ahead of the next:
/// 1. hash the key, pick its partition and prefetch its home index entry (``indexAhead`` keys ahead);
/// 2. walk the key's probe run from that entry to the entry holding the key (index entries carry keys), and
///    prefetch every cache line of its row (``rowAhead`` keys ahead);
/// 3. copy the value to the output (or record a miss).
///
/// Each stage hands its result to the next in per-key scratch (`mixed`, `partitionOf`, `candidates`), so on
/// the common path nothing is hashed or probed twice and the row a key needs is in the CPU cache by the time
/// it is copied. A key whose probe run is longer than ``probeWindow`` entries is looked up again from its
/// home entry (rare at the index's ≤ 3/4 load).
///
/// A plain value of pointers, built once per chunk, so the loop reads no class properties.
struct HashMapFetchPipeline {
    /// Keys whose index entry is prefetched ahead of the copy stage.
    static let indexAhead = 32
    /// Keys whose row is prefetched ahead of the copy stage.
    static let rowAhead = 16
    /// Index entries stage 2 walks before it leaves a key to a full lookup (8 entries: two cache lines).
    static let probeWindow = 8

    let keys: UnsafePointer<Int64>
    /// `valueSize` bytes per key, in input order.
    let output: UnsafeMutableRawPointer
    let valueSize: Int
    /// One view per partition, taken under the partition's shared lock.
    let views: UnsafePointer<HashMapPartition.View>
    let partitionCount: UInt64
    /// `partitionCount - 1` when it is a power of two (the partition is `mixed & mask`), else nil.
    let partitionMask: UInt64?
    let mixed: UnsafeMutablePointer<UInt64>
    let partitionOf: UnsafeMutablePointer<Int32>
    let candidates: UnsafeMutablePointer<UInt>
    let policy: OverflowPolicy
    /// The LRU clock value this fetch stamps on the rows it reads (unused for `evict_random`).
    let now: UInt32

    /// Stage 1 for key `j`.
    @inline(__always)
    func hash(_ j: Int) {
        let m = hpsKeyMix(keys[j])
        mixed[j] = m
        let pi = Int(truncatingIfNeeded: partitionMask.map { m & $0 } ?? m % partitionCount)
        partitionOf[j] = Int32(truncatingIfNeeded: pi)
        let entry = views[pi].start(m)
        hps_prefetch(entry)
        candidates[j] = UInt(bitPattern: entry)
    }

    /// Stage 2 for key `j` (after ``hash(_:)``).
    @inline(__always)
    func probe(_ j: Int) {
        let view = views[Int(partitionOf[j])]
        let entry = UnsafeMutablePointer<HashMapPartition.Entry>(bitPattern: candidates[j])!
        let candidate = view.candidate(from: entry, keys[j], window: Self.probeWindow)
        if candidate & 1 != 0 {
            let row = UnsafeRawPointer(bitPattern: candidate & ~1)!
            let stride = view.rows.stride
            var offset = 0
            while offset < stride {
                hps_prefetch(row + offset)
                offset += 64
            }
            hps_prefetch(row + (stride - 1))
        }
        candidates[j] = candidate
    }

    /// Stage 3 for key `j` (after ``probe(_:)``). - Returns: whether the key was found (and its value copied).
    @inline(__always)
    func copy(_ j: Int) -> Bool {
        let view = views[Int(partitionOf[j])]
        let candidate = candidates[j]
        let found: UnsafeMutableRawPointer?
        if candidate & 1 != 0 {
            found = UnsafeMutableRawPointer(bitPattern: candidate & ~1)
        } else if candidate == HashMapPartition.View.unknown {
            found = view.find(keys[j], mixed[j])
        } else {
            found = nil
        }
        guard let row = found else { return false }
        hps_copy(output + j * valueSize, row, valueSize)
        if policy != .evictRandom { HashMapPartition.touch(counter: row + view.counterOffset, policy: policy, now: now) }
        return true
    }

    /// Runs the three stages over keys `lo..<hi` and writes the positions of the keys not found, in order, to
    /// `misses`. - Returns: how many keys were not found.
    func run(_ lo: Int, _ hi: Int, misses: UnsafeMutablePointer<Int32>) -> Int {
        let indexAhead = Self.indexAhead, rowAhead = Self.rowAhead
        for j in lo..<min(hi, lo + indexAhead) { hash(j) }
        for j in lo..<min(hi, lo + rowAhead) { probe(j) }
        var missed = 0
        for j in lo..<hi {
            if j + indexAhead < hi { hash(j + indexAhead) }
            if j + rowAhead < hi { probe(j + rowAhead) }
            if !copy(j) {
                misses[missed] = Int32(truncatingIfNeeded: j)
                missed += 1
            }
        }
        return missed
    }
}
