@testable import HPS
import HPSRuntime
import Testing

/// `hps plan`'s building blocks: the hit-rate replay predicts what a real session measures, and the memory
/// estimates match what the structures allocate.
@Suite struct PlanTests {
    @Test(arguments: [0.05, 0.2], [CacheAdmission.none, .tinyLFU])
    func predictedHitRateMatchesASession(fraction: Double, admission: CacheAdmission) throws {
        var fixture = try Fixture(rows: [20000], dims: [8], defaults: [0], maxBatch: 128, keysPerSample: [8])
        fixture.model.deviceCachePercentage = fraction
        fixture.model.cacheAdmission = admission
        fixture.model.hitRateThreshold = 1.0
        let tableKeys = (0..<20000).map { Int64($0) * 3 }
        let trace = HitRateSimulation.zipfTrace(keys: tableKeys, alpha: 1.05, count: 1024 * 60, seed: 7)
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        let slots = try #require(session.caches[0]).capacity
        for start in stride(from: 0, to: trace.count, by: 1024) {
            _ = try session.lookup(table: 0, keys: Array(trace[start..<min(trace.count, start + 1024)]))
        }
        let stats = server.statistics.snapshot
        let measured = Double(stats.cacheHits) / Double(stats.cacheHits + stats.cacheMisses)
        let predicted = trace.withUnsafeBufferPointer { HitRateSimulation(batchSize: 1024, admission: admission).run(trace: $0, slots: slots) }
        #expect(predicted.slots == slots)
        #expect(abs(predicted.distinctHitRate - measured) < 0.01, "predicted \(predicted.distinctHitRate), session \(measured)")
        #expect(predicted.accessHitRate > predicted.distinctHitRate)  // hot keys repeat within a batch
    }

    @Test func zipfTraceIsDeterministicAndSkewed() {
        let keys = (0..<1000).map { Int64($0) * 10 }
        let a = HitRateSimulation.zipfTrace(keys: keys, alpha: 1.2, count: 20000, seed: 3)
        #expect(a == HitRateSimulation.zipfTrace(keys: keys, alpha: 1.2, count: 20000, seed: 3))
        #expect(Set(a).isSubset(of: Set(keys)))
        var counts: [Int64: Int] = [:]
        for k in a { counts[k, default: 0] += 1 }
        let top = counts.values.max() ?? 0
        #expect(top > 20000 / 20)  // the hottest key takes far more than a uniform share (20)
    }

    @Test func hashMapEstimateMatchesTheAllocation() throws {
        var config = VolatileDatabaseConfig()
        config.numPartitions = 4
        let db = HashMapDatabase(config: config, logger: .silent)
        let dim = 16, rows = 50000
        let keys = (0..<rows).map { Int64($0) * 7 }
        let values = [Float](repeating: 1, count: rows * dim)
        try keys.withUnsafeBufferPointer { k in
            try values.withUnsafeBytes { v in _ = try db.insert(table: "t", keys: k, values: v, valueSize: dim * 4) }
        }
        let estimate = HashMapDatabase.estimatedBytes(rows: rows, valueSize: dim * 4, config: config)
        let actual = db.memoryUsage(table: "t").bytes
        // Keys spread over the partitions unevenly; the estimate assumes an even spread.
        #expect(abs(Double(estimate - actual)) / Double(actual) < 0.1, "estimate \(estimate), allocated \(actual)")
    }

    @Test func cacheEstimates() {
        #expect(DynamicCache.estimatedBytes(capacity: 100, dimension: 4) == 128 * (1 + 8 + 8 + 16) + 2 * 4)
        #expect(StaticCache.estimatedBytes(capacity: 12, dimension: 2) == 16 * 8 + 12 * 8 + 12 * 2 * 4)
    }
}
