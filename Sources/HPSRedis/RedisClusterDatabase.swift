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
    private let pool: RedisWorkerPool
    private let scratch: RedisScratchPool
    private let logger: HPSLogger
    private let failureLog: RateLimitedLog
    private let partitionCount: Int
    private let maxBatch: Int
    private let tables = Mutex<[String: TableKeys]>([:])
    private let valueSizes = Mutex<[String: Int]>([:])
    private let metadataQueue = DispatchQueue(label: "hps.redis_cluster.metadata")
    private let pendingMetadataKeys = Atomic<Int>(0)
    private let lastStamp = Atomic<Int64>(0)
    private let failedLookupKeys = Atomic<Int>(0)
    private let failedInsertKeys = Atomic<Int>(0)
    private let overflowEvictions = Atomic<Int>(0)
    private let metadataDropped = Atomic<Int>(0)

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

    // MARK: Database

    public func capacity(table: String) -> Int {
        let margin = config.overflowMargin
        if margin == .max { return .max }
        let (product, overflow) = margin.multipliedReportingOverflow(by: partitionCount)
        return overflow ? .max : max(product, margin)
    }

    public func size(table tag: String) throws -> Int {
        let t = tableKeys(tag)
        let results = PartitionResults(partitionCount)
        defer { results.release() }
        pool.run(count: partitionCount) { p in
            client.pipeline(slot: t.slots[p], count: 1, build: { _, c in
                c.append(argc: 2) { argv, lengths in
                    set(argv, lengths, 0, Verb.hlen)
                    set(argv, lengths, 1, t.values[p])
                }
            }, handle: { _, outcome in
                switch outcome {
                case .reply(let reply) where reply.isInteger: results.counts[p] = reply.integer
                case .reply(let reply): results.failures[p] = unexpected(reply, "HLEN", t.values[p])
                case .failure(let failure): results.failures[p] = failure
                }
            })
        }
        try results.throwIfFailed(operation: "size", tag: tag, keys: nil)
        return results.sum
    }

    public func contains(table tag: String, keys: UnsafeBufferPointer<Int64>) throws -> Int {
        if keys.isEmpty { return 0 }
        let t = tableKeys(tag)
        let keyBase = UnsafeRawPointer(keys.baseAddress!)
        return scratch.with(capacity: keys.count) { s in
            s.group(keys)
            pool.run(count: partitionCount) { p in
                let range = s.range(p)
                guard !range.isEmpty else { return }
                client.pipeline(slot: t.slots[p], count: range.count, build: { j, c in
                    c.append(argc: 3) { argv, lengths in
                        set(argv, lengths, 0, Verb.hexists)
                        set(argv, lengths, 1, t.values[p])
                        argv[2] = (keyBase + Int(s.order[range.lowerBound + j]) * 8).assumingMemoryBound(to: CChar.self)
                        lengths[2] = 8
                    }
                }, handle: { _, outcome in
                    switch outcome {
                    case .reply(let reply) where reply.isInteger: s.counts[p] += reply.integer == 1 ? 1 : 0
                    case .reply(let reply):
                        s.failed[p] += 1
                        s.failures[p] = unexpected(reply, "HEXISTS", t.values[p])
                    case .failure(let failure):
                        s.failed[p] += 1
                        s.failures[p] = failure
                    }
                })
            }
            var found = 0
            for p in 0..<partitionCount {
                found += s.counts[p]
                if let failure = s.failures[p] { reportLookupFailure(failure, keys: s.failed[p], operation: "contains", tag: tag) }
            }
            return found
        }
    }

    @discardableResult
    public func insert(table tag: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer, valueSize: Int) throws -> Int {
        guard valueSize > 0 else {
            throw HPSError(.invalidArgument, subject: tag, "value size must be at least 1 byte, not \(valueSize)")
        }
        guard values.count >= keys.count * valueSize else {
            throw HPSError(.invalidArgument, subject: tag, "values hold \(values.count) bytes, \(keys.count) keys × \(valueSize) bytes needed")
        }
        if keys.isEmpty { return 0 }
        let t = tableKeys(tag)
        try checkValueSize(t, valueSize)
        let keyBase = UnsafeRawPointer(keys.baseAddress!)
        let valueBase = values.baseAddress!
        let policy = config.overflowPolicy
        let margin = config.overflowMargin
        let stamps = policy == .evictOldest
        let stampText = Array(String(nextStamp()).utf8)
        let maxBatch = self.maxBatch
        return try scratch.with(capacity: keys.count) { s in
            s.group(keys)
            stampText.withUnsafeBufferPointer { stamp in
                let stampArg = HashKey(UnsafeRawPointer(stamp.baseAddress!).assumingMemoryBound(to: CChar.self), stamp.count)
                pool.run(count: partitionCount) { p in
                    let range = s.range(p)
                    guard !range.isEmpty else { return }
                    let chunks = (range.count + maxBatch - 1) / maxBatch
                    let perChunk = stamps ? 2 : 1
                    let commands = chunks * perChunk + (margin == .max ? 0 : 1)
                    var length = -1
                    client.pipeline(slot: t.slots[p], count: commands, build: { command, c in
                        if command == chunks * perChunk {
                            c.append(argc: 2) { argv, lengths in
                                set(argv, lengths, 0, Verb.hlen)
                                set(argv, lengths, 1, t.values[p])
                            }
                            return
                        }
                        let chunk = command / perChunk
                        let lo = range.lowerBound + chunk * maxBatch
                        let hi = min(range.upperBound, lo + maxBatch)
                        let meta = command % perChunk == 1
                        c.append(argc: 2 + 2 * (hi - lo)) { argv, lengths in
                            set(argv, lengths, 0, Verb.hset)
                            set(argv, lengths, 1, meta ? t.meta[p] : t.values[p])
                            var a = 2
                            for j in lo..<hi {
                                let i = Int(s.order[j])
                                argv[a] = (keyBase + i * 8).assumingMemoryBound(to: CChar.self)
                                lengths[a] = 8
                                if meta {
                                    set(argv, lengths, a + 1, stampArg)
                                } else {
                                    argv[a + 1] = (valueBase + i * valueSize).assumingMemoryBound(to: CChar.self)
                                    lengths[a + 1] = valueSize
                                }
                                a += 2
                            }
                        }
                    }, handle: { command, outcome in
                        if command == chunks * perChunk {
                            if case .reply(let reply) = outcome, reply.isInteger { length = reply.integer }
                            return
                        }
                        guard command % perChunk == 0 else { return }  // LRU stamps: best effort
                        let lo = range.lowerBound + (command / perChunk) * maxBatch
                        let hi = min(range.upperBound, lo + maxBatch)
                        switch outcome {
                        case .reply(let reply) where reply.isInteger:
                            s.counts[p] += reply.integer
                        case .reply(let reply):
                            s.failed[p] += hi - lo
                            s.failures[p] = unexpected(reply, "HSET", t.values[p])
                        case .failure(let failure):
                            s.failed[p] += hi - lo
                            s.failures[p] = failure
                        }
                    })
                    if margin != .max && length > margin {
                        let (evicted, failure) = resolveOverflow(t, partition: p, length: length)
                        s.extra[p] = evicted
                        if let failure {
                            failureLog.warning(key: "overflow \(failure.address)", "redis_cluster: table \(tag) partition \(p): overflow resolution on \(failure.address) failed: \(failure.message)")
                        }
                    }
                }
            }
            var inserted = 0
            var failed = 0
            var evicted = 0
            var byNode: [String: (keys: Int, message: String)] = [:]
            for p in 0..<partitionCount {
                inserted += s.counts[p]
                failed += s.failed[p]
                evicted += s.extra[p]
                if let failure = s.failures[p] {
                    let previous = byNode[failure.address]
                    byNode[failure.address] = ((previous?.keys ?? 0) + s.failed[p], previous?.message ?? failure.message)
                }
            }
            if evicted > 0 {
                overflowEvictions.add(evicted, ordering: .relaxed)
                logger.debug("redis_cluster: table \(tag): evicted \(evicted) entries (\(policy.rawValue)) to stay within overflow_margin \(margin)")
            }
            if failed > 0 {
                failedInsertKeys.add(failed, ordering: .relaxed)
                let nodes = byNode.keys.sorted().map { "\($0) (\(byNode[$0]!.keys) keys: \(byNode[$0]!.message))" }
                let summary = "stored \(keys.count - failed) of \(keys.count) keys; \(failed) keys were not stored because \(byNode.count == 1 ? "a node" : "\(byNode.count) nodes") failed: \(nodes.joined(separator: "; "))"
                logger.error("redis_cluster: insert into \(tag): \(summary)")
                throw HPSError(
                    .database, subject: tag, "insert into Redis Cluster incomplete: \(summary)", underlying: byNode.values.first?.message,
                    unwrittenKeysByNode: byNode.mapValues(\.keys))
            }
            return inserted
        }
    }

    @discardableResult
    public func fetch(
        table tag: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeMutableRawBufferPointer, valueSize: Int,
        onMiss: (Int) -> Void
    ) throws -> Int {
        guard values.count >= keys.count * valueSize else {
            throw HPSError(.invalidArgument, subject: tag, "values hold \(values.count) bytes, \(keys.count) keys × \(valueSize) bytes needed")
        }
        if keys.isEmpty { return 0 }
        let t = tableKeys(tag)
        let keyBase = UnsafeRawPointer(keys.baseAddress!)
        let out = values.baseAddress!
        let maxBatch = self.maxBatch
        let touch = config.overflowPolicy != .evictRandom
        return try scratch.with(capacity: keys.count) { s in
            s.group(keys)
            pool.run(count: partitionCount) { p in
                let range = s.range(p)
                guard !range.isEmpty else { return }
                let chunks = (range.count + maxBatch - 1) / maxBatch
                var missCount = 0
                client.pipeline(slot: t.slots[p], count: chunks, build: { chunk, c in
                    let lo = range.lowerBound + chunk * maxBatch
                    let hi = min(range.upperBound, lo + maxBatch)
                    c.append(argc: 2 + hi - lo) { argv, lengths in
                        set(argv, lengths, 0, Verb.hmget)
                        set(argv, lengths, 1, t.values[p])
                        var a = 2
                        for j in lo..<hi {
                            argv[a] = (keyBase + Int(s.order[j]) * 8).assumingMemoryBound(to: CChar.self)
                            lengths[a] = 8
                            a += 1
                        }
                    }
                }, handle: { chunk, outcome in
                    let lo = range.lowerBound + chunk * maxBatch
                    let hi = min(range.upperBound, lo + maxBatch)
                    if case .reply(let reply) = outcome, reply.isArray, reply.count == hi - lo {
                        for j in lo..<hi {
                            let i = Int(s.order[j])
                            let element = reply[j - lo]
                            if element.isString {
                                let bytes = element.bytes
                                if bytes.count == valueSize {
                                    (out + i * valueSize).copyMemory(from: bytes.baseAddress!, byteCount: valueSize)
                                    continue
                                }
                                s.extra[p] = bytes.count
                            }
                            s.misses[range.lowerBound + missCount] = Int32(truncatingIfNeeded: i)
                            missCount += 1
                        }
                        return
                    }
                    switch outcome {
                    case .reply(let reply): s.failures[p] = unexpected(reply, "HMGET", t.values[p])
                    case .failure(let failure): s.failures[p] = failure
                    }
                    s.failed[p] += hi - lo
                    for j in lo..<hi {
                        s.misses[range.lowerBound + missCount] = s.order[j]
                        missCount += 1
                    }
                })
                s.counts[p] = missCount
            }
            var misses = 0
            for p in 0..<partitionCount where s.extra[p] != 0 {
                let stored = s.extra[p]
                valueSizes.withLock { $0[tag] = stored }
                throw HPSError(.database, subject: tag, "fetch with value size \(valueSize) bytes, but the table holds \(stored)-byte values")
            }
            for p in 0..<partitionCount {
                let start = s.starts[p]
                for j in start..<(start + s.counts[p]) { onMiss(Int(s.misses[j])) }
                misses += s.counts[p]
                if let failure = s.failures[p] { reportLookupFailure(failure, keys: s.failed[p], operation: "fetch", tag: tag) }
            }
            if touch && misses < keys.count { queueMetadataUpdate(t, keys: keys, scratch: s) }
            return keys.count - misses
        }
    }

    @discardableResult
    public func evict(table tag: String) throws -> Int {
        let t = tableKeys(tag)
        // LRU/LFU updates queued by earlier fetches must not recreate the metadata hash afterwards.
        if config.overflowPolicy != .evictRandom { waitForMetadataUpdates() }
        let results = PartitionResults(partitionCount)
        defer { results.release() }
        pool.run(count: partitionCount) { p in
            client.pipeline(slot: t.slots[p], count: 2, build: { command, c in
                if command == 0 {
                    c.append(argc: 2) { argv, lengths in
                        set(argv, lengths, 0, Verb.hlen)
                        set(argv, lengths, 1, t.values[p])
                    }
                } else {
                    c.append(argc: 3) { argv, lengths in
                        set(argv, lengths, 0, Verb.del)
                        set(argv, lengths, 1, t.values[p])
                        set(argv, lengths, 2, t.meta[p])
                    }
                }
            }, handle: { command, outcome in
                switch outcome {
                case .reply(let reply) where reply.isInteger: if command == 0 { results.counts[p] = reply.integer }
                case .reply(let reply): results.failures[p] = unexpected(reply, command == 0 ? "HLEN" : "DEL", t.values[p])
                case .failure(let failure): results.failures[p] = failure
                }
            })
        }
        valueSizes.withLock { _ = $0.removeValue(forKey: tag) }
        try results.throwIfFailed(operation: "evict", tag: tag, keys: nil)
        return results.sum
    }

    @discardableResult
    public func evict(table tag: String, keys: UnsafeBufferPointer<Int64>) throws -> Int {
        if keys.isEmpty { return 0 }
        let t = tableKeys(tag)
        if config.overflowPolicy != .evictRandom { waitForMetadataUpdates() }
        let keyBase = UnsafeRawPointer(keys.baseAddress!)
        let maxBatch = self.maxBatch
        return try scratch.with(capacity: keys.count) { s in
            s.group(keys)
            pool.run(count: partitionCount) { p in
                let range = s.range(p)
                guard !range.isEmpty else { return }
                let chunks = (range.count + maxBatch - 1) / maxBatch
                client.pipeline(slot: t.slots[p], count: chunks * 2, build: { command, c in
                    let lo = range.lowerBound + (command / 2) * maxBatch
                    let hi = min(range.upperBound, lo + maxBatch)
                    appendKeyCommand(c, Verb.hdel, command % 2 == 0 ? t.values[p] : t.meta[p], count: hi - lo) { j in
                        keyBase + Int(s.order[lo + j]) * 8
                    }
                }, handle: { command, outcome in
                    let lo = range.lowerBound + (command / 2) * maxBatch
                    let hi = min(range.upperBound, lo + maxBatch)
                    switch outcome {
                    case .reply(let reply) where reply.isInteger: if command % 2 == 0 { s.counts[p] += reply.integer }
                    case .reply(let reply):
                        s.failed[p] += hi - lo
                        s.failures[p] = unexpected(reply, "HDEL", t.values[p])
                    case .failure(let failure):
                        if command % 2 == 0 { s.failed[p] += hi - lo }
                        s.failures[p] = failure
                    }
                })
            }
            var removed = 0
            var failures: [RedisFailure] = []
            var failed = 0
            for p in 0..<partitionCount {
                removed += s.counts[p]
                failed += s.failed[p]
                if let failure = s.failures[p] { failures.append(failure) }
            }
            if !failures.isEmpty {
                throw HPSError(.database, subject: tag, "evicting \(keys.count) keys from Redis Cluster incomplete: \(failed) keys not removed; \(describe(failures))", underlying: failures[0].message)
            }
            return removed
        }
    }

    public func findTables(model: String) throws -> [String] {
        let pattern = RedisKeyLayout.valueHashPattern(model: model)
        let prefix = TableTag.modelPrefix(model)
        var tags = Set<String>()
        for node in client.masters {
            var cursor = "0"
            repeat {
                let reply: RedisValue
                do {
                    reply = try client.command(on: node, ["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"])
                } catch {
                    throw HPSError(.database, subject: node.address, "cannot list the tables of model \(model)", cause: error)
                }
                guard case .array(let parts) = reply, parts.count == 2, let next = parts[0].text, case .array(let names) = parts[1] else {
                    throw HPSError(.database, subject: node.address, "unexpected SCAN reply while listing model \(model)", underlying: reply.description)
                }
                for name in names {
                    if let key = name.text, let parsed = RedisKeyLayout.parse(key), parsed.tag.hasPrefix(prefix) { tags.insert(parsed.tag) }
                }
                cursor = next
            } while cursor != "0"
        }
        return tags.sorted()
    }

    public func forEachChunk(
        table tag: String, maxChunk: Int,
        _ body: (UnsafeBufferPointer<Int64>, UnsafeRawBufferPointer, Int) throws -> Void
    ) throws {
        let t = tableKeys(tag)
        let chunk = max(1, maxChunk)
        let count = Array(String(chunk).utf8)
        var valueSize = valueSizes.withLock { $0[tag] } ?? 0
        var keys: [Int64] = []
        var values: [UInt8] = []
        func flush(upTo limit: Int) throws {
            while keys.count >= limit && !keys.isEmpty {
                let n = min(chunk, keys.count)
                try keys.withUnsafeBufferPointer { k in
                    try values.withUnsafeBytes { v in
                        try body(UnsafeBufferPointer(rebasing: k[0..<n]), UnsafeRawBufferPointer(rebasing: v[0..<(n * valueSize)]), valueSize)
                    }
                }
                keys.removeFirst(n)
                values.removeFirst(n * valueSize)
            }
        }
        for p in 0..<partitionCount {
            var cursor: [UInt8] = Array("0".utf8)
            var seen = Set<Int64>()
            repeat {
                var failure: RedisFailure? = nil
                var next: [UInt8]? = nil
                client.pipeline(slot: t.slots[p], count: 1, build: { _, c in
                    cursor.withUnsafeBytes { cur in
                        count.withUnsafeBytes { cnt in
                            c.append(argc: 5) { argv, lengths in
                                set(argv, lengths, 0, Verb.hscan)
                                set(argv, lengths, 1, t.values[p])
                                argv[2] = cur.baseAddress!.assumingMemoryBound(to: CChar.self)
                                lengths[2] = cur.count
                                set(argv, lengths, 3, Verb.count)
                                argv[4] = cnt.baseAddress!.assumingMemoryBound(to: CChar.self)
                                lengths[4] = cnt.count
                            }
                        }
                    }
                }, handle: { _, outcome in
                    switch outcome {
                    case .reply(let reply) where reply.isArray && reply.count == 2 && reply[1].isArray:
                        next = Array(reply[0].bytes)
                        let items = reply[1]
                        var e = 0
                        while e + 1 < items.count {
                            let field = items[e].bytes
                            let value = items[e + 1].bytes
                            e += 2
                            guard field.count == 8 else { continue }
                            if valueSize == 0 { valueSize = value.count }
                            guard value.count == valueSize else {
                                failure = RedisFailure(kind: .protocolError, address: t.tag, message: "a value of \(value.count) bytes in a table of \(valueSize)-byte values")
                                return
                            }
                            let key = field.loadUnaligned(as: Int64.self)
                            guard seen.insert(key).inserted else { continue }
                            keys.append(key)
                            values.append(contentsOf: value)
                        }
                    case .reply(let reply): failure = unexpected(reply, "HSCAN", t.values[p])
                    case .failure(let f): failure = f
                    }
                })
                if let failure {
                    throw HPSError(.database, subject: tag, "cannot read partition \(p) of the table", underlying: failure.description)
                }
                try flush(upTo: chunk)
                cursor = next ?? Array("0".utf8)
            } while cursor != Array("0".utf8)
        }
        try flush(upTo: 1)
    }

    // MARK: Tables

    /// The hash keys and slots of every partition of `tag`, computed once per tag.
    private func tableKeys(_ tag: String) -> TableKeys {
        if let t = tables.withLock({ $0[tag] }) { return t }
        let t = TableKeys(tag: tag, partitions: partitionCount)
        return tables.withLock { map in
            if let existing = map[tag] { return existing }
            map[tag] = t
            return t
        }
    }

    /// Checks `valueSize` against the table's, which is learned from the cluster (one value of any
    /// partition) the first time this process writes the table.
    private func checkValueSize(_ t: TableKeys, _ valueSize: Int) throws {
        if let known = valueSizes.withLock({ $0[t.tag] }) {
            guard known == valueSize else {
                throw HPSError(.database, subject: t.tag, "value size \(valueSize) bytes does not match the table's \(known) bytes")
            }
            return
        }
        let results = PartitionResults(partitionCount)
        defer { results.release() }
        pool.run(count: partitionCount) { p in
            client.pipeline(slot: t.slots[p], count: 1, build: { _, c in
                c.append(argc: 4) { argv, lengths in
                    set(argv, lengths, 0, Verb.hrandfield)
                    set(argv, lengths, 1, t.values[p])
                    set(argv, lengths, 2, Verb.one)
                    set(argv, lengths, 3, Verb.withValues)
                }
            }, handle: { _, outcome in
                if case .reply(let reply) = outcome, reply.isArray, reply.count == 2, reply[1].isString {
                    results.counts[p] = reply[1].bytes.count
                }
            })
        }
        let stored = (0..<partitionCount).map { results.counts[$0] }.first { $0 != 0 }
        if let stored, stored != valueSize {
            valueSizes.withLock { $0[t.tag] = stored }
            throw HPSError(.database, subject: t.tag, "value size \(valueSize) bytes does not match the table's \(stored) bytes")
        }
        valueSizes.withLock { $0[t.tag] = valueSize }
    }

    // MARK: Overflow and metadata

    /// Evicts entries of partition `p` down to `round(overflow_margin × overflow_resolution_target)`.
    private func resolveOverflow(_ t: TableKeys, partition p: Int, length: Int) -> (evicted: Int, failure: RedisFailure?) {
        let margin = config.overflowMargin
        let target = max(0, min(margin, Int((Double(margin) * config.overflowResolutionTarget).rounded())))
        var excess = length - target
        var evicted = 0
        if config.overflowPolicy == .evictRandom {
            var rounds = 0
            while excess > 0 && rounds < 1000 {
                rounds += 1
                let n = min(excess, maxBatch)
                let countText = Array(String(n).utf8)
                var fields: [Int64] = []
                var failure: RedisFailure? = nil
                countText.withUnsafeBufferPointer { cnt in
                    let countArg = HashKey(UnsafeRawPointer(cnt.baseAddress!).assumingMemoryBound(to: CChar.self), cnt.count)
                    client.pipeline(slot: t.slots[p], count: 1, build: { _, c in
                        c.append(argc: 3) { argv, lengths in
                            set(argv, lengths, 0, Verb.hrandfield)
                            set(argv, lengths, 1, t.values[p])
                            set(argv, lengths, 2, countArg)
                        }
                    }, handle: { _, outcome in
                        switch outcome {
                        case .reply(let reply) where reply.isArray:
                            fields.reserveCapacity(reply.count)
                            for e in 0..<reply.count where reply[e].bytes.count == 8 { fields.append(reply[e].bytes.loadUnaligned(as: Int64.self)) }
                        case .reply(let reply): failure = unexpected(reply, "HRANDFIELD", t.values[p])
                        case .failure(let f): failure = f
                        }
                    })
                }
                if let failure { return (evicted, failure) }
                if fields.isEmpty { break }
                let (removed, deleteFailure) = deleteFields(t, partition: p, fields, fromMeta: false)
                evicted += removed
                if let deleteFailure { return (evicted, deleteFailure) }
                if removed == 0 { break }
                excess -= removed
            }
            return (evicted, nil)
        }
        // LRU / LFU: order every key by its stamp or counter (absent: 0) and drop the lowest.
        var keys: [Int64] = []
        var scores: [Int64: Int64] = [:]
        var failure: RedisFailure? = nil
        client.pipeline(slot: t.slots[p], count: 2, build: { command, c in
            c.append(argc: 2) { argv, lengths in
                set(argv, lengths, 0, command == 0 ? Verb.hkeys : Verb.hgetall)
                set(argv, lengths, 1, command == 0 ? t.values[p] : t.meta[p])
            }
        }, handle: { command, outcome in
            switch outcome {
            case .reply(let reply) where reply.isArray:
                if command == 0 {
                    keys.reserveCapacity(reply.count)
                    for e in 0..<reply.count where reply[e].bytes.count == 8 { keys.append(reply[e].bytes.loadUnaligned(as: Int64.self)) }
                } else {
                    var e = 0
                    while e + 1 < reply.count {
                        if reply[e].bytes.count == 8 {
                            scores[reply[e].bytes.loadUnaligned(as: Int64.self)] = Self.score(reply[e + 1].bytes)
                        }
                        e += 2
                    }
                }
            case .reply(let reply): failure = unexpected(reply, command == 0 ? "HKEYS" : "HGETALL", t.values[p])
            case .failure(let f): failure = f
            }
        })
        if let failure { return (0, failure) }
        excess = min(excess, keys.count)
        guard excess > 0 else { return (0, nil) }
        let ranked = keys.map { (key: $0, score: scores[$0] ?? 0) }.sorted { $0.score < $1.score }
        let victims = ranked.prefix(excess).map(\.key)
        let (removed, deleteFailure) = deleteFields(t, partition: p, victims, fromMeta: true)
        if deleteFailure == nil && scores.count > keys.count - removed {
            // Metadata of keys that are gone (evicted elsewhere, touched after eviction).
            let present = Set(keys)
            let stale = scores.keys.filter { !present.contains($0) }
            if !stale.isEmpty { _ = deleteFields(t, partition: p, stale, fromMeta: true, fromValues: false) }
        }
        return (removed, deleteFailure)
    }

    /// A metadata value as a number: ours are decimal (LFU counters from HINCRBY, LRU stamps in µs);
    /// HPS writes LRU stamps as 8 raw bytes of `time_t` (seconds), read here as µs so both order alike.
    static func score(_ bytes: UnsafeRawBufferPointer) -> Int64 {
        if !bytes.isEmpty, bytes.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }),
            let value = Int64(String(decoding: bytes, as: UTF8.self))
        {
            return value
        }
        if bytes.count == 8 { return bytes.loadUnaligned(as: Int64.self).multipliedReportingOverflow(by: 1_000_000).partialValue }
        return 0
    }

    /// HDEL `fields` from the value hash (and the metadata hash) of partition `p`.
    /// - Returns: how many left the value hash, and the failure if any.
    private func deleteFields(
        _ t: TableKeys, partition p: Int, _ fields: [Int64], fromMeta: Bool, fromValues: Bool = true
    ) -> (removed: Int, failure: RedisFailure?) {
        let chunks = (fields.count + maxBatch - 1) / maxBatch
        let hashes = (fromValues ? [t.values[p]] : []) + (fromMeta ? [t.meta[p]] : [])
        var removed = 0
        var failure: RedisFailure? = nil
        fields.withUnsafeBufferPointer { f in
            let base = UnsafeRawPointer(f.baseAddress!)
            client.pipeline(slot: t.slots[p], count: chunks * hashes.count, build: { command, c in
                let lo = (command / hashes.count) * maxBatch
                let hi = min(fields.count, lo + maxBatch)
                appendKeyCommand(c, Verb.hdel, hashes[command % hashes.count], count: hi - lo) { j in base + (lo + j) * 8 }
            }, handle: { command, outcome in
                switch outcome {
                case .reply(let reply) where reply.isInteger: if fromValues && command % hashes.count == 0 { removed += reply.integer }
                case .reply(let reply): failure = unexpected(reply, "HDEL", t.values[p])
                case .failure(let f): failure = f
                }
            })
        }
        return (removed, failure)
    }

    /// Queues LRU stamps / LFU increments for the keys a fetch found (those not in the misses).
    private func queueMetadataUpdate(_ t: TableKeys, keys: UnsafeBufferPointer<Int64>, scratch s: RedisBatchScratch) {
        var hits = 0
        var perPartition: [(partition: Int, keys: [Int64])] = []
        for p in 0..<partitionCount {
            let range = s.range(p)
            let missCount = s.counts[p]
            guard range.count > missCount else { continue }
            var found: [Int64] = []
            found.reserveCapacity(range.count - missCount)
            var m = range.lowerBound
            for j in range {
                let i = s.order[j]
                if m < range.lowerBound + missCount && s.misses[m] == i {
                    m += 1
                } else {
                    found.append(keys[Int(i)])
                }
            }
            hits += found.count
            perPartition.append((p, found))
        }
        if pendingMetadataKeys.add(hits, ordering: .relaxed).newValue > options.maxPendingMetadataKeys {
            pendingMetadataKeys.subtract(hits, ordering: .relaxed)
            metadataDropped.add(hits, ordering: .relaxed)
            return
        }
        let work = UnsafeTransfer(perPartition)
        let queued = hits
        metadataQueue.async { [self] in
            touch(t, work.value)
            pendingMetadataKeys.subtract(queued, ordering: .relaxed)
        }
    }

    /// Sends LRU stamps (`HSET t key stamp …`) or LFU increments (`HINCRBY t key 1`).
    private func touch(_ t: TableKeys, _ perPartition: [(partition: Int, keys: [Int64])]) {
        let lfu = config.overflowPolicy == .evictLeastUsed
        let stampText = Array(String(nextStamp()).utf8)
        let maxBatch = self.maxBatch
        stampText.withUnsafeBufferPointer { stamp in
            let stampArg = HashKey(UnsafeRawPointer(stamp.baseAddress!).assumingMemoryBound(to: CChar.self), stamp.count)
            for (p, keys) in perPartition {
                keys.withUnsafeBufferPointer { k in
                    let base = UnsafeRawPointer(k.baseAddress!)
                    let commands = lfu ? keys.count : (keys.count + maxBatch - 1) / maxBatch
                    var dropped = 0
                    var failure: RedisFailure? = nil
                    client.pipeline(slot: t.slots[p], count: commands, build: { command, c in
                        if lfu {
                            c.append(argc: 4) { argv, lengths in
                                set(argv, lengths, 0, Verb.hincrby)
                                set(argv, lengths, 1, t.meta[p])
                                argv[2] = (base + command * 8).assumingMemoryBound(to: CChar.self)
                                lengths[2] = 8
                                set(argv, lengths, 3, Verb.one)
                            }
                            return
                        }
                        let lo = command * maxBatch
                        let hi = min(keys.count, lo + maxBatch)
                        c.append(argc: 2 + 2 * (hi - lo)) { argv, lengths in
                            set(argv, lengths, 0, Verb.hset)
                            set(argv, lengths, 1, t.meta[p])
                            var a = 2
                            for j in lo..<hi {
                                argv[a] = (base + j * 8).assumingMemoryBound(to: CChar.self)
                                lengths[a] = 8
                                set(argv, lengths, a + 1, stampArg)
                                a += 2
                            }
                        }
                    }, handle: { command, outcome in
                        if case .failure(let f) = outcome {
                            dropped += lfu ? 1 : min(keys.count, (command + 1) * maxBatch) - command * maxBatch
                            failure = f
                        }
                    })
                    if let failure {
                        metadataDropped.add(dropped, ordering: .relaxed)
                        failureLog.warning(key: "metadata \(failure.address)", "redis_cluster: \(t.tag): \(dropped) LRU/LFU updates not stored on \(failure.address): \(failure.message)")
                    }
                }
            }
        }
    }

    /// A strictly increasing LRU stamp: microseconds since the epoch, at least one more than the last.
    private func nextStamp() -> Int64 {
        let now = WallClock.microseconds()
        var last = lastStamp.load(ordering: .relaxed)
        while true {
            let next = max(now, last + 1)
            let (exchanged, original) = lastStamp.compareExchange(expected: last, desired: next, ordering: .relaxed)
            if exchanged { return next }
            last = original
        }
    }

    // MARK: Failures

    private func reportLookupFailure(_ failure: RedisFailure, keys: Int, operation: String, tag: String) {
        failedLookupKeys.add(keys, ordering: .relaxed)
        failureLog.warning(key: "\(operation) \(failure.address)", "redis_cluster: \(operation) \(tag): \(keys) keys on \(failure.address) reported as misses: \(failure.message)")
    }

    private func unexpected(_ reply: RedisReplyView, _ command: String, _ hash: HashKey) -> RedisFailure {
        RedisFailure(kind: .protocolError, address: hash.text, message: "unexpected reply to \(command): \(reply.value)")
    }

    private func describe(_ failures: [RedisFailure]) -> String {
        var byNode: [String: String] = [:]
        for failure in failures where byNode[failure.address] == nil { byNode[failure.address] = failure.message }
        return "failed: " + byNode.keys.sorted().map { "\($0) (\(byNode[$0]!))" }.joined(separator: "; ")
    }

    /// Per-partition results of a call that does not group keys.
    private final class PartitionResults: @unchecked Sendable {
        let counts: UnsafeMutablePointer<Int>
        let failures: UnsafeMutablePointer<RedisFailure?>
        let n: Int
        init(_ n: Int) {
            self.n = n
            counts = .allocate(capacity: n)
            counts.initialize(repeating: 0, count: n)
            failures = .allocate(capacity: n)
            failures.initialize(repeating: nil, count: n)
        }
        func release() {
            counts.deallocate()
            failures.deinitialize(count: n)
            failures.deallocate()
        }
        var sum: Int { (0..<n).reduce(0) { $0 + counts[$1] } }
        func throwIfFailed(operation: String, tag: String, keys: Int?) throws {
            var byNode: [String: String] = [:]
            var partitions = 0
            for p in 0..<n {
                if let failure = failures[p] {
                    partitions += 1
                    if byNode[failure.address] == nil { byNode[failure.address] = failure.message }
                }
            }
            guard partitions > 0 else { return }
            let nodes = byNode.keys.sorted().map { "\($0) (\(byNode[$0]!))" }.joined(separator: "; ")
            throw HPSError(.database, subject: tag, "\(operation) failed for \(partitions) of \(n) partitions; failed: \(nodes)", underlying: byNode.values.first)
        }
    }
}

// MARK: - Command arguments

/// A byte string that lives as long as its owner (a table's hash key, a stamp), as a command argument.
package struct HashKey: @unchecked Sendable {
    let pointer: UnsafePointer<CChar>
    let count: Int
    init(_ pointer: UnsafePointer<CChar>, _ count: Int) {
        self.pointer = pointer
        self.count = count
    }
    var text: String {
        String(decoding: UnsafeRawBufferPointer(start: pointer, count: count), as: UTF8.self)
    }
}

/// The hash keys and slots of each partition of one table.
package final class TableKeys: @unchecked Sendable {
    let tag: String
    package let values: [HashKey]
    let meta: [HashKey]
    package let slots: [Int]
    private let storage: UnsafeMutableRawBufferPointer

    package init(tag: String, partitions: Int) {
        self.tag = tag
        let valueKeys = (0..<partitions).map { Array(RedisKeyLayout.hashKey(tag: tag, partition: $0, suffix: "v").utf8) }
        let metaKeys = (0..<partitions).map { Array(RedisKeyLayout.hashKey(tag: tag, partition: $0, suffix: "t").utf8) }
        let total = (valueKeys + metaKeys).reduce(0) { $0 + $1.count }
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, total), alignment: 1)
        self.storage = storage
        var offset = 0
        func place(_ bytes: [UInt8]) -> HashKey {
            let start = storage.baseAddress! + offset
            start.copyMemory(from: bytes, byteCount: bytes.count)
            offset += bytes.count
            return HashKey(UnsafePointer(start.assumingMemoryBound(to: CChar.self)), bytes.count)
        }
        values = valueKeys.map(place)
        meta = metaKeys.map(place)
        slots = valueKeys.map { RedisClusterSlot.slot($0) }
    }

    deinit { storage.deallocate() }
}

/// Command names as static C strings.
package enum Verb {
    package static let hmget: StaticString = "HMGET"
    static let hset: StaticString = "HSET"
    static let hlen: StaticString = "HLEN"
    static let hdel: StaticString = "HDEL"
    static let hexists: StaticString = "HEXISTS"
    static let hincrby: StaticString = "HINCRBY"
    static let hrandfield: StaticString = "HRANDFIELD"
    static let hkeys: StaticString = "HKEYS"
    static let hgetall: StaticString = "HGETALL"
    static let hscan: StaticString = "HSCAN"
    static let del: StaticString = "DEL"
    static let count: StaticString = "COUNT"
    static let withValues: StaticString = "WITHVALUES"
    static let one: StaticString = "1"
}

@inline(__always)
func set(_ argv: UnsafeMutablePointer<UnsafePointer<CChar>?>, _ lengths: UnsafeMutablePointer<Int>, _ i: Int, _ word: StaticString) {
    argv[i] = UnsafeRawPointer(word.utf8Start).assumingMemoryBound(to: CChar.self)
    lengths[i] = word.utf8CodeUnitCount
}

@inline(__always)
func set(_ argv: UnsafeMutablePointer<UnsafePointer<CChar>?>, _ lengths: UnsafeMutablePointer<Int>, _ i: Int, _ key: HashKey) {
    argv[i] = key.pointer
    lengths[i] = key.count
}

/// Appends `<verb> <hash> key_0 … key_{n-1}` where each key is 8 bytes at `key(j)`.
@inline(__always)
package func appendKeyCommand(_ c: RedisConnection, _ verb: StaticString, _ hash: HashKey, count n: Int, key: (Int) -> UnsafeRawPointer) {
    c.append(argc: 2 + n) { argv, lengths in
        set(argv, lengths, 0, verb)
        set(argv, lengths, 1, hash)
        for j in 0..<n {
            argv[2 + j] = key(j).assumingMemoryBound(to: CChar.self)
            lengths[2 + j] = 8
        }
    }
}
