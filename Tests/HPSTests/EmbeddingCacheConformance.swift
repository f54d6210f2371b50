import Dispatch
import HPS
import HPSCUDA
import Synchronization
import Testing

/// The contract every ``EmbeddingCache`` must meet, written once and run against each implementation: the CPU
/// dynamic and static caches, and (where a CUDA device exists) the CUDA dynamic cache and static/uvm tables.
///
/// Vectors are deterministic functions of the key (``DatabaseConformance/row(_:dim:salt:)``), so every query is
/// checked bit for bit against an independent plain-array model.
enum EmbeddingCacheConformance {
    /// Makes an empty cache of at least `capacity` vectors of `dimension` floats.
    typealias Make = (_ capacity: Int, _ dimension: Int) throws -> any EmbeddingCache

    static func query(_ cache: any EmbeddingCache, _ keys: [Int64]) throws -> (values: [Float], missing: [Int]) {
        var values = [Float](repeating: .nan, count: keys.count * cache.dimension)
        var missing = [Int32](repeating: -1, count: keys.count)
        let n = try keys.withUnsafeBufferPointer { k in
            try values.withUnsafeMutableBufferPointer { v in
                try missing.withUnsafeMutableBufferPointer { m in try cache.query(keys: k, into: v.baseAddress!, missing: m.baseAddress!) }
            }
        }
        return (values, missing[0..<n].map(Int.init))
    }

    static func replace(_ cache: any EmbeddingCache, _ keys: [Int64], salt: Float = 0) throws {
        let values = DatabaseConformance.rows(keys, dim: cache.dimension, salt: salt)
        try keys.withUnsafeBufferPointer { k in try values.withUnsafeBufferPointer { try cache.replace(keys: k, values: $0.baseAddress!) } }
    }

    static func update(_ cache: any EmbeddingCache, _ keys: [Int64], salt: Float) throws {
        let values = DatabaseConformance.rows(keys, dim: cache.dimension, salt: salt)
        try keys.withUnsafeBufferPointer { k in try values.withUnsafeBufferPointer { try cache.update(keys: k, values: $0.baseAddress!) } }
    }

    /// The vector of row `i` of a query's output.
    static func row(_ values: [Float], _ i: Int, dim: Int) -> [UInt32] { values[(i * dim)..<((i + 1) * dim)].map(\.bitPattern) }

    static func expected(_ key: Int64, dim: Int, salt: Float = 0) -> [UInt32] {
        DatabaseConformance.row(key, dim: dim, salt: salt).map(\.bitPattern)
    }

    static func allKeys(_ cache: any EmbeddingCache) throws -> [Int64] { try cache.keys(inUnits: 0..<cache.unitCount) }

    /// Runs the whole contract against caches made by `make`.
    static func run(_ make: Make) throws {
        for dim in [1, 7, 32] { try hitsAreBitExactAndMissesReported(make(4096, dim)) }
        try emptyBatches(make(256, 4))
        try replaceOverwritesAndUpdateTouchesOnlyCachedKeys(make(1024, 8))
        try capacityIsRespected(make(256, 4))
        try keysAreListedByUnits(make(2048, 2))
        try largeBatchesAreAnsweredWhole(make(1 << 16, 4))
        try concurrentQueriesWhileInsertingNeverSeeTornVectors(make(256, 16))
    }

    /// Every inserted key is a hit with its exact vector (the extremes of `Int64` too); every other key is a miss,
    /// reported by its position in the batch, in batch order.
    static func hitsAreBitExactAndMissesReported(_ cache: any EmbeddingCache) throws {
        let dim = cache.dimension
        let keys: [Int64] = (0..<1000).map { Int64($0) * 1_000_003 - 500 } + [.min, .max, 0, -1]
        try replace(cache, keys)
        #expect(cache.count == keys.count)
        let probe: [Int64] = [keys[5], 42, keys[999], .min, .max, 43, 0, -1, keys[0], -2]
        let (values, missing) = try query(cache, probe)
        #expect(missing == [1, 5, 9])
        for i in [0, 2, 3, 4, 6, 7, 8] { #expect(row(values, i, dim: dim) == expected(probe[i], dim: dim), "key \(probe[i])") }
        // A batch of only unknown keys misses whole.
        #expect(try query(cache, [7, 8, 9]).missing == [0, 1, 2])
        // Every key queried at once, in a shuffled order.
        let shuffled = keys.reversed().map { $0 }
        let all = try query(cache, shuffled)
        #expect(all.missing.isEmpty)
        #expect((0..<shuffled.count).allSatisfy { row(all.values, $0, dim: dim) == expected(shuffled[$0], dim: dim) })
    }

    /// A batch of no keys answers no misses and inserts nothing.
    static func emptyBatches(_ cache: any EmbeddingCache) throws {
        #expect(try query(cache, []).missing.isEmpty)
        try replace(cache, [])
        try update(cache, [], salt: 1)
        #expect(cache.count == 0)
        #expect(try query(cache, [1]).missing == [0])
    }

    /// `replace` of a cached key overwrites its vector (no second entry); `update` overwrites cached keys and
    /// ignores the others (it never inserts).
    static func replaceOverwritesAndUpdateTouchesOnlyCachedKeys(_ cache: any EmbeddingCache) throws {
        let dim = cache.dimension
        let keys: [Int64] = Array(1...100)
        try replace(cache, keys)
        try replace(cache, Array(keys[0..<10]), salt: 3)
        #expect(cache.count == 100)
        var (values, missing) = try query(cache, keys)
        #expect(missing.isEmpty)
        #expect((0..<10).allSatisfy { row(values, $0, dim: dim) == expected(keys[$0], dim: dim, salt: 3) })
        #expect((10..<100).allSatisfy { row(values, $0, dim: dim) == expected(keys[$0], dim: dim) })

        try update(cache, [50, 51, 1000, 1001], salt: 5)
        #expect(cache.count == 100)
        (values, missing) = try query(cache, [50, 51, 1000, 1001, 52])
        #expect(missing == [2, 3])
        #expect(row(values, 0, dim: dim) == expected(50, dim: dim, salt: 5))
        #expect(row(values, 1, dim: dim) == expected(51, dim: dim, salt: 5))
        #expect(row(values, 4, dim: dim) == expected(52, dim: dim))
        #expect(Set(try allKeys(cache)) == Set(keys))
    }

    /// Inserting four times the capacity never holds more than the capacity; a cache that holds the whole table
    /// keeps the first keys and ignores the rest; whatever is held answers with its exact vector.
    static func capacityIsRespected(_ cache: any EmbeddingCache) throws {
        let dim = cache.dimension
        let capacity = cache.capacity
        let keys: [Int64] = (0..<Int64(4 * capacity)).map { $0 * 31 + 7 }
        for start in stride(from: 0, to: keys.count, by: 100) { try replace(cache, Array(keys[start..<min(keys.count, start + 100)])) }
        #expect(cache.count <= capacity)
        #expect(cache.count > 0)
        if cache.holdsWholeTable { #expect(cache.count == capacity) }
        let held = try allKeys(cache)
        #expect(held.count == cache.count)
        #expect(Set(held).isSubset(of: Set(keys)))
        let (values, missing) = try query(cache, keys)
        #expect(keys.count - missing.count == cache.count)
        let missed = Set(missing)
        for i in 0..<keys.count where !missed.contains(i) {
            #expect(row(values, i, dim: dim) == expected(keys[i], dim: dim), "key \(keys[i])")
        }
        if cache.holdsWholeTable {
            // The first `capacity` keys, in insertion order.
            #expect(held == Array(keys[0..<capacity]))
        }
    }

    /// ``EmbeddingCache/keys(inUnits:)`` over every unit lists each cached key once; disjoint ranges of units
    /// list disjoint keys, and out-of-range units list nothing.
    static func keysAreListedByUnits(_ cache: any EmbeddingCache) throws {
        let keys: [Int64] = (0..<700).map { Int64($0) &* 0x9E37_79B9 }
        try replace(cache, keys)
        let units = cache.unitCount
        #expect(units >= 1)
        var listed: [Int64] = []
        for u in 0..<units { listed += try cache.keys(inUnits: u..<(u + 1)) }
        #expect(listed.count == keys.count)
        #expect(Set(listed) == Set(keys))
        #expect(try cache.keys(inUnits: units..<(units + 5)).isEmpty)
    }

    /// Batches larger than any internal staging (CUDA caches move host batches in chunks) are answered whole.
    static func largeBatchesAreAnsweredWhole(_ cache: any EmbeddingCache) throws {
        let dim = cache.dimension
        let keys: [Int64] = (0..<20_000).map { Int64($0) * 3 + 1 }
        try replace(cache, keys)
        let probe = keys + (0..<5_000).map { Int64($0) * 3 + 2 }  // the second part: never inserted
        let (values, missing) = try query(cache, probe)
        #expect(missing == Array(keys.count..<probe.count))
        #expect((0..<keys.count).allSatisfy { row(values, $0, dim: dim) == expected(probe[$0], dim: dim) })
    }

    /// Queries that run while another thread keeps rewriting (and, for a dynamic cache, evicting) see each hit's
    /// vector whole: all of one write, never half of two.
    static func concurrentQueriesWhileInsertingNeverSeeTornVectors(_ cache: any EmbeddingCache) throws {
        let dim = cache.dimension
        // 4x the capacity: a dynamic cache evicts all the time; a whole-table cache rewrites the rows it holds.
        let keys: [Int64] = Array(0..<Int64(4 * cache.capacity))
        let rounds = 60
        let torn = Atomic(0)
        DispatchQueue.concurrentPerform(iterations: 5) { t in
            if t == 0 {
                for round in 0..<rounds {
                    let values = [Float](repeating: Float(round % 2 + 1), count: keys.count * dim)
                    keys.withUnsafeBufferPointer { k in values.withUnsafeBufferPointer { try? cache.replace(keys: k, values: $0.baseAddress!) } }
                }
                return
            }
            var values = [Float](repeating: 0, count: 64 * dim)
            var missing = [Int32](repeating: 0, count: 64)
            for round in 0..<(rounds * 4) {
                let probe = (0..<64).map { Int64(($0 * 16 + round + t) % keys.count) }
                let misses = probe.withUnsafeBufferPointer { k in
                    values.withUnsafeMutableBufferPointer { v in
                        missing.withUnsafeMutableBufferPointer { m in (try? cache.query(keys: k, into: v.baseAddress!, missing: m.baseAddress!)) ?? -1 }
                    }
                }
                guard misses >= 0 else {
                    torn.add(1, ordering: .relaxed)
                    continue
                }
                let missed = Set(missing[0..<misses].map(Int.init))
                for r in 0..<64 where !missed.contains(r) {
                    let slice = values[(r * dim)..<(r * dim + dim)]
                    if Set(slice).count != 1 || !(slice.first! == 1 || slice.first! == 2) { torn.add(1, ordering: .relaxed) }
                }
            }
        }
        #expect(torn.load(ordering: .relaxed) == 0, "queries that failed or saw a torn vector")
    }
}

@Suite struct EmbeddingCacheConformanceTests {
    /// The CUDA context of device 0, or nil without a CUDA device (or with `HPS_DISABLE_CUDA` set).
    static let cudaContext: CUDAContext? = {
        guard case .success = CUDACacheProvider.probe() else { return nil }
        return try? CUDAContext.context(device: 0)
    }()
    static var cudaPresent: Bool { cudaContext != nil }

    @Test func cpuDynamicCache() throws {
        try EmbeddingCacheConformance.run { DynamicCache(capacity: $0, dimension: $1) }
    }

    @Test func cpuStaticCache() throws {
        try EmbeddingCacheConformance.run { StaticCache(capacity: $0, dimension: $1) }
    }

    /// `maxBatch: 1000` keeps the staging small, so the large batches run in many chunks.
    @Test(.enabled(if: cudaPresent, "no CUDA device"))
    func cudaDynamicCache() throws {
        let context = try #require(Self.cudaContext)
        try EmbeddingCacheConformance.run { try CUDADynamicCache(context: context, capacity: $0, dimension: $1, maxBatch: 1000, logger: .silent) }
    }

    @Test(.enabled(if: cudaPresent, "no CUDA device"))
    func cudaStaticTable() throws {
        let context = try #require(Self.cudaContext)
        try EmbeddingCacheConformance.run {
            try CUDAStaticCache(context: context, kind: .static, capacity: $0, dimension: $1, maxBatch: 1000, logger: .silent)
        }
    }

    /// Half the rows in device memory, half in mapped pinned host memory.
    @Test(.enabled(if: cudaPresent, "no CUDA device"))
    func cudaUVMTable() throws {
        let context = try #require(Self.cudaContext)
        try EmbeddingCacheConformance.run {
            try CUDAStaticCache(context: context, kind: .uvm, capacity: $0, dimension: $1, deviceFraction: 0.5, maxBatch: 1000, logger: .silent)
        }
    }
}
