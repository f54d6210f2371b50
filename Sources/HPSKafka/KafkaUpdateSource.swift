import HPS
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The `update_source` of type `kafka_message_queue`: consumers that write Kafka updates into the parameter
/// server's databases and device caches.
///
/// Consumer groups follow HPS's rule that shared databases take each update once per cluster while local
/// ones take every update on every node:
/// - `hps.local.<node_name>` (host name by default) writes into the local databases (hash map, RocksDB), in
///   that order, and then into the device caches of this process;
/// - `hps.shared` writes into shared databases (Redis Cluster); one member of the cluster gets each update.
///
/// Each database takes the topics its `update_filters` pass; the caches take the topics any database takes.
///
/// Offsets are committed once the targets took the rows, so a consumer killed and restarted resumes after
/// the last applied update. A volatile database inside this process (the hash map) is loaded from the
/// table files at every start, though, and would lose the updates applied before: so when the local group
/// writes into one, each partition this process is assigned for the first time is read from its beginning
/// (every retained update is applied again, in order; the persistent database takes them again harmlessly).
public final class KafkaUpdateSource: UpdateSource, @unchecked Sendable {
    /// Rows applied, messages skipped and publish → visible latencies of every consumer of this source.
    public let statistics = UpdateStatistics()
    private let consumers = Mutex<[KafkaUpdateConsumer]>([])

    /// The consumer groups this source joined.
    public var groups: [String] { consumers.withLock { $0.map(\.group) } }

    /// Starts the consumers for `server`'s configuration and its sessions made so far (make them first).
    /// - Throws: ``HPSError`` `kafkaConfiguration`, `kafkaClient` or `kafkaOperation` when a client cannot be
    ///   made or subscribe; `invalidConfig` for an invalid filter.
    public init(server: ParameterServer, logger: HPSLogger = .standard) throws {
        let config = server.config
        let source = config.updateSource
        let vdb = server.volatileDatabase, pdb = server.persistentDatabase
        let volatileFilters = try Self.filters(config.volatileDatabase.updateFilters, section: "volatile_db")
        let persistentFilters = try Self.filters(config.persistentDatabase.updateFilters, section: "persistent_db")
        let writesPersistent = pdb != nil && !config.persistentDatabase.readOnly
        let node = source.nodeName ?? Self.hostName()

        var localPatterns: [UpdateFilter] = [], sharedPatterns: [UpdateFilter] = []
        let localVolatile = vdb.map { !$0.isShared } ?? false, sharedVolatile = vdb?.isShared ?? false
        let localPersistent = writesPersistent && !(pdb?.isShared ?? false), sharedPersistent = writesPersistent && (pdb?.isShared ?? false)
        if localVolatile { localPatterns += volatileFilters }
        if sharedVolatile { sharedPatterns += volatileFilters }
        if localPersistent { localPatterns += persistentFilters }
        if sharedPersistent { sharedPatterns += persistentFilters }
        // Device caches: refreshed by the local group for every topic a database takes (or every table when
        // there is no database).
        let cacheFilters = vdb == nil && pdb == nil ? [try UpdateFilter("^hps_et\\..+$")] : volatileFilters + persistentFilters
        localPatterns += cacheFilters

        let routeLocal: KafkaUpdateConsumer.Routing = { topic in
            UpdateTargets(
                volatileDatabase: localVolatile && volatileFilters.matchAny(topic),
                persistentDatabase: localPersistent && persistentFilters.matchAny(topic),
                deviceCaches: cacheFilters.matchAny(topic),
                awaitSharedVolatile: sharedVolatile && volatileFilters.matchAny(topic))
        }
        let routeShared: KafkaUpdateConsumer.Routing = { topic in
            UpdateTargets(
                volatileDatabase: sharedVolatile && volatileFilters.matchAny(topic),
                persistentDatabase: sharedPersistent && persistentFilters.matchAny(topic), deviceCaches: false)
        }
        do {
            let local = try KafkaUpdateConsumer(
                    group: "hps.local.\(node)", membership: .assignAll(filters: localPatterns), server: server, config: source,
                    statistics: statistics, logger: logger, replayFromStart: localVolatile, routing: routeLocal)
            consumers.withLock { $0.append(local) }
            if sharedVolatile || sharedPersistent {
                let shared = try KafkaUpdateConsumer(
                        group: "hps.shared", membership: .group(patterns: Self.unique(sharedPatterns)), server: server, config: source,
                        statistics: statistics, logger: logger, replayFromStart: false, routing: routeShared)
                consumers.withLock { $0.append(shared) }
            }
        } catch {
            stop()
            throw error
        }
        logger.info(
            "Kafka update source at \(source.brokers): consumer group(s) \(groups.joined(separator: ", ")); "
                + "poll_timeout_ms \(source.pollTimeoutMs), max_batch_size \(source.maxBatchSize), max_commit_interval \(source.maxCommitInterval)")
    }

    public func stop() {
        let all = consumers.withLock { $0 }
        for consumer in all { consumer.stop() }
    }

    private static func filters(_ strings: [String], section: String) throws -> [UpdateFilter] {
        do { return try [UpdateFilter](filters: strings) } catch {
            throw HPSError(.invalidConfig, subject: "\(section).update_filters", "\(strings) holds an invalid regular expression: \(error)")
        }
    }

    private static func unique(_ filters: [UpdateFilter]) -> [String] {
        var seen = Set<String>()
        return filters.map(\.pattern).filter { seen.insert($0).inserted }
    }

    static func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "localhost" }
        let host = cText(name)
        return host.isEmpty ? "localhost" : host
    }
}
