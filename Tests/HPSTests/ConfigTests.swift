import Testing
@testable import HPS

// MARK: Helpers

/// The keys every model needs, as raw JSON text, in order.
private let baseModel: [(String, String)] = [
    ("model", "\"m\""),
    ("sparse_files", "[\"t0\", \"t1\"]"),
    ("deployed_device_list", "[0]"),
    ("maxnum_catfeature_query_per_table_per_sample", "[2, 3]"),
    ("embedding_vecsize_per_table", "[4, 8]"),
    ("default_value_for_each_table", "[0.5, 1.0]"),
]

/// One model object built from `baseModel`: `overrides` replaces or adds keys (raw JSON values; nil removes the
/// key), `extraModelKeys` are appended as written.
private func modelJSON(_ overrides: [String: String?] = [:], extraModelKeys: [(String, String)] = []) -> String {
    var members: [(String, String)] = []
    for (key, value) in baseModel {
        if let override = overrides[key] {
            if let override { members.append((key, override)) }
        } else {
            members.append((key, value))
        }
    }
    for (key, value) in overrides.sorted(by: { $0.key < $1.key }) where !baseModel.contains(where: { $0.0 == key }) {
        if let value { members.append((key, value)) }
    }
    members += extraModelKeys
    return "{" + members.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
}

/// A configuration with one model (see `modelJSON`) and `top`: extra top-level members as raw JSON text.
private func configJSON(model overrides: [String: String?] = [:], extraModelKeys: [(String, String)] = [], top: String = "") -> String {
    let model = modelJSON(overrides, extraModelKeys: extraModelKeys)
    return "{\"models\": [\(model)]" + (top.isEmpty ? "" : ", " + top) + "}"
}

private func parse(_ json: String, checkFiles: Bool = false, base: String? = nil) throws -> ParameterServerConfig {
    try ParameterServerConfig.parse(json: json, file: "ps.json", baseDirectory: base, checkFiles: checkFiles)
}

/// The issues of the validation error `json` must raise.
private func validationIssues(
    _ json: String, checkFiles: Bool = false, base: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
) -> [ConfigValidationError.Issue] {
    do {
        let config = try parse(json, checkFiles: checkFiles, base: base)
        Issue.record("expected a validation error, got a config with \(config.models.count) models", sourceLocation: sourceLocation)
        return []
    } catch let error as ConfigValidationError {
        #expect(error.file == "ps.json", sourceLocation: sourceLocation)
        return error.issues
    } catch {
        Issue.record("expected ConfigValidationError, got \(error)", sourceLocation: sourceLocation)
        return []
    }
}

/// Expects exactly one issue at `path` whose message contains every fragment.
private func expectIssue(
    _ json: String, at path: String, containing fragments: [String], checkFiles: Bool = false, base: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let issues = validationIssues(json, checkFiles: checkFiles, base: base, sourceLocation: sourceLocation)
    #expect(issues.count == 1, "\(issues)", sourceLocation: sourceLocation)
    guard let issue = issues.first(where: { $0.path == path }) else {
        Issue.record("no issue at \(path): \(issues)", sourceLocation: sourceLocation)
        return
    }
    for fragment in fragments {
        #expect(issue.message.contains(fragment), "\"\(fragment)\" not in: \(issue.message)", sourceLocation: sourceLocation)
    }
}

/// The §2.6 example of the reference, verbatim.
private let referenceExample = """
    {
      "supportlonglong": true,
      "fuse_embedding_table": false,
      "volatile_db": {
        "type": "hash_map", "num_partitions": 8, "allocation_rate": 268435456, "max_batch_size": 65536,
        "overflow_margin": 10000000, "overflow_policy": "evict_random", "overflow_resolution_target": 0.8,
        "initial_cache_rate": 1.0, "cache_missed_embeddings": false, "update_filters": [".+"],
        "address": "127.0.0.1:7000", "user_name": "default", "password": "", "num_node_connections": 5,
        "shared_memory_size": 17179869184, "shared_memory_name": "hctr_mp_hash_map_database",
        "shared_memory_auto_remove": true, "enable_tls": false
      },
      "persistent_db": { "type": "rocks_db", "path": "/tmp/rocksdb", "num_threads": 16,
                         "read_only": false, "max_batch_size": 65536, "update_filters": [".+"] },
      "update_source": { "type": "kafka_message_queue", "brokers": "127.0.0.1:9092",
                         "metadata_refresh_interval_ms": 30000, "poll_timeout_ms": 500,
                         "receive_buffer_size": 262144, "max_batch_size": 8192,
                         "failure_backoff_ms": 50, "max_commit_interval": 32 },
      "models": [{
        "model": "wdl",
        "sparse_files": ["/wdl_infer/model/wdl/1/wdl0_sparse_20000.model", "/wdl_infer/model/wdl/1/wdl1_sparse_20000.model"],
        "dense_file": "/wdl_infer/model/wdl/1/wdl_dense_20000.model",
        "num_of_worker_buffer_in_pool": 4, "num_of_refresher_buffer_in_pool": 1,
        "deployed_device_list": [0], "max_batch_size": 64,
        "default_value_for_each_table": [0.0, 0.0],
        "maxnum_catfeature_query_per_table_per_sample": [2, 26],
        "embedding_vecsize_per_table": [1, 15],
        "embedding_table_names": ["table1", "table2"],
        "refresh_delay": 0, "refresh_interval": 0, "hit_rate_threshold": 0.9,
        "gpucacheper": 0.1, "gpucache": true, "embedding_cache_type": "dynamic",
        "cache_refresh_percentage_per_iteration": 0.2, "use_context_stream": false
      }]
    }
    """

// MARK: JSON

extension ConfigTests {
    @Suite struct JSONParsing {
        @Test func integersAndFractionsStayDistinctAndKeysKeepTheirOrder() throws {
            let value = try JSONValue.parse(
                #"{"z": 1, "b": 1.0, "c": -2e3, "d": 9223372036854775807, "e": 92233720368547758070, "a": [true, null, "x"]}"#)
            guard case .object(let object) = value else {
                Issue.record("expected an object")
                return
            }
            #expect(object.keys == ["z", "b", "c", "d", "e", "a"])
            #expect(object["z"] == .int(1))
            #expect(object["b"] == .double(1.0))
            #expect(object["c"] == .double(-2000))
            #expect(object["d"] == .int(Int.max))
            #expect(object["e"] == .double(9.2233720368547758070e19))
            #expect(object["a"] == .array([.bool(true), .null, .string("x")]))
        }

        @Test func stringEscapesAreDecoded() throws {
            let value = try JSONValue.parse(#"["a\"b\\c\/\n\t\u00e9\ud83d\ude00", "é"]"#)
            #expect(value == .array([.string("a\"b\\c/\n\té😀"), .string("é")]))
            #expect(value.description == #"["a\"b\\c/\n\té😀","é"]"#)
        }

        @Test func duplicateKeysWarnAndTheLastValueWins() throws {
            var warnings: [String] = []
            let value = try JSONValue.parse("{\"a\": 1,\n \"a\": 2}", warnings: &warnings)
            #expect(value["a"] == .int(2))
            #expect(warnings == ["duplicate key \"a\" at line 2, column 2; the last value is used"])
        }

        @Test(arguments: [
            ("", 1, 1, "the document is empty"),
            ("[1,]", 1, 4, "expected a JSON value, found ']'"),
            ("{\"a\" 1}", 1, 6, "expected ':' after key \"a\""),
            ("{\"a\": 1 \"b\": 2}", 1, 9, "expected ',' or '}', found '\"'"),
            ("01", 1, 2, "leading zeros"),
            ("\"abc", 1, 5, "unterminated string"),
            ("tru", 1, 1, "found 'tru'"),
            ("[1] x", 1, 5, "unexpected 'x' after the end"),
            ("\"a\tb\"", 1, 3, "control character"),
            ("{\"a\": 1,\n \"b\": nul}", 2, 7, "found 'nul'"),
            ("[\"é\", x]", 1, 7, "found 'x'"),
            ("[1.]", 1, 4, "expected a digit after '.'"),
            ("\"\\q\"", 1, 3, "invalid escape"),
        ])
        func syntaxErrorsNameLineAndColumn(text: String, line: Int, column: Int, fragment: String) {
            do {
                _ = try JSONValue.parse(text)
                Issue.record("expected a syntax error for \(text)")
            } catch {
                #expect(error.line == line, "\(error)")
                #expect(error.column == column, "\(error)")
                #expect(error.message.contains(fragment), "\(error)")
                #expect(error.description.hasPrefix("invalid JSON at line \(line), column \(column): "))
            }
        }
    }
}

// MARK: Configuration

@Suite struct ConfigTests {
    @Test func syntaxErrorInConfigNamesFileLineAndColumn() {
        let json = "{\n  \"models\": [\n    {\"model\": \"m\" \"x\": 1}\n  ]\n}"
        do {
            _ = try parse(json)
            Issue.record("expected a syntax error")
        } catch let error as HPSError {
            #expect(error.code == .invalidConfig)
            #expect(error.subject == "ps.json")
            #expect(error.message == "invalid JSON at line 3, column 19: expected ',' or '}', found '\"'")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func missingConfigFileIsAnIOError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        do {
            _ = try ParameterServerConfig.load(path: dir.file("absent.json"))
            Issue.record("expected an error")
        } catch let error as HPSError {
            #expect(error.code == .io)
            #expect(error.subject == dir.file("absent.json"))
            #expect(error.underlying != nil)
        }
    }

    @Test func rootMustBeAnObject() {
        expectIssue("[1, 2]", at: "", containing: ["must be a JSON object", "array"])
    }

    @Test func modelsAreRequiredAndNonEmpty() {
        expectIssue("{}", at: "models", containing: ["required key is missing"])
        expectIssue(#"{"models": []}"#, at: "models", containing: ["at least one model"])
        expectIssue(#"{"models": {}}"#, at: "models", containing: ["expected an array"])
    }

    @Test func everyMissingRequiredModelKeyIsReportedAtOnce() {
        let issues = validationIssues(#"{"models": [{"max_batch_size": 8}]}"#)
        let paths = Set(issues.map(\.path))
        #expect(
            paths == [
                "models[0].model", "models[0].sparse_files", "models[0].deployed_device_list",
                "models[0].maxnum_catfeature_query_per_table_per_sample", "models[0].embedding_vecsize_per_table",
                "models[0].default_value_for_each_table",
            ])
        #expect(issues.allSatisfy { $0.message.contains("required key is missing") })
    }

    @Test func badListElementsAreReportedOnce() {
        expectIssue(
            configJSON(model: ["sparse_files": "[\"t0\", 1]"]), at: "models[0].sparse_files[1]",
            containing: ["expected a string, found integer 1"])
        expectIssue(
            configJSON(model: ["deployed_device_list": "[0, 0]"]), at: "models[0].deployed_device_list[1]",
            containing: ["device 0 is listed twice"])
        expectIssue(
            configJSON(model: ["deployed_device_list": "[-1]"]), at: "models[0].deployed_device_list[0]",
            containing: ["must be at least 0, found -1"])
    }

    @Test func nonObjectModelsAreReportedAndKeepTheirIndex() {
        let model = modelJSON()
        let issues = validationIssues("{\"models\": [1, \(model), \(model)]}")
        #expect(issues.map(\.path) == ["models[0]", "models[2].model"])
        #expect(issues.last?.message == "duplicate model name \"m\" (also models[1])")
    }

    @Test func emptyDeviceListIsAnError() {
        expectIssue(configJSON(model: ["deployed_device_list": "[]"]), at: "models[0].deployed_device_list", containing: ["at least one device"])
    }

    @Test(arguments: [
        ("sparse_files", "[\"t0\"]", "models[0].embedding_vecsize_per_table", "has 2 entries but sparse_files has 1"),
        ("maxnum_catfeature_query_per_table_per_sample", "[2]", "models[0].maxnum_catfeature_query_per_table_per_sample",
         "has 1 entry but embedding_vecsize_per_table has 2"),
        ("default_value_for_each_table", "[0, 0, 0]", "models[0].default_value_for_each_table",
         "has 3 entries but embedding_vecsize_per_table has 2"),
        ("embedding_table_names", "[\"a\"]", "models[0].embedding_table_names",
         "has 1 entry but embedding_vecsize_per_table has 2"),
    ])
    func listLengthMismatchesAreReported(key: String, value: String, path: String, message: String) {
        expectIssue(configJSON(model: [key: value]), at: path, containing: [message])
    }

    @Test func moreVectorSizesThanSparseFilesMatchesTheDocumentedMessage() {
        let issues = validationIssues(
            configJSON(model: [
                "embedding_vecsize_per_table": "[4, 8, 16]", "maxnum_catfeature_query_per_table_per_sample": "[1, 1, 1]",
            ]))
        #expect(issues.map(\.description) == ["models[0].embedding_vecsize_per_table: has 3 entries but sparse_files has 2"])
    }

    @Test func shorterDefaultValuesArePaddedWithZero() throws {
        let config = try parse(configJSON(model: ["default_value_for_each_table": "[0.5]"]))
        #expect(config.models[0].defaultValues == [0.5, 0])
        #expect(config.models[0].tables.map(\.defaultValue) == [0.5, 0])
        #expect(config.warnings.contains { $0.contains("default_value_for_each_table") && $0.contains("0.0") })
    }

    @Test func invalidModelAndTableNamesAreReported() {
        expectIssue(configJSON(model: ["model": "\"my.model\""]), at: "models[0].model", containing: ["\"my.model\"", "[a-zA-Z0-9_-]"])
        expectIssue(configJSON(model: ["model": "\"\""]), at: "models[0].model", containing: ["not a valid model name"])
        let long = String(repeating: "x", count: 121)
        expectIssue(configJSON(model: ["model": "\"\(long)\""]), at: "models[0].model", containing: ["1 to 120"])
        expectIssue(
            configJSON(model: ["embedding_table_names": "[\"ok\", \"a b\"]"]), at: "models[0].embedding_table_names[1]",
            containing: ["\"a b\" is not a valid table name"])
    }

    @Test func duplicateModelAndTableNamesAreReported() {
        let model = modelJSON()
        expectIssue("{\"models\": [\(model), \(model)]}", at: "models[1].model", containing: ["duplicate model name \"m\"", "models[0]"])
        expectIssue(
            configJSON(model: ["embedding_table_names": "[\"t\", \"t\"]"]), at: "models[0].embedding_table_names[1]",
            containing: ["duplicate table name \"t\""])
    }

    @Test func unknownTypeStringsAreErrorsListingTheAcceptedValues() {
        expectIssue(
            configJSON(top: #""volatile_db": {"type": "memcached"}"#), at: "volatile_db.type",
            containing: ["unknown volatile database type \"memcached\"", "\"hash_map\" (or \"hashmap\"", "\"redis_cluster\""])
        expectIssue(
            configJSON(top: #""volatile_db": {"type": "hash_map", "overflow_policy": "lru"}"#), at: "volatile_db.overflow_policy",
            containing: ["unknown overflow policy \"lru\"", "\"evict_least_used\" (or \"least_used\")", "\"evict_oldest\""])
        expectIssue(
            configJSON(model: ["embedding_cache_type": "\"hybrid\""]), at: "models[0].embedding_cache_type",
            containing: ["unknown embedding cache type \"hybrid\"", "\"dynamic\"", "\"static\"", "\"uvm\""])
        expectIssue(
            configJSON(top: #""persistent_db": {"type": "leveldb"}"#), at: "persistent_db.type",
            containing: ["unknown persistent database type", "\"rocks_db\""])
        expectIssue(
            configJSON(top: #""update_source": {"type": "pulsar"}"#), at: "update_source.type",
            containing: ["unknown update source type", "\"kafka_message_queue\""])
    }

    @Test func rocksDBIsNotAVolatileDatabase() {
        expectIssue(configJSON(top: #""volatile_db": {"type": "rocksdb"}"#), at: "volatile_db.type", containing: ["persistent database"])
        expectIssue(configJSON(top: #""persistent_db": {"type": "redis"}"#), at: "persistent_db.type", containing: ["volatile database"])
    }

    @Test func wrongJSONTypesAreReportedWithTheirPaths() {
        let json = configJSON(
            model: [
                "max_batch_size": "\"64\"", "gpucache": "\"yes\"", "embedding_vecsize_per_table": "[4, \"8\"]",
                "num_of_worker_buffer_in_pool": "2.5", "deployed_device_list": "0",
            ],
            top: #""volatile_db": {"type": "hash_map", "num_partitions": -4, "max_batch_size": null}"#)
        let issues = validationIssues(json)
        let byPath = Dictionary(issues.map { ($0.path, $0.message) }, uniquingKeysWith: { $0 + "; " + $1 })
        #expect(byPath["models[0].max_batch_size"] == "expected an integer, found string \"64\"")
        #expect(byPath["models[0].gpucache"] == "expected true or false, found string \"yes\"")
        #expect(byPath["models[0].embedding_vecsize_per_table[1]"] == "expected an integer, found string \"8\"")
        #expect(byPath["models[0].num_of_worker_buffer_in_pool"] == "expected an integer, found the fraction 2.5")
        #expect(byPath["models[0].deployed_device_list"] == "expected an array, found integer 0")
        #expect(byPath["volatile_db.num_partitions"] == "must be at least 1, found -4")
        #expect(byPath["volatile_db.max_batch_size"] == "expected an integer, found null")
        #expect(issues.count == 7, "\(issues)")
    }

    @Test func integralNumbersAreAcceptedWhereIntegersAreExpected() throws {
        let config = try parse(configJSON(model: ["max_batch_size": "128.0"], top: #""volatile_db": {"type": "hash_map", "allocation_rate": 1e6}"#))
        #expect(config.models[0].maxBatchSize == 128)
        #expect(config.volatileDatabase.allocationRate == 1_000_000)
    }

    @Test(arguments: [
        ("gpucacheper", "1.5", "must be between 0 and 1, found 1.5"),
        ("hit_rate_threshold", "-0.1", "must be at least 0, found -0.1"),
        ("num_of_worker_buffer_in_pool", "0", "must be between 1 and 256, found 0"),
        ("num_of_worker_buffer_in_pool", "257", "must be between 1 and 256, found 257"),
        ("max_batch_size", "0", "must be at least 1, found 0"),
        ("cache_refresh_percentage_per_iteration", "2", "must be between 0 and 1, found 2"),
    ])
    func outOfRangeModelValuesAreReported(key: String, value: String, message: String) {
        expectIssue(configJSON(model: [key: value]), at: "models[0].\(key)", containing: [message])
    }

    @Test func outOfRangeDatabaseValuesAreReported() {
        expectIssue(
            configJSON(top: #""volatile_db": {"type": "hash_map", "overflow_resolution_target": 0}"#),
            at: "volatile_db.overflow_resolution_target", containing: ["must be greater than 0 and at most 1, found 0"])
        expectIssue(
            configJSON(model: ["maxnum_catfeature_query_per_table_per_sample": "[1, 0]"]),
            at: "models[0].maxnum_catfeature_query_per_table_per_sample[1]", containing: ["must be at least 1"])
        expectIssue(
            configJSON(model: ["embedding_vecsize_per_table": "[4, 0]"]), at: "models[0].embedding_vecsize_per_table[1]",
            containing: ["must be at least 1, found 0"])
        expectIssue(
            configJSON(top: #""update_source": {"type": "kafka", "receive_buffer_size": 100}"#),
            at: "update_source.receive_buffer_size", containing: ["at least 1024"])
    }

    @Test func redisConnectionsMayNotExceedPartitions() throws {
        expectIssue(
            configJSON(top: #""volatile_db": {"type": "redis", "num_partitions": 4, "num_node_connections": 6}"#),
            at: "volatile_db.num_node_connections", containing: ["is 6 but must not exceed num_partitions (4)"])
        let config = try parse(configJSON(top: #""volatile_db": {"type": "redis", "num_partitions": 3}"#))
        #expect(config.volatileDatabase.numNodeConnections == 3)
        #expect(config.warnings.contains { $0.hasPrefix("volatile_db.num_node_connections:") })
    }

    @Test func remotePathsAreRejected() {
        expectIssue(
            configJSON(model: ["sparse_files": "[\"t0\", \"hdfs://namenode/t1\"]"]), at: "models[0].sparse_files[1]",
            containing: ["hdfs://", "remote file systems are not supported"])
        expectIssue(
            configJSON(top: #""persistent_db": {"type": "rocks_db", "path": "s3://bucket/db"}"#), at: "persistent_db.path",
            containing: ["remote file systems are not supported"])
    }

    @Test func invalidUpdateFilterIsReported() {
        expectIssue(
            configJSON(top: #""volatile_db": {"type": "hash_map", "update_filters": ["^hps_.+$", "(["]}"#),
            at: "volatile_db.update_filters[1]", containing: ["not a valid regular expression"])
    }

    // MARK: Table files

    @Test func missingTableDirectoryIsReported() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TableWriter.write(directory: dir.file("t0"), keys: [1, 2], vectors: [Float](repeating: 0, count: 8), dimension: 4)
        expectIssue(
            configJSON(), at: "models[0].sparse_files[1]", containing: [dir.file("t1"), "table directory does not exist"],
            checkFiles: true, base: dir.path)
    }

    @Test func tableSizeMustMatchConfiguredDimension() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TableWriter.write(directory: dir.file("t0"), keys: [1, 2], vectors: [Float](repeating: 0, count: 8), dimension: 4)
        try TableWriter.write(directory: dir.file("t1"), keys: [1, 2, 3], vectors: [Float](repeating: 0, count: 12), dimension: 4)
        expectIssue(
            configJSON(), at: "models[0].sparse_files[1]",
            containing: [dir.file("t1/emb_vector"), "48 bytes", "expected 96 bytes", "3 rows × dimension 8"],
            checkFiles: true, base: dir.path)
    }

    @Test func loadResolvesRelativePathsAgainstTheConfigDirectory() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TableWriter.write(directory: dir.file("tables/t0"), keys: [1, 2], vectors: [Float](repeating: 0, count: 8), dimension: 4)
        try TableWriter.write(directory: dir.file("tables/t1"), keys: [3], vectors: [Float](repeating: 1, count: 8), dimension: 8)
        try dir.makeDirectory("conf")
        let json = configJSON(
            model: ["sparse_files": "[\"../tables/t0\", \"\(dir.file("tables/t1"))\"]"],
            top: #""persistent_db": {"type": "rocks_db", "path": "db"}"#)
        let path = try dir.write(json, to: "conf/ps.json")
        let config = try ParameterServerConfig.load(path: path)
        #expect(config.models[0].sparseFiles == [dir.file("conf/../tables/t0"), dir.file("tables/t1")])
        #expect(config.persistentDatabase.path == dir.file("conf/db"))
        #expect(config.models[0].tables.map(\.path) == config.models[0].sparseFiles)
    }

    // MARK: Defaults and aliases

    @Test func defaultsMatchTheReference() throws {
        let config = try parse(configJSON())
        #expect(config.supportLongLong)
        #expect(config.keySize == 8)
        #expect(!config.fuseEmbeddingTable)
        #expect(config.warnings.isEmpty, "\(config.warnings)")

        let m = try #require(config.models.first)
        #expect(m.name == "m")
        #expect(m.sparseFiles == ["t0", "t1"])
        #expect(m.denseFile == "")
        #expect(m.maxBatchSize == 64)
        #expect(m.deployedDevices == [0])
        #expect(m.maxKeysPerSample == [2, 3])
        #expect(m.embeddingVectorSizes == [4, 8])
        #expect(m.defaultValues == [0.5, 1.0])
        #expect(m.tableNames == ["sparse_embedding0", "sparse_embedding1"])
        #expect(m.tables.map(\.tag) == ["hps_et.m.sparse_embedding0", "hps_et.m.sparse_embedding1"])
        #expect(m.deviceCache)
        #expect(m.deviceCachePercentage == 0.2)
        #expect(m.hitRateThreshold == 0.9)
        #expect(m.workerBuffers == 1)
        #expect(m.refresherBuffers == 1)
        #expect(m.cacheRefreshPercentagePerIteration == 0)
        #expect(m.maxDenseFeaturesPerSample == 26)
        #expect(m.refreshDelay == 0)
        #expect(m.refreshInterval == 0)
        #expect(!m.useStaticTable)
        #expect(m.embeddingCacheType == .dynamic)
        #expect(m.useContextStream)
        #expect(m.fuseEmbeddingTable)
        #expect(m.threadPoolSize == 16)
        #expect(m.useHCTRCacheImplementation)
        #expect(m.initializeCache)
        #expect(!m.enablePageLock)
        #expect(!m.fp8Quantization)

        let v = config.volatileDatabase
        #expect(v.type == .parallelHashMap, "an absent volatile_db means parallel_hash_map")
        #expect(v.numPartitions == min(16, SystemInfo.processorCount))
        #expect(v.maxBatchSize == 65536)
        #expect(v.overflowMargin == Int.max)
        #expect(v.overflowPolicy == .evictRandom)
        #expect(v.overflowResolutionTarget == 0.8)
        #expect(v.allocationRate == 268_435_456)
        #expect(v.sharedMemorySize == 17_179_869_184)
        #expect(v.sharedMemoryName == "hctr_mp_hash_map_database")
        #expect(v.sharedMemoryAutoRemove)
        #expect(v.address == "127.0.0.1:7000")
        #expect(v.userName == "default")
        #expect(v.password == "")
        #expect(v.numNodeConnections == 5)
        #expect(!v.enableTLS)
        #expect(v.tlsCACertificate == "cacertbundle.crt")
        #expect(v.tlsClientCertificate == "client_cert.pem")
        #expect(v.tlsClientKey == "client_key.pem")
        #expect(v.tlsServerNameIdentification == "redis.localhost")
        #expect(v.initialCacheRate == 1.0)
        #expect(!v.cacheMissedEmbeddings)
        #expect(v.updateFilters == ["^hps_.+$"])
        #expect(v.initializeAfterStartup)

        let p = config.persistentDatabase
        #expect(p.type == .disabled)
        #expect(p.path == SystemInfo.temporaryDirectory + "/rocksdb")
        #expect(p.numThreads == 16)
        #expect(!p.readOnly)
        #expect(p.maxBatchSize == 65536)
        #expect(p.updateFilters == ["^hps_.+$"])

        let u = config.updateSource
        #expect(u.type == .none)
        #expect(u.brokers == "127.0.0.1:9092")
        #expect(u.metadataRefreshIntervalMs == 30000)
        #expect(u.receiveBufferSize == 262_144)
        #expect(u.pollTimeoutMs == 500)
        #expect(u.maxBatchSize == 8192)
        #expect(u.failureBackoffMs == 50)
        #expect(u.maxCommitInterval == 32)
    }

    @Test func supportLongLongDefaultsToTrue() throws {
        #expect(try parse(configJSON()).supportLongLong)
        let narrow = try parse(configJSON(top: #""supportlonglong": false"#))
        #expect(!narrow.supportLongLong)
        #expect(narrow.keySize == 4)
    }

    @Test func volatileSectionWithoutTypeIsDisabled() throws {
        let config = try parse(configJSON(top: #""volatile_db": {"num_partitions": 3}"#))
        #expect(config.volatileDatabase.type == .disabled)
        #expect(config.volatileDatabase.numPartitions == 3)
        #expect(try parse(configJSON(top: #""persistent_db": {"num_threads": 2}"#)).persistentDatabase.type == .disabled)
        #expect(try parse(configJSON(top: #""update_source": {"brokers": "h:1"}"#)).updateSource.type == .none)
    }

    @Test(arguments: [
        ("disabled", VolatileDatabaseType.disabled), ("disable", .disabled), ("none", .disabled),
        ("hash_map", .hashMap), ("hashmap", .hashMap), ("hash", .hashMap), ("map", .hashMap),
        ("parallel_hash_map", .parallelHashMap), ("parallel_hashmap", .parallelHashMap),
        ("parallel_hash", .parallelHashMap), ("parallel_map", .parallelHashMap),
        ("redis_cluster", .redisCluster), ("redis", .redisCluster), ("Hash_Map", .hashMap),
    ])
    func volatileTypeAliases(name: String, type: VolatileDatabaseType) throws {
        let config = try parse(configJSON(top: "\"volatile_db\": {\"type\": \"\(name)\", \"num_partitions\": 8}"))
        #expect(config.volatileDatabase.type == type)
    }

    /// multi_process_hash_map is parsed (with its aliases) but refused: it is not implemented, and a lookup
    /// must not be the first to find out.
    @Test(arguments: ["multi_process_hash_map", "multi_process_hashmap", "multi_process_hash", "multi_process_map"])
    func multiProcessHashMapIsRefusedByValidation(name: String) {
        expectIssue(
            configJSON(top: "\"volatile_db\": {\"type\": \"\(name)\"}"), at: "volatile_db.type",
            containing: ["multi_process_hash_map is not available", "redis_cluster"])
    }

    @Test func otherAliases() throws {
        for (name, type) in [("rocks_db", PersistentDatabaseType.rocksDB), ("rocksdb", .rocksDB), ("rocks", .rocksDB), ("disabled", .disabled)] {
            #expect(try parse(configJSON(top: "\"persistent_db\": {\"type\": \"\(name)\"}")).persistentDatabase.type == type)
        }
        for (name, type) in [
            ("null", UpdateSourceType.none), ("none", .none), ("kafka_message_queue", .kafkaMessageQueue),
            ("kafka_mq", .kafkaMessageQueue), ("kafka", .kafkaMessageQueue),
        ] {
            #expect(try parse(configJSON(top: "\"update_source\": {\"type\": \"\(name)\"}")).updateSource.type == type)
        }
        for (name, policy) in [
            ("evict_random", OverflowPolicy.evictRandom), ("random", .evictRandom), ("evict_least_used", .evictLeastUsed),
            ("least_used", .evictLeastUsed), ("evict_oldest", .evictOldest), ("oldest", .evictOldest),
        ] {
            let json = configJSON(top: "\"volatile_db\": {\"type\": \"hash_map\", \"overflow_policy\": \"\(name)\"}")
            #expect(try parse(json).volatileDatabase.overflowPolicy == policy)
        }
        for type in EmbeddingCacheType.allCases {
            #expect(try parse(configJSON(model: ["embedding_cache_type": "\"\(type.rawValue)\""])).models[0].embeddingCacheType == type)
        }
    }

    @Test func staticTableFlagForcesTheStaticCache() throws {
        let plain = try parse(configJSON(model: ["use_static_table": "true"]))
        #expect(plain.models[0].embeddingCacheType == .static)
        #expect(plain.warnings.isEmpty)
        let conflicting = try parse(configJSON(model: ["use_static_table": "true", "embedding_cache_type": "\"uvm\""]))
        #expect(conflicting.models[0].embeddingCacheType == .static)
        #expect(conflicting.warnings.contains { $0.contains("use_static_table") })
    }

    @Test func sizeMaxOverflowMarginMeansUnlimited() throws {
        let config = try parse(configJSON(top: #""volatile_db": {"type": "hash_map", "overflow_margin": 18446744073709551615}"#))
        #expect(config.volatileDatabase.overflowMargin == Int.max)
    }

    @Test func referenceExampleParses() throws {
        let config = try parse(referenceExample)
        #expect(config.warnings.isEmpty, "\(config.warnings)")
        #expect(config.supportLongLong)
        let v = config.volatileDatabase
        #expect(v.type == .hashMap)
        #expect(v.numPartitions == 8)
        #expect(v.overflowMargin == 10_000_000)
        #expect(v.overflowPolicy == .evictRandom)
        #expect(v.updateFilters == [".+"])
        #expect(v.sharedMemorySize == 17_179_869_184)
        #expect(config.persistentDatabase.type == .rocksDB)
        #expect(config.persistentDatabase.path == "/tmp/rocksdb")
        #expect(config.persistentDatabase.updateFilters == [".+"])
        #expect(config.updateSource.type == .kafkaMessageQueue)
        #expect(config.updateSource.maxCommitInterval == 32)
        let m = try #require(config.model(named: "wdl"))
        #expect(m.sparseFiles == ["/wdl_infer/model/wdl/1/wdl0_sparse_20000.model", "/wdl_infer/model/wdl/1/wdl1_sparse_20000.model"])
        #expect(m.denseFile == "/wdl_infer/model/wdl/1/wdl_dense_20000.model")
        #expect(m.workerBuffers == 4)
        #expect(m.maxKeysPerSample == [2, 26])
        #expect(m.embeddingVectorSizes == [1, 15])
        #expect(m.tableNames == ["table1", "table2"])
        #expect(m.deviceCachePercentage == 0.1)
        #expect(m.cacheRefreshPercentagePerIteration == 0.2)
        #expect(!m.useContextStream)
        #expect(m.tables.map(\.tag) == ["hps_et.wdl.table1", "hps_et.wdl.table2"])
        #expect(m.maxQueryLength(table: 1) == 64 * 26)
    }

    // MARK: Unknown keys

    @Test func unknownKeysWarnWithSuggestions() throws {
        let json = configJSON(
            extraModelKeys: [("network_file", "\"wdl.json\""), ("gpucahceper", "0.5"), ("label_dim", "1"), ("foo_bar_baz", "1")],
            top: #""supportlonglog": true, "volatile_db": {"type": "hash_map", "num_partition": 4}"#)
        let config = try parse(json)
        #expect(config.models[0].deviceCachePercentage == 0.2, "a misspelt key is not applied")
        #expect(config.supportLongLong)
        let warnings = config.warnings
        #expect(warnings.contains("models[0].gpucahceper: unknown key, ignored; did you mean \"gpucacheper\"?"))
        #expect(warnings.contains("supportlonglog: unknown key, ignored; did you mean \"supportlonglong\"?"))
        #expect(warnings.contains("volatile_db.num_partition: unknown key, ignored; did you mean \"num_partitions\"?"))
        #expect(warnings.contains("models[0].foo_bar_baz: unknown key, ignored"))
        #expect(warnings.contains { $0.hasPrefix("models[0].network_file:") && !$0.contains("did you mean") })
        #expect(warnings.contains { $0.hasPrefix("models[0].label_dim:") })
        #expect(warnings.count == 6, "\(warnings)")
    }

    @Test func duplicateJSONKeysBecomeWarnings() throws {
        let config = try parse(configJSON(top: #""supportlonglong": false, "supportlonglong": true"#))
        #expect(config.supportLongLong)
        #expect(config.warnings.contains { $0.contains("duplicate key \"supportlonglong\"") })
    }

    @Test func editDistanceCountsTranspositionsOnce() {
        func distance(_ a: String, _ b: String) -> Int {
            ConfigSection.editDistance(Array(a.unicodeScalars), Array(b.unicodeScalars), limit: 5)
        }
        #expect(distance("gpucacheper", "gpucacheper") == 0)
        #expect(distance("gpucahceper", "gpucacheper") == 1)
        #expect(distance("gpucache", "gpucacheper") == 3)
        #expect(distance("kitten", "sitting") == 3)
        #expect(ConfigSection.closest(to: "GPUCachePer", among: ["gpucache", "gpucacheper"]) == "gpucacheper")
        #expect(ConfigSection.closest(to: "slot_num", among: ["gpucache", "model"]) == nil)
    }

    @Test func validationErrorDescriptionListsEveryIssue() {
        let error = ConfigValidationError(
            file: "ps.json", issues: [.init(path: "models[0].model", message: "bad"), .init(path: "models", message: "worse")])
        #expect(error.description == "invalid config ps.json:\n  models[0].model: bad\n  models: worse")
    }
}
