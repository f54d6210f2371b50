#if canImport(Glibc)
import Glibc
#endif
/// Replays a key trace through the dynamic cache exactly as a lookup session drives it — per batch:
/// deduplicate, query the distinct keys (a hit refreshes recency), insert the misses — and counts hits. It uses
/// the CPU ``DynamicCache`` itself, whose placement and replacement the CUDA cache reproduces bit for bit, so
/// the prediction is the hit rate a session with that cache would see on the same trace and batches — with the
/// model's admission policy (``CacheAdmission``), which the simulated cache applies exactly as the real one.
public struct HitRateSimulation: Sendable {
    /// Hits over distinct keys of each batch (what `hit_rate_threshold` is compared with) and over every key.
    public struct Result: Sendable, Equatable {
        public var slots: Int
        public var batches: Int
        public var distinctHitRate: Double
        public var accessHitRate: Double
    }

    public var dimension: Int
    public var batchSize: Int
    /// Batches replayed before counting (the cache fills).
    public var warmupBatches: Int
    /// The cache's admission policy (`cache_admission`).
    public var admission: CacheAdmission

    public init(dimension: Int = 1, batchSize: Int, warmupBatches: Int = 0, admission: CacheAdmission = .tinyLFU) {
        self.dimension = max(1, dimension)
        self.batchSize = max(1, batchSize)
        self.warmupBatches = max(0, warmupBatches)
        self.admission = admission
    }

    /// The hit rates of a dynamic cache of `slots` slots on `trace`, cut into batches of ``batchSize``.
    public func run(trace: UnsafeBufferPointer<Int64>, slots: Int) -> Result {
        // The vectors do not matter for hits: a dimension of 1 keeps the simulation small.
        let cache = DynamicCache(capacity: slots, dimension: 1, admission: admission)
        var seen: [Int64: Int32] = [:]
        var unique: [Int64] = []
        var counts: [Int32] = []
        var output = [Float](repeating: 0, count: batchSize)
        var missing = [Int32](repeating: 0, count: batchSize)
        let ones = [Float](repeating: 0, count: batchSize)
        var distinct = 0, distinctHits = 0, accesses = 0, accessHits = 0, batches = 0
        var start = 0, batch = 0
        while start < trace.count {
            let end = min(trace.count, start + batchSize)
            seen.removeAll(keepingCapacity: true)
            unique.removeAll(keepingCapacity: true)
            counts.removeAll(keepingCapacity: true)
            for i in start..<end {
                let key = trace[i]
                if let u = seen[key] {
                    counts[Int(u)] += 1
                } else {
                    seen[key] = Int32(unique.count)
                    unique.append(key)
                    counts.append(1)
                }
            }
            let misses = unique.withUnsafeBufferPointer { k in
                output.withUnsafeMutableBufferPointer { o in
                    missing.withUnsafeMutableBufferPointer { m in cache.query(keys: k, into: o.baseAddress!, missing: m.baseAddress!) }
                }
            }
            if batch >= warmupBatches {
                batches += 1
                distinct += unique.count
                distinctHits += unique.count - misses
                accesses += end - start
                var missedAccesses = 0
                for j in 0..<misses { missedAccesses += Int(counts[Int(missing[j])]) }
                accessHits += end - start - missedAccesses
            }
            if misses > 0 {
                let missedKeys = (0..<misses).map { unique[Int(missing[$0])] }
                missedKeys.withUnsafeBufferPointer { k in ones.withUnsafeBufferPointer { cache.replace(keys: k, values: $0.baseAddress!) } }
            }
            start = end
            batch += 1
        }
        return Result(
            slots: cache.capacity, batches: batches, distinctHitRate: distinct == 0 ? 0 : Double(distinctHits) / Double(distinct),
            accessHitRate: accesses == 0 ? 0 : Double(accessHits) / Double(accesses))
    }

    /// `count` keys drawn Zipf(`alpha`) over ranks 0 ..< `rows`, each rank mapped to `keys[permutation[rank]]`
    /// (hot keys scattered over the table), from a seeded generator (deterministic).
    public static func zipfTrace(keys: [Int64], alpha: Double, count: Int, seed: UInt64 = 1) -> [Int64] {
        let rows = keys.count
        guard rows > 0, count > 0 else { return [] }
        var cdf = [Double](repeating: 0, count: rows)
        var total = 0.0
        for r in 0..<rows {
            total += 1.0 / Double(r + 1).pow(alpha)
            cdf[r] = total
        }
        var state = seed
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var permutation = Array(0..<rows)
        for i in stride(from: rows - 1, to: 0, by: -1) { permutation.swapAt(i, Int(next() % UInt64(i + 1))) }
        var trace = [Int64](repeating: 0, count: count)
        for i in 0..<count {
            let u = Double(next() >> 11) / Double(1 << 53) * total
            var lo = 0, hi = rows - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if cdf[mid] < u { lo = mid + 1 } else { hi = mid }
            }
            trace[i] = keys[permutation[lo]]
        }
        return trace
    }
}

extension Double {
    fileprivate func pow(_ exponent: Double) -> Double {
        Glibc.pow(self, exponent)
    }
}
