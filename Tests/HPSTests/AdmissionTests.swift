import Dispatch
@testable import HPS
import Testing

/// TinyLFU admission of the dynamic cache: the frequency sketch against a plain re-implementation of its
/// specification, and the policy's effect on what the cache keeps.
@Suite struct AdmissionTests {
    /// The specification of ``FrequencySketch``, written out plainly (one counter at a time, no packing tricks).
    struct ReferenceSketch {
        var words: [UInt32]
        let log2Blocks: Int
        var additions: UInt64 = 0
        let sample: UInt64

        init(slots: Int) {
            var blocks = 1, log2 = 0
            while blocks < max(1, (slots + 3) / 4) { blocks *= 2; log2 += 1 }
            words = [UInt32](repeating: 0, count: blocks * 16)
            log2Blocks = log2
            sample = UInt64(12 * slots)
        }

        func cell(_ key: Int64, _ i: Int) -> (word: Int, shift: UInt32) {
            let m = hpsKeyMix(key)
            let block = log2Blocks == 0 ? 0 : Int((m &* 0x9E37_79B9_7F4A_7C15) >> UInt64(64 - log2Blocks))
            let sel = UInt32(truncatingIfNeeded: (m &* 0xC2B2_AE3D_27D4_EB4F) >> 32)
            let b = (sel >> UInt32(8 * i)) & 0xFF
            return (block * 16 + 4 * i + Int(b & 3), ((b >> 2) & 7) * 4)
        }

        func counter(_ key: Int64, _ i: Int) -> UInt32 {
            let c = cell(key, i)
            return (words[c.word] >> c.shift) & 15
        }

        mutating func increment(_ key: Int64) {
            for i in 0..<4 where counter(key, i) < 15 {
                let c = cell(key, i)
                words[c.word] += 1 << c.shift
            }
        }

        func estimate(_ key: Int64) -> Int { Int((0..<4).map { counter(key, $0) }.min()!) }

        mutating func ageIfDue() {
            guard additions >= sample else { return }
            additions /= 2
            for w in words.indices {
                var halved: UInt32 = 0
                for n in 0..<8 { halved |= (((words[w] >> UInt32(4 * n)) & 15) / 2) << UInt32(4 * n) }
                words[w] = halved
            }
        }
    }

    @Test func sketchFollowsItsSpecification() {
        var rng = SplitMix64(seed: 11)
        for slots in [1, 64, 1000, 4096] {
            let sketch = FrequencySketch(slots: slots)
            var reference = ReferenceSketch(slots: slots)
            #expect(sketch.counterWords.count == reference.words.count)
            #expect(sketch.sampleSize == reference.sample)
            let universe = (0..<(slots + 50)).map { _ in Int64(bitPattern: rng.next()) }
            for round in 0..<40 {
                let n = 1 + Int(rng.next() % UInt64(3 * slots + 10))
                let keys = (0..<n).map { _ in universe[Int(rng.next() % UInt64(universe.count)) / (round % 3 + 1)] }
                let halved = sketch.ageIfDue()
                let before = reference.additions
                reference.ageIfDue()
                #expect(halved == (reference.additions != before), "slots \(slots) round \(round)")
                for key in keys {
                    sketch.increment(key)
                    reference.increment(key)
                }
                sketch.record(n)
                reference.additions += UInt64(n)
                #expect(sketch.counterWords == reference.words, "slots \(slots) round \(round)")
                #expect(sketch.additions == reference.additions)
                for key in keys.prefix(20) { #expect(sketch.estimate(key) == reference.estimate(key)) }
            }
        }
    }

    @Test func countsSaturateAndHalve() {
        let sketch = FrequencySketch(slots: 1 << 16)
        let key: Int64 = 42
        for expected in 1...20 {
            sketch.increment(key)
            #expect(sketch.estimate(key) == min(expected, 15))
        }
        #expect(sketch.estimate(43) == 0)  // a 1M-counter sketch: no collision of these two keys' 4 counters
        sketch.record(Int(sketch.sampleSize) - 1)
        #expect(!sketch.ageIfDue())
        #expect(sketch.estimate(key) == 15)
        sketch.record(1)
        #expect(sketch.ageIfDue())
        #expect(sketch.estimate(key) == 7)
        #expect(sketch.additions == sketch.sampleSize / 2)
    }

    @Test func concurrentIncrementsAreNotLost() {
        let sketch = FrequencySketch(slots: 1 << 12)
        // 4 threads × 3 increments of each of 400 keys: every key's counters reach 12 exactly, unless a counter is
        // shared with another key (then more, at most 15).
        let keys = (0..<400).map { Int64($0) * 7919 }
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<3 { for key in keys { sketch.increment(key) } }
        }
        var reference = ReferenceSketch(slots: 1 << 12)
        for _ in 0..<12 { for key in keys { reference.increment(key) } }
        #expect(sketch.counterWords == reference.words)
        #expect(keys.allSatisfy { sketch.estimate($0) >= 12 })
    }

    // MARK: The policy

    /// Per batch: query the distinct keys, insert the misses (as a session does). Returns hits / keys queried over
    /// the last `measured` batches.
    func replay(_ cache: DynamicCache, batches: [[Int64]], measured: Int) -> Double {
        var hits = 0, queried = 0
        for (b, batch) in batches.enumerated() {
            var output = [Float](repeating: 0, count: batch.count * cache.dimension)
            var missing = [Int32](repeating: 0, count: batch.count)
            let misses = batch.withUnsafeBufferPointer { k in
                output.withUnsafeMutableBufferPointer { o in missing.withUnsafeMutableBufferPointer { cache.query(keys: k, into: o.baseAddress!, missing: $0.baseAddress!) } }
            }
            if b >= batches.count - measured {
                hits += batch.count - misses
                queried += batch.count
            }
            let missed = (0..<misses).map { batch[Int(missing[$0])] }
            let values = [Float](repeating: 1, count: missed.count * cache.dimension)
            missed.withUnsafeBufferPointer { k in values.withUnsafeBufferPointer { cache.replace(keys: k, values: $0.baseAddress!) } }
        }
        return Double(hits) / Double(max(1, queried))
    }

    @Test func admissionKeepsHotKeysThroughAScan() {
        // 1024 slots; 200 hot keys in every batch, plus 1000 keys seen once (a scan) that LRU lets evict them.
        let hot = (0..<200).map { Int64($0) }
        var next: Int64 = 1_000_000
        let batches = (0..<30).map { _ -> [Int64] in
            let scan = (0..<1000).map { _ -> Int64 in
                next += 1
                return next
            }
            return hot + scan
        }
        func hotHitRate(_ admission: CacheAdmission) -> Double {
            let cache = DynamicCache(capacity: 1024, dimension: 2, admission: admission)
            _ = replay(cache, batches: batches, measured: 10)
            // The hot keys cached after the last batch.
            var output = [Float](repeating: 0, count: hot.count * 2)
            var missing = [Int32](repeating: 0, count: hot.count)
            let misses = hot.withUnsafeBufferPointer { k in
                output.withUnsafeMutableBufferPointer { o in missing.withUnsafeMutableBufferPointer { cache.query(keys: k, into: o.baseAddress!, missing: $0.baseAddress!) } }
            }
            return 1 - Double(misses) / Double(hot.count)
        }
        let lru = hotHitRate(.none), tiny = hotHitRate(.tinyLFU)
        #expect(lru < 0.6, "LRU kept \(lru) of the hot keys")
        #expect(tiny > 0.9, "TinyLFU kept \(tiny) of the hot keys")
    }

    @Test func admissionRaisesTheHitRateOnZipfAndFollowsADrift() {
        // Zipf(1.05) over 50,000 keys, 2,048 slots, batches of 4,096 draws (deduplicated).
        let keys = (0..<50_000).map { Int64($0) }
        let trace = HitRateSimulation.zipfTrace(keys: keys, alpha: 1.05, count: 4096 * 120, seed: 5)
        let batches = stride(from: 0, to: trace.count, by: 4096).map { Array(Set(trace[$0..<min(trace.count, $0 + 4096)])).sorted() }
        let lru = replay(DynamicCache(capacity: 2048, dimension: 1, admission: .none), batches: batches, measured: 60)
        let tiny = replay(DynamicCache(capacity: 2048, dimension: 1, admission: .tinyLFU), batches: batches, measured: 60)
        #expect(tiny > lru + 0.02, "distinct-key hit rate LRU \(lru), TinyLFU \(tiny)")
        // The hot set moves by 500 ranks per batch: a key's popularity rises, peaks and drops at once. Admission
        // must not keep the cache stuck on keys that went cold.
        let drifting = batches.enumerated().map { b, batch in batch.map { ($0 + Int64(b * 500)) % 50_000 } }
        let lruDrift = replay(DynamicCache(capacity: 2048, dimension: 1, admission: .none), batches: drifting, measured: 60)
        let tinyDrift = replay(DynamicCache(capacity: 2048, dimension: 1, admission: .tinyLFU), batches: drifting, measured: 60)
        #expect(tinyDrift > lruDrift - 0.01, "drifting: LRU \(lruDrift), TinyLFU \(tinyDrift)")
    }

    @Test func configSelectsThePolicy() throws {
        let json = """
            {"models": [{"model": "m", "sparse_files": ["t"], "deployed_device_list": [0],
              "maxnum_catfeature_query_per_table_per_sample": [1], "embedding_vecsize_per_table": [4],
              "default_value_for_each_table": [0], "cache_admission": "none"}]}
            """
        #expect(try ParameterServerConfig.parse(json: json, checkFiles: false).models.first?.cacheAdmission == CacheAdmission.none)
        let standard = json.replacingOccurrences(of: ", \"cache_admission\": \"none\"", with: "")
        #expect(try ParameterServerConfig.parse(json: standard, checkFiles: false).models.first?.cacheAdmission == .tinyLFU)
        let wrong = json.replacingOccurrences(of: "\"none\"", with: "\"lfu\"")
        #expect {
            _ = try ParameterServerConfig.parse(json: wrong, checkFiles: false)
        } throws: { error in
            "\(error)".contains("cache_admission") && "\(error)".contains("lfu")
        }
        let cache = CPUCacheProvider().cache(
            for: CacheRequest(model: try ParameterServerConfig.parse(json: json, checkFiles: false).models[0], table: TableConfig(model: "m", index: 0, name: "t", path: "t", dimension: 4, defaultValue: 0, maxKeysPerSample: 1), device: 0, type: .dynamic, tableRows: 1000))
        #expect((cache as? DynamicCache)?.admission == CacheAdmission.none)
    }
}
