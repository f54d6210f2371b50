import Dispatch
import Foundation
import HPS
import HPSTestSupport

/// `hps bench cache --policies`: the hit rate per access of the dynamic cache's replacement policies on the
/// same key streams, driven as a session drives the cache (per batch: deduplicate, query the distinct keys,
/// insert the misses):
///
/// - LRU: ``DynamicCache`` without admission (64-way sets, LRU within a set; what the CUDA cache does too);
/// - LRU + TinyLFU admission: ``DynamicCache`` with ``CacheAdmission/tinyLFU``;
/// - exact LRU: a fully associative LRU cache of the same number of slots (``ExactLRU``);
/// - oracle: a cache always holding the `slots` keys that are hottest at the time of the access (the lowest
///   Zipf ranks).
///
/// Traces: Zipf(α) over `--workload-keys` keys for each `--policy-alphas` (key = rank, the same stream as the
/// CUDA workload with the same seed), and a drifting hot set: Zipf(1.05) whose rank r maps to key
/// (r + b × `--drift`) mod keys in batch b, so keys warm up slowly, peak, then go cold at once.
struct CachePolicyBench {
    let options: CacheBench
    var o: CacheBench { options }

    /// A Zipf sampler: the CDF and a guide table over it, giving the same rank as ``CUDAWorkload/zipfKey``.
    struct Sampler {
        let cdf: [Double]
        let guide: [Int32]

        init(rows: Int, alpha: Double) {
            cdf = CUDAWorkload.zipfCDF(rows: rows, alpha: alpha)
            let g = max(1, rows / 2)
            var guide = [Int32](repeating: 0, count: g + 1)
            var i = 0
            for j in 0...g {
                let u = Double(j) / Double(g)
                while i < rows - 1 && cdf[i] < u { i += 1 }
                guide[j] = Int32(i)
            }
            self.guide = guide
        }

        /// Rank of draw `index` of stream `seed` (lowest r with cdf[r] ≥ u).
        @inline(__always)
        func rank(seed: UInt64, index: UInt64) -> Int {
            let h = CUDAWorkload.mix(seed &+ (index &+ 1) &* 0x9E37_79B9_7F4A_7C15)
            let u = Double(h >> 11) * (1.0 / 9007199254740992.0)
            let g = guide.count - 1
            let j = min(g - 1, Int(u * Double(g)))
            var lo = Int(guide[j]), hi = Int(guide[j + 1])
            while lo < hi {
                let mid = (lo + hi) >> 1
                if cdf[mid] < u { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
    }

    struct Trace {
        var name: String
        var alpha: Double
        var drift: Int
    }

    func run() -> [CacheBench.Result] {
        let rows = o.workloadKeys
        var traces = o.policyAlphas.map { Trace(name: String(format: "Zipf(%.2f)", $0), alpha: $0, drift: 0) }
        if o.drift > 0 { traces.append(Trace(name: String(format: "drifting Zipf(1.05), hot set moves %d keys per batch", o.drift), alpha: 1.05, drift: o.drift)) }
        var results: [CacheBench.Result] = []
        var samplers: [Double: Sampler] = [:]
        let batchSamples = o.batches.first ?? 65536
        let n = batchSamples * o.keysPerSample
        print("policies: \(rows) keys, \(o.slots) slots, batches of \(batchSamples)×\(o.keysPerSample) keys, \(o.policyWarmup) warm-up + \(o.policyBatches) measured batches per trace")
        for trace in traces {
            let sampler: Sampler
            if let s = samplers[trace.alpha] { sampler = s } else { sampler = Sampler(rows: rows, alpha: trace.alpha); samplers[trace.alpha] = sampler }
            results += run(trace: trace, sampler: sampler, rows: rows, n: n, batchSamples: batchSamples)
        }
        return results
    }

    func run(trace: Trace, sampler: Sampler, rows: Int, n: Int, batchSamples: Int) -> [CacheBench.Result] {
        let lru = DynamicCache(capacity: o.slots, dimension: 1, admission: .none)
        let tiny = DynamicCache(capacity: o.slots, dimension: 1, admission: .tinyLFU)
        var exact = ExactLRU(capacity: lru.capacity)
        let slots = lru.capacity
        let keys = UnsafeMutablePointer<Int64>.allocate(capacity: n)
        let hot = UnsafeMutablePointer<Bool>.allocate(capacity: n)
        defer {
            keys.deallocate()
            hot.deallocate()
        }
        var unique = [Int64](repeating: 0, count: n)
        var counts = [Int32](repeating: 0, count: n)
        var tableSize = 16
        while tableSize < 2 * n { tableSize *= 2 }
        var table = [Int32](repeating: -1, count: tableSize)
        var used = [Int32](repeating: 0, count: n)
        // Per policy (LRU, TinyLFU, exact): missed accesses and seconds in the cache calls, measured batches only.
        var missed = [Int](repeating: 0, count: 3)
        var seconds = [Double](repeating: 0, count: 3)
        var oracleHits = 0, accesses = 0
        var drawn: UInt64 = 0
        let total = o.policyWarmup + o.policyBatches
        let seed = o.seed
        for b in 0..<total {
            let shift = (b * trace.drift) % rows
            // Draws in 2 halves at once (the draws are independent).
            let first = drawn
            let out = UnsafeTransfer((keys, hot))
            DispatchQueue.concurrentPerform(iterations: 2) { part in
                let (k, h) = out.value
                let lo = n * part / 2, hi = n * (part + 1) / 2
                for i in lo..<hi {
                    let r = sampler.rank(seed: seed, index: first + UInt64(i))
                    h[i] = r < slots
                    let key = r + shift
                    k[i] = Int64(key >= rows ? key - rows : key)
                }
            }
            drawn += UInt64(n)
            // Deduplicate (first-seen order) with access counts.
            var u = 0
            let mask = tableSize - 1
            for i in 0..<n {
                let key = keys[i]
                var pos = Int(truncatingIfNeeded: (UInt64(bitPattern: key) &* 0x9E37_79B9_7F4A_7C15) >> 20) & mask
                while true {
                    let s = Int(table[pos])
                    if s < 0 {
                        table[pos] = Int32(u)
                        used[u] = Int32(pos)
                        unique[u] = key
                        counts[u] = 1
                        u += 1
                        break
                    }
                    if unique[s] == key {
                        counts[s] += 1
                        break
                    }
                    pos = (pos + 1) & mask
                }
            }
            for j in 0..<u { table[Int(used[j])] = -1 }
            // The three policies on the same distinct keys, in parallel.
            let measuring = b >= o.policyWarmup
            let distinctCount = u
            var batchMissed = [Int](repeating: 0, count: 3)
            var batchSeconds = [Double](repeating: 0, count: 3)
            unique.withUnsafeBufferPointer { uk in
                counts.withUnsafeBufferPointer { c in
                    batchMissed.withUnsafeMutableBufferPointer { bm in
                        batchSeconds.withUnsafeMutableBufferPointer { bs in
                            withUnsafeMutablePointer(to: &exact) { exactPointer in
                                let job = UnsafeTransfer((uk, c, bm, bs, exactPointer))
                                DispatchQueue.concurrentPerform(iterations: 3) { p in
                                    let (uk, c, bm, bs, exactPointer) = job.value
                                    let distinct = UnsafeBufferPointer(rebasing: uk[0..<distinctCount])
                                    let w = Stopwatch()
                                    var m = 0
                                    if p < 2 {
                                        let cache = p == 0 ? lru : tiny
                                        var out = [Float](repeating: 0, count: distinctCount)
                                        var missing = [Int32](repeating: 0, count: distinctCount)
                                        let misses = out.withUnsafeMutableBufferPointer { ob in
                                            missing.withUnsafeMutableBufferPointer { mb in cache.query(keys: distinct, into: ob.baseAddress!, missing: mb.baseAddress!) }
                                        }
                                        let missedKeys = (0..<misses).map { distinct[Int(missing[$0])] }
                                        missedKeys.withUnsafeBufferPointer { mk in out.withUnsafeBufferPointer { cache.replace(keys: mk, values: $0.baseAddress!) } }
                                        for j in 0..<misses { m += Int(c[Int(missing[j])]) }
                                    } else {
                                        var missedKeys: [Int64] = []
                                        for j in 0..<distinctCount where !exactPointer.pointee.touch(distinct[j]) {
                                            missedKeys.append(distinct[j])
                                            m += Int(c[j])
                                        }
                                        for key in missedKeys { exactPointer.pointee.insert(key) }
                                    }
                                    bm[p] = m
                                    bs[p] = w.seconds
                                }
                            }
                        }
                    }
                }
            }
            if measuring {
                for p in 0..<3 {
                    missed[p] += batchMissed[p]
                    seconds[p] += batchSeconds[p]
                }
                accesses += n
                for i in 0..<n where hot[i] { oracleHits += 1 }
            }
        }
        let rate = { (m: Int) in 1 - Double(m) / Double(max(1, accesses)) }
        let oracle = Double(oracleHits) / Double(max(1, accesses))
        let names = ["LRU (64-way sets)", "LRU + TinyLFU admission", "exact LRU (fully associative)"]
        var results: [CacheBench.Result] = []
        print(String(format: "%@: oracle %.4f", trace.name, oracle) + (0..<3).map { String(format: ", %@ %.4f (%.1f ms/batch)", names[$0], rate(missed[$0]), seconds[$0] * 1e3 / Double(max(1, o.policyBatches))) }.joined())
        for p in 0..<3 {
            results.append(
                .init(
                    measure: "(d) \(trace.name): \(names[p])", dim: 1, batch: batchSamples, hitRatePerAccess: rate(missed[p]),
                    milliseconds: seconds[p] * 1e3 / Double(max(1, o.policyBatches)),
                    note: String(format: "%+.2f points vs the oracle; ms = query + insert per batch, 1 thread", (rate(missed[p]) - oracle) * 100)))
        }
        results.append(.init(measure: "(d) \(trace.name): oracle (the \(slots) hottest keys)", dim: 1, batch: batchSamples, hitRatePerAccess: oracle, note: "the lowest ranks at the time of each access"))
        return results
    }
}
