import ArgumentParser
import Foundation
import HPS
import HPSRocksDB
import HPSRuntime

/// Which configured database `hps dump` reads.
enum DumpSource: String, ExpressibleByArgument, CaseIterable {
    case auto, persistent, volatile
}

/// `hps dump`: one table of the configured databases to a `.bin` or `.sst` file.
struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Write one table of the configured databases to a .bin or .sst dump file.",
        discussion: """
            The format follows the output name: .bin is HPS's raw dump ("bin\\0", version, key size, value \
            size, then key/value records); .sst is a RocksDB SST file (keys sorted), which `hps load-dump` \
            ingests into a persistent database without rewriting it.

            The table comes from the persistent database when the config has one, else from the volatile \
            database (--from picks one). Before dumping, the table is brought up to date the way a server \
            start would do it, and only this table: a persistent database that already holds the current \
            table files (per its load record: same sizes and times, or same content) is not touched, one \
            that does not is reloaded from the files \
            (unless it is read-only or initialize_after_startup is false: then what it holds is dumped). A \
            process-local hash map holds nothing before loading, so its dump is the table files as loaded \
            into it (overflow_margin applies). When the table files are missing, a persistent database is \
            dumped as it is. Tables of static or uvm models are dumped too, though servers keep those in \
            their caches only.

            Keys are written with the config's key width (8 bytes, or 4 with supportlonglong: false). An \
            empty table is an error. The dump is written to a temporary file and renamed into place.
            """
    )

    @OptionGroup var target: TableTarget

    @Option(help: "The dump file to write; its name must end in .bin or .sst.")
    var output: String

    @Option(help: "The database to dump: auto (persistent when configured, else volatile), persistent or volatile.")
    var from: DumpSource = .auto

    func validate() throws {
        guard output.hasSuffix(".bin") || output.hasSuffix(".sst") else {
            throw ValidationError("--output must end in .bin (raw records) or .sst (RocksDB SST file): \(output)")
        }
    }

    func run() throws {
        let logger = HPSLogger.standard
        let parsed = try loadConfigForDatabases(target.config, logger: logger)
        let (single, tableConfig) = try singleTable(parsed, model: target.model, table: target)
        let useVolatile: Bool
        switch from {
        case .auto:
            guard single.persistentDatabase.type != .disabled || single.volatileDatabase.type != .disabled else {
                throw HPSError(.invalidConfig, subject: target.config, "configures no database (volatile_db and persistent_db are disabled); there is nothing to dump")
            }
            useVolatile = single.persistentDatabase.type == .disabled
        case .persistent:
            guard single.persistentDatabase.type != .disabled else {
                throw HPSError(.invalidConfig, subject: target.config, "configures no persistent database (persistent_db is disabled); use --from volatile")
            }
            useVolatile = false
        case .volatile:
            guard single.volatileDatabase.type != .disabled else {
                throw HPSError(.invalidConfig, subject: target.config, "configures no volatile database (volatile_db is disabled); use --from persistent")
            }
            useVolatile = true
        }

        let db: any Database
        let server: ParameterServer
        if useVolatile {
            db = try HPSRuntime.makeVolatileDatabase(single.volatileDatabase, logger: logger)!
            server = ParameterServer(config: single, volatileDatabase: db, persistentDatabase: nil, logger: logger)
        } else {
            db = try HPSRuntime.makePersistentDatabase(single.persistentDatabase, logger: logger)!
            server = ParameterServer(config: single, volatileDatabase: nil, persistentDatabase: db, logger: logger)
        }
        var filesReadable = true
        do {
            _ = try TableDirectory(path: tableConfig.path, dimension: tableConfig.dimension)
        } catch {
            // A persistent (or shared) database may hold the table without its files; a local hash map cannot.
            guard !useVolatile || db.isShared else { throw error }
            logger.warning("Table \(tableConfig.tag): cannot read its table files (\(error)); dumping what \(db.name) holds")
            filesReadable = false
        }
        if filesReadable { try server.loadTables() }

        let rows = try db.size(table: tableConfig.tag)
        guard rows > 0 else {
            throw HPSError(.database, subject: tableConfig.tag, "\(db.name) holds no rows of this table; nothing to dump")
        }
        let watch = Stopwatch()
        try DatabaseDump.dump(db, table: tableConfig.tag, to: output, keySize: single.keySize)
        printError("dumped \(rows) rows of \(tableConfig.tag) (dim \(tableConfig.dimension)) from \(db.name) to \(output) in \(String(format: "%.2f", watch.seconds)) s")
    }
}

/// `hps load-dump`: a `.bin` or `.sst` dump into one table of the configured databases.
struct LoadDumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load-dump",
        abstract: "Load a .bin or .sst dump into one table of the configured databases.",
        discussion: """
            The rows go into every configured database that outlives this command: the persistent \
            database, and a volatile database shared between processes. A process-local hash map is \
            skipped (its rows would vanish when the command exits; servers fill theirs from the table \
            files). Table files are not read. The dump's key and value sizes must match the table \
            (dim × 4 bytes; 4-byte keys are widened, and with supportlonglong: false the dump's keys must \
            be 4 bytes). A malformed dump is rejected before anything is inserted. Keys the dump holds \
            overwrite existing ones, others stay (HPS's load_dump); --replace empties the table first. A \
            .sst dump is ingested into RocksDB as a file.

            Restarts and table files. A persistent database remembers a fingerprint of the table files it \
            last loaded completely, so a server start skips unchanged tables. After loading a dump the \
            table no longer holds exactly those files, so this command forgets the fingerprint (before \
            writing, so an interrupted load is never mistaken for a complete one). Consequence: the next \
            server start that loads table files into the persistent database (the default) reloads this \
            table from its sparse_files, replacing the dump's rows; the table files stay the source of \
            truth. To serve the dump's rows instead, start servers with persistent_db.read_only: true or \
            persistent_db.initialize_after_startup: false. When the dump holds exactly the table files \
            (a backup, or a fast SST restore), add --verify-table-files: after loading, every row of the \
            table files is compared with the database, and only when the table is identical (same rows, \
            same bytes, nothing else) is the files' fingerprint recorded, so later starts do not reload.
            """
    )

    @OptionGroup var target: TableTarget

    @Option(help: "The dump file to read (.bin or .sst).")
    var input: String

    @Flag(help: "Empty the table in each database before loading (default: merge, dump keys overwrite).")
    var replace = false

    @Flag(help: "After loading, compare the persistent table with its table files; if identical, record their fingerprint so starts do not reload it.")
    var verifyTableFiles = false

    func validate() throws {
        guard input.hasSuffix(".bin") || input.hasSuffix(".sst") else {
            throw ValidationError("--input must end in .bin (raw records) or .sst (RocksDB SST file): \(input)")
        }
    }

    func run() throws {
        let logger = HPSLogger.standard
        let parsed = try loadConfigForDatabases(target.config, logger: logger)
        let (single, tableConfig) = try singleTable(parsed, model: target.model, table: target)
        let tag = tableConfig.tag
        let keySize: Int? = single.supportLongLong ? nil : 4

        // The databases without loading any table files.
        let vdb = try HPSRuntime.makeVolatileDatabase(single.volatileDatabase, logger: logger)
        let pdb = try HPSRuntime.makePersistentDatabase(single.persistentDatabase, logger: logger)
        if single.persistentDatabase.readOnly, pdb != nil {
            throw HPSError(.invalidConfig, subject: "persistent_db.read_only", "is true; cannot load a dump into the persistent database \(single.persistentDatabase.path)")
        }
        if verifyTableFiles && pdb == nil {
            throw HPSError(.invalidArgument, subject: "--verify-table-files", "needs a persistent database; the config has none")
        }
        var targets: [any Database] = []
        if let pdb { targets.append(pdb) }
        if let vdb {
            if vdb.isShared {
                targets.append(vdb)
            } else {
                printError("note: skipping the volatile database (\(vdb.name)): it lives in this process only, so its rows would vanish when this command exits")
            }
        }
        guard !targets.isEmpty else {
            throw HPSError(.invalidConfig, subject: target.config, "configures no database that outlives this command (no persistent database, no shared volatile database); nothing to load into")
        }

        for db in targets {
            let watch = Stopwatch()
            if db === pdb {
                try db.recordLoadedFingerprint(nil, table: tag)
            }
            if replace {
                let removed = try db.evict(table: tag)
                if removed > 0 { printError("emptied \(tag) in \(db.name) (\(removed) rows)") }
            }
            let count = try DatabaseDump.load(into: db, table: tag, from: input, valueSize: tableConfig.valueSize, keySize: keySize)
            let size = try db.size(table: tag)
            printError("loaded \(count) rows from \(input) into \(tag) of \(db.name) in \(String(format: "%.2f", watch.seconds)) s; it holds \(size) rows")
        }

        if verifyTableFiles, let pdb {
            let directory = try TableDirectory(path: tableConfig.path, dimension: tableConfig.dimension)
            // The same record a server start writes after loading the files (stamp first, as it does).
            let stamp = try directory.fileStamp()
            let record = LoadedTableRecord(content: try directory.fingerprint(), stamp: stamp)
            if let difference = try firstDifference(pdb, table: tableConfig, files: directory, keyWidth: KeyWidth(supportLongLong: single.supportLongLong)) {
                printError("note: \(tag) in \(pdb.name) differs from its table files (\(difference)); no fingerprint recorded, so the next start reloads it from \(tableConfig.path)")
            } else {
                try pdb.recordLoadedFingerprint(record.text, table: tag)
                printError("verified: \(tag) in \(pdb.name) holds exactly the table files at \(tableConfig.path); recorded their fingerprint, so starts do not reload it")
            }
        } else if pdb != nil {
            printError("note: the next server start that loads table files into the persistent database reloads \(tag) from \(tableConfig.path), replacing these rows (see --help)")
        }
    }

    /// Nil when `db`'s table holds exactly the rows of `files` (same keys, same bytes, nothing else);
    /// otherwise what differs first.
    private func firstDifference(_ db: any Database, table: TableConfig, files: TableDirectory, keyWidth: KeyWidth) throws -> String? {
        let size = try db.size(table: table.tag)
        guard size == files.rowCount else { return "it holds \(size) rows, the files \(files.rowCount)" }
        let valueSize = table.valueSize
        var fetched = [UInt8](repeating: 0, count: min(65536, files.rowCount) * valueSize)
        var difference: String?
        var row = 0
        try files.forEachChunk(maxRows: 65536, keyWidth: keyWidth) { keys, vectors in
            guard difference == nil else { return }
            var missing: Int?
            try fetched.withUnsafeMutableBytes { out in
                let rows = UnsafeMutableRawBufferPointer(rebasing: out[0..<(keys.count * valueSize)])
                try db.fetch(table: table.tag, keys: keys, values: rows, valueSize: valueSize) { i in
                    if missing == nil { missing = i }
                }
                if let missing {
                    difference = "key \(keys[missing]) of row \(row + missing) is missing"
                    return
                }
                let expected = UnsafeRawBufferPointer(vectors)
                for i in 0..<keys.count where memcmp(rows.baseAddress! + i * valueSize, expected.baseAddress! + i * valueSize, valueSize) != 0 {
                    difference = "key \(keys[i]) of row \(row + i) has another vector"
                    return
                }
            }
            row += keys.count
        }
        return difference
    }
}

/// Reads `path` without opening the table files (dump and load-dump work without them).
func loadConfigForDatabases(_ path: String, logger: HPSLogger) throws -> ParameterServerConfig {
    let config = try ParameterServerConfig.load(path: path, checkFiles: false)
    for warning in config.warnings { logger.warning("\(path): \(warning)") }
    return config
}

/// `config` reduced to table `table` of model `model` (so loading touches no other table), with a
/// dynamic cache type so that the table is loaded into the databases; and that table.
func singleTable(_ config: ParameterServerConfig, model name: String, table: TableTarget) throws -> (ParameterServerConfig, TableConfig) {
    guard let model = config.model(named: name) else {
        throw HPSError(.unknownModel, subject: "--model \(name)", "no model of that name; the config has: \(config.models.map(\.name).joined(separator: ", "))")
    }
    let index = try table.resolve(in: model)
    let t = model.tables[index]
    var reduced = model
    reduced.sparseFiles = [t.path]
    reduced.embeddingVectorSizes = [t.dimension]
    reduced.defaultValues = [t.defaultValue]
    reduced.maxKeysPerSample = [t.maxKeysPerSample]
    reduced.tableNames = [t.name]
    reduced.useStaticTable = false
    reduced.embeddingCacheType = .dynamic
    var single = config
    single.models = [reduced]
    return (single, reduced.tables[0])
}
