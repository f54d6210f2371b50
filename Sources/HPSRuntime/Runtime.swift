import HPS
import HPSCUDA
import HPSKafka
import HPSRedis
import HPSRocksDB

/// Builds parameter servers from configurations with every backend linked into this build, so the CLI,
/// the TensorFlow op library and a server all build the same hierarchy the same way.
public enum HPSRuntime {
    /// Reads and validates `configFile`, creates its databases, loads every table and makes every lookup
    /// session.
    /// - Throws: ``HPSError`` `.io` or `.invalidConfig` when the file cannot be read or parsed (every problem with
    ///   its JSON path); what ``makeParameterServer(config:logger:)`` throws.
    public static func makeParameterServer(configFile: String, logger: HPSLogger = .standard) throws -> ParameterServer {
        let config = try ParameterServerConfig.load(path: configFile)
        for warning in config.warnings { logger.warning("\(configFile): \(warning)") }
        return try makeParameterServer(config: config, logger: logger)
    }

    /// Creates the databases of `config`, loads every table, makes every lookup session and starts the
    /// `update_source` (Kafka consumers writing into the databases and caches) when the config has one.
    /// - Throws: ``HPSError`` `.invalidConfig`/`.unsupported` for a database setting this build cannot honour;
    ///   `.database` when a database cannot be opened or reached; what ``ParameterServer/loadTables(progress:)`` and
    ///   ``ParameterServer/makeAllSessions()`` throw; the update source's error when its consumers cannot start.
    ///
    /// `persistentDatabase`, when given, is an open persistent database made from `config.persistentDatabase`
    /// (by ``makePersistentDatabase(_:logger:)``) that the new server shares instead of opening its own: a
    /// server that builds a new generation beside a serving one (RocksDB locks its folder to one opener).
    public static func makeParameterServer(
        config: ParameterServerConfig, logger: HPSLogger = .standard, progress: ((String, Int, Int) -> Void)? = nil,
        persistentDatabase: (any Database)? = nil
    ) throws -> ParameterServer {
        try checkResources(config, logger: logger)
        let vdb = try makeVolatileDatabase(config.volatileDatabase, logger: logger)
        let pdb = try persistentDatabase ?? makePersistentDatabase(config.persistentDatabase, logger: logger)
        // GPU caches when a CUDA device is usable; otherwise the provider logs why and sessions use CPU caches.
        let provider = CUDACacheProvider.makeIfUsable(logger: logger)
        let server = ParameterServer(config: config, volatileDatabase: vdb, persistentDatabase: pdb, cacheProvider: provider, logger: logger)
        try server.loadTables(progress: progress)
        try server.makeAllSessions()
        if config.updateSource.type == .kafkaMessageQueue {
            server.updateSource = try KafkaUpdateSource(server: server, logger: logger)
        }
        return server
    }

    /// Checks, before anything is allocated, that `config` is within ``ConfigLimits`` (a configuration made
    /// in code skips the parser's checks) and that the lookup buffers of every session fit this machine's
    /// memory; logs settings this build accepts but does not act on.
    /// - Throws: ``ConfigValidationError`` listing sizes beyond the limits; ``HPSError`` `invalidConfig`
    ///   naming the model's settings and the bytes asked for when the buffers exceed physical memory.
    public static func checkResources(_ config: ParameterServerConfig, logger: HPSLogger = .standard) throws {
        let issues = config.limitIssues()
        guard issues.isEmpty else { throw ConfigValidationError(issues: issues) }
        let memory = SystemInfo.physicalMemory
        for (i, model) in config.models.enumerated() {
            // Fused tables: a lookup buffer holds the keys of every table of the widest group.
            guard let perSession = config.fusion(of: model).servedModel.sessionBufferBytes else { continue }  // limitIssues reports it
            let (total, overflow) = perSession.multipliedReportingOverflow(by: max(1, model.deployedDevices.count))
            if memory > 0 && (overflow || total > memory) {
                throw HPSError(
                    .invalidConfig, subject: "models[\(i)] (\(model.name))",
                    "lookup buffers need \(overflow ? "more than Int.max" : String(total)) bytes "
                        + "(\(perSession) per device × \(model.deployedDevices.count) device(s), from max_batch_size, maxnum_catfeature_query_per_table_per_sample, "
                        + "embedding_vecsize_per_table and num_of_worker_buffer_in_pool), more than this machine's \(memory) bytes of memory")
            }
        }
    }

    /// The volatile database `config` names, or nil when it is disabled.
    /// - Throws: ``HPSError`` `.invalidConfig` for a bad setting, `.unsupported` for one this build cannot honour
    ///   (Redis TLS), `.database` naming the address when no node answers.
    public static func makeVolatileDatabase(_ config: VolatileDatabaseConfig, logger: HPSLogger = .standard) throws -> (any Database)? {
        switch config.type {
        case .disabled:
            return nil
        case .hashMap, .parallelHashMap:
            logger.info("Creating hash map volatile database (\(config.numPartitions) partitions, overflow_margin \(config.overflowMargin == .max ? "unlimited" : String(config.overflowMargin)), policy \(config.overflowPolicy.rawValue))")
            return HashMapDatabase(config: config, logger: logger)
        case .multiProcessHashMap:
            throw HPSError(.unsupported, subject: "volatile_db.type", "multi_process_hash_map is not available in this build; use hash_map, parallel_hash_map or redis_cluster")
        case .redisCluster:
            logger.info("Creating Redis Cluster volatile database at \(config.address)")
            return try RedisClusterDatabase(config: config, logger: logger)
        }
    }

    /// The persistent database `config` names, or nil when it is disabled.
    /// - Throws: ``HPSError`` `.invalidConfig` for a bad setting; `.io` or `.database` naming the path when the
    ///   RocksDB directory cannot be created or opened.
    public static func makePersistentDatabase(_ config: PersistentDatabaseConfig, logger: HPSLogger = .standard) throws -> (any Database)? {
        switch config.type {
        case .disabled:
            return nil
        case .rocksDB:
            logger.info("Creating RocksDB persistent database at \(config.path)\(config.readOnly ? " (read-only)" : "")")
            return try RocksDBDatabase(config: config, logger: logger)
        }
    }
}
