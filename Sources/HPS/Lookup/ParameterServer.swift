import Dispatch

/// The process-wide parameter server: the databases of one configuration, every model's tables loaded
/// into them, and a lookup session per model × deployed device.
///
/// A lookup that misses the device cache goes to the volatile database, then to the persistent database,
/// then gets the table's default value. A volatile database that fails never loses a lookup: its keys go
/// on to the persistent database.
public final class ParameterServer: @unchecked Sendable {
    // @unchecked: the only mutable state is `sessions`, guarded by `sessionsLock`; everything else is
    // immutable and Sendable.
    public let config: ParameterServerConfig
    public let volatileDatabase: (any Database)?
    public let persistentDatabase: (any Database)?
    public let statistics = TierStatistics()
    public let keyWidth: KeyWidth
    /// Makes device caches for sessions; nil means CPU caches.
    public let cacheProvider: (any CacheProvider)?
    /// The online update source writing into this server (`update_source`); stopped when the server goes away.
    public var updateSource: (any UpdateSource)? {
        get { sessionsLock.withLock { _updateSource } }
        set { sessionsLock.withLock { _updateSource = newValue } }
    }
    private var _updateSource: (any UpdateSource)?
    let logger: HPSLogger
    /// What sessions use: the databases, the key width, the statistics. Sessions hold it, not the server.
    let tiers: TierChain
    private let sessionsLock = Lock()
    private var sessions: [String: [Int: LookupSession]] = [:]

    /// A server over the given databases. Call ``loadTables(progress:)`` to fill them, then
    /// ``session(model:device:)`` to look up.
    /// - Parameter cacheProvider: makes the device caches of sessions (e.g. CUDA caches); nil for CPU caches.
    public init(
        config: ParameterServerConfig, volatileDatabase: (any Database)?, persistentDatabase: (any Database)?,
        cacheProvider: (any CacheProvider)? = nil, logger: HPSLogger = .standard
    ) {
        self.config = config
        self.volatileDatabase = volatileDatabase
        self.persistentDatabase = persistentDatabase
        self.cacheProvider = cacheProvider
        self.logger = logger
        tiers = TierChain(
            config: config, volatileDatabase: volatileDatabase, persistentDatabase: persistentDatabase,
            cacheProvider: cacheProvider, statistics: statistics, logger: logger)
        keyWidth = tiers.keyWidth
        if volatileDatabase == nil && persistentDatabase == nil {
            logger.warning("No database. Keys the device cache does not hold get the default value.")
        }
    }

    deinit { _updateSource?.stop() }

    // MARK: Models and tables

    /// The model named `name`.
    /// - Throws: ``HPSError`` `.unknownModel` naming `name` (and listing the config's models) when the config has no
    ///   such model.
    public func model(named name: String) throws -> ModelConfig {
        guard let model = config.model(named: name) else {
            let known = config.models.map(\.name).joined(separator: ", ")
            throw HPSError(.unknownModel, subject: name, "no model of that name; the config has: \(known)")
        }
        return model
    }

    /// Table `index` of `model`.
    /// - Throws: ``HPSError`` `.unknownModel` for an unknown model; `.unknownTable` naming the model and index when
    ///   `index` is outside `0 ..< tableCount`.
    public func table(model name: String, index: Int) throws -> TableConfig {
        let model = try model(named: name)
        guard index >= 0 && index < model.tableCount else {
            throw HPSError(.unknownTable, subject: "\(name) table \(index)", "table id out of range: model \(name) has \(model.tableCount) table(s) (0..<\(model.tableCount))")
        }
        return model.tables[index]
    }

    // MARK: Loading

    /// Loads every table of every model with a dynamic cache into the volatile and persistent databases
    /// (static and uvm tables live in their caches only, as in HPS). A persistent database that already
    /// holds a table's current files is not reloaded. The tables of a fused group (``TableFusion``) go into
    /// the group's one database table, keys tagged by table.
    /// - Parameter progress: called with (table tag, rows done, rows total) during long loads.
    /// - Throws: ``HPSError`` from reading a table's files (`.io`, `.invalidTable` naming the file, row and key),
    ///   from a database that cannot store the rows (`.database`), or (fused int64 keys) `.invalidTable` for a key
    ///   outside the fused key space, naming the table and the key; loading stops at the first table that fails.
    public func loadTables(progress: ((String, Int, Int) -> Void)? = nil) throws {
        for model in config.models {
            let type = model.useStaticTable ? .static : model.embeddingCacheType
            guard type == .dynamic || type == .stochastic else { continue }
            let fusion = config.fusion(of: model)
            let tables = model.tables
            for group in fusion.groups {
                if group.isFused {
                    logger.info("Model \(model.name): tables \(group.members.map { tables[$0].name }.joined(separator: ", ")) fused into \(group.table.tag) (\(group.keySpace!))")
                }
                try load(try LoadSource(group: group, tables: tables), progress: progress)
            }
        }
    }

    /// Loads table `index` of model `name` into the volatile and persistent databases as
    /// ``loadTables(progress:)`` would, and no other table: for a table of a fused group, the group's
    /// database table from the table files of every member. Unlike ``loadTables(progress:)`` it loads the
    /// table whatever the model's cache type.
    /// - Parameter progress: called with (table tag, rows done, rows total) during long loads.
    /// - Throws: what ``table(model:index:)`` throws for an unknown model or table; otherwise what
    ///   ``loadTables(progress:)`` throws for the table.
    public func loadTable(model name: String, index: Int, progress: ((String, Int, Int) -> Void)? = nil) throws {
        _ = try table(model: name, index: index)
        let model = try model(named: name)
        let group = config.fusion(of: model).group(ofTable: index)
        if group.isFused {
            logger.info("Model \(model.name): tables \(group.memberTables.map(\.name).joined(separator: ", ")) fused into \(group.table.tag) (\(group.keySpace!))")
        }
        try load(try LoadSource(group: group, tables: model.tables), progress: progress)
    }

    private func load(_ source: LoadSource, progress: ((String, Int, Int) -> Void)?) throws {
        let table = source.table
        let tag = table.tag
        var targets: [any Database] = []
        // A shared volatile database (Redis) that another process (or an earlier start) filled with these
        // table files is not written again; see ParameterServer+SharedVolatile.swift.
        var sharedVolatileLoad = false
        if let vdb = volatileDatabase, config.volatileDatabase.initializeAfterStartup {
            if vdb.isShared, tiers.sharedVolatileHolds(vdb, source: source, tag: tag) {
                logger.info("Table \(tag): \(vdb.name) already holds these table files (loaded by this or another process); not rewriting.")
            } else {
                targets.append(vdb)
                if vdb.isShared {
                    sharedVolatileLoad = true
                    try? vdb.recordLoadedFingerprint(nil, table: tag)
                }
            }
        }
        var record: LoadedTableRecord?
        // Whether the persistent database holds every row of the table once loading is done: then keys a
        // volatile-database node could not take are still answered exactly (from the persistent database).
        var persistentHoldsTable = false
        if let pdb = persistentDatabase, config.persistentDatabase.initializeAfterStartup {
            let stamp = try source.fileStamp()
            let stored = try pdb.loadedFingerprint(table: tag).flatMap(LoadedTableRecord.init)
            if let stored, stored.stamp == stamp {
                logger.info("Table \(tag): \(pdb.name) already holds these table files (same sizes and modification times); not reloading.")
                persistentHoldsTable = true
            } else {
                let content = try source.fingerprint()
                if let stored, stored.content == content {
                    logger.info("Table \(tag): \(pdb.name) already holds these table files (same content); not reloading.")
                    persistentHoldsTable = true
                    if !config.persistentDatabase.readOnly {
                        try pdb.recordLoadedFingerprint(LoadedTableRecord(content: content, stamp: stamp).text, table: tag)
                    }
                } else if config.persistentDatabase.readOnly {
                    logger.warning("Table \(tag): \(pdb.name) is read-only and does not hold the current table files; serving what it holds.")
                } else {
                    try pdb.recordLoadedFingerprint(nil, table: tag)
                    try pdb.evict(table: tag)
                    record = LoadedTableRecord(content: content, stamp: stamp)
                    targets.append(pdb)
                    persistentHoldsTable = true
                }
            }
        }
        guard !targets.isEmpty else { return }
        let clock = ContinuousClock()
        let start = clock.now
        // The persistent database, just evicted, may take the rows in bulk (RocksDB: sorted SST files
        // ingested); the other targets get ordinary inserts of the same chunks.
        var inserting = targets
        var bulk: (any BulkLoader)?
        if record != nil, let pdb = persistentDatabase, let loader = try pdb.makeBulkLoader(table: tag, valueSize: table.valueSize) {
            bulk = loader
            inserting.removeAll { $0 === pdb }
        }
        defer { bulk?.cancel() }  // after a failure; nothing once finished
        let chunkRows = loadChunkRows(
            valueSize: table.valueSize, hashMapOnly: bulk == nil && inserting.allSatisfy { $0 is HashMapDatabase })
        // initial_cache_rate: the volatile database takes the first share of the rows; the rest is fetched
        // from the persistent database (validation requires one when the rate is below 1).
        var volatileRowsLeft = volatileRowLimit(rows: source.rowCount)
        // Keys a volatile-database node did not take, by node (only while the persistent database holds
        // the table: otherwise a failed write fails the load).
        var unwritten: [String: Int] = [:]
        if let hashMap = volatileDatabase as? HashMapDatabase, inserting.contains(where: { $0 === hashMap }) {
            try hashMap.reserve(table: tag, rows: volatileRowsLeft, valueSize: table.valueSize)
        }
        var report = LoadProgress(tag: tag, total: source.rowCount, bytesPerRow: 8 + table.valueSize, start: start)
        try source.forEachChunk(maxRows: chunkRows, keyWidth: keyWidth, progress: { done, total in
            if let progress { progress(tag, done, total) }
            if let line = report.line(done: done, now: clock.now) { self.logger.info(line) }
        }) { keys, vectors in
            let bytes = UnsafeRawBufferPointer(vectors)
            for db in inserting {
                var n = keys.count
                if let vdb = self.volatileDatabase, db === vdb {
                    n = min(n, volatileRowsLeft)
                    volatileRowsLeft -= n
                }
                guard n > 0 else { continue }
                do {
                    try db.insert(
                        table: tag, keys: UnsafeBufferPointer(rebasing: keys[0..<n]),
                        values: UnsafeRawBufferPointer(rebasing: bytes[0..<(n * table.valueSize)]), valueSize: table.valueSize)
                } catch let error as HPSError where persistentHoldsTable && db !== self.persistentDatabase && error.unwrittenKeysByNode != nil {
                    for (node, count) in error.unwrittenKeysByNode ?? [:] { unwritten[node, default: 0] += count }
                }
            }
            try bulk?.add(keys: keys, values: bytes)
        }
        if let bulk { _ = try bulk.finish() }
        if let record, let pdb = persistentDatabase { try pdb.recordLoadedFingerprint(record.text, table: tag) }
        if let vdb = volatileDatabase, let pdb = persistentDatabase, !unwritten.isEmpty {
            let nodes = unwritten.keys.sorted().map { "\($0) (\(unwritten[$0] ?? 0) keys)" }.joined(separator: ", ")
            let total = unwritten.values.reduce(0, +)
            logger.warning(
                "Table \(tag): \(vdb.name) could not take \(total) of \(volatileRowLimit(rows: source.rowCount)) keys: node(s) \(nodes) failed; "
                    + "starting anyway: lookups of those keys are answered by \(pdb.name), which holds the whole table. "
                    + "The table is written again once every node answers (checked every \(VolatileRefill.interval), and at refresh).")
            tiers.volatileRefill.schedule(source, tiers: tiers)
        } else if sharedVolatileLoad, let vdb = volatileDatabase {
            tiers.recordSharedVolatileLoad(vdb, source: source, tag: tag, contentFingerprint: record?.content)
        }
        let seconds = Double((clock.now - start).components.attoseconds) / 1e18 + Double((clock.now - start).components.seconds)
        for db in targets {
            let size = (try? db.size(table: tag)) ?? 0
            let capacity = db.capacity(table: tag)
            let load = capacity == .max ? "unbounded" : "\(size) / \(capacity)"
            logger.info("Table: \(tag); cached \(size) / \(source.rowCount) embeddings in \(db.name); load: \(load); \(String(format1: seconds)) s")
        }
        try warnAboutDuplicateKeys(source, tag: tag, loadedInto: targets)
    }

    /// Table file bytes per chunk of a load into the hash map alone (4 MiB): the chunk just read is still in
    /// the CPU caches when its rows are copied into the hash map. At dim 128 on a 2-core VM, chunks of 4096–8192
    /// rows (2–4 MiB) took 0.46–0.57 s of CPU per 2M rows, chunks of 65536 rows 0.63–0.65 s.
    static let hashMapLoadChunkBytes = 4 << 20

    /// Rows per chunk of a table load: at most `max_batch_size` of both databases and 65536. When only the
    /// hash map takes the rows, also at most ``hashMapLoadChunkBytes`` of table files, but at least 8192 rows
    /// (above the hash map's `parallelThreshold`, so partitions are still filled in parallel). Loads into Redis
    /// or RocksDB keep the large chunks (fewer round trips and write batches).
    private func loadChunkRows(valueSize: Int, hashMapOnly: Bool) -> Int {
        var rows = 65536
        if hashMapOnly { rows = min(rows, max(8192, Self.hashMapLoadChunkBytes / (8 + valueSize))) }
        return max(1, min(config.volatileDatabase.maxBatchSize, config.persistentDatabase.maxBatchSize, rows))
    }

    // MARK: Volatile refill

    /// Tags of the tables whose rows a volatile-database node did not take at load and that wait to be
    /// written again (empty once every node took them).
    public var tablesAwaitingVolatileRefill: [String] { tiers.volatileRefill.pendingTags }

    /// Writes the rows of every table in ``tablesAwaitingVolatileRefill`` into the volatile database now,
    /// if every node answers; a background timer does the same every `HPS_VOLATILE_REFILL_INTERVAL_MS`.
    /// Failures are logged and leave the table pending.
    /// - Returns: the rows written.
    @discardableResult
    public func refillVolatileDatabase() -> Int { tiers.volatileRefill.attempt(tiers: tiers) }

    // MARK: Sessions

    /// The lookup session of `model` on `device` (made on first use, then shared).
    /// - Throws: ``HPSError`` `.unknownModel` for an unknown model; `.invalidArgument` naming the model and device
    ///   when the model is not deployed on `device`; errors of making or filling its caches (a device cache
    ///   provider's error, table read errors).
    public func session(model name: String, device: Int) throws -> LookupSession {
        let model = try model(named: name)
        guard model.deployedDevices.contains(device) else {
            throw HPSError(.invalidArgument, subject: "\(name) device \(device)", "model \(name) is not deployed on device \(device); deployed_device_list is \(model.deployedDevices)")
        }
        if let s = sessionsLock.withLock({ sessions[name]?[device] }) { return s }
        let made = try LookupSession(tiers: tiers, model: model, device: device)
        return sessionsLock.withLock {
            if let s = sessions[name]?[device] { return s }
            sessions[name, default: [:]][device] = made
            return made
        }
    }

    /// Every session made so far.
    func allSessions() -> [LookupSession] { sessionsLock.withLock { sessions.values.flatMap { $0.values } } }

    /// Makes the sessions of every model on every deployed device now (fills caches up front).
    /// - Throws: what ``session(model:device:)`` throws, for the first session that cannot be made.
    public func makeAllSessions() throws {
        for model in config.models {
            for device in model.deployedDevices { _ = try session(model: model.name, device: device) }
        }
    }

    // MARK: Database lookups

    /// Looks `keys` up in the databases only (no cache) and writes one vector per key to `output`.
    /// A table of a fused group is read from the group's database table (keys tagged).
    /// - Throws: what ``table(model:index:)`` throws; errors of the persistent database when it cannot answer (a
    ///   failing volatile database never fails a lookup).
    public func lookup(model: String, table: Int, keys: [Int64]) throws -> [Float] {
        _ = try self.table(model: model, index: table)
        let fusion = config.fusion(of: try self.model(named: model))
        let group = fusion.groups[fusion.groupOfTable[table]]
        let t = group.table
        let member = fusion.memberOfTable[table]
        var output = [Float](repeating: 0, count: keys.count * t.dimension)
        var misses = [Int](repeating: 0, count: keys.count)
        let normalized = keys.map { key in
            let k = keyWidth.normalize(key)
            return group.keySpace.map { $0.encode(k, member: member) } ?? k
        }
        normalized.withUnsafeBufferPointer { k in
            output.withUnsafeMutableBufferPointer { o in
                misses.withUnsafeMutableBufferPointer { m in
                    tiers.fetch(table: t, keys: k, into: o.baseAddress!, missScratch: m.baseAddress!)
                }
            }
        }
        return output
    }

    /// Waits until background inserts into the volatile database are done.
    public func waitForBackgroundWork() {
        tiers.waitForVolatileInserts()
        for s in allSessions() { s.waitForBackgroundInserts() }
    }
}

extension String {
    init(format1 value: Double) {
        let scaled = (value * 10).rounded() / 10
        self = "\(scaled)"
    }
}
