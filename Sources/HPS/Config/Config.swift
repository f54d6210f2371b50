/// The whole HPS JSON configuration (`ps.json`), with HPS's defaults.
///
/// Build one with ``ParameterServerConfig/load(path:)`` or ``ParameterServerConfig/parse(json:file:)``,
/// which apply every default and alias of the original HPS parser and validate the result.
public struct ParameterServerConfig: Sendable, Equatable {
    /// `supportlonglong`: keys are int64 when true, uint32 when false. Defaults to true.
    public var supportLongLong: Bool = true
    /// `fuse_embedding_table`.
    public var fuseEmbeddingTable: Bool = false
    /// `models`: one entry per model; never empty in a valid config.
    public var models: [ModelConfig] = []
    /// `volatile_db`.
    public var volatileDatabase = VolatileDatabaseConfig()
    /// `persistent_db`.
    public var persistentDatabase = PersistentDatabaseConfig()
    /// `update_source`.
    public var updateSource = UpdateSourceConfig()
    /// Warnings found while parsing (unused keys, "did you mean" hints). Not errors.
    public var warnings: [String] = []

    public init() {}

    /// The model named `name`, if any.
    public func model(named name: String) -> ModelConfig? { models.first { $0.name == name } }

    /// Key width in bytes of this configuration's keys (8 for int64, 4 for uint32).
    public var keySize: Int { supportLongLong ? 8 : 4 }
}

/// Which device cache a model uses (`embedding_cache_type`).
public enum EmbeddingCacheType: String, Sendable, Equatable, CaseIterable {
    /// Set-associative cache holding `gpucacheper` of the rows, LRU replacement, misses inserted.
    case dynamic
    /// The whole table in the device cache; misses return the default value.
    case `static`
    /// Hot part on the device, the rest in host memory; misses return the default value.
    case uvm
    /// Parsed for compatibility; behaves as `dynamic` (as in HPS).
    case stochastic
}

/// One entry of `models`.
public struct ModelConfig: Sendable, Equatable {
    /// `model`: the model name, `[a-zA-Z0-9_-]{1,120}`.
    public var name: String = ""
    /// `sparse_files`: one table directory per table; the order gives the table id.
    public var sparseFiles: [String] = []
    /// `dense_file`: accepted and ignored by the parameter server.
    public var denseFile: String = ""
    /// `max_batch_size`: most samples per lookup call.
    public var maxBatchSize: Int = 64
    /// `deployed_device_list`: device ids holding a lookup session each.
    public var deployedDevices: [Int] = []
    /// `maxnum_catfeature_query_per_table_per_sample`: most keys per sample, per table.
    public var maxKeysPerSample: [Int] = []
    /// `embedding_vecsize_per_table`: vector width (float32 count), per table.
    public var embeddingVectorSizes: [Int] = []
    /// `default_value_for_each_table`: filled into every element of a missing key's vector; padded with 0.
    public var defaultValues: [Float] = []
    /// `embedding_table_names`: defaults to `sparse_embedding0`, `sparse_embedding1`, ...
    public var tableNames: [String] = []
    /// `gpucache`: use the device cache; false sends every lookup to the databases.
    public var deviceCache: Bool = true
    /// `cpu_cache` (ours, not HPS's): on a CPU device whose volatile database is the in-process hash map
    /// holding every row of a table, lookups of that table go straight to the hash map (one exact pass) unless
    /// this is true, which keeps HPS's CPU "device cache" in front of it. Ignored for GPU caches.
    public var cpuCache: Bool = false
    /// `cache_admission` (ours, not HPS's): `"tinylfu"` (the default) lets a missed key into a full set of the
    /// dynamic cache (CPU or CUDA) only if a frequency sketch estimates it was used more often than the set's
    /// least recently used key; `"none"` inserts every missed key, evicting that key (HPS's behaviour).
    public var cacheAdmission: CacheAdmission = .tinyLFU
    /// `gpucacheper`: dynamic cache capacity as a fraction of table rows.
    public var deviceCachePercentage: Double = 0.2
    /// `hit_rate_threshold`: at or above it, misses get the default now and are inserted in the background.
    public var hitRateThreshold: Double = 0.9
    /// `num_of_worker_buffer_in_pool`.
    public var workerBuffers: Int = 1
    /// `num_of_refresher_buffer_in_pool`.
    public var refresherBuffers: Int = 1
    /// `cache_refresh_percentage_per_iteration`: fraction of cache sets per refresh/warm-up step.
    public var cacheRefreshPercentagePerIteration: Double = 0
    /// `maxnum_des_feature_per_sample` (HugeCTR only; accepted).
    public var maxDenseFeaturesPerSample: Int = 26
    /// `refresh_delay` in seconds.
    public var refreshDelay: Double = 0
    /// `refresh_interval` in seconds.
    public var refreshInterval: Int = 0
    /// `use_static_table`: forces `embeddingCacheType = .static`.
    public var useStaticTable: Bool = false
    /// `embedding_cache_type`.
    public var embeddingCacheType: EmbeddingCacheType = .dynamic
    /// `use_context_stream`.
    public var useContextStream: Bool = true
    /// `fuse_embedding_table` (per-model opt-out).
    public var fuseEmbeddingTable: Bool = true
    /// `thread_pool_size`.
    public var threadPoolSize: Int = 16
    /// `use_hctr_cache_implementation`.
    public var useHCTRCacheImplementation: Bool = true
    /// `init_ec`: allow the startup cache fill.
    public var initializeCache: Bool = true
    /// `enable_pagelock`.
    public var enablePageLock: Bool = false
    /// `fp8_quant`.
    public var fp8Quantization: Bool = false

    public init() {}

    /// Number of tables of the model.
    public var tableCount: Int { embeddingVectorSizes.count }

    /// The tables of the model, with names, tags, paths and sizes resolved.
    public var tables: [TableConfig] {
        (0..<tableCount).map { i in
            TableConfig(
                model: name,
                index: i,
                name: i < tableNames.count ? tableNames[i] : "sparse_embedding\(i)",
                path: i < sparseFiles.count ? sparseFiles[i] : "",
                dimension: embeddingVectorSizes[i],
                defaultValue: i < defaultValues.count ? defaultValues[i] : 0,
                maxKeysPerSample: i < maxKeysPerSample.count ? maxKeysPerSample[i] : 1
            )
        }
    }

    /// The most keys one lookup of `table` may carry: `max_batch_size × maxnum_catfeature_query…[table]`.
    ///
    /// Saturates at `Int.max` instead of overflowing; a validated configuration keeps it at most
    /// ``ConfigLimits/maxKeysPerLookup``.
    public func maxQueryLength(table: Int) -> Int {
        let perSample = table >= 0 && table < maxKeysPerSample.count ? maxKeysPerSample[table] : 1
        let (product, overflow) = maxBatchSize.multipliedReportingOverflow(by: perSample)
        return overflow ? .max : product
    }

    /// Bytes one lookup buffer (a session's workspace) of this model takes: for the longest lookup of any
    /// table, ``ConfigLimits/lookupBytesPerKey`` per key plus two vectors of the widest table per key.
    /// Nil when the size does not fit an `Int`.
    public var lookupBufferBytes: Int? {
        let maxKeys = (0..<tableCount).map { maxQueryLength(table: $0) }.max() ?? 1
        let maxDimension = embeddingVectorSizes.max() ?? 1
        let (vectorBytes, o1) = maxDimension.multipliedReportingOverflow(by: 2 * MemoryLayout<Float>.size)
        let (perKey, o2) = vectorBytes.addingReportingOverflow(ConfigLimits.lookupBytesPerKey)
        let (total, o3) = max(1, maxKeys).multipliedReportingOverflow(by: perKey)
        return o1 || o2 || o3 ? nil : total
    }

    /// Bytes of every lookup buffer of one session of this model (`num_of_worker_buffer_in_pool` buffers).
    /// Nil when the size does not fit an `Int`.
    public var sessionBufferBytes: Int? {
        guard let one = lookupBufferBytes else { return nil }
        let (total, overflow) = one.multipliedReportingOverflow(by: max(1, workerBuffers))
        return overflow ? nil : total
    }
}

/// One embedding table of a model, as resolved from the model's config.
public struct TableConfig: Sendable, Equatable {
    public var model: String
    public var index: Int
    public var name: String
    public var path: String
    public var dimension: Int
    public var defaultValue: Float
    public var maxKeysPerSample: Int

    /// The database tag `hps_et.<model>.<table>`.
    public var tag: String { TableTag.make(model: model, table: name) }
    /// Bytes of one vector.
    public var valueSize: Int { dimension * MemoryLayout<Float>.size }
}

/// Table tags as HPS names them.
public enum TableTag {
    public static let prefix = "hps_et"

    /// `hps_et.<model>.<table>`.
    public static func make(model: String, table: String) -> String { "\(prefix).\(model).\(table)" }

    /// The prefix every table of `model` starts with.
    public static func modelPrefix(_ model: String) -> String { "\(prefix).\(model)." }

    /// Whether `name` may be used as a model or table name: `[a-zA-Z0-9_-]{1,120}`.
    public static func isValidName(_ name: String) -> Bool {
        guard (1...120).contains(name.utf8.count) else { return false }
        return name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D
        }
    }
}

/// `volatile_db.type`.
public enum VolatileDatabaseType: String, Sendable, Equatable {
    case disabled
    case hashMap = "hash_map"
    case parallelHashMap = "parallel_hash_map"
    case multiProcessHashMap = "multi_process_hash_map"
    case redisCluster = "redis_cluster"
}

/// `overflow_policy`.
public enum OverflowPolicy: String, Sendable, Equatable {
    case evictRandom = "evict_random"
    case evictLeastUsed = "evict_least_used"
    case evictOldest = "evict_oldest"
}

/// `volatile_db`, with HPS's defaults.
public struct VolatileDatabaseConfig: Sendable, Equatable {
    public var type: VolatileDatabaseType = .parallelHashMap
    public var numPartitions: Int = VolatileDatabaseConfig.defaultPartitions
    public var maxBatchSize: Int = 65536
    /// Most entries per partition; `Int.max` means no limit.
    public var overflowMargin: Int = .max
    public var overflowPolicy: OverflowPolicy = .evictRandom
    public var overflowResolutionTarget: Double = 0.8
    public var allocationRate: Int = 268_435_456
    public var sharedMemorySize: Int = 17_179_869_184
    public var sharedMemoryName: String = "hctr_mp_hash_map_database"
    public var sharedMemoryAutoRemove: Bool = true
    public var address: String = "127.0.0.1:7000"
    public var userName: String = "default"
    public var password: String = ""
    public var numNodeConnections: Int = 5
    public var enableTLS: Bool = false
    public var tlsCACertificate: String = "cacertbundle.crt"
    public var tlsClientCertificate: String = "client_cert.pem"
    public var tlsClientKey: String = "client_key.pem"
    public var tlsServerNameIdentification: String = "redis.localhost"
    public var initialCacheRate: Double = 1.0
    public var cacheMissedEmbeddings: Bool = false
    public var updateFilters: [String] = ["^hps_.+$"]
    public var initializeAfterStartup: Bool = true

    public init() {}

    /// `min(16, hardware_concurrency)`.
    public static var defaultPartitions: Int { min(16, max(1, SystemInfo.processorCount)) }
}

/// `persistent_db.type`.
public enum PersistentDatabaseType: String, Sendable, Equatable {
    case disabled
    case rocksDB = "rocks_db"
}

/// `persistent_db`, with HPS's defaults.
public struct PersistentDatabaseConfig: Sendable, Equatable {
    public var type: PersistentDatabaseType = .disabled
    public var path: String = PersistentDatabaseConfig.defaultPath
    public var numThreads: Int = 16
    public var readOnly: Bool = false
    public var maxBatchSize: Int = 65536
    public var updateFilters: [String] = ["^hps_.+$"]
    public var initializeAfterStartup: Bool = true

    public init() {}

    /// `<temp dir>/rocksdb`.
    public static var defaultPath: String { SystemInfo.temporaryDirectory + "/rocksdb" }
}

/// `update_source.type`.
public enum UpdateSourceType: String, Sendable, Equatable {
    case none = "null"
    case kafkaMessageQueue = "kafka_message_queue"
}

/// `update_source`, with HPS's defaults.
public struct UpdateSourceConfig: Sendable, Equatable {
    public var type: UpdateSourceType = .none
    public var brokers: String = "127.0.0.1:9092"
    public var metadataRefreshIntervalMs: Int = 30000
    public var receiveBufferSize: Int = 262_144
    public var pollTimeoutMs: Int = 500
    public var maxBatchSize: Int = 8192
    public var failureBackoffMs: Int = 50
    public var maxCommitInterval: Int = 32
    /// `node_name` (not in HPS): names this node in the consumer group of its local databases and caches
    /// (`hps.local.<node_name>`); nil means the host name. Two processes on one host that each keep local
    /// databases need different names to both receive every update.
    public var nodeName: String?

    public init() {}
}
