import HPS
import Testing

@Suite struct CacheTests {
    static func row(_ key: Int64, dim: Int) -> [Float] { DatabaseConformance.row(key, dim: dim) }

    func query(_ cache: any EmbeddingCache, _ keys: [Int64]) throws -> (values: [Float], missing: [Int]) {
        try EmbeddingCacheConformance.query(cache, keys)
    }

    func replace(_ cache: any EmbeddingCache, _ keys: [Int64]) throws { try EmbeddingCacheConformance.replace(cache, keys) }

    @Test func dynamicCacheSizing() throws {
        #expect(DynamicCache(capacity: 1, dimension: 4).capacity == 64)
        #expect(DynamicCache(capacity: 65, dimension: 4).capacity == 128)
        #expect(DynamicCache(capacity: 1000, dimension: 4).setCount == 16)
    }

    @Test(arguments: [1, 7, 128])
    func hitsAreExactAndMissesReported(dim: Int) throws {
        let cache = DynamicCache(capacity: 4096, dimension: dim)
        let keys: [Int64] = (0..<1000).map { $0 * 1_000_003 - 500 } + [.min, .max]
        try replace(cache, keys)
        let probe: [Int64] = [keys[5], 42, keys[999], .min, .max, 43]
        let (values, missing) = try query(cache, probe)
        #expect(missing == [1, 5])
        for i in [0, 2, 3, 4] {
            #expect(Array(values[(i * dim)..<((i + 1) * dim)]).map(\.bitPattern) == Self.row(probe[i], dim: dim).map(\.bitPattern))
        }
    }

    @Test func leastRecentlyUsedIsEvictedWithinASet() throws {
        // One set of 64 slots: fill it, touch key 0, insert a new key: key 1 (the LRU) goes.
        let cache = DynamicCache(capacity: 64, dimension: 2)
        #expect(cache.setCount == 1)
        try replace(cache, Array(0..<64))
        #expect(cache.count == 64)
        _ = try query(cache, [0])
        try replace(cache, [100])
        #expect(try query(cache, [0]).missing.isEmpty)
        #expect(try query(cache, [1]).missing == [0])
        #expect(try query(cache, [100]).missing.isEmpty)
        #expect(cache.count == 64)
    }

    @Test func lruMatchesAReferenceModel() throws {
        // Single set: the cache must behave exactly like an LRU list of 64 entries.
        let cache = DynamicCache(capacity: 64, dimension: 1)
        var model: [Int64] = []  // most recent last
        var rng = SplitMix64(seed: 3)
        for _ in 0..<5000 {
            let key = Int64(rng.next() % 100)
            let hit = try query(cache, [key]).missing.isEmpty
            #expect(hit == model.contains(key))
            if let i = model.firstIndex(of: key) { model.remove(at: i) }
            if !hit {
                try replace(cache, [key])
                if model.count == 64 { model.removeFirst() }
            }
            model.append(key)
        }
    }

    @Test func updateTouchesOnlyCachedKeys() throws {
        let cache = DynamicCache(capacity: 128, dimension: 2)
        try replace(cache, [1, 2])
        let newValues: [Float] = [9, 9, 8, 8]
        [Int64](arrayLiteral: 2, 3).withUnsafeBufferPointer { k in newValues.withUnsafeBufferPointer { cache.update(keys: k, values: $0.baseAddress!) } }
        #expect(try query(cache, [2]).values == [9, 9])
        #expect(try query(cache, [3]).missing == [0])
        #expect(cache.count == 2)
        #expect(Set(cache.keys(inUnits: 0..<cache.unitCount)) == [1, 2])
    }

    @Test func staticCacheHoldsWholeTable() throws {
        let cache = StaticCache(capacity: 1000, dimension: 3)
        let keys = (0..<1000).map { Int64($0) * -7 }
        try replace(cache, keys)
        #expect(cache.count == 1000)
        #expect(cache.holdsWholeTable)
        let (values, missing) = try query(cache, [keys[10], 1, keys[999]])
        #expect(missing == [1])
        #expect(Array(values[0..<3]).map(\.bitPattern) == Self.row(keys[10], dim: 3).map(\.bitPattern))
        #expect(Array(values[6..<9]).map(\.bitPattern) == Self.row(keys[999], dim: 3).map(\.bitPattern))
        #expect(cache.keys(inUnits: 0..<cache.unitCount).count == 1000)
    }

    @Test func concurrentQueriesNeverSeeTornVectors() async {
        let dim = 64
        let cache = DynamicCache(capacity: 256, dimension: dim)
        let keys: [Int64] = Array(0..<1024)  // 4x the capacity: constant eviction
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for round in 0..<300 {
                    let v = Float(round % 2 + 1)
                    let values = [Float](repeating: v, count: keys.count * dim)
                    keys.withUnsafeBufferPointer { k in values.withUnsafeBufferPointer { cache.replace(keys: k, values: $0.baseAddress!) } }  // CPU cache: never throws
                }
                return true
            }
            for t in 0..<8 {
                group.addTask {
                    var ok = true
                    var values = [Float](repeating: 0, count: 64 * dim)
                    var missing = [Int32](repeating: 0, count: 64)
                    for round in 0..<300 {
                        let probe = (0..<64).map { Int64(($0 * 16 + round + t) % 1024) }
                        let misses = probe.withUnsafeBufferPointer { k in
                            values.withUnsafeMutableBufferPointer { v in
                                missing.withUnsafeMutableBufferPointer { m in cache.query(keys: k, into: v.baseAddress!, missing: m.baseAddress!) }
                            }
                        }
                        let missed = Set(missing[0..<misses].map(Int.init))
                        for r in 0..<64 where !missed.contains(r) {
                            let slice = values[(r * dim)..<(r * dim + dim)]
                            if Set(slice).count != 1 || !(slice.first! == 1 || slice.first! == 2) { ok = false }
                        }
                    }
                    return ok
                }
            }
            for await ok in group { #expect(ok) }
        }
    }
}
