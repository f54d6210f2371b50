/// A device cache in front of the databases: holds vectors of hot keys of one table on one device.
///
/// All methods may be called from many threads at once; a vector is never read while half-written.
/// Keys passed to ``query(keys:into:missing:)`` must be unique (the session deduplicates first).
///
/// The CPU caches never throw. A cache on an accelerator throws when a device call fails (the call then
/// answers nothing: the caller fails that lookup with the error, and never traps).
public protocol EmbeddingCache: AnyObject, Sendable {
    /// Floats per vector.
    var dimension: Int { get }
    /// Most vectors the cache holds.
    var capacity: Int { get }
    /// Whether misses are final (static/uvm: the cache holds the whole table; misses get the default and
    /// are never inserted).
    var holdsWholeTable: Bool { get }

    /// Copies the vector of every cached key to `output[i × dimension ...]` and writes the positions of the
    /// keys that are not cached to `missing`, in ascending order. - Returns: the number of misses.
    /// - Throws: a device error (accelerator caches only).
    func query(keys: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, missing: UnsafeMutablePointer<Int32>) throws -> Int

    /// Inserts (or refreshes) `keys[i] → values[i × dimension ...]`, evicting least recently used entries.
    /// - Throws: a device error (accelerator caches only).
    func replace(keys: UnsafeBufferPointer<Int64>, values: UnsafePointer<Float>) throws

    /// Overwrites the vectors of those `keys` that are cached; others are ignored.
    /// - Throws: a device error (accelerator caches only).
    func update(keys: UnsafeBufferPointer<Int64>, values: UnsafePointer<Float>) throws

    /// Number of refresh units (sets) the cache is walked in by ``keys(inUnits:)``.
    var unitCount: Int { get }

    /// The keys cached in units `range`.
    /// - Throws: a device error (accelerator caches only).
    func keys(inUnits range: Range<Int>) throws -> [Int64]

    /// Number of vectors cached now.
    var count: Int { get }

    /// Where the cache lives, for logs ("CPU", "CUDA device 0").
    var location: String { get }

    /// Whether concurrent queries of parts of one batch run in parallel (true for host-memory caches; a
    /// device cache serialises them on its stream, so a session sends it one query per batch).
    var queriesScaleAcrossThreads: Bool { get }
}

extension EmbeddingCache {
    public var location: String { "CPU" }
    public var queriesScaleAcrossThreads: Bool { true }
}
