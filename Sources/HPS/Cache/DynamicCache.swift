import CHPSSupport

/// The dynamic device cache on the CPU: set-associative, 64 slots per set (as HPS's GPU cache), LRU
/// replacement within a set, a spin lock per set.
///
/// Each set keeps a 64-byte line of 8-bit tags (0 = empty), so a query compares one cache line of tags
/// (8 bytes at a time) before it touches keys; keys, LRU stamps and vectors live in separate arrays.
/// A query refreshes recency (unlike a FIFO-like cache that only stamps on insert).
///
/// With ``CacheAdmission/tinyLFU`` a ``FrequencySketch`` counts the keys queried and inserted, and a missed key
/// evicts its set's least recently used key only if it was used more often (see the sketch for the exact rules,
/// which the CUDA dynamic cache follows too).
public final class DynamicCache: EmbeddingCache, @unchecked Sendable {
    // @unchecked Sendable: the buffers are allocated in init and never replaced; a set's tags, keys, stamps and
    // vectors are read and written only under that set's spin lock (`locks[set]`), and `clock` is advanced
    // atomically.
    public static let slotsPerSet = 64

    public let dimension: Int
    public let setCount: Int
    public var capacity: Int { setCount * Self.slotsPerSet }
    public var holdsWholeTable: Bool { false }
    /// The admission policy of inserted keys.
    public let admission: CacheAdmission
    /// The frequency sketch of ``CacheAdmission/tinyLFU`` (nil without admission).
    public let sketch: FrequencySketch?

    private let tags: UnsafeMutablePointer<UInt8>
    private let keys: UnsafeMutablePointer<Int64>
    private let stamps: UnsafeMutablePointer<UInt64>
    private let values: UnsafeMutablePointer<Float>
    private let locks: UnsafeMutablePointer<UInt32>
    private let clock: UnsafeMutablePointer<UInt64>

    /// A cache of at least `capacity` slots (rounded up to whole sets of 64) with the admission policy
    /// `admission`.
    public init(capacity: Int, dimension: Int, admission: CacheAdmission = .none) {
        precondition(dimension > 0)
        self.dimension = dimension
        self.admission = admission
        setCount = max(1, (max(capacity, Self.slotsPerSet) + Self.slotsPerSet - 1) / Self.slotsPerSet)
        let slots = setCount * Self.slotsPerSet
        sketch = admission == .tinyLFU ? FrequencySketch(slots: slots) : nil
        tags = .allocate(capacity: slots)
        tags.initialize(repeating: 0, count: slots)
        keys = .allocate(capacity: slots)
        keys.initialize(repeating: 0, count: slots)
        stamps = .allocate(capacity: slots)
        stamps.initialize(repeating: 0, count: slots)
        values = .allocate(capacity: slots * dimension)
        values.initialize(repeating: 0, count: slots * dimension)
        locks = .allocate(capacity: setCount)
        locks.initialize(repeating: 0, count: setCount)
        clock = .allocate(capacity: 1)
        clock.initialize(to: 1)
    }

    deinit {
        tags.deallocate()
        keys.deallocate()
        stamps.deallocate()
        values.deallocate()
        locks.deallocate()
        clock.deallocate()
    }

    // MARK: Placement

    @inline(__always)
    private func place(_ key: Int64) -> (set: Int, tag: UInt8) {
        let h = hpsKeyMix(key) &* 0xD6E8_FEB8_6659_FD93
        let set = Int(truncatingIfNeeded: (h >> 32) % UInt64(setCount))
        let tag = UInt8(truncatingIfNeeded: h >> 8)
        return (set, tag == 0 ? 1 : tag)
    }

    /// Slot (0..<64) of `key` within `set`, or -1. Caller holds the set's lock.
    @inline(__always)
    private func slot(of key: Int64, set: Int, tag: UInt8) -> Int {
        let tagBase = UnsafeRawPointer(tags + set * Self.slotsPerSet)
        let keyBase = keys + set * Self.slotsPerSet
        let pattern = UInt64(tag) &* 0x0101_0101_0101_0101
        for word in 0..<8 {
            let x = tagBase.loadUnaligned(fromByteOffset: word * 8, as: UInt64.self) ^ pattern
            var match = (x &- 0x0101_0101_0101_0101) & ~x & 0x8080_8080_8080_8080
            while match != 0 {
                let s = word * 8 + match.trailingZeroBitCount / 8
                if tags[set * Self.slotsPerSet + s] == tag && keyBase[s] == key { return s }
                match &= match &- 1
            }
        }
        return -1
    }

    // MARK: EmbeddingCache

    public var unitCount: Int { setCount }

    /// Occupied slots. Reads the tag words with relaxed atomic loads, as queries do, so it may run while other
    /// threads insert (the lookup metrics' occupancy): a count of that moment, not a data race.
    public var count: Int {
        let words = UnsafeMutableRawPointer(tags).assumingMemoryBound(to: UInt64.self)
        let high: UInt64 = 0x7F7F_7F7F_7F7F_7F7F
        var empty = 0
        for w in 0..<(setCount * Self.slotsPerSet / 8) {
            let x = hps_atomic_load_u64(words + w)
            empty += (~(((x & high) &+ high) | x | high)).nonzeroBitCount  // one bit per zero byte
        }
        return setCount * Self.slotsPerSet - empty
    }

    public func query(keys input: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, missing: UnsafeMutablePointer<Int32>) -> Int {
        query(keys: input, into: output, missing: missing, stamp: beginQuery()).misses
    }

    /// A fresh stamp for ``query(keys:into:missing:stamp:)``: calls that share one stamp act as one query.
    @inline(__always)
    func beginQuery() -> UInt64 { hps_atomic_add_u64(clock, 1) }

    /// ``query(keys:into:missing:)`` of keys that may repeat, with the recency stamp `stamp` (from
    /// ``beginQuery()``; calls sharing it, e.g. chunks of one batch on several threads, count as one query).
    /// Each hit is copied into `output` under its set's lock, so no concurrent insert can tear it.
    /// - Returns: the misses (positions in `missing`, ascending) and the distinct keys among the hits: a hit
    ///   whose slot already carries `stamp` repeats a key this query hit before.
    func query(keys input: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, missing: UnsafeMutablePointer<Int32>, stamp now: UInt64) -> (misses: Int, distinctHits: Int) {
        let dim = dimension
        let bytes = dim * 4
        var misses = 0
        var distinctHits = 0
        // Placements are computed once, `ahead` keys early, kept in a small ring, and their tag lines and
        // lock words prefetched.
        let ahead = 16
        var ringSets = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var ringTags = (UInt64(0), UInt64(0))  // 16 tags, one byte each
        return withUnsafeMutableBytes(of: &ringSets) { setBytes in
            withUnsafeMutableBytes(of: &ringTags) { tagBytes in
                let sets = setBytes.bindMemory(to: Int.self)
                let ringTag = tagBytes.bindMemory(to: UInt8.self)
                @inline(__always) func stage(_ i: Int) {
                    let (set, tag) = place(input[i])
                    sets[i & 15] = set
                    ringTag[i & 15] = tag
                    hps_prefetch(tags + set * Self.slotsPerSet)
                    hps_prefetch_write(locks + set)
                    if let sketch { sketch.prefetch(input[i]) }
                }
                // Half-way, peek at the (prefetched) tag line without the lock and prefetch the key and
                // the vector of the first slot whose tag matches: only a hint, the lookup below checks
                // again under the lock.
                @inline(__always) func peek(_ i: Int) {
                    let set = sets[i & 15]
                    let pattern = UInt64(ringTag[i & 15]) &* 0x0101_0101_0101_0101
                    let words = UnsafeMutableRawPointer(tags + set * Self.slotsPerSet).assumingMemoryBound(to: UInt64.self)
                    for word in 0..<8 {
                        let x = hps_atomic_load_u64(words + word) ^ pattern
                        let match = (x &- 0x0101_0101_0101_0101) & ~x & 0x8080_8080_8080_8080
                        if match != 0 {
                            let index = set * Self.slotsPerSet + word * 8 + match.trailingZeroBitCount / 8
                            hps_prefetch(keys + index)
                            hps_prefetch(values + index * dim)
                            return
                        }
                    }
                }
                let peekAhead = 8
                for i in 0..<min(ahead, input.count) { stage(i) }
                for i in 0..<min(peekAhead, input.count) { peek(i) }
                for i in 0..<input.count {
                    let set = sets[i & 15]
                    let tag = ringTag[i & 15]
                    if i + peekAhead < input.count { peek(i + peekAhead) }
                    if i + ahead < input.count { stage(i + ahead) }
                    let key = input[i]
                    hps_spin_lock(locks + set)
                    let s = slot(of: key, set: set, tag: tag)
                    if s >= 0 {
                        let index = set * Self.slotsPerSet + s
                        hps_copy(output + i * dim, values + index * dim, bytes)
                        let first = stamps[index] != now
                        if first {
                            stamps[index] = now
                            distinctHits += 1
                        }
                        hps_spin_unlock(locks + set)
                        if first, let sketch { sketch.increment(key) }
                    } else {
                        hps_spin_unlock(locks + set)
                        missing[misses] = Int32(truncatingIfNeeded: i)
                        misses += 1
                    }
                }
                sketch?.record(distinctHits)
                return (misses, distinctHits)
            }
        }
    }

    /// Inserts (or refreshes) `keys[i] → values[i × dimension ...]`: a key that is not cached takes the first
    /// empty slot of its set, else evicts the set's least recently used key — with ``CacheAdmission/tinyLFU``
    /// only if the sketch estimates it more frequent than that key (otherwise it is not inserted).
    public func replace(keys input: UnsafeBufferPointer<Int64>, values source: UnsafePointer<Float>) {
        let now = hps_atomic_add_u64(clock, 1)
        let dim = dimension
        let sketch = self.sketch
        if let sketch {
            // Age, then count every key of the call, before any is placed.
            sketch.ageIfDue()
            for key in input { sketch.increment(key) }
            sketch.record(input.count)
        }
        for i in 0..<input.count {
            let key = input[i]
            let (set, tag) = place(key)
            let base = set * Self.slotsPerSet
            hps_spin_lock(locks + set)
            var s = slot(of: key, set: set, tag: tag)
            if s < 0 {
                // First empty slot, else the least recently used one.
                var victim = 0
                var oldest = UInt64.max
                var empty = false
                for j in 0..<Self.slotsPerSet {
                    if tags[base + j] == 0 { victim = j; empty = true; break }
                    if stamps[base + j] < oldest { oldest = stamps[base + j]; victim = j }
                }
                if !empty, let sketch, sketch.estimate(key) <= sketch.estimate(keys[base + victim]) {
                    // Not admitted: the victim was used at least as often.
                    hps_spin_unlock(locks + set)
                    continue
                }
                s = victim
                // Atomic: query's lock-free peek reads the tag words concurrently (a hint only).
                hps_atomic_store_u8(tags + base + s, tag)
                keys[base + s] = key
            }
            hps_copy(values + (base + s) * dim, source + i * dim, dim * 4)
            stamps[base + s] = now
            hps_spin_unlock(locks + set)
        }
    }

    public func update(keys input: UnsafeBufferPointer<Int64>, values source: UnsafePointer<Float>) {
        let dim = dimension
        for i in 0..<input.count {
            let key = input[i]
            let (set, tag) = place(key)
            hps_spin_lock(locks + set)
            let s = slot(of: key, set: set, tag: tag)
            if s >= 0 { hps_copy(values + (set * Self.slotsPerSet + s) * dim, source + i * dim, dim * 4) }
            hps_spin_unlock(locks + set)
        }
    }

    public func keys(inUnits range: Range<Int>) -> [Int64] {
        var result: [Int64] = []
        for set in range.clamped(to: 0..<setCount) {
            hps_spin_lock(locks + set)
            let base = set * Self.slotsPerSet
            for j in 0..<Self.slotsPerSet where tags[base + j] != 0 { result.append(keys[base + j]) }
            hps_spin_unlock(locks + set)
        }
        return result
    }
}
