extension ParameterServerConfig {
    /// Reads and validates an HPS JSON configuration file.
    ///
    /// Relative `sparse_files` and `persistent_db.path` are resolved against the file's directory.
    ///
    /// - Parameters:
    ///   - path: the `ps.json` file.
    ///   - checkFiles: also open every table directory and check its files against the configured dimension.
    /// - Throws: ``HPSError`` `io` when the file cannot be read; ``HPSError`` `invalidConfig` for malformed JSON
    ///   (with line and column); ``ConfigValidationError`` listing every invalid value at once.
    public static func load(path: String, checkFiles: Bool = true) throws -> ParameterServerConfig {
        let bytes: [UInt8]
        do {
            bytes = try FileSystem.readAll(path)
        } catch let error as HPSError {
            throw HPSError(.io, subject: path, "cannot read the configuration file", underlying: error.underlying)
        }
        var directory = FileSystem.directoryName(of: path)
        if !directory.hasPrefix("/") {
            let cwd = FileSystem.currentDirectory()
            directory = directory == "." ? cwd : FileSystem.join(cwd, directory)
        }
        return try parse(
            json: String(decoding: bytes, as: UTF8.self), file: path, baseDirectory: directory, checkFiles: checkFiles)
    }

    /// Parses and validates an HPS JSON configuration held in a string.
    ///
    /// Applies HPS's defaults and aliases (reference §2), with these differences: `supportlonglong` defaults
    /// to true; an unknown `type`, `overflow_policy` or `embedding_cache_type` is an error; unknown keys are
    /// accepted with a warning in ``warnings``.
    ///
    /// - Parameters:
    ///   - json: the configuration text.
    ///   - file: the file it came from, for messages.
    ///   - baseDirectory: the directory relative paths are resolved against; nil leaves them as written.
    ///   - checkFiles: also open every table directory and check its files against the configured dimension.
    /// - Throws: ``HPSError`` `invalidConfig` for malformed JSON (`invalid JSON at line L, column C: …`);
    ///   ``ConfigValidationError`` listing every invalid value, each with its JSON path.
    public static func parse(
        json: String, file: String? = nil, baseDirectory: String? = nil, checkFiles: Bool = true
    ) throws -> ParameterServerConfig {
        var warnings: [String] = []
        let root: JSONValue
        do {
            root = try JSONValue.parse(json, warnings: &warnings)
        } catch {
            throw HPSError(.invalidConfig, subject: file, error.description)
        }
        let diagnostics = ConfigDiagnostics()
        diagnostics.warnings = warnings
        guard case .object(let object) = root else {
            throw ConfigValidationError(
                file: file,
                issues: [.init(path: "", message: "the configuration must be a JSON object, found \(root.typeName)")])
        }
        let reader = ConfigReader(diagnostics: diagnostics, baseDirectory: baseDirectory, checkFiles: checkFiles)
        var config = reader.read(ConfigSection(path: "", object: object, diagnostics: diagnostics))
        guard diagnostics.issues.isEmpty else {
            throw ConfigValidationError(file: file, issues: diagnostics.issues)
        }
        config.warnings = diagnostics.warnings
        if config.fuseEmbeddingTable {
            for (i, model) in config.models.enumerated() where model.fuseEmbeddingTable {
                config.warnings += TableFusion.warnings(model: model, path: "models[\(i)]")
            }
        }
        return config
    }
}

/// Reads each section of the configuration into the config model, recording problems in `diagnostics`.
struct ConfigReader {
    let diagnostics: ConfigDiagnostics
    let baseDirectory: String?
    let checkFiles: Bool

    /// Keys of HugeCTR/Triton model configurations that the parameter server does not use.
    static let foreignModelKeys: Set<String> = [
        "network_file", "label_dim", "slot_num", "use_mixed_precision", "scaler", "use_algorithm_search",
        "use_cuda_graph", "cat_feature_num", "des_feature_num", "max_nnz", "embeddingkey_long_type", "slots",
    ]

    // MARK: Top level

    func read(_ top: ConfigSection) -> ParameterServerConfig {
        var config = ParameterServerConfig()
        config.supportLongLong = top.bool("supportlonglong", default: true)
        config.fuseEmbeddingTable = top.bool("fuse_embedding_table", default: false)

        if let value = top.value("models") {
            if case .array(let items) = value {
                if items.isEmpty { diagnostics.issue("models", "must hold at least one model configuration") }
                var names: [String: Int] = [:]
                for (i, item) in items.enumerated() {
                    guard case .object(let object) = item else {
                        diagnostics.issue("models[\(i)]", "expected an object, found \(ConfigSection.describe(item))")
                        continue
                    }
                    let model = readModel(ConfigSection(path: "models[\(i)]", object: object, diagnostics: diagnostics), index: i)
                    if !model.name.isEmpty {
                        if let first = names[model.name] {
                            diagnostics.issue("models[\(i)].model", "duplicate model name \"\(model.name)\" (also models[\(first)])")
                        } else {
                            names[model.name] = i
                        }
                    }
                    config.models.append(model)
                }
            } else {
                diagnostics.issue("models", "expected an array of model objects, found \(ConfigSection.describe(value))")
            }
        } else {
            diagnostics.issue("models", "required key is missing")
        }

        if let section = top.section("volatile_db") {
            config.volatileDatabase = readVolatile(section)
        }
        if let section = top.section("persistent_db") {
            config.persistentDatabase = readPersistent(section)
        }
        if let section = top.section("update_source") {
            config.updateSource = readUpdateSource(section)
        }
        top.reportUnknownKeys()
        checkInitialCacheRate(config)
        warnAboutCapacity(config)
        for issue in config.limitIssues() { diagnostics.issue(issue.path, issue.message) }
        return config
    }

    /// `initial_cache_rate` below 1 loads only that share of each table into the volatile database; the
    /// rest must come from the persistent database, so without one the setting would leave keys unanswerable.
    private func checkInitialCacheRate(_ config: ParameterServerConfig) {
        let rate = config.volatileDatabase.initialCacheRate
        guard rate < 1, config.volatileDatabase.type != .disabled, config.persistentDatabase.type == .disabled else { return }
        diagnostics.issue(
            "volatile_db.initial_cache_rate",
            "is \(rate): only that share of each table is loaded into the volatile database, and the rest must come from a persistent database, but persistent_db is disabled; configure persistent_db or use 1.0")
    }

    /// Warns about each table (of a model whose tables are loaded into the databases) that has more rows than
    /// the volatile database can hold, when no persistent database holds the rest.
    private func warnAboutCapacity(_ config: ParameterServerConfig) {
        let v = config.volatileDatabase
        guard v.type == .hashMap || v.type == .parallelHashMap || v.type == .redisCluster,
            config.persistentDatabase.type == .disabled, v.overflowMargin != .max
        else { return }
        let (product, overflow) = v.overflowMargin.multipliedReportingOverflow(by: max(1, v.numPartitions))
        let capacity = overflow ? Int.max : max(product, v.overflowMargin)
        for table in diagnostics.tableRows where table.rows > capacity {
            let model = config.models[table.model]
            let type = model.useStaticTable ? .static : model.embeddingCacheType
            guard type == .dynamic || type == .stochastic else { continue }
            diagnostics.warn(
                "\(table.path): the table has \(table.rows) rows but the volatile database holds at most \(capacity) per table "
                    + "(volatile_db.overflow_margin \(v.overflowMargin) × num_partitions \(v.numPartitions)) and persistent_db is disabled: "
                    + "at least \(table.rows - capacity) rows will be evicted and answer the default value; raise volatile_db.overflow_margin or configure persistent_db")
        }
    }

    // MARK: Models

    func readModel(_ s: ConfigSection, index: Int) -> ModelConfig {
        var m = ModelConfig()
        if s.has("model") {
            m.name = s.string("model", default: "")
            if !m.name.isEmpty || s.value("model") == .string("") {
                checkName(m.name, path: s.path("model"), what: "model name")
            }
        } else {
            diagnostics.issue(s.path("model"), "required key is missing (the model name, used in table tags)")
        }

        let sparseFiles = s.stringList("sparse_files", required: true)
        m.denseFile = s.string("dense_file", default: "")
        m.maxBatchSize = s.int("max_batch_size", default: 64, .atLeast(1))
        if let devices = s.intList("deployed_device_list", required: true, .atLeast(0)) {
            if devices.isEmpty { diagnostics.issue(s.path("deployed_device_list"), "must list at least one device") }
            var seen = Set<Int>()
            for (i, d) in devices.enumerated() where !seen.insert(d).inserted {
                diagnostics.issue(s.path("deployed_device_list") + "[\(i)]", "device \(d) is listed twice")
            }
            m.deployedDevices = devices
        }
        let maxKeys = s.intList("maxnum_catfeature_query_per_table_per_sample", required: true, .atLeast(1))
        let sizes = s.intList("embedding_vecsize_per_table", required: true, .atLeast(1))
        let defaults = s.doubleList("default_value_for_each_table", required: true)
        let names = s.stringList("embedding_table_names")

        m.deviceCache = s.bool("gpucache", default: true)
        m.cpuCache = s.bool("cpu_cache", default: false)
        m.cacheAdmission = s.choice(
            "cache_admission", default: .tinyLFU, what: "cache admission policy", CacheAdmission.allCases.map { ($0, [$0.rawValue]) })
        m.deviceCachePercentage = s.double("gpucacheper", default: 0.2, .within(0, 1))
        m.hitRateThreshold = s.double("hit_rate_threshold", default: 0.9, .atLeast(0))
        m.workerBuffers = s.int("num_of_worker_buffer_in_pool", default: 1, .within(1, 256))
        m.refresherBuffers = s.int("num_of_refresher_buffer_in_pool", default: 1, .within(1, 256))
        m.cacheRefreshPercentagePerIteration = s.double("cache_refresh_percentage_per_iteration", default: 0, .within(0, 1))
        m.maxDenseFeaturesPerSample = s.int("maxnum_des_feature_per_sample", default: 26, .atLeast(0))
        m.refreshDelay = s.double("refresh_delay", default: 0, .atLeast(0))
        m.refreshInterval = s.int("refresh_interval", default: 0, .atLeast(0))
        m.useStaticTable = s.bool("use_static_table", default: false)
        m.embeddingCacheType = s.choice(
            "embedding_cache_type", default: .dynamic, what: "embedding cache type",
            EmbeddingCacheType.allCases.map { ($0, [$0.rawValue]) })
        if m.useStaticTable {
            if s.has("embedding_cache_type") && m.embeddingCacheType != .static {
                diagnostics.warn(
                    "\(s.path("use_static_table")): true overrides embedding_cache_type \"\(m.embeddingCacheType.rawValue)\"; the model uses a static table")
            }
            m.embeddingCacheType = .static
        }
        m.useContextStream = s.bool("use_context_stream", default: true)
        m.fuseEmbeddingTable = s.bool("fuse_embedding_table", default: true)
        m.threadPoolSize = s.int("thread_pool_size", default: 16, .atLeast(0))
        m.useHCTRCacheImplementation = s.bool("use_hctr_cache_implementation", default: true)
        m.initializeCache = s.bool("init_ec", default: true)
        m.enablePageLock = s.bool("enable_pagelock", default: false)
        m.fp8Quantization = s.bool("fp8_quant", default: false)

        // Per-table lists: the number of tables is the length of embedding_vecsize_per_table.
        if let sizes {
            let tables = sizes.count
            m.embeddingVectorSizes = sizes
            if tables == 0 { diagnostics.issue(s.path("embedding_vecsize_per_table"), "must list at least one table") }
            if let sparseFiles, sparseFiles.count != tables {
                diagnostics.issue(
                    s.path("embedding_vecsize_per_table"),
                    "has \(entries(tables)) but sparse_files has \(sparseFiles.count)")
            }
            if let maxKeys, maxKeys.count != tables {
                diagnostics.issue(
                    s.path("maxnum_catfeature_query_per_table_per_sample"),
                    "has \(entries(maxKeys.count)) but embedding_vecsize_per_table has \(tables)")
            }
            if let defaults {
                if defaults.count > tables {
                    diagnostics.issue(
                        s.path("default_value_for_each_table"),
                        "has \(entries(defaults.count)) but embedding_vecsize_per_table has \(tables)")
                } else if defaults.count < tables {
                    diagnostics.warn(
                        "\(s.path("default_value_for_each_table")): has \(entries(defaults.count)) for \(tables) tables; the rest default to 0.0")
                }
            }
            if let names, names.count != tables {
                diagnostics.issue(
                    s.path("embedding_table_names"), "has \(entries(names.count)) but embedding_vecsize_per_table has \(tables)")
            }
        }
        m.maxKeysPerSample = maxKeys ?? []
        if let defaults {
            m.defaultValues = defaults.enumerated().map { i, value in
                let narrowed = Float(value)
                guard narrowed.isFinite else {
                    diagnostics.issue(
                        s.path("default_value_for_each_table") + "[\(i)]",
                        "\(value) does not fit float32 (the largest finite float32 is ±\(Float.greatestFiniteMagnitude))")
                    return 0
                }
                return narrowed
            }
            if m.defaultValues.count < m.embeddingVectorSizes.count {
                m.defaultValues += Array(repeating: 0, count: m.embeddingVectorSizes.count - m.defaultValues.count)
            }
        }
        if let names {
            m.tableNames = names
            var seen: [String: Int] = [:]
            for (i, name) in names.enumerated() {
                let path = s.path("embedding_table_names") + "[\(i)]"
                checkName(name, path: path, what: "table name")
                if let first = seen[name] {
                    diagnostics.issue(path, "duplicate table name \"\(name)\" (also embedding_table_names[\(first)])")
                } else {
                    seen[name] = i
                }
            }
        } else {
            m.tableNames = (0..<m.embeddingVectorSizes.count).map { "sparse_embedding\($0)" }
        }
        if let sparseFiles {
            m.sparseFiles = sparseFiles.enumerated().map { i, file in
                resolveLocalPath(file, path: s.path("sparse_files") + "[\(i)]", what: "table directory") ?? file
            }
            if checkFiles { checkTables(m, modelIndex: index, sparseFiles: sparseFiles, section: s) }
        }
        s.reportUnknownKeys(foreign: Self.foreignModelKeys)
        return m
    }

    /// Opens every table directory whose path and dimension are valid and checks its files.
    private func checkTables(_ m: ModelConfig, modelIndex: Int, sparseFiles: [String], section s: ConfigSection) {
        for (i, original) in sparseFiles.enumerated() where i < m.embeddingVectorSizes.count {
            let dimension = m.embeddingVectorSizes[i]
            guard dimension >= 1, !original.isEmpty, !Self.isRemote(original) else { continue }
            do {
                let directory = try TableDirectory(path: m.sparseFiles[i], dimension: dimension)
                diagnostics.tableRows.append((s.path("sparse_files") + "[\(i)]", modelIndex, i, directory.rowCount))
            } catch let error as HPSError {
                let subject = error.subject.map { "\($0): " } ?? ""
                let underlying = error.underlying.map { " (\($0))" } ?? ""
                diagnostics.issue(s.path("sparse_files") + "[\(i)]", subject + error.message + underlying)
            } catch {
                diagnostics.issue(s.path("sparse_files") + "[\(i)]", "\(error)")
            }
        }
    }

    private func checkName(_ name: String, path: String, what: String) {
        guard !TableTag.isValidName(name) else { return }
        diagnostics.issue(path, "\"\(name)\" is not a valid \(what): use 1 to 120 characters of [a-zA-Z0-9_-]")
    }

    private func entries(_ n: Int) -> String { n == 1 ? "1 entry" : "\(n) entries" }

    // MARK: Paths

    static func isRemote(_ path: String) -> Bool { path.contains("://") }

    /// `path` resolved against the base directory, or nil (with an issue) when it is empty or remote.
    private func resolveLocalPath(_ file: String, path: String, what: String) -> String? {
        if file.isEmpty {
            diagnostics.issue(path, "the \(what) path is empty")
            return nil
        }
        if Self.isRemote(file) {
            let scheme = file.prefix { $0 != ":" }
            diagnostics.issue(
                path,
                "\"\(file)\" is on a remote file system (\(scheme)://); remote file systems are not supported, copy it to a local path")
            return nil
        }
        guard let baseDirectory else { return file }
        return FileSystem.join(baseDirectory, file)
    }

    // MARK: Databases

    static let volatileTypes: [(value: VolatileDatabaseType, names: [String])] = [
        (.disabled, ["disabled", "disable", "none"]),
        (.hashMap, ["hash_map", "hashmap", "hash", "map"]),
        (.parallelHashMap, ["parallel_hash_map", "parallel_hashmap", "parallel_hash", "parallel_map"]),
        (.multiProcessHashMap, ["multi_process_hash_map", "multi_process_hashmap", "multi_process_hash", "multi_process_map"]),
        (.redisCluster, ["redis_cluster", "redis"]),
    ]
    static let persistentTypes: [(value: PersistentDatabaseType, names: [String])] = [
        (.disabled, ["disabled", "disable", "none"]),
        (.rocksDB, ["rocks_db", "rocksdb", "rocks"]),
    ]
    static let updateSourceTypes: [(value: UpdateSourceType, names: [String])] = [
        (.none, ["null", "none"]),
        (.kafkaMessageQueue, ["kafka_message_queue", "kafka_mq", "kafka"]),
    ]
    static let overflowPolicies: [(value: OverflowPolicy, names: [String])] = [
        (.evictRandom, ["evict_random", "random"]),
        (.evictLeastUsed, ["evict_least_used", "least_used"]),
        (.evictOldest, ["evict_oldest", "oldest"]),
    ]

    func readVolatile(_ s: ConfigSection) -> VolatileDatabaseConfig {
        var v = VolatileDatabaseConfig()
        // As in HPS: the section present without `type` disables the volatile database.
        if case .string(let raw)? = s.value("type"),
            Self.persistentTypes.contains(where: { $0.value == .rocksDB && $0.names.contains(raw.lowercased()) })
        {
            diagnostics.issue(
                s.path("type"), "\"\(raw)\" is a persistent database; configure it under persistent_db, not volatile_db")
            v.type = .disabled
        } else {
            v.type = s.choice("type", default: .disabled, what: "volatile database type", Self.volatileTypes)
            if v.type == .multiProcessHashMap {
                diagnostics.issue(
                    s.path("type"),
                    "multi_process_hash_map is not available in this implementation; use hash_map or parallel_hash_map (one process) or redis_cluster (shared between processes)")
            }
        }
        v.numPartitions = s.int("num_partitions", default: v.numPartitions, .atLeast(1))
        v.maxBatchSize = s.int("max_batch_size", default: v.maxBatchSize, .atLeast(1))
        v.overflowMargin = s.int("overflow_margin", default: v.overflowMargin, .atLeast(1), saturating: true)
        v.overflowPolicy = s.choice("overflow_policy", default: v.overflowPolicy, what: "overflow policy", Self.overflowPolicies)
        v.overflowResolutionTarget = s.double(
            "overflow_resolution_target", default: v.overflowResolutionTarget, .above(0, atMost: 1))
        v.allocationRate = s.int("allocation_rate", default: v.allocationRate, .atLeast(1))
        v.sharedMemorySize = s.int("shared_memory_size", default: v.sharedMemorySize, .atLeast(1))
        v.sharedMemoryName = s.string("shared_memory_name", default: v.sharedMemoryName)
        v.sharedMemoryAutoRemove = s.bool("shared_memory_auto_remove", default: v.sharedMemoryAutoRemove)
        v.address = s.string("address", default: v.address)
        v.userName = s.string("user_name", default: v.userName)
        v.password = s.string("password", default: v.password)
        v.numNodeConnections = s.int("num_node_connections", default: v.numNodeConnections, .atLeast(1))
        v.enableTLS = s.bool("enable_tls", default: v.enableTLS)
        v.tlsCACertificate = s.string("tls_ca_certificate", default: v.tlsCACertificate)
        v.tlsClientCertificate = s.string("tls_client_certificate", default: v.tlsClientCertificate)
        v.tlsClientKey = s.string("tls_client_key", default: v.tlsClientKey)
        v.tlsServerNameIdentification = s.string("tls_server_name_identification", default: v.tlsServerNameIdentification)
        v.initialCacheRate = s.double("initial_cache_rate", default: v.initialCacheRate, .within(0, 1))
        v.cacheMissedEmbeddings = s.bool("cache_missed_embeddings", default: v.cacheMissedEmbeddings)
        v.updateFilters = readFilters(s) ?? v.updateFilters
        v.initializeAfterStartup = s.bool("initialize_after_startup", default: v.initializeAfterStartup)

        if v.type == .redisCluster {
            if v.address.isEmpty { diagnostics.issue(s.path("address"), "a Redis Cluster needs at least one host:port") }
            if v.numNodeConnections > v.numPartitions {
                if s.has("num_node_connections") && s.has("num_partitions") {
                    diagnostics.issue(
                        s.path("num_node_connections"),
                        "is \(v.numNodeConnections) but must not exceed num_partitions (\(v.numPartitions))")
                } else {
                    diagnostics.warn(
                        "\(s.path("num_node_connections")): \(v.numNodeConnections) exceeds num_partitions (\(v.numPartitions)); using \(v.numPartitions)")
                    v.numNodeConnections = v.numPartitions
                }
            }
        }
        s.reportUnknownKeys()
        return v
    }

    func readPersistent(_ s: ConfigSection) -> PersistentDatabaseConfig {
        var p = PersistentDatabaseConfig()
        if case .string(let raw)? = s.value("type"),
            Self.volatileTypes.contains(where: { $0.value != .disabled && $0.names.contains(raw.lowercased()) })
        {
            diagnostics.issue(
                s.path("type"), "\"\(raw)\" is a volatile database; configure it under volatile_db, not persistent_db")
        } else {
            p.type = s.choice("type", default: .disabled, what: "persistent database type", Self.persistentTypes)
        }
        if s.has("path") {
            let raw = s.string("path", default: p.path)
            p.path = resolveLocalPath(raw, path: s.path("path"), what: "database") ?? raw
        }
        p.numThreads = s.int("num_threads", default: p.numThreads, .atLeast(1))
        p.readOnly = s.bool("read_only", default: p.readOnly)
        p.maxBatchSize = s.int("max_batch_size", default: p.maxBatchSize, .atLeast(1))
        p.updateFilters = readFilters(s) ?? p.updateFilters
        p.initializeAfterStartup = s.bool("initialize_after_startup", default: p.initializeAfterStartup)
        s.reportUnknownKeys()
        return p
    }

    func readUpdateSource(_ s: ConfigSection) -> UpdateSourceConfig {
        var u = UpdateSourceConfig()
        u.type = s.choice("type", default: .none, what: "update source type", Self.updateSourceTypes)
        u.brokers = s.string("brokers", default: u.brokers)
        u.metadataRefreshIntervalMs = s.int("metadata_refresh_interval_ms", default: u.metadataRefreshIntervalMs, .atLeast(10))
        u.receiveBufferSize = s.int("receive_buffer_size", default: u.receiveBufferSize, .atLeast(1024))
        u.pollTimeoutMs = s.int("poll_timeout_ms", default: u.pollTimeoutMs, .atLeast(0))
        u.maxBatchSize = s.int("max_batch_size", default: u.maxBatchSize, .atLeast(1))
        u.failureBackoffMs = s.int("failure_backoff_ms", default: u.failureBackoffMs, .atLeast(0))
        u.maxCommitInterval = s.int("max_commit_interval", default: u.maxCommitInterval, .atLeast(1))
        if s.value("node_name") != nil {
            let name = s.string("node_name", default: "")
            if name.isEmpty || name.contains(where: { !($0.isLetter || $0.isNumber || "._-".contains($0)) }) {
                diagnostics.issue(s.path("node_name"), "\"\(name)\" is not a valid node name (letters, digits, '.', '_', '-')")
            } else {
                u.nodeName = name
            }
        }
        if u.type == .kafkaMessageQueue && u.brokers.isEmpty {
            diagnostics.issue(s.path("brokers"), "a Kafka update source needs at least one broker")
        }
        s.reportUnknownKeys()
        return u
    }

    /// `update_filters`: a list of regular expressions (a single string is taken as a one-element list).
    private func readFilters(_ s: ConfigSection) -> [String]? {
        let filters: [String]?
        if case .string(let single)? = s.value("update_filters") {
            filters = [single]
        } else {
            filters = s.stringList("update_filters")
        }
        guard let filters else { return nil }
        for (i, filter) in filters.enumerated() {
            do {
                _ = try Regex(filter)
            } catch {
                diagnostics.issue(s.path("update_filters") + "[\(i)]", "\"\(filter)\" is not a valid regular expression")
            }
        }
        return filters
    }
}
