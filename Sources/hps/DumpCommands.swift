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

            Fused tables (fuse_embedding_table): the tables of a fused group share one database table, \
            hps_et.<model>.fused_embedding<k>, their keys tagged with the table. The dump of such a table \
            holds its rows only, with its own keys: the dump an unfused deployment of the table gives. \
            Bringing the database up to date loads the group's table from the files of all its tables.
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
        let selected = try SelectedTable(parsed, model: target.model, table: target)
        let single = selected.config
        let tableConfig = selected.table
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
        // Loading reads the table files of every table kept in the same database table (a fused group).
        var filesReadable = true
        for member in selected.group.memberTables {
            do {
                _ = try TableDirectory(path: member.path, dimension: member.dimension)
            } catch {
                // A persistent (or shared) database may hold the table without its files; a local hash map cannot.
                guard !useVolatile || db.isShared else { throw error }
                logger.warning("Table \(member.tag): cannot read its table files (\(error)); dumping what \(db.name) holds")
                filesReadable = false
                break
            }
        }
        if filesReadable { try server.loadTable(model: selected.model.name, index: tableConfig.index) }

        let stored = selected.stored.tag
        let rows = try db.size(table: stored)
        guard rows > 0 else {
            let which = selected.member == nil ? "this table" : "this table's fused group (\(stored))"
            throw HPSError(.database, subject: tableConfig.tag, "\(db.name) holds no rows of \(which); nothing to dump")
        }
        let watch = Stopwatch()
        let seconds = { String(format: "%.2f", watch.seconds) }
        if let member = selected.member {
            let written = try DatabaseDump.dump(db, member: member, to: output, keySize: single.keySize)
            printError("dumped \(written) rows of \(tableConfig.tag) (dim \(tableConfig.dimension), fused into \(stored)) from \(db.name) to \(output) in \(seconds()) s")
        } else {
            try DatabaseDump.dump(db, table: stored, to: output, keySize: single.keySize)
            printError("dumped \(rows) rows of \(tableConfig.tag) (dim \(tableConfig.dimension)) from \(db.name) to \(output) in \(seconds()) s")
        }
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

            Fused tables (fuse_embedding_table): the rows go into the fused group's database table, \
            hps_et.<model>.fused_embedding<k>, their keys tagged with the table, so that lookups of the fused \
            model see them; the dump holds the table's own keys (as `hps dump` writes them). A key outside \
            the range a fused table can hold is an error naming the key and the dump, before anything is \
            inserted. --replace removes this table's rows only; a .sst dump is inserted row by row. The \
            group's fingerprint covers the files of all its tables: a start reloads them all, and \
            --verify-table-files compares the whole group with them.
            """
    )

    @OptionGroup var target: TableTarget

    @Option(help: "The dump file to read (.bin or .sst).")
    var input: String

    @Flag(help: "Empty the table in each database before loading (a fused table: its rows in the group's table; default: merge, dump keys overwrite).")
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
        let selected = try SelectedTable(parsed, model: target.model, table: target)
        let single = selected.config
        let tableConfig = selected.table
        let tag = tableConfig.tag
        // The database table written: the table's own, or its fused group's (keys tagged).
        let stored = selected.stored.tag
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
                try db.recordLoadedFingerprint(nil, table: stored)
            }
            if let member = selected.member {
                if replace {
                    let removed = try Self.evictRows(of: member, from: db)
                    if removed > 0 { printError("emptied \(tag) in \(stored) of \(db.name) (\(removed) rows)") }
                }
                let count = try DatabaseDump.load(into: db, member: member, from: input, keySize: keySize)
                let size = try db.size(table: stored)
                printError("loaded \(count) rows from \(input) into \(tag) (fused into \(stored)) of \(db.name) in \(String(format: "%.2f", watch.seconds)) s; \(stored) holds \(size) rows")
            } else {
                if replace {
                    let removed = try db.evict(table: tag)
                    if removed > 0 { printError("emptied \(tag) in \(db.name) (\(removed) rows)") }
                }
                let count = try DatabaseDump.load(into: db, table: tag, from: input, valueSize: tableConfig.valueSize, keySize: keySize)
                let size = try db.size(table: tag)
                printError("loaded \(count) rows from \(input) into \(tag) of \(db.name) in \(String(format: "%.2f", watch.seconds)) s; it holds \(size) rows")
            }
        }

        // What a server start loads into this database table: for a fused table, every table of its group.
        let files = selected.member == nil ? "\(tag) from \(tableConfig.path)" : "\(stored) from the table files of \(selected.memberNames)"
        if verifyTableFiles, let pdb {
            let source = try LoadSource(group: selected.group, tables: selected.model.tables)
            // The same record a server start writes after loading the files (stamp first, as it does).
            let stamp = try source.fileStamp()
            let record = LoadedTableRecord(content: try source.fingerprint(), stamp: stamp)
            if let difference = try Self.firstDifference(pdb, source: source, keyWidth: KeyWidth(supportLongLong: single.supportLongLong)) {
                printError("note: \(stored) in \(pdb.name) differs from its table files (\(difference)); no fingerprint recorded, so the next start reloads \(files)")
            } else {
                try pdb.recordLoadedFingerprint(record.text, table: stored)
                let held = selected.member == nil ? "the table files at \(tableConfig.path)" : "the table files of \(selected.memberNames)"
                printError("verified: \(stored) in \(pdb.name) holds exactly \(held); recorded their fingerprint, so starts do not reload it")
            }
        } else if pdb != nil {
            printError("note: the next server start that loads table files into the persistent database reloads \(files), replacing these rows (see --help)")
        }
    }

    /// Removes the rows of `member` from its fused group's table in `db`, leaving the other members' rows.
    /// - Returns: the rows removed.
    /// - Throws: ``HPSError`` `.database` from `db` when it cannot be read or cannot remove the keys.
    static func evictRows(of member: FusedTableMember, from db: any Database) throws -> Int {
        // Gather first: removing while a database is being iterated is not safe for every backend.
        var keys: [Int64] = []
        try db.forEachChunk(table: member.table.tag, maxChunk: 65536) { chunk, _, _ in
            for fused in chunk where member.untag(fused) != nil { keys.append(fused) }
        }
        var removed = 0
        var start = 0
        while start < keys.count {
            let end = min(keys.count, start + 65536)
            removed += try keys[start..<end].withUnsafeBufferPointer { try db.evict(table: member.table.tag, keys: $0) }
            start = end
        }
        return removed
    }

    /// Nil when `db`'s table of `source` holds exactly the rows of its table files (same keys, same bytes,
    /// nothing else); otherwise what differs first.
    /// - Throws: ``HPSError`` from reading the table files or from `db`.
    static func firstDifference(_ db: any Database, source: LoadSource, keyWidth: KeyWidth) throws -> String? {
        let tag = source.table.tag
        let size = try db.size(table: tag)
        guard size == source.rowCount else { return "it holds \(size) rows, the files \(source.rowCount)" }
        let valueSize = source.table.valueSize
        /// Key `key` of the database table as the table files name it.
        func describe(_ key: Int64, row: Int) -> String {
            guard let keySpace = source.keySpace else { return "key \(key) of row \(row)" }
            let (member, original) = keySpace.decode(key)
            return "key \(original) of table \(source.members[member].table.name)"
        }
        var fetched = [UInt8](repeating: 0, count: min(65536, source.rowCount) * valueSize)
        var difference: String?
        var row = 0
        try source.forEachChunk(maxRows: 65536, keyWidth: keyWidth, progress: nil) { keys, vectors in
            guard difference == nil else { return }
            var missing: Int?
            try fetched.withUnsafeMutableBytes { out in
                let rows = UnsafeMutableRawBufferPointer(rebasing: out[0..<(keys.count * valueSize)])
                try db.fetch(table: tag, keys: keys, values: rows, valueSize: valueSize) { i in
                    if missing == nil { missing = i }
                }
                if let missing {
                    difference = "\(describe(keys[missing], row: row + missing)) is missing"
                    return
                }
                let expected = UnsafeRawBufferPointer(vectors)
                for i in 0..<keys.count where memcmp(rows.baseAddress! + i * valueSize, expected.baseAddress! + i * valueSize, valueSize) != 0 {
                    difference = "\(describe(keys[i], row: row + i)) has another vector"
                    return
                }
            }
            row += keys.count
        }
        return difference
    }
}

/// Reads `path` without opening the table files (dump and load-dump work without them).
/// - Throws: ``HPSError`` from reading or validating the config.
func loadConfigForDatabases(_ path: String, logger: HPSLogger) throws -> ParameterServerConfig {
    let config = try ParameterServerConfig.load(path: path, checkFiles: false)
    for warning in config.warnings { logger.warning("\(path): \(warning)") }
    return config
}

/// The table `hps dump` and `hps load-dump` work on, and the database table holding its rows: its own, or
/// (with `fuse_embedding_table`) its fused group's, where its keys are tagged.
struct SelectedTable {
    /// The configuration reduced to the table's model, with a dynamic cache type so that loading puts the
    /// table into the databases whatever the model serves from.
    let config: ParameterServerConfig
    /// The model as reduced.
    let model: ModelConfig
    /// The selected table.
    let table: TableConfig
    /// The table's group: the table alone, or every table of its fused group.
    let group: TableFusion.Group
    /// The tagging of the table's keys in its group's database table; nil when the table is not fused.
    let member: FusedTableMember?

    /// The database table holding the rows (for a fused table, its group's).
    var stored: TableConfig { group.table }

    /// The names of the tables kept in ``stored``, comma-separated.
    var memberNames: String { group.memberTables.map(\.name).joined(separator: ", ") }

    /// `table` of model `name` in `config`.
    /// - Throws: ``HPSError`` `.unknownModel` naming `--model` for an unknown model; `.unknownTable` for an
    ///   unknown table (see ``TableTarget/resolve(in:)``).
    init(_ config: ParameterServerConfig, model name: String, table target: TableTarget) throws {
        guard var model = config.model(named: name) else {
            throw HPSError(.unknownModel, subject: "--model \(name)", "no model of that name; the config has: \(config.models.map(\.name).joined(separator: ", "))")
        }
        let index = try target.resolve(in: model)
        // Every table stays (fusion groups and their names depend on all of them); only this table's
        // database table is loaded.
        model.useStaticTable = false
        model.embeddingCacheType = .dynamic
        var reduced = config
        reduced.models = [model]
        let fusion = reduced.fusion(of: model)
        self.config = reduced
        self.model = model
        self.table = model.tables[index]
        self.group = fusion.group(ofTable: index)
        self.member = fusion.fusedMember(ofTable: index)
    }
}
