/// Device-resident lookups: keys and vectors in an accelerator's memory, work enqueued on a stream of that
/// device. The core knows no accelerator API: an accelerator module (HPSCUDA) implements
/// ``DeviceTableLookup`` and hands it to sessions through ``CacheProvider/makeDeviceLookup(_:cache:logger:)``.

/// A lookup whose keys and output live in device memory.
public struct DeviceLookupRequest: @unchecked Sendable {
    // @unchecked Sendable: a value copied per call; `stream` is an opaque CUDA stream handle that Swift never
    // dereferences (the driver accepts it from any thread), the other addresses are plain integers.
    /// Device address of `count` keys: Int64, or UInt32-read Int32 when ``int32Keys``.
    public var keys: UInt64
    public var int32Keys: Bool
    public var count: Int
    /// Device address of `count × dimension` floats, written in input order.
    public var output: UInt64
    /// The caller's stream (a `CUstream` of the device's primary context), or nil: the lookup then runs on
    /// a stream of its own and is complete when the call returns.
    public var stream: UnsafeMutableRawPointer?
    /// For a table of a fused group (``TableFusion``): the tagging the keys get on the device before the lookup
    /// (after int32 keys are widened); nil for keys looked up as they are.
    public var fusedKeys: FusedKeyTransform?

    public init(keys: UInt64, int32Keys: Bool, count: Int, output: UInt64, stream: UnsafeMutableRawPointer?) {
        self.keys = keys
        self.int32Keys = int32Keys
        self.count = count
        self.output = output
        self.stream = stream
    }
}

/// What a device lookup needs from its session for the keys the device cache missed: the host tiers, the
/// threshold rule, the background inserter and the counters. Made by ``LookupSession``.
public struct DeviceLookupHost: Sendable {
    /// `hit_rate_threshold` of the model: a batch whose hit rate (over distinct keys) is at least this answers
    /// its misses with ``defaultValue`` now and inserts them in the background.
    public let hitRateThreshold: Double
    public let defaultValue: Float
    /// Volatile DB → persistent DB → default for `keys`, writing `keys.count × dim` floats (host memory);
    /// `missScratch` holds `keys.count` indices (the caller's, so concurrent fetches share nothing). Never fails:
    /// a database error turns its keys into defaults (counted and logged).
    public let fetch: @Sendable (_ keys: UnsafeBufferPointer<Int64>, _ into: UnsafeMutablePointer<Float>, _ missScratch: UnsafeMutablePointer<Int>) -> Void
    /// The session's whole host-memory lookup (cache, tiers, default) of `keys`, writing `keys.count × dim`
    /// floats: for device lookups of a session whose cache is not on the device (staged through the host).
    public let lookupHost: @Sendable (_ keys: UnsafeBufferPointer<Int64>, _ into: UnsafeMutablePointer<Float>) throws -> Void
    /// Runs `work` on the session's background inserter (in submission order).
    public let background: @Sendable (_ work: @escaping @Sendable () -> Void) -> Void
    /// Counts one batch: keys, distinct keys, cache hits and misses (over distinct keys), defaults given now.
    public let record: @Sendable (_ keys: Int, _ unique: Int, _ misses: Int, _ defaults: Int) -> Void
    /// How many online updates (Kafka) have reached the session's caches so far. Read it before ``fetch`` and
    /// hand it to ``refreshIfUpdated`` once the fetched rows are in the device cache.
    public let updateCount: @Sendable () -> UInt64
    /// After the rows of `keys`, fetched when ``updateCount`` read `since`, were inserted into the device cache
    /// (an insert enqueued on the cache's stream counts as inserted): when an online update came in between, the
    /// rows may predate it, so they are fetched again and overwritten in the cache, on the cache's stream. No
    /// cached row stays older than an applied update. Never fails: a device error is logged.
    public let refreshIfUpdated: @Sendable (_ keys: UnsafeBufferPointer<Int64>, _ since: UInt64) -> Void

    public init(
        hitRateThreshold: Double, defaultValue: Float, fetch: @escaping @Sendable (UnsafeBufferPointer<Int64>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Int>) -> Void,
        lookupHost: @escaping @Sendable (UnsafeBufferPointer<Int64>, UnsafeMutablePointer<Float>) throws -> Void,
        background: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void, record: @escaping @Sendable (Int, Int, Int, Int) -> Void,
        updateCount: @escaping @Sendable () -> UInt64, refreshIfUpdated: @escaping @Sendable (UnsafeBufferPointer<Int64>, UInt64) -> Void
    ) {
        self.hitRateThreshold = hitRateThreshold
        self.defaultValue = defaultValue
        self.fetch = fetch
        self.lookupHost = lookupHost
        self.background = background
        self.record = record
        self.updateCount = updateCount
        self.refreshIfUpdated = refreshIfUpdated
    }
}

/// The device-resident lookup of one table on one device: deduplicate → query the device cache → only the
/// distinct missed keys cross to the host → host tiers → their rows cross back once → merge and insert →
/// scatter into the output in input order. Buffers are allocated up front (no allocation per call); many
/// threads may call at once.
public protocol DeviceTableLookup: AnyObject, Sendable {
    /// The device ordinal the lookup runs on.
    var device: Int { get }
    /// Enqueues the lookup of `request` on the request's stream.
    /// - Throws: ``HPSError`` with code ``HPSError/Code/device`` when a device call fails (the output is then
    ///   unspecified), ``HPSError/Code/invalidArgument`` for a batch larger than the lookup was sized for.
    func lookup(_ request: DeviceLookupRequest, host: DeviceLookupHost) throws

    /// A host-memory lookup through the device path: the keys cross to the device once, the vectors come back
    /// once. - Returns: false when this lookup does not serve host memory (the session then takes its host path).
    /// - Throws: as ``lookup(_:host:)``.
    func lookupHostMemory(keys: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, host: DeviceLookupHost) throws -> Bool
}

extension DeviceTableLookup {
    /// - Throws: never: this default has no host-memory path and returns false.
    public func lookupHostMemory(keys: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, host: DeviceLookupHost) throws -> Bool {
        false
    }
}

extension HPSError.Code {
    /// An accelerator call failed, or device memory was asked of a session without a device.
    public static let device = HPSError.Code("device error")
}
