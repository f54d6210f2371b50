import Dispatch

/// The process-wide parameter server: the databases of one configuration, every model's tables loaded
/// into them, and a lookup session per model × deployed device.
///
/// A lookup that misses the device cache goes to the volatile database, then to the persistent database,
/// then gets the table's default value. A volatile database that fails never loses a lookup: its keys go
/// on to the persistent database.
public final class ParameterServer: @unchecked Sendable {
    public let config: ParameterServerConfig
    public let volatileDatabase: (any Database)?
    public let persistentDatabase: (any Database)?
    public let statistics = TierStatistics()
    public let keyWidth: KeyWidth
    /// Makes device caches for sessions; nil means CPU caches. Set before the first ``session(model:device:)``.
    public var cacheProvider: (any CacheProvider)?
    let logger: HPSLogger
    private let sessionsLock = Lock()
    private var sessions: [String: [Int: LookupSession]] = [:]
    private let errorLog: RateLimitedLog
    private let volatileInserter = DispatchQueue(label: "hps.vdb-inserter")

    /// A server over the given databases. Call ``loadTables(progress:)`` to fill them, then
    /// ``session(model:device:)`` to look up.
    public init(
        config: ParameterServerConfig, volatileDatabase: (any Database)?, persistentDatabase: (any Database)?,
        logger: HPSLogger = .standard
    ) {
        self.config = config
        self.volatileDatabase = volatileDatabase
        self.persistentDatabase = persistentDatabase
        self.logger = logger
        self.keyWidth = KeyWidth(supportLongLong: config.supportLongLong)
        errorLog = RateLimitedLog(logger: logger)
        if volatileDatabase == nil && persistentDatabase == nil {
            logger.warning("No database. Keys the device cache does not hold get the default value.")
        }
    }

    // MARK: Models and tables

    /// The model named `name`.
    public func model(named name: String) throws -> ModelConfig {
        guard let model = config.model(named: name) else {
            let known = config.models.map(\.name).joined(separator: ", ")
            throw HPSError(.unknownModel, subject: name, "no model of that name; the config has: \(known)")
        }
        return model
    }

    /// Table `index` of `model`.
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
    /// holds a table's current files is not reloaded.
    /// - Parameter progress: called with (table tag, rows done, rows total) during long loads.
    public func loadTables(progress: ((String, Int, Int) -> Void)? = nil) throws {
        for model in config.models {
            let type = model.useStaticTable ? .static : model.embeddingCacheType
            guard type == .dynamic || type == .stochastic else { continue }
            for table in model.tables {
                try load(table: table, progress: progress)
            }
        }
    }

    private func load(table: TableConfig, progress: ((String, Int, Int) -> Void)?) throws {
        let directory = try TableDirectory(path: table.path, dimension: table.dimension)
        let tag = table.tag
        var targets: [any Database] = []
        // A shared volatile database (Redis) that another process (or an earlier start) filled with these
        // table files is not written again; see ParameterServer+SharedVolatile.swift.
        var sharedVolatileLoad = false
        if let vdb = volatileDatabase, config.volatileDatabase.initializeAfterStartup {
            if vdb.isShared, sharedVolatileHolds(vdb, directory: directory, tag: tag) {
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
            let stamp = try directory.fileStamp()
            let stored = try pdb.loadedFingerprint(table: tag).flatMap(LoadedTableRecord.init)
            if let stored, stored.stamp == stamp {
                logger.info("Table \(tag): \(pdb.name) already holds these table files (same sizes and modification times); not reloading.")
                persistentHoldsTable = true
            } else {
                let content = try directory.fingerprint()
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
        let chunkRows = max(1, min(config.volatileDatabase.maxBatchSize, config.persistentDatabase.maxBatchSize, 65536))
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
        // initial_cache_rate: the volatile database takes the first share of the rows; the rest is fetched
        // from the persistent database (validation requires one when the rate is below 1).
        var volatileRowsLeft = volatileRowLimit(rows: directory.rowCount)
        // Keys a volatile-database node did not take, by node (only while the persistent database holds
        // the table: otherwise a failed write fails the load).
        var unwritten: [String: Int] = [:]
        if let hashMap = volatileDatabase as? HashMapDatabase, inserting.contains(where: { $0 === hashMap }) {
            try hashMap.reserve(table: tag, rows: volatileRowsLeft, valueSize: table.valueSize)
        }
        var report = LoadProgress(tag: tag, total: directory.rowCount, bytesPerRow: 8 + table.valueSize, start: start)
        try directory.forEachChunk(maxRows: chunkRows, keyWidth: keyWidth, progress: { done, total in
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
                "Table \(tag): \(vdb.name) could not take \(total) of \(volatileRowLimit(rows: directory.rowCount)) keys: node(s) \(nodes) failed; "
                    + "starting anyway: lookups of those keys are answered by \(pdb.name), which holds the whole table. "
                    + "The next start writes the table again.")
        } else if sharedVolatileLoad, let vdb = volatileDatabase {
            recordSharedVolatileLoad(vdb, directory: directory, tag: tag, contentFingerprint: record?.content)
        }
        let seconds = Double((clock.now - start).components.attoseconds) / 1e18 + Double((clock.now - start).components.seconds)
        for db in targets {
            let size = (try? db.size(table: tag)) ?? 0
            let capacity = db.capacity(table: tag)
            let load = capacity == .max ? "unbounded" : "\(size) / \(capacity)"
            logger.info("Table: \(tag); cached \(size) / \(directory.rowCount) embeddings in \(db.name); load: \(load); \(String(format1: seconds)) s")
        }
        try warnAboutDuplicateKeys(directory, tag: tag, loadedInto: targets)
    }

    // MARK: Sessions

    /// The lookup session of `model` on `device` (made on first use, then shared).
    public func session(model name: String, device: Int) throws -> LookupSession {
        let model = try model(named: name)
        guard model.deployedDevices.contains(device) else {
            throw HPSError(.invalidArgument, subject: "\(name) device \(device)", "model \(name) is not deployed on device \(device); deployed_device_list is \(model.deployedDevices)")
        }
        if let s = sessionsLock.withLock({ sessions[name]?[device] }) { return s }
        let made = try LookupSession(server: self, model: model, device: device)
        return sessionsLock.withLock {
            if let s = sessions[name]?[device] { return s }
            sessions[name, default: [:]][device] = made
            return made
        }
    }

    /// Makes the sessions of every model on every deployed device now (fills caches up front).
    public func makeAllSessions() throws {
        for model in config.models {
            for device in model.deployedDevices { _ = try session(model: model.name, device: device) }
        }
    }

    // MARK: Database lookups

    /// Looks `keys` up in the databases only (no cache) and writes one vector per key to `output`.
    public func lookup(model: String, table: Int, keys: [Int64]) throws -> [Float] {
        let t = try self.table(model: model, index: table)
        var output = [Float](repeating: 0, count: keys.count * t.dimension)
        var misses = [Int](repeating: 0, count: keys.count)
        let normalized = keys.map(keyWidth.normalize)
        normalized.withUnsafeBufferPointer { k in
            output.withUnsafeMutableBufferPointer { o in
                misses.withUnsafeMutableBufferPointer { m in
                    fetch(table: t, keys: k, into: o.baseAddress!, missScratch: m.baseAddress!)
                }
            }
        }
        return output
    }

    /// VDB → PDB → default for `keys`, writing `keys.count × dim` floats. `missScratch` holds `keys.count`
    /// indices. Never fails: a database error turns its keys into misses (counted and logged).
    func fetch(table: TableConfig, keys: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, missScratch: UnsafeMutablePointer<Int>) {
        var tally = LookupTally()
        fetch(table: table, keys: keys, into: output, missScratch: missScratch, tally: &tally)
    }

    /// ``fetch(table:keys:into:missScratch:)``, adding what each tier answered, and its time, to `tally`.
    func fetch(
        table: TableConfig, keys: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, missScratch: UnsafeMutablePointer<Int>,
        tally: inout LookupTally
    ) {
        let dim = table.dimension
        let valueSize = table.valueSize
        let out = UnsafeMutableRawBufferPointer(start: output, count: keys.count * valueSize)
        let tag = table.tag
        let fill = { (i: Int) in (output + i * dim).update(repeating: table.defaultValue, count: dim) }
        var misses = 0
        if let vdb = volatileDatabase {
            let started = LookupTally.now()
            defer { tally.volatileNanos = (tally.volatileNanos ?? 0) + (LookupTally.now() &- started) }
            do {
                _ = try vdb.fetch(table: tag, keys: keys, values: out, valueSize: valueSize) { i in
                    missScratch[misses] = i
                    misses += 1
                }
            } catch {
                statistics.add(statistics.volatileErrors, keys.count)
                tally.volatileErrors += 1
                errorLog.error("volatile database \(vdb.name) failed for \(tag); \(keys.count) keys go on to the next tier: \(error)")
                misses = 0
                for i in 0..<keys.count { missScratch[i] = i }
                misses = keys.count
            }
            statistics.add(statistics.volatileHits, keys.count - misses)
            tally.volatileHits += keys.count - misses
            statistics.add(statistics.volatileMisses, misses)
        } else {
            for i in 0..<keys.count { missScratch[i] = i }
            misses = keys.count
        }
        guard misses > 0 else { return }
        let missed = UnsafeBufferPointer(start: missScratch, count: misses)
        guard let pdb = persistentDatabase else {
            for i in missed { fill(i) }
            statistics.add(statistics.defaults, misses)
            tally.defaults += misses
            return
        }
        var defaults = 0
        let copyHits = config.volatileDatabase.cacheMissedEmbeddings && volatileDatabase != nil
        var notFound: [Int] = []  // only filled when hits are copied into the volatile database
        let started = LookupTally.now()
        do {
            _ = try pdb.fetch(table: tag, indices: missed, keys: keys, values: out, valueSize: valueSize) { i in
                fill(i)
                defaults += 1
                if copyHits { notFound.append(i) }
            }
        } catch {
            statistics.add(statistics.persistentErrors, misses)
            tally.persistentErrors += 1
            errorLog.error("persistent database \(pdb.name) failed for \(tag); \(misses) keys get the default value: \(error)")
            for i in missed { fill(i) }
            defaults = misses
            notFound = Array(missed)
        }
        statistics.add(statistics.persistentHits, misses - defaults)
        statistics.add(statistics.persistentMisses, defaults)
        statistics.add(statistics.defaults, defaults)
        tally.persistentNanos = (tally.persistentNanos ?? 0) + (LookupTally.now() &- started)
        tally.persistentHits += misses - defaults
        tally.defaults += defaults
        if copyHits, let vdb = volatileDatabase, misses > defaults {
            copyPersistentHitsToVolatile(vdb, tag: tag, valueSize: valueSize, keys: keys, missed: missed, notFound: Set(notFound), output: output, dim: dim)
        }
    }

    /// Inserts the keys the persistent database answered into the volatile database, in the background.
    private func copyPersistentHitsToVolatile(
        _ vdb: any Database, tag: String, valueSize: Int, keys: UnsafeBufferPointer<Int64>, missed: UnsafeBufferPointer<Int>,
        notFound: Set<Int>, output: UnsafeMutablePointer<Float>, dim: Int
    ) {
        var hitKeys: [Int64] = []
        var hitValues: [Float] = []
        hitKeys.reserveCapacity(missed.count - notFound.count)
        hitValues.reserveCapacity((missed.count - notFound.count) * dim)
        for i in missed where !notFound.contains(i) {
            hitKeys.append(keys[i])
            hitValues.append(contentsOf: UnsafeBufferPointer(start: output + i * dim, count: dim))
        }
        guard !hitKeys.isEmpty else { return }
        let log = errorLog
        volatileInserter.async { [hitKeys, hitValues] in
            do {
                try hitKeys.withUnsafeBufferPointer { k in
                    try hitValues.withUnsafeBytes { v in
                        _ = try vdb.insert(table: tag, keys: k, values: v, valueSize: valueSize)
                    }
                }
            } catch {
                log.error("copying \(hitKeys.count) persistent-database hits of \(tag) into \(vdb.name) failed: \(error)")
            }
        }
    }

    /// Waits until background inserts into the volatile database are done.
    public func waitForBackgroundWork() {
        volatileInserter.sync {}
        let all = sessionsLock.withLock { sessions.values.flatMap { $0.values } }
        for s in all { s.waitForBackgroundInserts() }
    }
}

extension String {
    init(format1 value: Double) {
        let scaled = (value * 10).rounded() / 10
        self = "\(scaled)"
    }
}
