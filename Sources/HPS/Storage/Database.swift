/// A tier of the hierarchy that stores embedding vectors by table tag and key: the volatile database (hash
/// map, Redis Cluster) or the persistent database (RocksDB).
///
/// Keys are `Int64` everywhere inside the server; with `supportlonglong: false` they are uint32 values
/// widened to `Int64` at the edge (``KeyWidth``). Values are raw bytes of a fixed size per table
/// (`dim × 4` for float32 vectors); `values` buffers hold `keys.count × valueSize` bytes, row `i` at
/// `i × valueSize`.
///
/// All methods may be called from many threads at once. Bulk methods are synchronous: they run on the
/// caller's thread (and may fan out to a dedicated pool), never on Swift's cooperative pool.
public protocol Database: AnyObject, Sendable {
    /// A short name for logs (`hash_map`, `rocks_db`, `redis_cluster`).
    var name: String { get }
    /// Whether several processes see the same data (Redis, a shared-memory map).
    var isShared: Bool { get }
    /// The nodes that do not answer now (addresses), for a database of several nodes; empty when every
    /// node answers or the database has no nodes. Used to tell when a node that failed is back.
    func unreachableNodes() -> [String]

    /// The most entries `table` may hold (`Int.max` when unbounded).
    func capacity(table: String) -> Int
    /// How many entries `table` holds now (0 for a table that does not exist).
    /// - Throws: ``HPSError`` `.database` naming the table when the backend cannot answer (a node failed, RocksDB
    ///   reported an error).
    func size(table: String) throws -> Int

    /// Counts how many of `keys` are present in `table`.
    /// - Throws: ``HPSError`` `.database` naming the table when the backend cannot answer at all (a volatile database
    ///   reports keys on a failed node as absent instead).
    func contains(table: String, keys: UnsafeBufferPointer<Int64>) throws -> Int

    /// Inserts or overwrites `keys[i] → values[i × valueSize ..< (i+1) × valueSize]`.
    /// - Returns: the number of keys that were not present before.
    /// - Throws: ``HPSError`` `.invalidArgument` naming the table when `values` holds fewer than `keys.count ×
    ///   valueSize` bytes; `.database` when `valueSize` differs from the table's, or when the backend could not store
    ///   every key (Redis: after trying every partition, naming the failed nodes).
    @discardableResult
    func insert(table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer, valueSize: Int) throws -> Int

    /// Copies the value of each present key into `values` at its row and calls `onMiss(i)` for each key `i`
    /// that is absent (for every key when the table does not exist).
    /// - Returns: the number of hits.
    /// - Throws: ``HPSError`` `.invalidArgument` naming the table when `values` is smaller than `keys.count ×
    ///   valueSize` bytes; `.database` when `valueSize` differs from the table's or the backend fails (a volatile
    ///   database reports keys on a failed node as misses instead of throwing).
    @discardableResult
    func fetch(
        table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeMutableRawBufferPointer, valueSize: Int,
        onMiss: (Int) -> Void
    ) throws -> Int

    /// Like ``fetch(table:keys:values:valueSize:onMiss:)`` for the subset `keys[indices[j]]`; row
    /// `indices[j]` of `values` receives the value and `onMiss(indices[j])` reports a miss.
    /// - Throws: what ``fetch(table:keys:values:valueSize:onMiss:)`` throws; ``HPSError`` `.invalidArgument` for an
    ///   index outside `keys`.
    @discardableResult
    func fetch(
        table: String, indices: UnsafeBufferPointer<Int>, keys: UnsafeBufferPointer<Int64>,
        values: UnsafeMutableRawBufferPointer, valueSize: Int, onMiss: (Int) -> Void
    ) throws -> Int

    /// Removes a whole table. - Returns: the number of entries removed.
    /// - Throws: ``HPSError`` `.database` naming the table when the backend fails to remove it.
    @discardableResult
    func evict(table: String) throws -> Int

    /// Removes `keys` from `table`. - Returns: the number of entries removed.
    /// - Throws: ``HPSError`` `.database` naming the table when the backend fails to remove the keys.
    @discardableResult
    func evict(table: String, keys: UnsafeBufferPointer<Int64>) throws -> Int

    /// Tags of every table of `model` (those starting with `hps_et.<model>.`).
    /// - Throws: ``HPSError`` `.database` when the backend cannot list its tables.
    func findTables(model: String) throws -> [String]

    /// Calls `body` with successive chunks of `(keys, values)` of `table`, in no particular order.
    /// Used by dump; each chunk's buffers are valid only during the call.
    /// - Throws: ``HPSError`` `.database` when reading the table fails (RocksDB also throws `.invalidArgument` for a
    ///   `maxChunk` below 1); whatever `body` throws (iteration stops there).
    func forEachChunk(
        table: String, maxChunk: Int,
        _ body: (UnsafeBufferPointer<Int64>, UnsafeRawBufferPointer, Int) throws -> Void
    ) throws

    /// The fingerprint of the table files last loaded completely into `table`, if the database keeps one
    /// (persistent databases do, so a restart can skip reloading unchanged tables; so does Redis, shared by
    /// processes, so that one process does not rewrite what another loaded).
    /// - Throws: ``HPSError`` `.database` naming the table when the record cannot be read.
    func loadedFingerprint(table: String) throws -> String?

    /// Records that `table` now holds exactly the files described by `fingerprint`.
    /// - Throws: ``HPSError`` `.database` naming the table when the record cannot be written.
    func recordLoadedFingerprint(_ fingerprint: String?, table: String) throws

    /// A loader that fills `table`, which must be empty (just evicted), faster than
    /// ``insert(table:keys:values:valueSize:)``; nil when the database has no such path (or the table is
    /// not empty), in which case the caller inserts. Until the loader finishes, nothing else may write to
    /// `table`.
    /// - Throws: ``HPSError`` `.invalidArgument` naming the table for a `valueSize` below 1; `.database` or `.io`
    ///   when the loader's files or handles cannot be set up.
    func makeBulkLoader(table: String, valueSize: Int) throws -> (any BulkLoader)?
}

/// Fills one empty table of a database in bulk (see ``Database/makeBulkLoader(table:valueSize:)``).
///
/// Rows may arrive in any key order and a key may repeat: its last row wins, as with
/// ``Database/insert(table:keys:values:valueSize:)``. Added rows may become visible before ``finish()``.
/// After ``finish()`` the table holds exactly the rows added and ``Database/size(table:)`` is exact. A
/// failure (or ``cancel()``) before that may leave part of the rows in the table. One thread at a time.
public protocol BulkLoader: AnyObject {
    /// Adds `keys.count` rows; `values` holds `keys.count × valueSize` bytes, row `i` at `i × valueSize`.
    /// The buffers are not used after the call returns.
    /// - Throws: ``HPSError`` `.invalidArgument` after ``finish()`` or ``cancel()``; `.io` or `.database` when the
    ///   rows cannot be written.
    func add(keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer) throws
    /// Makes every added row visible and durable. - Returns: the number of entries the table holds.
    /// - Throws: ``HPSError`` `.database` or `.io` when the rows cannot be made visible (the table may then hold part
    ///   of them).
    func finish() throws -> Int
    /// Abandons the load and releases what it holds (temporary files); rows already in the table may
    /// stay. Does nothing after ``finish()``.
    func cancel()
}

extension Database {
    public var isShared: Bool { false }
    public func unreachableNodes() -> [String] { [] }

    /// - Throws: never: this default has no bulk path and returns nil.
    public func makeBulkLoader(table: String, valueSize: Int) throws -> (any BulkLoader)? { nil }

    /// - Throws: never: this default keeps no record and returns nil.
    public func loadedFingerprint(table: String) throws -> String? { nil }
    /// - Throws: never: this default keeps no record.
    public func recordLoadedFingerprint(_ fingerprint: String?, table: String) throws {}

    /// Default sparse fetch: gathers the selected keys and fetches them through the dense path, one
    /// bounded chunk at a time.
    /// - Throws: what the dense ``fetch(table:keys:values:valueSize:onMiss:)`` throws.
    @discardableResult
    public func fetch(
        table: String, indices: UnsafeBufferPointer<Int>, keys: UnsafeBufferPointer<Int64>,
        values: UnsafeMutableRawBufferPointer, valueSize: Int, onMiss: (Int) -> Void
    ) throws -> Int {
        let chunk = 4096
        var hits = 0
        var gathered = [Int64](repeating: 0, count: min(chunk, indices.count))
        var rows = [UInt8](repeating: 0, count: min(chunk, indices.count) * valueSize)
        var start = 0
        while start < indices.count {
            let n = min(chunk, indices.count - start)
            for j in 0..<n { gathered[j] = keys[indices[start + j]] }
            hits += try gathered.withUnsafeBufferPointer { k in
                try rows.withUnsafeMutableBytes { r in
                    try fetch(
                        table: table, keys: UnsafeBufferPointer(rebasing: k[0..<n]),
                        values: UnsafeMutableRawBufferPointer(rebasing: r[0..<(n * valueSize)]), valueSize: valueSize,
                        onMiss: { onMiss(indices[start + $0]) }
                    )
                }
            }
            rows.withUnsafeBytes { r in
                for j in 0..<n {
                    let row = indices[start + j]
                    (values.baseAddress! + row * valueSize).copyMemory(from: r.baseAddress! + j * valueSize, byteCount: valueSize)
                }
            }
            start += n
        }
        return hits
    }
}

/// The partition mixer HPS uses for every volatile backend and the Kafka sink (`rrxmrrxmsx_0`), so that
/// keys land in the same partitions (and Redis hashes) as with the original.
@inline(__always)
public func hpsKeyMix(_ key: Int64) -> UInt64 {
    var x = UInt64(bitPattern: key)
    x ^= (x >> 25 | x << 39) ^ (x >> 50 | x << 14)
    x &*= 0xA24B_AED4_963E_E407
    x ^= (x >> 24 | x << 40) ^ (x >> 49 | x << 15)
    x &*= 0x9FB2_1C65_1E98_DF25
    return x ^ (x >> 28)
}

/// How keys of a configuration are represented.
public enum KeyWidth: Sendable, Equatable {
    /// `supportlonglong: true`: int64 keys.
    case int64
    /// `supportlonglong: false`: uint32 keys, widened to `Int64` inside the server.
    case uint32

    public init(supportLongLong: Bool) { self = supportLongLong ? .int64 : .uint32 }

    /// Bytes per key in files and wire formats that use the configured width.
    public var byteCount: Int { self == .int64 ? 8 : 4 }

    /// Maps a key as read from a table file (always int64) to the server's key.
    @inline(__always)
    public func normalize(_ key: Int64) -> Int64 {
        self == .int64 ? key : Int64(UInt32(truncatingIfNeeded: key))
    }
}
