import CoreMetrics
import HPS
import HPSRuntime
import MetricsTestKit
import Testing

/// Sends the metrics of the models these tests name to a `TestMetrics` and every other metric nowhere, so
/// the rest of the suite (which runs in the same process) neither pays for nor disturbs them.
private struct ModelFilteredFactory: MetricsFactory {
    let test: TestMetrics
    let models: Set<String>

    private func wanted(_ dimensions: [(String, String)]) -> Bool {
        dimensions.contains { $0.0 == "model" && models.contains($0.1) }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        wanted(dimensions) ? test.makeCounter(label: label, dimensions: dimensions) : NOOPMetricsHandler.instance
    }
    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        wanted(dimensions) ? test.makeFloatingPointCounter(label: label, dimensions: dimensions) : NOOPMetricsHandler.instance
    }
    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        wanted(dimensions) ? test.makeMeter(label: label, dimensions: dimensions) : NOOPMetricsHandler.instance
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        wanted(dimensions) ? test.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate) : NOOPMetricsHandler.instance
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        wanted(dimensions) ? test.makeTimer(label: label, dimensions: dimensions) : NOOPMetricsHandler.instance
    }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    func destroyMeter(_ handler: any MeterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}

/// swift-metrics may be bootstrapped once per process: these tests do it for the whole test process.
private let testMetrics: TestMetrics = {
    let metrics = TestMetrics()
    MetricsSystem.bootstrap(ModelFilteredFactory(test: metrics, models: ["metrics-cached", "metrics-direct"]))
    return metrics
}()

/// What a program that embeds the library sees through its own swift-metrics backend: each lookup call
/// counted once, per model and table, with the keys each tier answered.
@Suite struct LookupMetricsTests {
    /// Bootstraps before any session is made: a metric binds to the factory of the moment it is created.
    init() { _ = testMetrics }

    func counter(_ label: String, _ model: String, _ table: String, _ extra: [(String, String)] = []) throws -> Int64 {
        try testMetrics.expectCounter(label, [("model", model), ("table", table)] + extra).totalValue
    }

    func hits(_ model: String, _ table: String, _ tier: String) throws -> Int64 {
        try counter("hps_lookup_hits_total", model, table, [("tier", tier)])
    }

    @Test func cachedTableCountsCallsKeysAndTiers() throws {
        let metrics = testMetrics
        var fixture = try Fixture()
        fixture.model.name = "metrics-cached"
        fixture.model.hitRateThreshold = 1.0  // misses are fetched now: every answer exact
        let server = try fixture.server()
        let session = try server.session(model: "metrics-cached", device: 0)
        // 6 distinct keys of table 0 (keys ≡ 0 mod 3 exist below 6000): 4 known, 2 unknown; 9 keys with repeats.
        let keys: [Int64] = [0, 3, 6, 9, 1, 4, 0, 3, 1]
        #expect(try session.lookup(table: 0, keys: keys) == fixture.expected(table: 0, keys: keys))
        #expect(try counter("hps_lookups_total", "metrics-cached", "t0") == 1)
        #expect(try counter("hps_lookup_keys_total", "metrics-cached", "t0") == 9)
        #expect(try counter("hps_lookup_distinct_keys_total", "metrics-cached", "t0") == 6)
        #expect(try hits("metrics-cached", "t0", "device_cache") == 0)
        #expect(try hits("metrics-cached", "t0", "volatile_db") == 4)
        #expect(try hits("metrics-cached", "t0", "default") == 2)
        // Again: the cache holds all six now (the defaults too, as in HPS).
        #expect(try session.lookup(table: 0, keys: keys) == fixture.expected(table: 0, keys: keys))
        #expect(try counter("hps_lookups_total", "metrics-cached", "t0") == 2)
        #expect(try hits("metrics-cached", "t0", "device_cache") == 6)
        #expect(try hits("metrics-cached", "t0", "volatile_db") == 4)
        let labels = [("model", "metrics-cached"), ("table", "t0")]
        #expect(try metrics.expectTimer("hps_lookup_duration_seconds", labels).values.count == 2)
        #expect(try metrics.expectTimer("hps_tier_duration_seconds", labels + [("tier", "device_cache")]).values.count == 2)
        #expect(try metrics.expectTimer("hps_tier_duration_seconds", labels + [("tier", "volatile_db")]).values.count == 1)
        let capacity = try metrics.expectGauge("hps_cache_capacity_rows", labels).lastValue ?? 0
        #expect(capacity > 0)
        // Table 1 was never asked.
        #expect(try counter("hps_lookups_total", "metrics-cached", "t1") == 0)
    }

    @Test func directHashMapTableCountsEveryKey() throws {
        var fixture = try Fixture()
        fixture.model.name = "metrics-direct"
        fixture.model.cpuCache = false  // the hash map holds every row: looked up directly, no cache
        let server = try fixture.server()
        let session = try server.session(model: "metrics-direct", device: 0)
        #expect(session.direct == [true, true])
        let keys: [Int64] = [1, 4, 7, 4, 2, 5]  // table 1: keys ≡ 1 mod 3 below 1500 exist; 2 and 5 do not
        #expect(try session.lookup(table: 1, keys: keys) == fixture.expected(table: 1, keys: keys))
        #expect(try counter("hps_lookups_total", "metrics-direct", "t1") == 1)
        #expect(try counter("hps_lookup_keys_total", "metrics-direct", "t1") == 6)
        #expect(try counter("hps_lookup_distinct_keys_total", "metrics-direct", "t1") == 6)  // not deduplicated
        #expect(try hits("metrics-direct", "t1", "volatile_db") == 4)
        #expect(try hits("metrics-direct", "t1", "default") == 2)
        #expect(try hits("metrics-direct", "t1", "device_cache") == 0)
        #expect(throws: (any Error).self) { try testMetrics.expectGauge("hps_cache_capacity_rows", [("model", "metrics-direct"), ("table", "t1")]) }
    }
}
