import Synchronization

/// Counters of what each tier answered, for the CLI, the demo and benchmarks.
public final class TierStatistics: Sendable {
    public let cacheHits = Atomic<Int>(0)
    public let cacheMisses = Atomic<Int>(0)
    public let volatileHits = Atomic<Int>(0)
    public let volatileMisses = Atomic<Int>(0)
    public let volatileErrors = Atomic<Int>(0)
    public let persistentHits = Atomic<Int>(0)
    public let persistentMisses = Atomic<Int>(0)
    public let persistentErrors = Atomic<Int>(0)
    /// Keys answered with the default value (not found anywhere, or deferred by the hit-rate threshold).
    public let defaults = Atomic<Int>(0)
    public let lookups = Atomic<Int>(0)
    public let keys = Atomic<Int>(0)
    public let uniqueKeys = Atomic<Int>(0)

    public init() {}

    /// A plain copy of the counters.
    public struct Snapshot: Sendable, Equatable {
        public var cacheHits = 0, cacheMisses = 0
        public var volatileHits = 0, volatileMisses = 0, volatileErrors = 0
        public var persistentHits = 0, persistentMisses = 0, persistentErrors = 0
        public var defaults = 0, lookups = 0, keys = 0, uniqueKeys = 0
    }

    public var snapshot: Snapshot {
        Snapshot(
            cacheHits: cacheHits.load(ordering: .relaxed), cacheMisses: cacheMisses.load(ordering: .relaxed),
            volatileHits: volatileHits.load(ordering: .relaxed), volatileMisses: volatileMisses.load(ordering: .relaxed),
            volatileErrors: volatileErrors.load(ordering: .relaxed),
            persistentHits: persistentHits.load(ordering: .relaxed), persistentMisses: persistentMisses.load(ordering: .relaxed),
            persistentErrors: persistentErrors.load(ordering: .relaxed),
            defaults: defaults.load(ordering: .relaxed), lookups: lookups.load(ordering: .relaxed),
            keys: keys.load(ordering: .relaxed), uniqueKeys: uniqueKeys.load(ordering: .relaxed))
    }

    @inline(__always)
    func add(_ counter: borrowing Atomic<Int>, _ n: Int) {
        if n != 0 { counter.wrappingAdd(n, ordering: .relaxed) }
    }
}
