import HPS
import HPSRuntime
import Testing

/// A model whose tables share keys (every table holds keys 0, 5, 10, … with its own vectors), of two vector
/// sizes, served with and without `fuse_embedding_table`.
struct FusionFixture {
    let directory: TemporaryDirectory
    var config: ParameterServerConfig
    let tables: [[Int64: [Float]]]
    let rows: [Int]

    init(rows: [Int] = [900, 400, 700, 300, 500], dims: [Int] = [8, 3, 8, 8, 3], defaults: [Float]? = nil, keys: ((Int, Int) -> Int64)? = nil) throws {
        directory = try TemporaryDirectory()
        var model = ModelConfig()
        model.name = "fused"
        model.deployedDevices = [0]
        model.maxBatchSize = 64
        model.maxKeysPerSample = dims.indices.map { 4 + $0 }
        model.embeddingVectorSizes = dims
        model.defaultValues = defaults ?? dims.map { Float($0) / 10 }
        model.tableNames = dims.indices.map { "t\($0)" }
        model.hitRateThreshold = 1.0
        model.deviceCachePercentage = 0.2
        var tables: [[Int64: [Float]]] = []
        for (t, n) in rows.enumerated() {
            let tableKeys = (0..<n).map { keys?(t, $0) ?? Int64($0) * 5 }  // the same keys in every table
            let vectors = DatabaseConformance.rows(tableKeys, dim: dims[t], salt: Float(t + 1))
            let path = directory.file("table\(t)")
            try TableWriter.write(directory: path, keys: tableKeys, vectors: vectors, dimension: dims[t])
            model.sparseFiles.append(path)
            var map: [Int64: [Float]] = [:]
            for (i, k) in tableKeys.enumerated() { map[k] = Array(vectors[(i * dims[t])..<((i + 1) * dims[t])]) }
            tables.append(map)
        }
        config = ParameterServerConfig()
        config.models = [model]
        config.volatileDatabase.numPartitions = 4
        config.fuseEmbeddingTable = true
        self.tables = tables
        self.rows = rows
    }

    var model: ModelConfig {
        get { config.models[0] }
        set { config.models[0] = newValue }
    }

    func expected(table: Int, keys: [Int64]) -> [Float] {
        let dim = model.embeddingVectorSizes[table]
        let fallback = [Float](repeating: model.defaultValues[table], count: dim)
        return keys.flatMap { tables[table][$0] ?? fallback }
    }

    func server(fused: Bool) throws -> ParameterServer {
        var config = self.config
        config.fuseEmbeddingTable = fused
        if let path = config.persistentDatabase.type == .rocksDB ? config.persistentDatabase.path : nil {
            config.persistentDatabase.path = path + (fused ? "-fused" : "-plain")
        }
        return try HPSRuntime.makeParameterServer(config: config, logger: .silent)
    }

    /// A batch per table: known keys (shared by every table), duplicates, keys beyond the tables, and
    /// (`wild`) keys anywhere in the int64 range.
    func batches(_ rng: inout SplitMix64, wild: Bool) -> [[Int64]] {
        rows.indices.map { t in
            (0..<(1 + Int(rng.next() % UInt64(model.maxQueryLength(table: t))))).map { _ in
                switch rng.next() % 10 {
                case 0: return wild ? Int64(bitPattern: rng.next()) : Int64(rng.next() % (1 << 32))
                case 1: return Int64(rows[t] * 5 + Int(rng.next() % 50))
                default: return Int64(rng.next() % UInt64(min(rows[t], 60))) * 5
                }
            }
        }
    }
}

@Suite struct TableFusionTests {
    func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    @Test func groupsTablesBySizeAndDefaultValue() {
        var model = ModelConfig()
        model.name = "m"
        model.embeddingVectorSizes = [16, 8, 16, 16, 8, 4]
        model.defaultValues = [0, 0, 0, 1, 0, 0]
        model.maxKeysPerSample = [1, 2, 3, 4, 5, 6]
        model.tableNames = ["a", "b", "c", "d", "e", "fused_embedding0"]
        let plan = TableFusion(model: model, fuse: true, keyWidth: .int64)
        #expect(plan.groups.map(\.members) == [[0, 2], [1, 4], [3], [5]])
        #expect(plan.groupOfTable == [0, 1, 0, 2, 1, 3])
        #expect(plan.memberOfTable == [0, 0, 1, 0, 1, 0])
        // HPS's names in ascending vector size, never a table's own name; keys per sample summed.
        #expect(plan.groups.map(\.table.name) == ["fused_embedding1", "fused_embedding0_", "d", "fused_embedding0"])
        #expect(plan.groups[0].table.maxKeysPerSample == 4 && plan.groups[1].table.maxKeysPerSample == 7)
        #expect(plan.groups[2].keySpace == nil && plan.groups[0].keySpace?.memberCount == 2)
        #expect(plan.servedModel.tableCount == 4)
        let off = TableFusion(model: model, fuse: false, keyWidth: .int64)
        #expect(off.groups.map(\.members) == [[0], [1], [2], [3], [4], [5]])
        #expect(off.groups.map(\.table) == model.tables)
    }

    @Test func keySpaceTagsKeysByTable() {
        let wide = FusedKeySpace(memberCount: 26, keyWidth: .int64)
        #expect(wide.memberBits == 5 && wide.keyRange == (-(Int64(1) << 58))...((Int64(1) << 58) - 1))
        var seen = Set<Int64>()
        for member in 0..<26 {
            for key: Int64 in [0, 1, -1, 42, wide.keyRange.lowerBound, wide.keyRange.upperBound] {
                let fused = wide.encode(key, member: member)
                #expect(wide.decode(fused) == (member, key))
                #expect(wide.transform(member: member).apply(key) == fused)
                #expect(seen.insert(fused).inserted)
            }
        }
        #expect(!seen.contains(wide.absentKey))
        for key: Int64 in [.max, .min, wide.keyRange.upperBound + 1, wide.keyRange.lowerBound - 1] {
            #expect(!wide.fits(key) && wide.encode(key, member: 3) == wide.absentKey && wide.transform(member: 3).apply(key) == wide.absentKey)
        }
        let narrow = FusedKeySpace(memberCount: 2, keyWidth: .uint32)
        #expect(narrow.encode(0xFFFF_FFFF, member: 1) == 0x1_FFFF_FFFF && narrow.decode(0x1_FFFF_FFFF) == (1, 0xFFFF_FFFF))
        #expect(narrow.transform(member: 1).apply(7) == 0x1_0000_0007)
    }

    /// A fused group takes the keys of all its tables in one lookup: the limit on keys per lookup applies to
    /// the sum, and the message says which group and how to opt out.
    @Test func fusedGroupKeysPerLookupAreLimited() {
        var config = ParameterServerConfig()
        var model = ModelConfig()
        model.name = "wide"
        model.maxBatchSize = 1 << 20
        model.maxKeysPerSample = [200, 200]  // 2^20 × 200 each is within 2^28; the fused 2^20 × 400 is not
        model.embeddingVectorSizes = [4, 4]
        model.defaultValues = [0, 0]
        config.models = [model]
        #expect(config.limitIssues().isEmpty)
        config.fuseEmbeddingTable = true
        let issue = config.limitIssues().first { $0.path == "models[0].fuse_embedding_table" }
        #expect(issue?.message.contains("fused_embedding0") == true && issue?.message.contains("set fuse_embedding_table false") == true)
        config.models[0].fuseEmbeddingTable = false
        #expect(config.limitIssues().isEmpty)
    }

    @Test func parserWarnsAboutInconsistentDefaultValues() throws {
        let json = """
            {"supportlonglong": true, "fuse_embedding_table": true, "models": [{"model": "m", "sparse_files": ["a", "b", "c"],
              "deployed_device_list": [0], "maxnum_catfeature_query_per_table_per_sample": [1, 1, 1],
              "embedding_vecsize_per_table": [4, 4, 8], "default_value_for_each_table": [0.0, 1.0, 0.0],
              "embedding_table_names": ["x", "y", "z"]}]}
            """
        let config = try ParameterServerConfig.parse(json: json, checkFiles: false)
        let warning = try #require(config.warnings.first { $0.contains("Inconsistent default embedding values for tables to be fused") })
        #expect(warning.contains("models[0]") && warning.contains("x (0.0)") && warning.contains("y (1.0)"))
        #expect(config.fusion(of: config.models[0]).groups.map(\.members) == [[0], [1], [2]])
        // Without the top-level flag (HPS's default) nothing is fused and nothing is said.
        let off = try ParameterServerConfig.parse(json: json.replacingOccurrences(of: "\"fuse_embedding_table\": true", with: "\"fuse_embedding_table\": false"), checkFiles: false)
        #expect(!off.warnings.contains { $0.contains("Inconsistent") })
    }

    /// Fused and unfused servers answer every table identically (and as the table files say), through
    /// single-table and multi-table lookups, with CPU dynamic and static caches, the hash map read directly,
    /// and hash map + RocksDB; keys repeat across the fused tables.
    @Test(arguments: [
        ("dynamic", false), ("static", false), ("direct", false), ("rocks", false), ("dynamic", true), ("direct", true),
    ])
    func fusedAnswersEqualUnfused(mode: String, int32Keys: Bool) throws {
        var fixture = try FusionFixture()
        fixture.config.supportLongLong = !int32Keys
        fixture.model.cpuCache = mode != "direct"
        if mode == "static" { fixture.model.embeddingCacheType = .static }
        if mode == "rocks" {
            fixture.config.persistentDatabase = rocksConfig(fixture.directory.file("rocksdb"))
            fixture.config.volatileDatabase.initialCacheRate = 0.5  // half of the rows only in RocksDB
        }
        let fused = try fixture.server(fused: true)
        let plain = try fixture.server(fused: false)
        let fusedSession = try fused.session(model: "fused", device: 0)
        let plainSession = try plain.session(model: "fused", device: 0)
        #expect(fusedSession.fusion.groups.map(\.members) == [[0, 2, 3], [1, 4]])
        #expect(plainSession.fusion.groups.count == 5)
        if mode == "direct" {
            #expect(fusedSession.direct == [true, true, true, true, true])
        } else {
            #expect(fusedSession.caches[0] === fusedSession.caches[2] && fusedSession.caches[2] === fusedSession.caches[3])
            #expect(fusedSession.caches[1] === fusedSession.caches[4] && fusedSession.caches[0] !== fusedSession.caches[1])
        }
        if mode != "static" {
            // One volatile-database table per group, holding every row of its tables; none per table.
            let vdb = try #require(fused.volatileDatabase)
            let rate = mode == "rocks" ? 0.5 : 1.0
            #expect(try vdb.size(table: "hps_et.fused.fused_embedding0") == Int((Double(fixture.rows[1] + fixture.rows[4]) * rate).rounded(.up)))
            #expect(try vdb.size(table: "hps_et.fused.fused_embedding1") == Int((Double(fixture.rows[0] + fixture.rows[2] + fixture.rows[3]) * rate).rounded(.up)))
            #expect(try vdb.size(table: "hps_et.fused.t0") == 0)
            if mode == "rocks" {
                let pdb = try #require(fused.persistentDatabase)
                #expect(try pdb.size(table: "hps_et.fused.fused_embedding1") == fixture.rows[0] + fixture.rows[2] + fixture.rows[3])
            }
        }
        var rng = SplitMix64(seed: int32Keys ? 17 : 7)
        for round in 0..<12 {
            let batches = fixture.batches(&rng, wild: !int32Keys)
            // The whole model in one call (tables in model order, then a shuffled order with a repeat).
            let order = round % 2 == 0 ? Array(0..<5) : [3, 1, 0, 4, 2, 0]
            let keys = order.map { batches[$0] }
            let fusedMany: [[Float]]
            if int32Keys {
                let flat = keys.flatMap { $0 }.map { Int32(truncatingIfNeeded: $0) }
                let dims = order.map { fixture.model.embeddingVectorSizes[$0] }
                var out = [Float](repeating: .nan, count: zip(keys, dims).reduce(0) { $0 + $1.0.count * $1.1 })
                try flat.withUnsafeBufferPointer { k in
                    try out.withUnsafeMutableBufferPointer { try fusedSession.lookup(tables: order, keys: k, counts: keys.map(\.count), into: $0) }
                }
                var start = 0
                fusedMany = zip(keys, dims).map { k, d in
                    defer { start += k.count * d }
                    return Array(out[start..<(start + k.count * d)])
                }
            } else {
                fusedMany = try fusedSession.lookup(tables: order, keys: keys)
            }
            let plainMany = try plainSession.lookup(tables: order, keys: keys)
            for (j, t) in order.enumerated() {
                let normalized = int32Keys ? keys[j].map { Int64(UInt32(truncatingIfNeeded: $0)) } : keys[j]
                let expected = fixture.expected(table: t, keys: normalized)
                let plainOne = try plainSession.lookup(table: t, keys: keys[j])
                let fusedOne = try fusedSession.lookup(table: t, keys: keys[j])
                // Compared outside #expect, so that a failure names the lookup instead of printing the vectors.
                let plainRight = bits(plainOne) == bits(expected), fusedOneRight = bits(fusedOne) == bits(plainOne)
                let fusedManyRight = bits(fusedMany[j]) == bits(plainOne), plainManyRight = bits(plainMany[j]) == bits(plainOne)
                #expect(plainRight, "round \(round) table \(t): unfused vs table files")
                #expect(fusedOneRight, "round \(round) table \(t): fused single-table lookup vs unfused")
                #expect(fusedManyRight, "round \(round) table \(t): fused multi-table lookup vs unfused")
                #expect(plainManyRight, "round \(round) table \(t): unfused multi-table lookup vs single")
            }
        }
        // The database-only path reads the group's table with tagged keys (static tables live in their caches only).
        if mode != "static" {
            #expect(bits(try fused.lookup(model: "fused", table: 2, keys: [0, 5, 3])) == bits(fixture.expected(table: 2, keys: [0, 5, 3])))
        }
    }

    @Test func refreshAndBackgroundInsertsKeepTablesApart() throws {
        var fixture = try FusionFixture()
        fixture.model.cpuCache = true
        fixture.model.hitRateThreshold = 0  // misses answered with the default now, inserted in the background
        let server = try fixture.server(fused: true)
        let session = try server.session(model: "fused", device: 0)
        let keys: [Int64] = [0, 5, 10, 15]
        _ = try session.lookup(tables: [0, 2, 3], keys: [keys, keys, keys])
        session.waitForBackgroundInserts()
        let again = try session.lookup(tables: [0, 2, 3], keys: [keys, keys, keys])
        for (j, t) in [0, 2, 3].enumerated() { #expect(bits(again[j]) == bits(fixture.expected(table: t, keys: keys))) }
        #expect(try session.refresh() > 0)
        #expect(bits(try session.lookup(table: 3, keys: keys)) == bits(fixture.expected(table: 3, keys: keys)))
    }

    /// The persistent database records what a fused group's table was loaded from (every member's files):
    /// an unchanged restart skips it, a changed member reloads the group.
    @Test func fusedGroupIsNotReloadedUnlessAMemberChanges() throws {
        let fixture = try FusionFixture(rows: [200, 100, 150], dims: [4, 4, 4], defaults: [0, 0, 0])
        let db = RecordingDatabase()
        func start() throws -> ParameterServer {
            var config = fixture.config
            config.volatileDatabase.type = .disabled
            let server = ParameterServer(config: config, volatileDatabase: nil, persistentDatabase: db, logger: .silent)
            try server.loadTables()
            return server
        }
        _ = try start()
        #expect(db.insertedRows == 450)
        #expect(try db.size(table: "hps_et.fused.fused_embedding0") == 450)
        _ = try start()
        #expect(db.insertedRows == 450)
        let keys = (0..<100).map { Int64($0) * 5 }
        try TableWriter.write(directory: fixture.model.sparseFiles[1], keys: keys, vectors: [Float](repeating: 7, count: 400), dimension: 4)
        let reloaded = try start()
        #expect(db.insertedRows == 900)
        #expect(try reloaded.lookup(model: "fused", table: 1, keys: [0, 5]) == [Float](repeating: 7, count: 8))
        #expect(bits(try reloaded.lookup(model: "fused", table: 0, keys: [0, 5])) == bits(fixture.expected(table: 0, keys: [0, 5])))
    }

    @Test func keyOutsideTheFusedKeySpaceIsRefusedNamingTableAndKey() throws {
        let big = Int64(1) << 62  // two tables: the top 2 bits tag the table, keys lie in ±2^61
        let fixture = try FusionFixture(rows: [10, 10], dims: [4, 4], keys: { t, i in t == 1 && i == 3 ? big : Int64(i) })
        #expect {
            _ = try fixture.server(fused: true)
        } throws: { error in
            let text = "\(error)"
            return text.contains("key \(big)") && text.contains("hps_et.fused.t1") && text.contains("fuse_embedding_table false")
        }
        // Without fusion the same tables serve.
        let plain = try fixture.server(fused: false)
        #expect(bits(try plain.session(model: "fused", device: 0).lookup(table: 1, keys: [big])) == bits(fixture.expected(table: 1, keys: [big])))
    }

    @Test func perModelOptOutAndBadMultiTableCalls() throws {
        var fixture = try FusionFixture()
        fixture.model.fuseEmbeddingTable = false
        let server = try fixture.server(fused: true)  // sessions do not keep their server alive
        let session = try server.session(model: "fused", device: 0)
        #expect(!session.fusion.fusesTables)
        let keys: [Int64] = [0, 5]
        #expect(throws: HPSError.self) {
            try keys.withUnsafeBufferPointer { k in
                var out = [Float](repeating: 0, count: 100)
                try out.withUnsafeMutableBufferPointer { try session.lookup(tables: [0, 1], keys: k, counts: [1], into: $0) }
            }
        }
        #expect(throws: HPSError.self) {
            try keys.withUnsafeBufferPointer { k in
                var out = [Float](repeating: 0, count: 100)
                try out.withUnsafeMutableBufferPointer { try session.lookup(tables: [0, 1], keys: k, counts: [1, 2], into: $0) }
            }
        }
        #expect(throws: HPSError.self) {
            try keys.withUnsafeBufferPointer { k in
                var out = [Float](repeating: 0, count: 10)  // 8 + 3 floats needed
                try out.withUnsafeMutableBufferPointer { try session.lookup(tables: [0, 1], keys: k, counts: [1, 1], into: $0) }
            }
        }
        #expect(throws: HPSError.self) { _ = try session.lookup(tables: [7], keys: [[1]]) }
        withExtendedLifetime(server) {}
    }
}
