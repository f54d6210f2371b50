import CoreMetrics
import Dispatch
import Synchronization

/// What one lookup call tallies while it runs, reported once at its end (per call, never per key). Written
/// only by the thread that runs the call.
struct LookupTally {
    /// `DispatchTime` nanoseconds when the call started.
    var start: UInt64 = 0
    /// Distinct keys the call looked up (all keys where a path does not deduplicate).
    var distinctKeys = 0
    /// Keys answered by each tier (distinct keys for the device cache).
    var cacheHits = 0, volatileHits = 0, persistentHits = 0, defaults = 0
    /// Failed calls into each database (their keys went on to the next tier).
    var volatileErrors = 0, persistentErrors = 0
    /// Time spent in each tier, nanoseconds; nil when the call did not reach it.
    var cacheNanos: UInt64?, volatileNanos: UInt64?, persistentNanos: UInt64?

    init(start: UInt64 = 0) { self.start = start }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
}

/// The swift-metrics handles of one table of one model, labelled `model` and `table`. Whatever backend the
/// program bootstrapped (`MetricsSystem.bootstrap`) receives them; without one they cost a no-op call.
///
/// - `hps_lookups_total`, `hps_lookup_keys_total`, `hps_lookup_distinct_keys_total`: calls, keys, distinct keys.
/// - `hps_lookup_hits_total{tier}`: keys answered by `device_cache` (distinct keys), `volatile_db`,
///   `persistent_db` or `default`.
/// - `hps_backend_errors_total{backend}`: failed calls into `volatile_db` or `persistent_db`.
/// - `hps_lookup_duration_seconds`: one call; `hps_tier_duration_seconds{tier}`: the time a call spent in a tier.
/// - `hps_cache_occupancy_rows`, `hps_cache_capacity_rows`: the table's device cache, when it has one.
final class TableLookupMetrics: Sendable {
    private let lookups: Counter
    private let keys: Counter
    private let distinctKeys: Counter
    private let cacheHits, volatileHits, persistentHits, defaults: Counter
    private let volatileErrors, persistentErrors: Counter
    private let duration: CoreMetrics.Timer
    private let volatileDuration, persistentDuration: CoreMetrics.Timer
    /// Those of the cache, for a table that has one.
    private let cacheDuration: CoreMetrics.Timer?
    private let occupancy: Gauge?
    private let capacity: Gauge?
    /// When the occupancy was last measured (`DispatchTime` ns); counting a dynamic cache's rows walks it.
    private let occupancyMeasured = Atomic<UInt64>(0)

    /// - Parameter cached: whether the table has a cache (its time and occupancy are reported then only).
    init(model: String, table: String, cached: Bool) {
        let labels = [("model", model), ("table", table)]
        lookups = Counter(label: "hps_lookups_total", dimensions: labels)
        keys = Counter(label: "hps_lookup_keys_total", dimensions: labels)
        distinctKeys = Counter(label: "hps_lookup_distinct_keys_total", dimensions: labels)
        cacheHits = Counter(label: "hps_lookup_hits_total", dimensions: labels + [("tier", "device_cache")])
        volatileHits = Counter(label: "hps_lookup_hits_total", dimensions: labels + [("tier", "volatile_db")])
        persistentHits = Counter(label: "hps_lookup_hits_total", dimensions: labels + [("tier", "persistent_db")])
        defaults = Counter(label: "hps_lookup_hits_total", dimensions: labels + [("tier", "default")])
        volatileErrors = Counter(label: "hps_backend_errors_total", dimensions: labels + [("backend", "volatile_db")])
        persistentErrors = Counter(label: "hps_backend_errors_total", dimensions: labels + [("backend", "persistent_db")])
        duration = CoreMetrics.Timer(label: "hps_lookup_duration_seconds", dimensions: labels)
        volatileDuration = CoreMetrics.Timer(label: "hps_tier_duration_seconds", dimensions: labels + [("tier", "volatile_db")])
        persistentDuration = CoreMetrics.Timer(label: "hps_tier_duration_seconds", dimensions: labels + [("tier", "persistent_db")])
        if cached {
            cacheDuration = CoreMetrics.Timer(label: "hps_tier_duration_seconds", dimensions: labels + [("tier", "device_cache")])
            occupancy = Gauge(label: "hps_cache_occupancy_rows", dimensions: labels)
            capacity = Gauge(label: "hps_cache_capacity_rows", dimensions: labels)
        } else {
            (cacheDuration, occupancy, capacity) = (nil, nil, nil)
        }
    }

    /// The cache's size once it is built (and filled, for a static or warmed cache).
    func cache(capacity rows: Int, occupancy used: Int) {
        capacity?.record(rows)
        occupancy?.record(used)
    }

    /// Reports one finished call of `keyCount` keys.
    func report(_ tally: LookupTally, keys keyCount: Int) {
        lookups.increment()
        keys.increment(by: keyCount)
        distinctKeys.increment(by: tally.distinctKeys)
        if tally.cacheHits > 0 { cacheHits.increment(by: tally.cacheHits) }
        if let n = tally.cacheNanos { cacheDuration?.recordNanoseconds(Int64(n)) }
        reportDatabases(tally)
        if tally.start > 0 { duration.recordNanoseconds(Int64(LookupTally.now() &- tally.start)) }
    }

    /// Reports what the databases answered (hits, defaults, errors, time), for a fetch made apart from a call.
    func reportDatabases(_ tally: LookupTally) {
        if tally.volatileHits > 0 { volatileHits.increment(by: tally.volatileHits) }
        if tally.persistentHits > 0 { persistentHits.increment(by: tally.persistentHits) }
        if tally.defaults > 0 { defaults.increment(by: tally.defaults) }
        if tally.volatileErrors > 0 { volatileErrors.increment(by: tally.volatileErrors) }
        if tally.persistentErrors > 0 { persistentErrors.increment(by: tally.persistentErrors) }
        if let n = tally.volatileNanos { volatileDuration.recordNanoseconds(Int64(n)) }
        if let n = tally.persistentNanos { persistentDuration.recordNanoseconds(Int64(n)) }
    }

    /// Whether the occupancy is due to be measured again (at most once a second); claims the measurement.
    func occupancyDue() -> Bool {
        let now = LookupTally.now(), last = occupancyMeasured.load(ordering: .relaxed)
        guard last == 0 || now &- last >= 1_000_000_000 else { return false }
        return occupancyMeasured.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
    }

    func occupancy(_ rows: Int) { occupancy?.record(rows) }
}
