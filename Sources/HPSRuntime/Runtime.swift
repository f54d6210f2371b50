import HPS
#if canImport(HPSRocksDB)
import HPSRocksDB
#endif
#if canImport(HPSRedis)
import HPSRedis
#endif
#if canImport(HPSCUDA)
import HPSCUDA
#endif

/// Builds parameter servers from configurations with every backend linked into this build, so the CLI,
/// the TensorFlow op library and a server all build the same hierarchy the same way.
public enum HPSRuntime {
    /// Reads and validates `configFile`, creates its databases, loads every table and makes every lookup
    /// session.
    public static func makeParameterServer(configFile: String, logger: HPSLogger = .standard) throws -> ParameterServer {
        let config = try ParameterServerConfig.load(path: configFile)
        for warning in config.warnings { logger.warning("\(configFile): \(warning)") }
        return try makeParameterServer(config: config, logger: logger)
    }

    /// Creates the databases of `config`, loads every table and makes every lookup session.
    public static func makeParameterServer(
        config: ParameterServerConfig, logger: HPSLogger = .standard, progress: ((String, Int, Int) -> Void)? = nil
    ) throws -> ParameterServer {
        let vdb = try makeVolatileDatabase(config.volatileDatabase, logger: logger)
        let pdb = try makePersistentDatabase(config.persistentDatabase, logger: logger)
        let server = ParameterServer(config: config, volatileDatabase: vdb, persistentDatabase: pdb, logger: logger)
        #if canImport(HPSCUDA)
        // GPU caches when a CUDA device is usable; otherwise the provider logs why and sessions use CPU caches.
        if let provider = CUDACacheProvider.makeIfUsable(logger: logger) { server.cacheProvider = provider }
        #endif
        try server.loadTables(progress: progress)
        try server.makeAllSessions()
        return server
    }

    /// The volatile database `config` names, or nil when it is disabled.
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
            #if canImport(HPSRedis)
            logger.info("Creating Redis Cluster volatile database at \(config.address)")
            return try RedisClusterDatabase(config: config, logger: logger)
            #else
            throw HPSError(.unsupported, subject: "volatile_db.type", "redis_cluster is not available in this build; use hash_map or parallel_hash_map")
            #endif
        }
    }

    /// The persistent database `config` names, or nil when it is disabled.
    public static func makePersistentDatabase(_ config: PersistentDatabaseConfig, logger: HPSLogger = .standard) throws -> (any Database)? {
        switch config.type {
        case .disabled:
            return nil
        case .rocksDB:
            #if canImport(HPSRocksDB)
            logger.info("Creating RocksDB persistent database at \(config.path)\(config.readOnly ? " (read-only)" : "")")
            return try RocksDBDatabase(config: config, logger: logger)
            #else
            throw HPSError(.unsupported, subject: "persistent_db.type", "rocks_db is not available in this build")
            #endif
        }
    }
}
