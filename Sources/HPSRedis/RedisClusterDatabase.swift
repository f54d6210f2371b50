import Dispatch
import HPS
import Synchronization

/// The shared volatile tier (`volatile_db.type: redis_cluster`): every table in a Redis Cluster, in
/// HPS's layout, so HPS processes and these share one cluster.
///
/// Layout (as HPS): a table is split into `num_partitions` partitions by ``hpsKeyMix(_:)``; partition
/// `n` of table `<tag>` is the hash `hps_et{<tag>/p<n>}v` (field = the key's 8 raw little-endian bytes,
/// value = the raw vector bytes) beside `hps_et{<tag>/p<n>}t` (per-key LRU stamps or LFU counters, as
/// decimal integers). Both hashes of a partition share one cluster slot, so each partition's commands
/// go to one node as one pipeline; partitions run in parallel on a small dedicated thread pool.
///
/// Faults: a node that is down, refuses, or does not answer within the command timeout turns its keys
/// into misses for ``fetch(table:keys:values:valueSize:onMiss:)`` and ``contains(table:keys:)`` (counted
/// in ``statistics`` and logged at most once per interval per node), so lookups go on to the persistent
/// tier or the default value; ``insert(table:keys:values:valueSize:)`` and the other writes try every
/// partition and then throw one error naming the failed nodes. A failed node is retried at most every
/// ``Options/reconnectIntervalMs``; when it is back, the client reconnects by itself.
///
/// Overflow (`overflow_margin`, `overflow_policy`, `overflow_resolution_target`) is resolved per
/// partition after each insert: when `HLEN` exceeds the margin, entries are evicted down to
/// `round(margin × target)`: random ones (`HRANDFIELD`), or those with the oldest LRU stamps or smallest
/// LFU counters. Fetches refresh those stamps/counters on a background queue, off the lookup's path.
public final class RedisClusterDatabase: Database, @unchecked Sendable {
    // @unchecked Sendable: the settings, client, pools and logger are immutable after init (and thread-safe
    // themselves); the per-table maps are `Mutex`es and the counters `Atomic`s; per-call buffers come from `scratch`,
    // one call each.
    /// Settings that HPS's JSON does not carry.
    public struct Options: Sendable, Equatable {
        /// Most time to open a TCP connection to a node.
        public var connectTimeoutMs = 1000
        /// Most time to wait for each read or write on a connection.
        public var commandTimeoutMs = 1000
        /// After a node failed, its commands fail at once (keys become misses) for this long; then the next
        /// command reconnects.
        public var reconnectIntervalMs = 1000
        /// Node failures are logged at most once per node and operation per this interval (with a count of
        /// what was not logged).
        public var failureLogIntervalMs = 10_000
        /// Worker threads for partitions (besides the calling thread); nil: `min(num_partitions, 32) − 1`.
        public var workerThreads: Int? = nil
        /// LRU/LFU updates waiting for the background queue beyond which further updates are dropped.
        public var maxPendingMetadataKeys = 4_000_000

        public init() {}
    }

    /// What happened so far (counters since creation).
    public struct Statistics: Sendable, Equatable {
        /// Keys that fetch/contains reported as misses because their node failed or timed out.
        public var failedLookupKeys = 0
        /// Keys an insert could not store because their node failed.
        public var failedInsertKeys = 0
        /// Entries removed by overflow resolution.
        public var overflowEvictions = 0
        /// Commands redirected by MOVED or ASK.
        public var redirects = 0
        /// Times the slot map was loaded.
        public var slotMapRefreshes = 0
        /// Connections opened (the first ones and reconnects).
        public var connectionsOpened = 0
        /// Connection failures (each starts a node's reconnect back-off).
        public var connectionFailures = 0
        /// LRU/LFU updates dropped because the background queue was full or the node failed.
        public var metadataUpdatesDropped = 0
    }

    public var name: String { "redis_cluster" }
    public var isShared: Bool { true }
    public let config: VolatileDatabaseConfig
    public let options: Options
    /// The seed addresses from `volatile_db.address`.
    public let seeds: [RedisEndpoint]

    let client: RedisClusterClient
    let pool: RedisWorkerPool
    let scratch: RedisScratchPool
    let logger: HPSLogger
    let failureLog: RateLimitedLog
    let partitionCount: Int
    let maxBatch: Int
    let tables = Mutex<[String: TableKeys]>([:])
    let valueSizes = Mutex<[String: Int]>([:])
    let metadataQueue = DispatchQueue(label: "hps.redis_cluster.metadata")
    let pendingMetadataKeys = Atomic<Int>(0)
    let lastStamp = Atomic<Int64>(0)
    let failedLookupKeys = Atomic<Int>(0)
    let failedInsertKeys = Atomic<Int>(0)
    let overflowEvictions = Atomic<Int>(0)
    let metadataDropped = Atomic<Int>(0)

    /// Connects to the first seed of `config.address` that answers and loads the cluster's slot map.
    ///
    /// - Throws: ``HPSError`` `.invalidConfig` for a bad address or setting; `.unsupported` for
    ///   `enable_tls` (this build's hiredis has no TLS); `.database` naming the address when no seed
    ///   answers (each seed's failure in `underlying`), e.g. when AUTH is rejected.
    public init(config: VolatileDatabaseConfig, options: Options = Options(), logger: HPSLogger = .standard) throws {
        guard config.numPartitions >= 1 else {
            throw HPSError(.invalidConfig, subject: "volatile_db.num_partitions", "must be at least 1, not \(config.numPartitions)")
        }
        guard config.maxBatchSize >= 1 else {
            throw HPSError(.invalidConfig, subject: "volatile_db.max_batch_size", "must be at least 1, not \(config.maxBatchSize)")
        }
        guard config.numNodeConnections >= 1 else {
            throw HPSError(.invalidConfig, subject: "volatile_db.num_node_connections", "must be at least 1, not \(config.numNodeConnections)")
        }
        guard config.overflowMargin >= 1 else {
            throw HPSError(.invalidConfig, subject: "volatile_db.overflow_margin", "must be at least 1, not \(config.overflowMargin)")
        }
        guard config.overflowResolutionTarget > 0 && config.overflowResolutionTarget <= 1 else {
            throw HPSError(.invalidConfig, subject: "volatile_db.overflow_resolution_target", "must be in (0, 1], not \(config.overflowResolutionTarget)")
        }
        guard !config.enableTLS else {
            throw HPSError(.unsupported, subject: "volatile_db.enable_tls", "TLS connections to Redis are not available in this build (Debian's hiredis 0.14 has no TLS); use a TLS tunnel or a private network")
        }
        self.config = config
        self.options = options
        self.logger = logger
        seeds = try RedisEndpoint.parseList(config.address)
        partitionCount = config.numPartitions
        maxBatch = config.maxBatchSize
        let settings = RedisClientSettings(
            connectTimeoutMs: options.connectTimeoutMs, commandTimeoutMs: options.commandTimeoutMs,
            reconnectIntervalMs: options.reconnectIntervalMs, connectionsPerNode: config.numNodeConnections,
            userName: config.userName, password: config.password)
        do {
            client = try RedisClusterClient(seeds: seeds, settings: settings)
        } catch {
            throw HPSError(.database, subject: "volatile_db.address", "no Redis node answered at \(config.address)", cause: error)
        }
        pool = RedisWorkerPool(workers: options.workerThreads ?? (min(partitionCount, 32) - 1))
        scratch = RedisScratchPool(partitions: partitionCount)
        failureLog = RateLimitedLog(logger: logger, intervalMs: options.failureLogIntervalMs)
        let masters = client.masters.map(\.address)
        logger.info("redis_cluster: \(client.isStandalone ? "single node (cluster support disabled)" : "\(masters.count) masters") \(masters.joined(separator: ", ")); \(partitionCount) partitions, \(config.numNodeConnections) connections per node, max_batch_size \(maxBatch), overflow_margin \(config.overflowMargin == .max ? "unlimited" : String(config.overflowMargin)) (\(config.overflowPolicy.rawValue))")
    }

    deinit {
        pool.shutdown()
        client.close()
    }

    /// Counters since creation.
    public var statistics: Statistics {
        var s = Statistics()
        s.failedLookupKeys = failedLookupKeys.load(ordering: .relaxed)
        s.failedInsertKeys = failedInsertKeys.load(ordering: .relaxed)
        s.overflowEvictions = overflowEvictions.load(ordering: .relaxed)
        s.redirects = client.counters.redirects.load(ordering: .relaxed)
        s.slotMapRefreshes = client.counters.slotMapRefreshes.load(ordering: .relaxed)
        s.connectionsOpened = client.counters.connectionsOpened.load(ordering: .relaxed)
        s.connectionFailures = client.counters.connectionFailures.load(ordering: .relaxed)
        s.metadataUpdatesDropped = metadataDropped.load(ordering: .relaxed)
        return s
    }

    /// The masters of the current slot map (`host:port`).
    public var masterAddresses: [String] { client.masters.map(\.address) }

    /// Waits until the LRU/LFU updates queued by earlier fetches have been sent.
    public func waitForMetadataUpdates() { metadataQueue.sync {} }

    /// The master nodes of the slot map that do not answer `PING` now (a node in its reconnect back-off
    /// counts as not answering).
    public func unreachableNodes() -> [String] {
        client.masters.compactMap { node in
            do {
                _ = try client.command(on: node, ["PING"])
                return nil
            } catch {
                return node.address
            }
        }
    }
}
