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

    public init(volatileDatabase: Bool, persistentDatabase: Bool, deviceCaches: Bool) {
        self.volatileDatabase = volatileDatabase
        self.persistentDatabase = persistentDatabase
        self.deviceCaches = deviceCaches
    }

    /// Whether the update goes anywhere.
    public var isEmpty: Bool { !volatileDatabase && !persistentDatabase && !deviceCaches }
}
