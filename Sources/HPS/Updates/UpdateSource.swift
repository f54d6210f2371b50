/// A running source of online updates (the Kafka consumer of `update_source`), owned by the parameter
/// server it writes into and stopped when that server goes away.
public protocol UpdateSource: AnyObject, Sendable {
    /// Stops consuming: returns once no update is being applied any more. Offsets of updates not yet applied
    /// stay uncommitted, so the next consumer of the group applies them (at-least-once). Idempotent.
    func stop()
}

/// Where one update of a table goes inside this process.
public struct UpdateTargets: Sendable, Equatable {
    /// Write the rows into the volatile database.
    public var volatileDatabase: Bool
    /// Write the rows into the persistent database.
    public var persistentDatabase: Bool
    /// Overwrite the rows of keys that device caches of this process hold (after the databases took them).
    public var deviceCaches: Bool
    /// The volatile database is shared and written by another consumer (possibly on another node): before
    /// the caches take the rows, wait (up to ``sharedVolatileWaitMs``) until it holds them, so a lookup that
    /// misses the cache afterwards cannot fetch the old row from it.
    public var awaitSharedVolatile: Bool

    /// How long ``awaitSharedVolatile`` waits for rows that differ (a newer row may already be there).
    public static let sharedVolatileWaitMs = 2000

    public init(volatileDatabase: Bool, persistentDatabase: Bool, deviceCaches: Bool, awaitSharedVolatile: Bool = false) {
        self.volatileDatabase = volatileDatabase
        self.persistentDatabase = persistentDatabase
        self.deviceCaches = deviceCaches
        self.awaitSharedVolatile = awaitSharedVolatile
    }

    /// Whether the update goes anywhere.
    public var isEmpty: Bool { !volatileDatabase && !persistentDatabase && !deviceCaches }
}
