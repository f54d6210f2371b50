import CHPSSupport

/// Whether a dynamic cache lets every missed key in, or only keys used more often than what they would evict
/// (`cache_admission` in a model's config; ours, not HPS's).
public enum CacheAdmission: String, Sendable, CaseIterable {
    /// Every inserted key takes a slot, evicting its set's least recently used key (HPS's behaviour).
    case none
    /// TinyLFU: a key that would evict a set's least recently used key is admitted only when the
    /// ``FrequencySketch`` estimates it was used more often than that key.
    case tinyLFU = "tinylfu"
}

/// The frequency sketch of TinyLFU admission: a count-min sketch of 4-bit counters with periodic halving,
/// shared by the CPU ``DynamicCache`` and the CUDA dynamic cache (Kernels/dynamic_cache.cu implements the same
/// specification), so both make the same admission decisions for the same sequence of operations.
///
/// Specification (every number is part of it):
/// - Layout: `blockCount` = the smallest power of two ≥ max(1, ⌈slots / 4⌉) blocks of 64 bytes (16 `UInt32`
///   words of 8 four-bit counters each): 32 counters, 16 bytes, per cache slot (half as many gave 0.17 points
///   less hit rate on Zipf(1.05), twice as many 0.03 more: docs/benchmarks.md).
/// - A key's counters: `m = hpsKeyMix(key)`; its block is the top log2(blockCount) bits of
///   `m × 0x9E3779B97F4A7C15` (block 0 when there is one block); `sel` = bits 32..63 of
///   `m × 0xC2B2AE3D27D4EB4F`. Counter i (0..<4) is nibble `(b >> 2) & 7` of word `4i + (b & 3)` of the
///   block, where b is byte i of `sel`. One cache line holds all four.
/// - Estimate: the least of the 4 counters (0...15). Increment: each of the 4 counters + 1, saturating at 15
///   (so increments commute: their order never matters).
/// - What is counted: a query counts each key it hits once (the first hit of that slot by that query: the
///   slot's stamp was not yet the query's clock); an insert (``DynamicCache/replace(keys:values:)``) counts
///   every key passed to it, all of them before it places any. `additions` grows by each count.
/// - Aging: at the start of each insert call, when `additions` ≥ ``sampleSize`` (12 × slots), every counter is
///   halved (rounded down) and `additions` halved.
/// - Admission: an inserted key that is not cached and finds its set full is admitted only if its estimate
///   is greater than the estimate of the set's least recently used key (which it then evicts); otherwise the
///   cache is left unchanged for that key. A key finding an empty slot is always admitted.
public final class FrequencySketch: @unchecked Sendable {
    /// Aging period in counted keys per cache slot (10 was 0.04 points worse on Zipf(1.05), 16 drifted 0.6 points
    /// worse on a moving hot set: docs/benchmarks.md).
    public static let samplesPerSlot = 12

    /// Blocks of 16 words (a power of two).
    public let blockCount: Int
    let log2Blocks: Int
    /// Counted keys between agings.
    public let sampleSize: UInt64
    let words: UnsafeMutablePointer<UInt32>
    private let additionsWord: UnsafeMutablePointer<UInt64>

    /// A sketch for a cache of `slots` slots.
    public init(slots: Int) {
        let (count, log2) = Self.blocks(slots: slots)
        blockCount = count
        log2Blocks = log2
        sampleSize = UInt64(Self.samplesPerSlot * max(1, slots))
        words = .allocate(capacity: count * 16)
        words.initialize(repeating: 0, count: count * 16)
        additionsWord = .allocate(capacity: 1)
        additionsWord.initialize(to: 0)
    }

    deinit {
        words.deallocate()
        additionsWord.deallocate()
    }

    /// Blocks (and their log2) of the sketch of a cache of `slots` slots.
    public static func blocks(slots: Int) -> (count: Int, log2: Int) {
        let needed = max(1, (slots + 3) / 4)
        var count = 1, log2 = 0
        while count < needed {
            count <<= 1
            log2 += 1
        }
        return (count, log2)
    }

    /// Bytes of the sketch of a cache of `slots` slots.
    public static func estimatedBytes(slots: Int) -> Int { blocks(slots: slots).count * 64 + 8 }

    /// The key's block and counter selector (see the specification above).
    @inline(__always)
    func position(_ key: Int64) -> (block: UnsafeMutablePointer<UInt32>, sel: UInt32) {
        let m = hpsKeyMix(key)
        let block = log2Blocks == 0 ? 0 : Int(truncatingIfNeeded: (m &* 0x9E37_79B9_7F4A_7C15) >> UInt64(64 - log2Blocks))
        return (words + block * 16, UInt32(truncatingIfNeeded: (m &* 0xC2B2_AE3D_27D4_EB4F) >> 32))
    }

    /// Hints the CPU to bring in the cache line of `key`'s counters.
    @inline(__always)
    func prefetch(_ key: Int64) { hps_prefetch_write(position(key).block) }

    /// Adds one use of `key` (does not count towards ``additions``: see ``record(_:)``).
    @inline(__always)
    public func increment(_ key: Int64) {
        let p = position(key)
        hps_sketch_increment(p.block, p.sel)
    }

    /// The estimated uses of `key` since the counters were last halved (0...15).
    @inline(__always)
    public func estimate(_ key: Int64) -> Int {
        let p = position(key)
        return Int(hps_sketch_estimate(p.block, p.sel))
    }

    /// Counts `n` increments towards the next aging.
    @inline(__always)
    func record(_ n: Int) {
        if n > 0 { _ = hps_atomic_add_u64(additionsWord, UInt64(n)) }
    }

    /// Every counter word (16 per block; 8 four-bit counters each, counter n in bits 4n ..< 4n + 4).
    public var counterWords: [UInt32] { Array(UnsafeBufferPointer(start: words, count: blockCount * 16)) }

    /// Increments counted since the last halving (halved with the counters).
    public var additions: UInt64 { hps_atomic_load_u64(additionsWord) }

    /// Halves every counter and ``additions`` if ``additions`` ≥ ``sampleSize``. Of concurrent callers at most
    /// one halves. - Returns: whether it halved.
    @discardableResult
    public func ageIfDue() -> Bool {
        while true {
            let a = hps_atomic_load_u64(additionsWord)
            guard a >= sampleSize else { return false }
            if hps_atomic_cas_u64(additionsWord, a, a / 2) != 0 {
                hps_sketch_halve(words, blockCount * 16)
                return true
            }
        }
    }
}
