import HPS
import Synchronization

/// The persistent tier (`persistent_db.type: rocks_db`): every table of every model in one RocksDB
/// directory, one column family per table tag.
///
/// Keys are stored as their 8 raw little-endian bytes, values as the raw row bytes (as HPS stores them),
/// so a directory written by HPS opens here and the other way round. Unlike HPS, ``size(table:)`` is exact:
/// each table's entry count (and value size) is kept in the default column family under
/// `hps.meta.<tag>`, written in the same atomic write batch as the rows it counts. A table written by
/// another tool has no such record; it is counted once by a scan.
///
/// Several processes may open one directory with `read_only: true` (each sees the data as it was when it
/// opened); only one may open it for writing, and a second writer gets a clear error instead of RocksDB's
/// lock message alone.
///
/// Thread-safe: RocksDB's calls are; the table map is behind a lock, and writes to one table (which
/// must update its count) are serialised by a per-table lock. Reads take no table lock.
public final class RocksDBDatabase: Database, @unchecked Sendable {
    // @unchecked Sendable: the RocksDB handles and options are immutable after init and RocksDB's calls are
    // thread-safe; `families` is a `Mutex`; each table's count and value size are in its ``ColumnFamily``'s `Mutex`.
    /// `rocks_db`.
    public var name: String { "rocks_db" }
    /// The RocksDB directory.
    public let path: String
    /// Whether the database was opened read-only (`persistent_db.read_only`).
    public let isReadOnly: Bool
    /// Most rows per write batch and per MultiGet (`persistent_db.max_batch_size`).
    public let maxBatchSize: Int

    /// Block cache for point lookups, in MiB (HPS uses 8; lookups that miss the volatile tier land here).
    package static let blockCacheMB: UInt64 = 64
    static let metaKeyPrefix = "hps.meta."
    static let fingerprintKeyPrefix = "hps.fingerprint."
    /// Bulk loads write SST files of about this many bytes of rows (keys + values), one sorted buffer each.
    /// Up to 6 such files of one table land on levels 6…1 (each newer file one level up) and need no
    /// compaction; more land in level 0.
    public static let bulkFileBytes = 64 << 20
    /// Keys a bulk load keeps in memory (8 bytes each) to count the distinct keys exactly; beyond this
    /// the sorted key runs go to files in its temporary directory.
    static let bulkKeyMemoryBudget = 8 << 20
    /// Temporary directories of bulk loads inside the database directory start with this.
    static let bulkDirectoryPrefix = "hps-bulk-load."

    /// Whether ``makeBulkLoader(table:valueSize:)`` hands out loaders (otherwise loads use ``insert``).
    public let bulkLoading: Bool
    private let numThreads: Int
    private let logger: HPSLogger
    private let db: OpaquePointer
    private let defaultFamily: OpaquePointer
    private let options: OpaquePointer
    private let readOptions: OpaquePointer
    private let scanOptions: OpaquePointer
    private let writeOptions: OpaquePointer
    private let syncWriteOptions: OpaquePointer
    private let families: Mutex<[String: ColumnFamily]>

    /// Opens (or, unless read-only, creates) the database at `config.path`, with every table it holds.
    ///
    /// - Throws: ``HPSError`` `.database` with the path when the path is not a directory, the directory
    ///   holds something that is not a RocksDB database, the database is corrupted, or another writer holds
    ///   its lock (RocksDB's own text in `underlying`); `.invalidConfig` for a bad setting; `.io` when the
    ///   directory cannot be created. Nothing on disk is changed when opening fails.
    /// - Parameter bulkLoading: whether loads into an empty table may go through SST ingestion
    ///   (``makeBulkLoader(table:valueSize:)``); false keeps every load on the write path.
    public init(config: PersistentDatabaseConfig, logger: HPSLogger = .standard, bulkLoading: Bool = true) throws {
        let path = config.path
        guard !path.isEmpty else {
            throw HPSError(.invalidConfig, subject: "persistent_db.path", "must name a directory")
        }
        guard config.maxBatchSize > 0 else {
            throw HPSError(.invalidConfig, subject: "persistent_db.max_batch_size", "must be at least 1, not \(config.maxBatchSize)")
        }
        guard config.numThreads > 0 else {
            throw HPSError(.invalidConfig, subject: "persistent_db.num_threads", "must be at least 1, not \(config.numThreads)")
        }
        self.path = path
        self.isReadOnly = config.readOnly
        self.maxBatchSize = config.maxBatchSize
        self.bulkLoading = bulkLoading
        self.numThreads = config.numThreads
        self.logger = logger

        switch FileSystem.kind(path) {
        case .directory:
            break
        case nil:
            if config.readOnly {
                throw HPSError(
                    .database, subject: path,
                    "no RocksDB database here; persistent_db.read_only is set, so none is created")
            }
            do {
                try FileSystem.makeDirectories(path)
            } catch {
                throw HPSError(.io, subject: path, "cannot create the RocksDB directory", cause: error)
            }
        case .regular, .other:
            throw HPSError(.database, subject: path, "is not a directory; persistent_db.path must name a RocksDB directory")
        }

        var names = ["default"]
        if FileSystem.kind(path + "/CURRENT") != nil {
            let listOptions = RocksNative.makeOptions(createIfMissing: false, tuned: false, numThreads: 1, blockCacheMB: 0)
            defer { RocksNative.destroyOptions(listOptions) }
            do {
                names = try RocksNative.listColumnFamilies(listOptions, path: path)
            } catch {
                throw Self.openError(path: path, error)
            }
            if !names.contains("default") { names.insert("default", at: 0) }
        } else if config.readOnly {
            throw HPSError(
                .database, subject: path,
                "holds no RocksDB database (no CURRENT file); persistent_db.read_only is set, so none is created")
        } else if let stranger = ((try? FileSystem.directoryEntries(path)) ?? []).first(where: { !Self.isRocksDBFileName($0) }) {
            throw HPSError(
                .database, subject: path,
                "is not empty and holds no RocksDB database (found '\(stranger)'); refusing to create one among other files")
        }

        let options = RocksNative.makeOptions(
            createIfMissing: !config.readOnly, tuned: true, numThreads: config.numThreads, blockCacheMB: Self.blockCacheMB)
        let opened: (db: OpaquePointer, handles: [OpaquePointer])
        do {
            opened = try RocksNative.open(options, path: path, families: names, readOnly: config.readOnly)
        } catch {
            RocksNative.destroyOptions(options)
            throw Self.openError(path: path, error)
        }
        self.db = opened.db
        self.options = options
        self.readOptions = RocksNative.makeReadOptions(fillCache: true)
        self.scanOptions = RocksNative.makeReadOptions(fillCache: false)
        self.writeOptions = RocksNative.makeWriteOptions(sync: false)
        self.syncWriteOptions = RocksNative.makeWriteOptions(sync: true)

        var defaultFamily: OpaquePointer? = nil
        var map: [String: ColumnFamily] = [:]
        for (name, handle) in zip(names, opened.handles) {
            if name == "default" {
                defaultFamily = handle
            } else {
                map[name] = ColumnFamily(name: name, handle: handle, meta: nil)
            }
        }
        self.defaultFamily = defaultFamily!
        self.families = Mutex(map)

        // SST files of bulk loads a crash left behind (this process now holds the database's lock).
        if !config.readOnly {
            for name in (try? FileSystem.directoryEntries(path)) ?? [] where name.hasPrefix(Self.bulkDirectoryPrefix) {
                logger.info("RocksDB: removing \(name), left by an interrupted bulk load")
                FileTree.remove(path + "/" + name)
            }
        }

        // Counts kept by earlier runs; a table without one is counted on first use.
        for (name, family) in map {
            let meta = try? RocksNative.get(opened.db, readOptions, key: Self.metaKeyPrefix + name).flatMap(TableMeta.init(bytes:))
            family.state.withLock { $0.meta = meta }
        }
        logger.info(
            "RocksDB: opened \(path)\(config.readOnly ? " read-only" : "") with \(map.count) table(s)"
                + (map.isEmpty ? "" : ": " + map.keys.sorted().joined(separator: ", ")))
    }

    deinit {
        families.withLock { $0.removeAll() }  // destroys the handles, which must go before the database
        RocksNative.destroyColumnFamilyHandle(defaultFamily)
        RocksNative.close(db)
        RocksNative.destroyOptions(options)
        RocksNative.destroyReadOptions(readOptions)
        RocksNative.destroyReadOptions(scanOptions)
        RocksNative.destroyWriteOptions(writeOptions)
        RocksNative.destroyWriteOptions(syncWriteOptions)
    }

    // MARK: Database

    public func capacity(table: String) -> Int { Int.max }

    /// - Throws: ``HPSError`` `.database` naming the table when its stored count cannot be read.
    public func size(table: String) throws -> Int {
        guard let family = lookupFamily(table) else { return 0 }
        return try family.state.withLock { state in
            try self.knownMeta(family, &state).count
        }
    }

    /// - Throws: ``HPSError`` `.database` with RocksDB's message when a read fails.
    public func contains(table: String, keys: UnsafeBufferPointer<Int64>) throws -> Int {
        guard let family = lookupFamily(table), !keys.isEmpty else { return 0 }
        var present = 0
        try forEachChunk(of: keys.count) { start, n in
            try multiGet(family, keys: UnsafeBufferPointer(rebasing: keys[start..<(start + n)])) { _, value in
                if value != nil { present += 1 }
            }
        }
        return present
    }

    /// - Throws: ``HPSError`` `.invalidArgument` naming the table when `values` holds fewer than `keys.count ×
    ///   valueSize` bytes; `.database` when the database is read-only, `valueSize` differs from the table's or
    ///   RocksDB fails to write.
    @discardableResult
    public func insert(table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer, valueSize: Int) throws -> Int {
        try checkWritable(table, "insert into")
        try checkRows(table, count: keys.count, bytes: values.count, valueSize: valueSize)
        guard !keys.isEmpty else { return 0 }
        let batch = RocksNative.makeBatch()
        defer { RocksNative.destroyBatch(batch) }
        var inserted = 0
        try forEachChunk(of: keys.count) { start, n in
            let chunkKeys = UnsafeBufferPointer(rebasing: keys[start..<(start + n)])
            let chunkValues = UnsafeRawBufferPointer(rebasing: values[(start * valueSize)..<((start + n) * valueSize)])
            inserted += try withWritableFamily(table, create: true) { family, meta in
                try self.insertBatch(family, &meta, batch, chunkKeys, chunkValues, valueSize)
            } ?? 0
        }
        return inserted
    }

    /// - Throws: ``HPSError`` `.database` naming the table when a stored value is not `valueSize` bytes or RocksDB
    ///   fails to read; `.invalidArgument` when `values` is too small.
    @discardableResult
    public func fetch(
        table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeMutableRawBufferPointer, valueSize: Int,
        onMiss: (Int) -> Void
    ) throws -> Int {
        try checkRows(table, count: keys.count, bytes: values.count, valueSize: valueSize)
        guard let family = lookupFamily(table) else {
            for i in 0..<keys.count { onMiss(i) }
            return 0
        }
        var hits = 0
        try forEachChunk(of: keys.count) { start, n in
            try multiGet(family, keys: UnsafeBufferPointer(rebasing: keys[start..<(start + n)])) { i, value in
                let row = start + i
                guard let value else { return onMiss(row) }
                guard value.count == valueSize else { throw self.valueSizeMismatch(table, stored: value.count, requested: valueSize) }
                (values.baseAddress! + row * valueSize).copyMemory(from: value.baseAddress!, byteCount: valueSize)
                hits += 1
            }
        }
        return hits
    }

    /// - Throws: as ``fetch(table:keys:values:valueSize:onMiss:)``; ``HPSError`` `.invalidArgument` for an index
    ///   outside `keys`.
    @discardableResult
    public func fetch(
        table: String, indices: UnsafeBufferPointer<Int>, keys: UnsafeBufferPointer<Int64>,
        values: UnsafeMutableRawBufferPointer, valueSize: Int, onMiss: (Int) -> Void
    ) throws -> Int {
        try checkRows(table, count: keys.count, bytes: values.count, valueSize: valueSize)
        for index in indices where index < 0 || index >= keys.count {
            throw HPSError(.invalidArgument, subject: table, "fetch index \(index) is outside the \(keys.count) keys")
        }
        guard let family = lookupFamily(table) else {
            for index in indices { onMiss(index) }
            return 0
        }
        var gathered = [Int64](repeating: 0, count: min(maxBatchSize, indices.count))
        var hits = 0
        try forEachChunk(of: indices.count) { start, n in
            for j in 0..<n { gathered[j] = keys[indices[start + j]] }
            try gathered.withUnsafeBufferPointer { chunk in
                try multiGet(family, keys: UnsafeBufferPointer(rebasing: chunk[0..<n])) { j, value in
                    let row = indices[start + j]
                    guard let value else { return onMiss(row) }
                    guard value.count == valueSize else {
                        throw self.valueSizeMismatch(table, stored: value.count, requested: valueSize)
                    }
                    (values.baseAddress! + row * valueSize).copyMemory(from: value.baseAddress!, byteCount: valueSize)
                    hits += 1
                }
            }
        }
        return hits
    }

    /// - Throws: ``HPSError`` `.database` when the database is read-only, or with RocksDB's message when the column
    ///   family cannot be dropped.
    @discardableResult
    public func evict(table: String) throws -> Int {
        try checkWritable(table, "evict")
        return try families.withLock { map in
            guard let family = map[table] else { return 0 }
            let removed = try family.state.withLock { state in
                let removed = try self.knownMeta(family, &state).count
                // Forget the table's records first, durably: a crash after this leaves at worst a family
                // without a count, which the next start recounts, and never a fingerprint for lost data.
                let batch = RocksNative.makeBatch()
                defer { RocksNative.destroyBatch(batch) }
                Self.withKey(Self.metaKeyPrefix + table) { RocksNative.batchDelete(batch, family: nil, key: $0) }
                Self.withKey(Self.fingerprintKeyPrefix + table) { RocksNative.batchDelete(batch, family: nil, key: $0) }
                try self.rocks("cannot evict table \(table)") {
                    try RocksNative.write(self.db, self.syncWriteOptions, batch)
                    try RocksNative.dropColumnFamily(self.db, family.handle)
                }
                state.dropped = true
                return removed
            }
            map[table] = nil
            return removed
        }
    }

    /// - Throws: ``HPSError`` `.database` when the database is read-only, or with RocksDB's message when the deletes
    ///   fail.
    @discardableResult
    public func evict(table: String, keys: UnsafeBufferPointer<Int64>) throws -> Int {
        try checkWritable(table, "evict keys from")
        guard !keys.isEmpty else { return 0 }
        let batch = RocksNative.makeBatch()
        defer { RocksNative.destroyBatch(batch) }
        var removed = 0
        try forEachChunk(of: keys.count) { start, n in
            let chunkKeys = UnsafeBufferPointer(rebasing: keys[start..<(start + n)])
            removed += try withWritableFamily(table, create: false) { family, meta in
                var present = Set<Int64>()
                try self.multiGet(family, keys: chunkKeys) { i, value in
                    if value != nil { present.insert(chunkKeys[i]) }
                }
                guard !present.isEmpty else { return 0 }
                RocksNative.clearBatch(batch)
                for key in present {
                    Self.withKey(key) { RocksNative.batchDelete(batch, family: family.handle, key: $0) }
                }
                var updated = meta
                updated.count -= present.count
                Self.withKey(Self.metaKeyPrefix + table) { key in
                    updated.withBytes { RocksNative.batchPut(batch, family: nil, key: key, value: $0) }
                }
                try self.rocks("cannot evict keys from table \(table)") {
                    try RocksNative.write(self.db, self.writeOptions, batch)
                }
                meta = updated
                return present.count
            } ?? 0
        }
        return removed
    }

    /// - Throws: never: the tables are the column families listed at open.
    public func findTables(model: String) throws -> [String] {
        let prefix = "hps_et.\(model)."
        return families.withLock { map in map.keys.filter { $0.hasPrefix(prefix) } }.sorted()
    }

    /// - Throws: ``HPSError`` `.invalidArgument` for a `maxChunk` below 1; `.database` when the table holds a key
    ///   that is not 8 bytes or RocksDB fails to read; whatever `body` throws.
    public func forEachChunk(
        table: String, maxChunk: Int,
        _ body: (UnsafeBufferPointer<Int64>, UnsafeRawBufferPointer, Int) throws -> Void
    ) throws {
        guard maxChunk > 0 else { throw HPSError(.invalidArgument, subject: table, "maxChunk must be at least 1, not \(maxChunk)") }
        guard let family = lookupFamily(table) else { return }
        try scan(family, maxChunk: maxChunk, body)
    }

    /// - Throws: ``HPSError`` `.database` with RocksDB's message when the record cannot be read.
    public func loadedFingerprint(table: String) throws -> String? {
        let bytes = try rocks("cannot read the loaded fingerprint of table \(table)") {
            try RocksNative.get(db, readOptions, key: Self.fingerprintKeyPrefix + table)
        }
        return bytes.map { String(decoding: $0, as: UTF8.self) }
    }

    /// Records (or, with nil, forgets) the fingerprint with a synchronous write, so that once this
    /// returns the fingerprint and every row written before it survive a crash.
    ///
    /// A recorded fingerprint marks the end of a load: the table's and the default column family's
    /// memtables are then flushed to SST files, so that the next open does not replay the load from the
    /// write-ahead log (`rocksdb_close` does not flush).
    /// - Throws: ``HPSError`` `.database` when the database is read-only, or with RocksDB's message when the record
    ///   cannot be written.
    public func recordLoadedFingerprint(_ fingerprint: String?, table: String) throws {
        try checkWritable(table, "record the loaded fingerprint of")
        let key = Self.fingerprintKeyPrefix + table
        try rocks("cannot record the loaded fingerprint of table \(table)") {
            if let fingerprint {
                try RocksNative.put(db, syncWriteOptions, key: key, value: Array(fingerprint.utf8))
                try RocksNative.flush(db, families: [lookupFamily(table)?.handle, nil])
            } else {
                try RocksNative.delete(db, syncWriteOptions, key: key)
            }
        }
    }

    // MARK: Bulk loading

    /// A loader that fills `table` by SST ingestion (see ``RocksDBBulkLoader``), creating the table;
    /// nil when ``bulkLoading`` is off or the table is not empty (a bulk load could not count the keys
    /// already there), in which case rows go through ``insert(table:keys:values:valueSize:)``.
    /// - Throws: as ``makeBulkLoader(table:valueSize:rowsPerFile:parallelWriters:keysInMemory:)``.
    public func makeBulkLoader(table: String, valueSize: Int) throws -> (any BulkLoader)? {
        try makeBulkLoader(table: table, valueSize: valueSize, rowsPerFile: nil)
    }

    /// Like ``makeBulkLoader(table:valueSize:)`` with `rowsPerFile` rows per sorted buffer (nil: about
    /// ``bulkFileBytes`` of rows), `parallelWriters` SST writers per buffer (nil: the cores, at most
    /// `num_threads`) and at most `keysInMemory` keys kept in memory for the count (nil: 8 Mi).
    /// - Throws: ``HPSError`` `.invalidArgument` naming the table when `valueSize` is below 1; `.database` when the
    ///   database is read-only; `.database` or `.io` when the table or the loader's temporary directory cannot be made.
    public func makeBulkLoader(
        table: String, valueSize: Int, rowsPerFile: Int?, parallelWriters: Int? = nil, keysInMemory: Int? = nil
    ) throws -> (any BulkLoader)? {
        guard bulkLoading else { return nil }
        try checkWritable(table, "bulk load into")
        guard valueSize > 0 else { throw HPSError(.invalidArgument, subject: table, "value size must be at least 1 byte, not \(valueSize)") }
        let empty = try withWritableFamily(table, create: true) { family, meta -> ColumnFamily? in
            meta.count == 0 ? family : nil
        }
        guard let family = empty ?? nil else { return nil }
        return RocksDBBulkLoader(
            database: self, family: family, valueSize: valueSize,
            rowsPerFile: rowsPerFile ?? max(1, Self.bulkFileBytes / (8 + valueSize)),
            parallelWriters: parallelWriters ?? min(SystemInfo.processorCount, numThreads),
            keysInMemory: keysInMemory ?? Self.bulkKeyMemoryBudget)
    }

    /// Turns automatic compactions of `family` off while a bulk load ingests files (each compaction
    /// then would rewrite what the next ingested file overlaps again), or back on (RocksDB then compacts
    /// what landed in level 0, in the background). Best effort: a failure only costs speed.
    func setBulkLoading(_ family: ColumnFamily, _ on: Bool) {
        do {
            try RocksNative.setOptions(db, family: family.handle, [("disable_auto_compactions", on ? "true" : "false")])
        } catch {
            logger.warning("RocksDB: cannot turn automatic compactions of table \(family.name) \(on ? "off" : "on"): \(error)")
        }
    }

    /// Options for the SST writers of bulk loads (the caller destroys them).
    func makeSstWriterOptions() -> OpaquePointer { RocksNative.makeSstWriterOptions(copying: options) }

    /// Ingests finished SST files with non-overlapping key ranges into `family`, moving them.
    func ingestBulkFiles(_ family: ColumnFamily, _ files: [String]) throws {
        try rocks("cannot ingest SST files into table \(family.name)") {
            try RocksNative.ingest(db, family: family.handle, files: files, move: true)
        }
    }

    /// Ends a bulk load into `family`: records its exact entry count (synchronously) and flushes its
    /// memtable, so a reopen replays nothing of it.
    func completeBulkLoad(_ family: ColumnFamily, count: Int, valueSize: Int) throws {
        try family.state.withLock { state in
            if state.dropped {
                throw HPSError(.database, subject: path, "table \(family.name) was evicted during its bulk load")
            }
            let meta = TableMeta(count: count, valueSize: valueSize)
            try self.rocks("cannot finish the bulk load of table \(family.name)") {
                try RocksNative.put(self.db, self.syncWriteOptions, key: Self.metaKeyPrefix + family.name, value: meta.bytes)
                try RocksNative.flush(self.db, families: [family.handle])
            }
            state.meta = meta
        }
    }

    /// Forgets the known entry count of `family` (after an abandoned bulk load), so it is counted again.
    func forgetCount(_ family: ColumnFamily) {
        family.state.withLock { state in
            if !state.dropped { state.meta = nil }
        }
    }

    /// Files at each level of `table`'s LSM tree (level 0 first); for tests and benchmarks.
    public func filesPerLevel(table: String) -> [Int] {
        guard let family = lookupFamily(table) else { return [] }
        return (0..<7).map { RocksNative.property(db, family: family.handle, "rocksdb.num-files-at-level\($0)").flatMap { Int($0) } ?? 0 }
    }

    // MARK: Used by DatabaseDump

    /// Adds the entries of a sorted SST file with 8-byte keys and `valueSize`-byte values (already checked)
    /// to `table`, with RocksDB's IngestExternalFile; existing keys are overwritten.
    func ingest(table: String, sstFile: String, entries: Int, valueSize: Int) throws {
        try checkWritable(table, "load a dump into")
        _ = try withWritableFamily(table, create: true) { family, meta in
            if meta.valueSize != 0 && meta.count > 0 && meta.valueSize != valueSize {
                throw HPSError(
                    .invalidArgument, subject: table,
                    "the dump has \(valueSize)-byte values but the table holds \(meta.valueSize)-byte values")
            }
            let wasEmpty = meta.count == 0
            // Drop the count first: a crash between the ingestion and the new count leaves a recount.
            try self.rocks("cannot load a dump into table \(table)") {
                try RocksNative.delete(self.db, self.syncWriteOptions, key: Self.metaKeyPrefix + table)
                try RocksNative.ingest(self.db, family: family.handle, files: [sstFile])
            }
            var updated = wasEmpty ? TableMeta(count: entries, valueSize: valueSize) : try self.countEntries(family)
            updated.valueSize = valueSize
            try self.rocks("cannot load a dump into table \(table)") {
                try RocksNative.put(self.db, self.writeOptions, key: Self.metaKeyPrefix + table, value: updated.bytes)
            }
            meta = updated
            return 0
        }
    }

    // MARK: Internals

    /// A table's column family and its write lock.
    final class ColumnFamily: @unchecked Sendable {
        // @unchecked Sendable: `name` and `handle` are immutable (RocksDB column family handles may be used from any
        // thread); the rest is in `state`, a `Mutex`.
        struct State {
            /// Count and value size; nil until read from `hps.meta.<tag>` or counted.
            var meta: TableMeta?
            /// Set once the family is dropped; a writer that sees it looks the table up again.
            var dropped = false
        }

        let name: String
        let handle: OpaquePointer
        let state: Mutex<State>

        init(name: String, handle: OpaquePointer, meta: TableMeta?) {
            self.name = name
            self.handle = handle
            self.state = Mutex(State(meta: meta))
        }

        deinit { RocksNative.destroyColumnFamilyHandle(handle) }
    }

    /// What `hps.meta.<tag>` holds: entry count and value size (0 when unknown), 8 little-endian bytes each.
    struct TableMeta: Sendable, Equatable {
        var count: Int
        var valueSize: Int

        init(count: Int, valueSize: Int) {
            self.count = count
            self.valueSize = valueSize
        }

        init?(bytes: [UInt8]) {
            guard bytes.count == 16 else { return nil }
            var words: (Int64, Int64) = (0, 0)
            withUnsafeMutableBytes(of: &words) { $0.copyBytes(from: bytes) }
            count = Int(Int64(littleEndian: words.0))
            valueSize = Int(Int64(littleEndian: words.1))
            guard count >= 0, valueSize >= 0 else { return nil }
        }

        var bytes: [UInt8] {
            let words = (Int64(count).littleEndian, Int64(valueSize).littleEndian)
            return withUnsafeBytes(of: words) { Array($0) }
        }

        func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            let words = (Int64(count).littleEndian, Int64(valueSize).littleEndian)
            return try withUnsafeBytes(of: words, body)
        }
    }

    private enum Attempt<R: Sendable>: Sendable {
        case retry
        case done(R)
    }

    func lookupFamily(_ table: String) -> ColumnFamily? {
        families.withLock { $0[table] }
    }

    private func family(_ table: String, create: Bool) throws -> ColumnFamily? {
        if let family = lookupFamily(table) { return family }
        guard create else { return nil }
        guard !table.isEmpty, table != "default", !table.utf8.contains(0) else {
            throw HPSError(.invalidArgument, subject: table, "is not a usable table tag")
        }
        return try families.withLock { map in
            if let family = map[table] { return family }
            let handle = try self.rocks("cannot create table \(table)") {
                try RocksNative.createColumnFamily(self.db, options: self.options, name: table)
            }
            let family = ColumnFamily(name: table, handle: handle, meta: TableMeta(count: 0, valueSize: 0))
            map[table] = family
            return family
        }
    }

    /// Runs `body` under `table`'s write lock with its known count; nil when the table does not exist and
    /// `create` is false. Retries when the family was dropped meanwhile.
    private func withWritableFamily<R: Sendable>(
        _ table: String, create: Bool, _ body: (ColumnFamily, inout TableMeta) throws -> R
    ) throws -> R? {
        while true {
            guard let family = try family(table, create: create) else { return nil }
            let attempt: Attempt<R> = try family.state.withLock { state in
                if state.dropped { return .retry }
                var meta = try self.knownMeta(family, &state)
                defer { state.meta = meta }
                return .done(try body(family, &meta))
            }
            if case .done(let result) = attempt { return result }
        }
    }

    private func knownMeta(_ family: ColumnFamily, _ state: inout ColumnFamily.State) throws -> TableMeta {
        if let meta = state.meta { return meta }
        let meta = try countEntries(family)
        state.meta = meta
        if !isReadOnly {
            try? RocksNative.put(db, writeOptions, key: Self.metaKeyPrefix + family.name, value: meta.bytes)
        }
        return meta
    }

    /// Counts a family's entries by a scan (tables written by another tool, or after an interrupted load).
    private func countEntries(_ family: ColumnFamily) throws -> TableMeta {
        logger.debug("RocksDB: counting the entries of table \(family.name)")
        var meta = TableMeta(count: 0, valueSize: 0)
        let iterator = RocksNative.makeIterator(db, scanOptions, family: family.handle)
        defer { RocksNative.destroyIterator(iterator) }
        RocksNative.seekToFirst(iterator)
        while RocksNative.isValid(iterator) {
            if meta.count == 0 { meta.valueSize = RocksNative.value(iterator).count }
            meta.count += 1
            RocksNative.next(iterator)
        }
        try rocks("cannot read table \(family.name)") { try RocksNative.iteratorStatus(iterator) }
        return meta
    }

    private func insertBatch(
        _ family: ColumnFamily, _ meta: inout TableMeta, _ batch: OpaquePointer,
        _ keys: UnsafeBufferPointer<Int64>, _ values: UnsafeRawBufferPointer, _ valueSize: Int
    ) throws -> Int {
        if meta.count > 0 && meta.valueSize != 0 && meta.valueSize != valueSize {
            throw HPSError(
                .invalidArgument, subject: family.name,
                "cannot insert \(valueSize)-byte values: the table holds \(meta.valueSize)-byte values")
        }
        var fresh = Set<Int64>()
        if meta.count == 0 {
            fresh = Set(keys)
        } else {
            try multiGet(family, keys: keys) { i, value in
                if value == nil { fresh.insert(keys[i]) }
            }
        }
        RocksNative.clearBatch(batch)
        Self.withKeySlices(keys) { raw in
            for i in 0..<keys.count {
                RocksNative.batchPut(
                    batch, family: family.handle, key: UnsafeRawBufferPointer(start: raw + i * 8, count: 8),
                    value: UnsafeRawBufferPointer(rebasing: values[(i * valueSize)..<((i + 1) * valueSize)]))
            }
        }
        let updated = TableMeta(count: meta.count + fresh.count, valueSize: valueSize)
        Self.withKey(Self.metaKeyPrefix + family.name) { key in
            updated.withBytes { RocksNative.batchPut(batch, family: nil, key: key, value: $0) }
        }
        try rocks("cannot insert into table \(family.name)") { try RocksNative.write(db, writeOptions, batch) }
        meta = updated
        return fresh.count
    }

    private func multiGet(
        _ family: ColumnFamily, keys: UnsafeBufferPointer<Int64>, _ body: (Int, UnsafeRawBufferPointer?) throws -> Void
    ) throws {
        guard !keys.isEmpty else { return }
        try rocks("cannot read table \(family.name)") {
            try Self.withKeySlices(keys) { raw in
                try RocksNative.multiGet(db, readOptions, family: family.handle, keys: raw, keyLength: 8, count: keys.count, body)
            }
        }
    }

    /// Scans `family` in key order, handing out chunks of at most `maxChunk` rows.
    func scan(
        _ family: ColumnFamily, maxChunk: Int, _ body: (UnsafeBufferPointer<Int64>, UnsafeRawBufferPointer, Int) throws -> Void
    ) throws {
        let iterator = RocksNative.makeIterator(db, scanOptions, family: family.handle)
        defer { RocksNative.destroyIterator(iterator) }
        var keys: [Int64] = []
        var values: [UInt8] = []
        var valueSize = -1
        func emit() throws {
            try keys.withUnsafeBufferPointer { k in try values.withUnsafeBytes { v in try body(k, v, valueSize) } }
            keys.removeAll(keepingCapacity: true)
            values.removeAll(keepingCapacity: true)
        }
        RocksNative.seekToFirst(iterator)
        while RocksNative.isValid(iterator) {
            let key = RocksNative.key(iterator)
            let value = RocksNative.value(iterator)
            guard key.count == 8 else {
                throw HPSError(.database, subject: path, "table \(family.name) holds a \(key.count)-byte key; keys must be 8 bytes")
            }
            if valueSize < 0 {
                valueSize = value.count
                keys.reserveCapacity(maxChunk)
                values.reserveCapacity(maxChunk * valueSize)
            } else if value.count != valueSize {
                throw HPSError(
                    .database, subject: path,
                    "table \(family.name) holds values of \(valueSize) and of \(value.count) bytes; all rows must have one size")
            }
            keys.append(Int64(littleEndian: key.loadUnaligned(as: Int64.self)))
            values.append(contentsOf: value)
            if keys.count == maxChunk { try emit() }
            RocksNative.next(iterator)
        }
        try rocks("cannot read table \(family.name)") { try RocksNative.iteratorStatus(iterator) }
        if !keys.isEmpty { try emit() }
    }

    /// Calls `body(start, count)` for successive chunks of at most `maxBatchSize` of `total` rows.
    private func forEachChunk(of total: Int, _ body: (Int, Int) throws -> Void) rethrows {
        var start = 0
        while start < total {
            let n = min(maxBatchSize, total - start)
            try body(start, n)
            start += n
        }
    }

    private func checkWritable(_ table: String, _ action: String) throws {
        if isReadOnly {
            throw HPSError(
                .database, subject: path,
                "cannot \(action) table \(table): the database is open read-only (persistent_db.read_only = true)")
        }
    }

    private func checkRows(_ table: String, count: Int, bytes: Int, valueSize: Int) throws {
        guard valueSize > 0 else { throw HPSError(.invalidArgument, subject: table, "value size must be at least 1 byte, not \(valueSize)") }
        guard bytes >= count * valueSize else {
            throw HPSError(
                .invalidArgument, subject: table,
                "the values buffer holds \(bytes) bytes; \(count) rows of \(valueSize) bytes need \(count * valueSize)")
        }
    }

    private func valueSizeMismatch(_ table: String, stored: Int, requested: Int) -> HPSError {
        HPSError(
            .invalidArgument, subject: table,
            "the table holds \(stored)-byte values but \(requested)-byte values were requested (wrong embedding dimension?)")
    }

    /// Runs `body`, turning a RocksDB status into an ``HPSError`` naming the database path.
    private func rocks<T>(_ what: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let status as RocksStatus {
            throw HPSError(.database, subject: path, what(), underlying: status.message)
        }
    }

    package static func openError(path: String, _ status: RocksStatus) -> HPSError {
        let text = status.message
        if text.contains("lock") && (text.contains("Resource temporarily unavailable") || text.contains("lock hold by current process")) {
            return HPSError(
                .database, subject: path,
                "the RocksDB database is locked by another writer (another process, or another instance in this one); "
                    + "only one may open it for writing, the others can set persistent_db.read_only = true",
                underlying: text)
        }
        if text.hasPrefix("Corruption") {
            return HPSError(.database, subject: path, "the RocksDB database is corrupted", underlying: text)
        }
        return HPSError(.database, subject: path, "cannot open the RocksDB database", underlying: text)
    }

    /// Whether `name` is a file RocksDB leaves in a database directory, so that a directory holding only
    /// such files (a creation that was interrupted) may be used.
    static func isRocksDBFileName(_ name: String) -> Bool {
        if ["LOCK", "IDENTITY", "CURRENT", "LOG"].contains(name) || name.hasPrefix(bulkDirectoryPrefix) { return true }
        for prefix in ["LOG.old.", "MANIFEST-", "OPTIONS-"] where name.hasPrefix(prefix) { return true }
        for suffix in [".log", ".sst", ".dbtmp", ".blob"] where name.hasSuffix(suffix) { return true }
        return false
    }

    /// The 8 little-endian bytes of each key, back to back.
    @inline(__always)
    static func withKeySlices<R>(_ keys: UnsafeBufferPointer<Int64>, _ body: (UnsafeRawPointer) throws -> R) rethrows -> R {
        #if _endian(little)
        return try body(UnsafeRawPointer(keys.baseAddress!))
        #else
        let swapped = keys.map { $0.littleEndian }
        return try swapped.withUnsafeBytes { try body($0.baseAddress!) }
        #endif
    }

    @inline(__always)
    static func withKey<R>(_ key: Int64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(of: key.littleEndian, body)
    }

    static func withKey<R>(_ key: String, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var key = key
        return try key.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
    }
}
