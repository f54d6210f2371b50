import Foundation
import HPS
import HPSRocksDB
import HPSRuntime
import Testing

/// Dumps and loads of tables of a fused group (`fuse_embedding_table`), through ``DatabaseDump`` and through
/// `hps dump` / `hps load-dump`. The references are the table files and the dumps of the same tables from an
/// unfused deployment.
@Suite struct FusedDumpTests {
    typealias C = DatabaseConformance

    func bits(_ rows: [Int64: [Float]]) -> [Int64: [UInt32]] { rows.mapValues { $0.map(\.bitPattern) } }

    func hashMap() -> HashMapDatabase {
        var config = VolatileDatabaseConfig()
        config.type = .hashMap
        config.numPartitions = 4
        return HashMapDatabase(config: config, logger: .silent)
    }

    /// The rows of the dump at `path` (`dim` floats each), read back through a fresh hash map.
    func contents(ofDump path: String, dim: Int) throws -> [Int64: [UInt32]] {
        let db = hashMap()
        try DatabaseDump.load(into: db, table: "hps_et.check.dump", from: path, valueSize: dim * 4)
        var rows: [Int64: [UInt32]] = [:]
        try db.forEachChunk(table: "hps_et.check.dump", maxChunk: 4096) { keys, values, valueSize in
            for (i, key) in keys.enumerated() {
                let row = UnsafeRawBufferPointer(rebasing: values[(i * valueSize)..<((i + 1) * valueSize)])
                rows[key] = (0..<dim).map { row.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self) }
            }
        }
        return rows
    }

    /// A fixture of 5 tables (dims 8, 3, 8, 8, 3: groups {0, 2, 3} and {1, 4}) whose keys repeat across
    /// tables, behind RocksDB only (`rocks`) or a hash map only.
    func fixture(rocks: Bool) throws -> FusionFixture {
        var fixture = try FusionFixture()
        if rocks {
            fixture.config.volatileDatabase.type = .disabled
            fixture.config.persistentDatabase = rocksConfig(fixture.directory.file("rocksdb"))
        } else {
            fixture.config.volatileDatabase.type = .hashMap
        }
        return fixture
    }

    // MARK: DatabaseDump

    @Test(arguments: ["bin", "sst"], [false, true])
    func memberDumpIsTheUnfusedDump(ext: String, rocks: Bool) throws {
        let fixture = try fixture(rocks: rocks)
        defer { fixture.directory.remove() }
        let fused = try fixture.server(fused: true)
        let plain = try fixture.server(fused: false)
        let fusedDB = try #require(rocks ? fused.persistentDatabase : fused.volatileDatabase)
        let plainDB = try #require(rocks ? plain.persistentDatabase : plain.volatileDatabase)
        let fusion = fused.config.fusion(of: fixture.model)
        #expect(fusion.groups.map(\.members) == [[0, 2, 3], [1, 4]])
        for table in fixture.model.tables {
            let member = try #require(fusion.fusedMember(ofTable: table.index))
            #expect(member.table.tag == "hps_et.fused.fused_embedding\(table.dimension == 3 ? 0 : 1)")
            let fusedDump = fixture.directory.file("fused-\(table.name).\(ext)")
            let plainDump = fixture.directory.file("plain-\(table.name).\(ext)")
            #expect(try DatabaseDump.dump(fusedDB, member: member, to: fusedDump) == fixture.rows[table.index])
            try DatabaseDump.dump(plainDB, table: table.tag, to: plainDump)
            let rows = try contents(ofDump: fusedDump, dim: table.dimension)
            #expect(rows == bits(fixture.tables[table.index]), "\(table.name): the dump holds the table files' rows")
            #expect(rows == (try contents(ofDump: plainDump, dim: table.dimension)), "\(table.name): as the unfused dump")
            if rocks && ext == "bin" {
                // RocksDB hands both out in key order: the files are the same bytes.
                #expect(try Data(contentsOf: URL(fileURLWithPath: fusedDump)) == Data(contentsOf: URL(fileURLWithPath: plainDump)))
            }
        }
    }

    @Test(arguments: ["bin", "sst"])
    func fourByteKeysOfAFusedMember(ext: String) throws {
        var fixture = try fixture(rocks: true)
        defer { fixture.directory.remove() }
        fixture.config.supportLongLong = false
        let fused = try fixture.server(fused: true)
        let db = try #require(fused.persistentDatabase)
        let member = try #require(fused.config.fusion(of: fixture.model).fusedMember(ofTable: 4))
        let dump = fixture.directory.file("t4.\(ext)")
        try DatabaseDump.dump(db, member: member, to: dump, keySize: 4)
        #expect(try contents(ofDump: dump, dim: 3) == bits(fixture.tables[4]))
        // Loaded into an empty fused table, the rows come back tagged as the table files' load tags them.
        let copy = hashMap()
        #expect(try DatabaseDump.load(into: copy, member: member, from: dump, keySize: 4) == fixture.rows[4])
        let keys = fixture.tables[4].keys.sorted()
        let tagged = keys.map { member.keySpace.encode($0, member: member.member) }
        let (values, misses, _) = try C.fetch(copy, member.table.tag, tagged, dim: 3)
        #expect(misses.isEmpty)
        #expect(values.map(\.bitPattern) == fixture.expected(table: 4, keys: keys).map(\.bitPattern))
    }

    @Test(arguments: ["bin", "sst"])
    func loadTagsKeysAndLeavesTheOtherMembers(ext: String) throws {
        let fixture = try fixture(rocks: true)
        defer { fixture.directory.remove() }
        let fused = try fixture.server(fused: true)
        let db = try #require(fused.persistentDatabase)
        let member = try #require(fused.config.fusion(of: fixture.model).fusedMember(ofTable: 2))
        let before = try db.size(table: member.table.tag)
        // Keys 0, 5, … are in every table: overwrite some of table 2's, add new ones.
        let keys: [Int64] = [0, 5, 10, 1_000_000, -7]
        let source = hashMap()
        try C.insert(source, "hps_et.x.t", keys, dim: 8, salt: 77)
        let dump = fixture.directory.file("t2.\(ext)")
        try DatabaseDump.dump(source, table: "hps_et.x.t", to: dump)
        #expect(try DatabaseDump.load(into: db, member: member, from: dump) == keys.count)
        #expect(try db.size(table: member.table.tag) == before + 2)
        for t in [0, 2, 3] {
            let expected = t == 2 ? C.rows(keys, dim: 8, salt: 77) : fixture.expected(table: t, keys: keys)
            let got = try fused.lookup(model: "fused", table: t, keys: keys)
            #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "table \(t)")
        }
    }

    @Test(arguments: ["bin", "sst"])
    func keyOutsideTheFusedKeySpaceIsRejectedBeforeInserting(ext: String) throws {
        let fixture = try fixture(rocks: true)
        defer { fixture.directory.remove() }
        let fused = try fixture.server(fused: true)
        let db = try #require(fused.persistentDatabase)
        let member = try #require(fused.config.fusion(of: fixture.model).fusedMember(ofTable: 3))
        // 3 tables: 2 tag bits, keys in ±2^61.
        #expect(member.keySpace.keyRange.lowerBound == -(1 << 61) && member.keySpace.keyRange.upperBound == (1 << 61) - 1)
        let before = try db.size(table: member.table.tag)
        let source = hashMap()
        try C.insert(source, "hps_et.x.t", [1, 2, 1 << 61, 3], dim: 8)
        let dump = fixture.directory.file("wide.\(ext)")
        try DatabaseDump.dump(source, table: "hps_et.x.t", to: dump)
        let error = try #require(throws: HPSError.self) { try DatabaseDump.load(into: db, member: member, from: dump) }
        #expect(error.code == .invalidTable)
        #expect(error.subject == dump)
        #expect(error.message.contains("key 2305843009213693952 of table hps_et.fused.t3"), "\(error)")
        #expect(error.message.contains("fuse_embedding_table false"))
        #expect(try db.size(table: member.table.tag) == before, "nothing is inserted")
        // The same message as loading such a key from table files.
        let fromFiles = member.keySpace.rangeError(key: 1 << 61, table: fixture.model.tables[3], file: dump)
        #expect(error.message == fromFiles.message)
    }

    // MARK: The CLI

    /// `fixture`'s model as a JSON config: RocksDB at `persistentPath` (relative to the fixture), or a hash
    /// map only when nil.
    func jsonConfig(_ fixture: FusionFixture, fused: Bool, persistentPath: String?, initializeAfterStartup: Bool = true) -> String {
        let model = fixture.model
        let quoted = { (items: [String]) in items.map { "\"\($0)\"" }.joined(separator: ", ") }
        let databases = persistentPath.map {
            #""volatile_db": {"type": "disabled"}, "persistent_db": {"type": "rocks_db", "path": "\#(fixture.directory.file($0))", "num_threads": 2, "initialize_after_startup": \#(initializeAfterStartup)}"#
        } ?? #""volatile_db": {"type": "hash_map", "num_partitions": 2}"#
        return """
            {
              "supportlonglong": true,
              "fuse_embedding_table": \(fused),
              \(databases),
              "models": [{
                "model": "fused",
                "sparse_files": [\(quoted(model.sparseFiles))],
                "embedding_table_names": [\(quoted(model.tableNames))],
                "deployed_device_list": [0],
                "max_batch_size": \(model.maxBatchSize),
                "maxnum_catfeature_query_per_table_per_sample": \(model.maxKeysPerSample),
                "embedding_vecsize_per_table": \(model.embeddingVectorSizes),
                "default_value_for_each_table": \(model.defaultValues),
                "gpucache": true,
                "gpucacheper": 0.2,
                "hit_rate_threshold": 1.0
              }]
            }
            """
    }

    func hps(_ arguments: [String], in directory: TemporaryDirectory, sourceLocation: SourceLocation = #_sourceLocation) throws -> HPSBinary.Result {
        let result = try HPSBinary.run(arguments, in: directory)
        #expect(result.status == 0, "hps \(arguments.joined(separator: " ")): \(result.errors)", sourceLocation: sourceLocation)
        return result
    }

    /// Session lookups of every table of `server`'s model, compared bit for bit with `rows` (key → vector
    /// per table), keys of other tables and unknown keys getting the default.
    func expectSessionAnswers(_ server: ParameterServer, _ fixture: FusionFixture, _ rows: [[Int64: [Float]]], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let session = try server.session(model: "fused", device: 0)
        let everyKey = Set(rows.flatMap(\.keys))
        for table in fixture.model.tables {
            let fallback = [Float](repeating: table.defaultValue, count: table.dimension)
            let keys = everyKey.sorted() + [1 << 40, -3]
            let limit = fixture.model.maxQueryLength(table: table.index)
            var got: [Float] = []
            for start in stride(from: 0, to: keys.count, by: limit) {
                got += try session.lookup(table: table.index, keys: Array(keys[start..<min(keys.count, start + limit)]))
            }
            let expected = keys.flatMap { rows[table.index][$0] ?? fallback }
            let differing = (0..<keys.count).filter { i in
                (0..<table.dimension).contains { got[i * table.dimension + $0].bitPattern != expected[i * table.dimension + $0].bitPattern }
            }
            #expect(differing.isEmpty, "table \(table.name): keys \(differing.prefix(5).map { keys[$0] }) differ", sourceLocation: sourceLocation)
        }
    }

    @Test func dumpOfAFusedTableIsTheUnfusedDump() throws {
        let fixture = try FusionFixture()
        defer { fixture.directory.remove() }
        let dir = fixture.directory
        let fusedRocks = try dir.write(jsonConfig(fixture, fused: true, persistentPath: "fused-db"), to: "fused-rocks.json")
        let plainRocks = try dir.write(jsonConfig(fixture, fused: false, persistentPath: "plain-db"), to: "plain-rocks.json")
        let fusedMap = try dir.write(jsonConfig(fixture, fused: true, persistentPath: nil), to: "fused-map.json")
        let plainMap = try dir.write(jsonConfig(fixture, fused: false, persistentPath: nil), to: "plain-map.json")
        for table in fixture.model.tables {
            var dumps: [String: [Int64: [UInt32]]] = [:]
            for (name, config) in [("fused-rocks", fusedRocks), ("plain-rocks", plainRocks), ("fused-map", fusedMap), ("plain-map", plainMap)] {
                let output = dir.file("\(name)-\(table.name).bin")
                let result = try hps(["dump", "--config", config, "--model", "fused", "--table", table.name, "--output", output], in: dir)
                if name.hasPrefix("fused") {
                    #expect(result.errors.contains("dumped \(fixture.rows[table.index]) rows of \(table.tag) (dim \(table.dimension), fused into hps_et.fused.fused_embedding"), "\(result.errors)")
                } else {
                    #expect(result.errors.contains("dumped \(fixture.rows[table.index]) rows of \(table.tag) (dim \(table.dimension)) from"), "\(result.errors)")
                }
                dumps[name] = try contents(ofDump: output, dim: table.dimension)
            }
            let files = bits(fixture.tables[table.index])
            for (name, rows) in dumps { #expect(rows == files, "\(name) dump of \(table.name)") }
            // Both RocksDB dumps come in key order: the same bytes.
            let fusedBytes = try Data(contentsOf: URL(fileURLWithPath: dir.file("fused-rocks-\(table.name).bin")))
            #expect(fusedBytes == (try Data(contentsOf: URL(fileURLWithPath: dir.file("plain-rocks-\(table.name).bin")))))
        }
        // The fused database holds the groups' tables, not one per table.
        do {
            let db = try openRocks(dir.file("fused-db"))
            #expect(try db.findTables(model: "fused").sorted() == ["hps_et.fused.fused_embedding0", "hps_et.fused.fused_embedding1"])
        }
        // A second dump finds the group up to date (its load record covers every member's files).
        let again = try hps(["dump", "--config", fusedRocks, "--model", "fused", "--table", "t3", "--output", dir.file("again.sst")], in: dir)
        #expect(again.errors.contains("hps_et.fused.fused_embedding1: rocks_db already holds these table files"), "\(again.errors)")
        #expect(try contents(ofDump: dir.file("again.sst"), dim: 8) == bits(fixture.tables[3]))
    }

    @Test func loadDumpIntoAFusedDeploymentIsWhatSessionsSee() throws {
        let fixture = try FusionFixture()
        defer { fixture.directory.remove() }
        let dir = fixture.directory
        let fusedConfig = try dir.write(jsonConfig(fixture, fused: true, persistentPath: "fused-db"), to: "fused.json")
        let serveConfig = try dir.write(jsonConfig(fixture, fused: true, persistentPath: "fused-db", initializeAfterStartup: false), to: "serve.json")
        _ = try HPSRuntime.makeParameterServer(configFile: fusedConfig, logger: .silent)  // loads the fused groups
        let groupTag = "hps_et.fused.fused_embedding1"
        let sizeBefore = try openRocks(dir.file("fused-db")).size(table: groupTag)

        // A dump of table t2 (key 0, 5, 10 are in t0 and t3 too): two rows changed, two new.
        let changed: [Int64] = [0, 10, 123_456_789, -42]
        let source = hashMap()
        try C.insert(source, "hps_et.x.t2", changed, dim: 8, salt: 77)
        try DatabaseDump.dump(source, table: "hps_et.x.t2", to: dir.file("t2.bin"))
        var result = try hps(["load-dump", "--config", fusedConfig, "--model", "fused", "--table", "t2", "--input", dir.file("t2.bin")], in: dir)
        #expect(result.errors.contains("loaded 4 rows from \(dir.file("t2.bin")) into hps_et.fused.t2 (fused into \(groupTag))"), "\(result.errors)")
        #expect(result.errors.contains("reloads \(groupTag) from the table files of t0, t2, t3"), "\(result.errors)")
        do {
            let db = try openRocks(dir.file("fused-db"))
            #expect(try db.size(table: groupTag) == sizeBefore + 2)
            #expect(try db.loadedFingerprint(table: groupTag) == nil)
            #expect(try db.loadedFingerprint(table: "hps_et.fused.fused_embedding0") != nil)
            #expect(try !db.findTables(model: "fused").contains("hps_et.fused.t2"), "no unfused table is written")
        }
        var expected = fixture.tables
        for key in changed { expected[2][key] = C.row(key, dim: 8, salt: 77) }
        do {
            let server = try HPSRuntime.makeParameterServer(configFile: serveConfig, logger: .silent)
            try expectSessionAnswers(server, fixture, expected)
        }

        // --replace removes t2's rows only: t0 and t3 keep theirs.
        let few: [Int64] = [5, 99_999]
        let small = hashMap()
        try C.insert(small, "hps_et.x.t2", few, dim: 8, salt: 5)
        try DatabaseDump.dump(small, table: "hps_et.x.t2", to: dir.file("few.sst"))
        result = try hps(["load-dump", "--config", fusedConfig, "--model", "fused", "--table", "2", "--input", dir.file("few.sst"), "--replace"], in: dir)
        #expect(result.errors.contains("emptied hps_et.fused.t2 in \(groupTag) of rocks_db (\(fixture.rows[2] + 2) rows)"), "\(result.errors)")
        expected[2] = [:]
        for key in few { expected[2][key] = C.row(key, dim: 8, salt: 5) }
        do {
            let server = try HPSRuntime.makeParameterServer(configFile: serveConfig, logger: .silent)
            try expectSessionAnswers(server, fixture, expected)
            #expect(try server.persistentDatabase?.size(table: groupTag) == fixture.rows[0] + fixture.rows[3] + few.count)
        }

        // A key a fused table cannot hold: an error naming the key and the dump; nothing changes.
        let wide = hashMap()
        try C.insert(wide, "hps_et.x.t2", [1, 1 << 61], dim: 8)
        try DatabaseDump.dump(wide, table: "hps_et.x.t2", to: dir.file("wide.bin"))
        result = try HPSBinary.run(["load-dump", "--config", fusedConfig, "--model", "fused", "--table", "t2", "--input", dir.file("wide.bin")], in: dir)
        #expect(result.status != 0)
        #expect(result.errors.contains("key 2305843009213693952 of table hps_et.fused.t2 lies outside"), "\(result.errors)")
        #expect(result.errors.contains(dir.file("wide.bin")))
        #expect(try openRocks(dir.file("fused-db")).size(table: groupTag) == fixture.rows[0] + fixture.rows[3] + few.count)
    }

    @Test func restoreAFusedDeploymentFromUnfusedDumps() throws {
        let fixture = try FusionFixture()
        defer { fixture.directory.remove() }
        let dir = fixture.directory
        let plainConfig = try dir.write(jsonConfig(fixture, fused: false, persistentPath: "plain-db"), to: "plain.json")
        let fusedConfig = try dir.write(jsonConfig(fixture, fused: true, persistentPath: "restored"), to: "fused.json")
        for table in fixture.model.tables {
            _ = try hps(["dump", "--config", plainConfig, "--model", "fused", "--table", table.name, "--output", dir.file("\(table.name).sst")], in: dir)
        }
        // Group {0, 2, 3}: verified only once every member is loaded (the record covers all their files).
        var result = try hps(["load-dump", "--config", fusedConfig, "--model", "fused", "--table", "t0", "--input", dir.file("t0.sst"), "--verify-table-files"], in: dir)
        #expect(result.errors.contains("note: hps_et.fused.fused_embedding1 in rocks_db differs from its table files (it holds 900 rows, the files 1900)"), "\(result.errors)")
        _ = try hps(["load-dump", "--config", fusedConfig, "--model", "fused", "--table", "t2", "--input", dir.file("t2.sst")], in: dir)
        result = try hps(["load-dump", "--config", fusedConfig, "--model", "fused", "--table", "t3", "--input", dir.file("t3.sst"), "--verify-table-files"], in: dir)
        #expect(result.errors.contains("verified: hps_et.fused.fused_embedding1 in rocks_db holds exactly the table files of t0, t2, t3"), "\(result.errors)")
        // Group {1, 4}: t1's keys with other vectors are not the files.
        let other = hashMap()
        try C.insert(other, "hps_et.x.t1", Array(fixture.tables[1].keys), dim: 3, salt: 99)
        try DatabaseDump.dump(other, table: "hps_et.x.t1", to: dir.file("other-t1.bin"))
        _ = try hps(["load-dump", "--config", fusedConfig, "--model", "fused", "--table", "t1", "--input", dir.file("other-t1.bin")], in: dir)
        result = try hps(["load-dump", "--config", fusedConfig, "--model", "fused", "--table", "t4", "--input", dir.file("t4.sst"), "--verify-table-files"], in: dir)
        #expect(result.errors.contains("differs from its table files (key 0 of table t1 has another vector)"), "\(result.errors)")

        // The next start keeps the verified group and reloads the other; both then answer like the files.
        let log = LogCapture()
        let server = try HPSRuntime.makeParameterServer(configFile: fusedConfig, logger: log.logger)
        #expect(log.count("Table hps_et.fused.fused_embedding1: rocks_db already holds") == 1, "\(log.all)")
        #expect(log.count("Table: hps_et.fused.fused_embedding0; cached 900 / 900 embeddings in rocks_db") == 1, "\(log.all)")
        try expectSessionAnswers(server, fixture, fixture.tables)
    }
}
