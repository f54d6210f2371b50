import HPS
import HPSRuntime
import Testing

/// Inputs that used to crash the process or answer wrongly: each becomes a clear error or warning.
@Suite struct ReliabilityTests {
    private func parseIssues(_ json: String, checkFiles: Bool = false) -> [ConfigValidationError.Issue] {
        do {
            _ = try ParameterServerConfig.parse(json: json, file: "ps.json", checkFiles: checkFiles)
            Issue.record("expected a validation error")
            return []
        } catch let error as ConfigValidationError {
            return error.issues
        } catch {
            Issue.record("expected ConfigValidationError, got \(error)")
            return []
        }
    }

    private func model(_ members: String) -> String {
        """
        {"models": [{"model": "m", "sparse_files": ["t0", "t1"], "deployed_device_list": [0],
          "embedding_vecsize_per_table": [4, 8], \(members)}]
        """
    }

    // MARK: Sizes

    @Test func maxQueryLengthSaturatesInsteadOfTrapping() {
        var m = ModelConfig()
        m.maxBatchSize = 1 << 62
        m.maxKeysPerSample = [1 << 62, 3]
        m.embeddingVectorSizes = [4, 4]
        #expect(m.maxQueryLength(table: 0) == Int.max)
        #expect(m.maxQueryLength(table: 1) == Int.max)
        #expect(m.maxQueryLength(table: 7) == 1 << 62)
        #expect(m.lookupBufferBytes == nil)
        m.maxBatchSize = 64
        m.maxKeysPerSample = [2, 26]
        #expect(m.maxQueryLength(table: 1) == 64 * 26)
        #expect(m.lookupBufferBytes == 64 * 26 * (ConfigLimits.lookupBytesPerKey + 2 * 4 * 4))
    }

    @Test func validationNamesEverySizeBeyondItsLimit() {
        let huge = parseIssues(
            model(#""max_batch_size": 4611686018427387904, "maxnum_catfeature_query_per_table_per_sample": [4611686018427387904, 1], "default_value_for_each_table": [0, 0]"#)
                + #", "volatile_db": {"type": "hash_map", "num_partitions": 1099511627776, "max_batch_size": 1e12}, "persistent_db": {"num_threads": 100000}}"#)
        let byPath = Dictionary(huge.map { ($0.path, $0.message) }, uniquingKeysWith: { a, _ in a })
        #expect(byPath["models[0].max_batch_size"]?.contains("more than the limit of 268435456 (2^28)") == true, "\(huge)")
        #expect(byPath["models[0].maxnum_catfeature_query_per_table_per_sample[0]"]?.contains("268435456") == true, "\(huge)")
        #expect(byPath["volatile_db.num_partitions"]?.contains("limit of 4096 partitions") == true, "\(huge)")
        #expect(byPath["volatile_db.max_batch_size"]?.contains("limit of 268435456") == true, "\(huge)")
        #expect(byPath["persistent_db.num_threads"]?.contains("limit of 1024 threads") == true, "\(huge)")

        let product = parseIssues(
            model(#""max_batch_size": 100000000, "maxnum_catfeature_query_per_table_per_sample": [100, 100], "default_value_for_each_table": [0, 0]"#) + "}")
        #expect(product.map(\.path) == [
            "models[0].maxnum_catfeature_query_per_table_per_sample[0]", "models[0].maxnum_catfeature_query_per_table_per_sample[1]",
        ])
        #expect(product.first?.message.contains("max_batch_size 100000000 × 100 = 10000000000 keys per lookup") == true)

        let buffers = parseIssues(
            model(#""max_batch_size": 65536, "maxnum_catfeature_query_per_table_per_sample": [4096, 1], "embedding_vecsize_per_table": [4, 1024], "num_of_worker_buffer_in_pool": 8, "default_value_for_each_table": [0, 0]"#)
                .replacingOccurrences(of: #""embedding_vecsize_per_table": [4, 8], "#, with: "") + "}")
        #expect(buffers.map(\.path) == ["models[0]"], "\(buffers)")
        #expect(buffers.first?.message.contains("num_of_worker_buffer_in_pool 8") == true, "\(buffers)")
    }

    @Test func aServerFromAnOversizedConfigMadeInCodeThrows() throws {
        var fixture = try Fixture()
        fixture.model.maxBatchSize = 100_000_000
        fixture.model.maxKeysPerSample = [100, 100]
        fixture.config.volatileDatabase.type = .hashMap
        fixture.config.volatileDatabase.numPartitions = 1 << 40
        do {
            _ = try fixture.server()
            Issue.record("expected an error")
        } catch let error as ConfigValidationError {
            #expect(error.issues.map(\.path).contains("models[0].maxnum_catfeature_query_per_table_per_sample[0]"))
            #expect(error.issues.map(\.path).contains("volatile_db.num_partitions"))
        }
    }

    @Test func buffersBeyondThisMachinesMemoryAreAnErrorNamingTheBytes() throws {
        var fixture = try Fixture()
        fixture.model.maxBatchSize = 1 << 20
        fixture.model.maxKeysPerSample = [64, 64]  // 2^26 keys × (72 + 64) bytes ≈ 8.5 GiB per device
        fixture.model.deployedDevices = Array(0..<4096)
        #expect(fixture.config.limitIssues().isEmpty)
        #expect(throws: HPSError.self) { try HPSRuntime.checkResources(fixture.config, logger: .silent) }
        do {
            try HPSRuntime.checkResources(fixture.config, logger: .silent)
        } catch let error as HPSError {
            #expect(error.code == .invalidConfig)
            #expect(error.subject == "models[0] (demo)")
            #expect(error.message.contains("4096 device(s)"))
            #expect(error.message.contains("bytes of memory"))
        }
    }

    // MARK: Values

    @Test(arguments: ["1e39", "-1e39", "3.5e38"])
    func defaultValuesBeyondFloat32AreRejected(value: String) {
        let issues = parseIssues(model(#""max_batch_size": 4, "maxnum_catfeature_query_per_table_per_sample": [1, 1], "default_value_for_each_table": [0, \#(value)]"#) + "}")
        #expect(issues.map(\.path) == ["models[0].default_value_for_each_table[1]"])
        #expect(issues.first?.message.contains("does not fit float32") == true, "\(issues)")
    }

    @Test func anInfiniteJSONNumberIsRejected() {
        let issues = parseIssues(model(#""max_batch_size": 4, "maxnum_catfeature_query_per_table_per_sample": [1, 1], "default_value_for_each_table": [1e999, 0]"#) + "}")
        #expect(issues.map(\.path) == ["models[0].default_value_for_each_table[0]"])
        #expect(issues.first?.message.contains("beyond the range") == true, "\(issues)")
        let largest = try? ParameterServerConfig.parse(
            json: model(#""max_batch_size": 4, "maxnum_catfeature_query_per_table_per_sample": [1, 1], "default_value_for_each_table": [3.4028234663852886e38, -1e-50]"#) + "}",
            checkFiles: false)
        #expect(largest?.models[0].defaultValues == [.greatestFiniteMagnitude, -0.0])
    }

    // MARK: Settings that must not be silently ignored

    @Test func initialCacheRateBelowOneNeedsAPersistentDatabase() {
        let issues = parseIssues(
            model(#""max_batch_size": 4, "maxnum_catfeature_query_per_table_per_sample": [1, 1], "default_value_for_each_table": [0, 0]"#)
                + #", "volatile_db": {"type": "hash_map", "initial_cache_rate": 0.5}}"#)
        #expect(issues.map(\.path) == ["volatile_db.initial_cache_rate"])
        #expect(issues.first?.message.contains("persistent_db is disabled") == true)
    }

    @Test func initialCacheRateLoadsThatShareIntoTheVolatileDatabaseAndAnswersStayExact() throws {
        var fixture = try Fixture(rows: [2000, 500])
        fixture.config.volatileDatabase.type = .hashMap
        fixture.config.volatileDatabase.initialCacheRate = 0.25
        fixture.config.persistentDatabase = rocksConfig(fixture.directory.file("rocksdb"))
        fixture.model.deviceCache = false
        let server = try fixture.server()
        let vdb = try #require(server.volatileDatabase)
        #expect(try vdb.size(table: fixture.model.tables[0].tag) == 500)
        #expect(try vdb.size(table: fixture.model.tables[1].tag) == 125)
        #expect(try server.persistentDatabase?.size(table: fixture.model.tables[0].tag) == 2000)
        let keys = fixture.tables[0].keys.sorted() + [-5, 1 << 50]
        let got = try server.lookup(model: "demo", table: 0, keys: keys)
        #expect(got.map(\.bitPattern) == fixture.expected(table: 0, keys: keys).map(\.bitPattern))
    }

    // MARK: Tables

    @Test func thirtyTwoBitKeysThatDoNotFitStopTheLoadNamingTheFileAndKey() throws {
        var fixture = try Fixture(rows: [20, 5])
        let path = fixture.directory.file("wide")
        try TableWriter.write(directory: path, keys: [1, 2, (1 << 32) + 1], vectors: [Float](repeating: 1, count: 24), dimension: 8)
        fixture.model.sparseFiles[0] = path
        fixture.config.supportLongLong = false
        fixture.config.volatileDatabase.type = .hashMap
        do {
            _ = try fixture.server()
            Issue.record("expected an error")
        } catch let error as HPSError {
            #expect(error.code == .invalidTable)
            #expect(error.subject == path + "/key")
            #expect(error.message.contains("row 2 holds key 4294967297"))
        }
    }

    @Test func duplicateKeysAreReportedWhenLoaded() throws {
        var fixture = try Fixture(rows: [20, 5])
        let path = fixture.directory.file("dup")
        try TableWriter.write(directory: path, keys: [1, 2, 3, 2, 9], vectors: (0..<40).map(Float.init), dimension: 8)
        fixture.model.sparseFiles[0] = path
        fixture.config.volatileDatabase.type = .hashMap
        let log = LogCapture()
        let server = try HPSRuntime.makeParameterServer(config: fixture.config, logger: log.logger)
        let warnings = log.all.filter { $0.contains("duplicate key") }
        #expect(warnings.count == 1, "\(log.all)")
        #expect(warnings.first?.contains(path + "/key") == true)
        #expect(warnings.first?.contains("key 2 again at row 3") == true)
        // The later row wins.
        #expect(try server.lookup(model: "demo", table: 0, keys: [2]) == (24..<32).map(Float.init))
        // A table without duplicates loads without the warning.
        let clean = LogCapture()
        var plain = try Fixture(rows: [20, 5])
        plain.config.volatileDatabase.type = .hashMap
        _ = try HPSRuntime.makeParameterServer(config: plain.config, logger: clean.logger)
        #expect(clean.count("duplicate key") == 0)
    }

    @Test func aVolatileDatabaseSmallerThanTheTableWithoutPersistentDatabaseWarns() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TableWriter.write(directory: dir.file("t"), keys: (0..<100).map(Int64.init), vectors: [Float](repeating: 0, count: 100), dimension: 1)
        let json = """
            {"volatile_db": {"type": "hash_map", "num_partitions": 2, "overflow_margin": 10},
             "models": [{"model": "m", "sparse_files": ["t"], "deployed_device_list": [0], "max_batch_size": 4,
               "maxnum_catfeature_query_per_table_per_sample": [1], "embedding_vecsize_per_table": [1],
               "default_value_for_each_table": [0]}]}
            """
        let config = try ParameterServerConfig.parse(json: json, baseDirectory: dir.path, checkFiles: true)
        let warning = config.warnings.first { $0.contains("overflow_margin") }
        #expect(warning?.contains("models[0].sparse_files[0]") == true, "\(config.warnings)")
        #expect(warning?.contains("100 rows") == true)
        #expect(warning?.contains("at most 20") == true)
        let withPersistent = try ParameterServerConfig.parse(
            json: json.replacingOccurrences(of: "\"models\"", with: "\"persistent_db\": {\"type\": \"rocks_db\"}, \"models\""),
            baseDirectory: dir.path, checkFiles: true)
        #expect(!withPersistent.warnings.contains { $0.contains("overflow_margin") })
    }
}
