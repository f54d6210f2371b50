import CRdKafka
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import HPS
import Synchronization

/// One consumer group member: polls the topics its filters match, buffers rows per topic up to
/// `max_batch_size`, applies each batch to its targets, and commits offsets only after the targets took every
/// row of the messages up to them (at-least-once: a restart re-applies at most the uncommitted tail).
final class KafkaUpdateConsumer: @unchecked Sendable {
    /// Where the rows of one topic go, or nil when the topic is not for this consumer.
    typealias Routing = @Sendable (String) -> UpdateTargets?

    /// How the consumer gets its partitions.
    enum Membership {
        /// Joins the consumer group, subscribed to these topic patterns; the group spreads the partitions
        /// over its members (a shared database takes each update once per cluster).
        case group(patterns: [String])
        /// The only reader of its group (one per node): assigns itself every partition of every topic the
        /// filters pass, found in the cluster's metadata every `metadata_refresh_interval_ms`, and commits
        /// under the group id. No group membership: a restarted process resumes at once, without waiting for
        /// the dead member's session to expire.
        case assignAll(filters: [UpdateFilter])
    }

    let group: String
    private let client: OpaquePointer
    private weak var server: ParameterServer?
    private let routing: Routing
    /// Whether partitions assigned for the first time in this process start at their beginning rather than
    /// at the committed offset (see ``KafkaUpdateSource``: an in-process database reloaded from the table
    /// files at start must take every retained update again).
    let replayFromStart: Bool
    private var assignedBefore = Set<PartitionKey>()
    private let membership: Membership
    private var nextMetadataRefresh = ContinuousClock.now
    private let config: UpdateSourceConfig
    private let keyWidth: KeyWidth
    private let statistics: UpdateStatistics
    private let logger: HPSLogger
    private let running = Atomic<Bool>(true)
    /// The rebalance callback's view of this consumer (weak: the client never keeps the consumer alive).
    private final class RebalanceContext {
        weak var consumer: KafkaUpdateConsumer?
    }
    private let rebalance = RebalanceContext()
    private let finished = DispatchSemaphore(value: 0)
    private let metadataFinished = DispatchSemaphore(value: 0)
    /// The polling loop's own queue (a blocking loop: never on Swift's cooperative pool).
    private let queue: DispatchQueue
    private static let onPollingQueue = DispatchSpecificKey<Bool>()

    /// Per topic: its table and targets (nil: skipped), and the rows buffered for it.
    private final class TopicState {
        let table: TableConfig?
        let targets: UpdateTargets?
        var keys: [Int64] = []
        var values: [UInt8] = []
        var oldestTimestampMs: Int64?
        init(table: TableConfig?, targets: UpdateTargets?) {
            self.table = table
            self.targets = targets
        }
    }
    private var topics: [String: TopicState] = [:]
    private struct PartitionKey: Hashable { let topic: String; let partition: Int32 }
    /// The next offset to commit per partition: every message before it is applied (or skipped).
    private var consumed: [PartitionKey: Int64] = [:]
    private var uncommittedMessages = 0
    /// Set when the parameter server went away before a batch was applied: nothing is committed any more.
    private var abandoned = false
    private var lastSummary = ContinuousClock.now
    private var summarizedSkips = 0
    private var pendingLog = (keys: 0, batches: 0, maxLatency: 0.0, since: ContinuousClock.now - .seconds(60), lastTopic: "")

    /// Creates the client, subscribes to `patterns` and starts polling on a thread of its own.
    /// - Throws: ``HPSError`` `kafkaConfiguration` or `kafkaClient` when the client cannot be created;
    ///   `kafkaOperation` when the subscription is refused.
    init(
        group: String, membership: Membership, server: ParameterServer, config: UpdateSourceConfig, statistics: UpdateStatistics,
        logger: HPSLogger, replayFromStart: Bool, routing: @escaping Routing
    ) throws {
        self.group = group
        self.queue = DispatchQueue(label: "hps.kafka.\(group)")
        self.membership = membership
        self.replayFromStart = replayFromStart
        self.server = server
        self.routing = routing
        self.config = config
        self.keyWidth = server.keyWidth
        self.statistics = statistics
        self.logger = logger
        var properties = KafkaClientConfig([
            ("bootstrap.servers", bootstrapList(config.brokers)),
            ("group.id", group),
            ("client.id", "hps-\(group)"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("allow.auto.create.topics", "true"),
            ("topic.metadata.refresh.interval.ms", String(config.metadataRefreshIntervalMs)),
            ("socket.receive.buffer.bytes", String(config.receiveBufferSize)),
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
            ("max.poll.interval.ms", "10000"),
            // An empty fetch waits at most this long on the broker: poll_timeout_ms bounds the wait for news.
            ("fetch.wait.max.ms", String(min(500, max(10, config.pollTimeoutMs)))),
        ])
        properties.set("log_level", "3")
        let opaque = Unmanaged.passUnretained(rebalance).toOpaque()
        client = try properties.makeClient(RD_KAFKA_CONSUMER, what: "consumer group \(group) at \(config.brokers)") { conf in
            rd_kafka_conf_set_opaque(conf, opaque)
            rd_kafka_conf_set_rebalance_cb(conf) { client, error, partitions, opaque in
                guard let client, let opaque else { return }
                let consumer = Unmanaged<RebalanceContext>.fromOpaque(opaque).takeUnretainedValue().consumer
                if error == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, let partitions {
                    consumer?.prepareAssignment(partitions)
                    rd_kafka_assign(client, partitions)
                } else {
                    // Revoked: apply what is buffered and commit it while the partitions are still ours.
                    consumer?.flushAll()
                    consumer?.commit(sync: true)
                    rd_kafka_assign(client, nil)
                }
            }
        }
        rebalance.consumer = self
        rd_kafka_poll_set_consumer(client)
        if case .group(let patterns) = membership {
            let list = rd_kafka_topic_partition_list_new(Int32(patterns.count))
            for pattern in patterns { rd_kafka_topic_partition_list_add(list, pattern, RD_KAFKA_PARTITION_UA) }
            let error = rd_kafka_subscribe(client, list)
            rd_kafka_topic_partition_list_destroy(list)
            if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                rd_kafka_destroy(client)
                throw HPSError(.kafkaOperation, subject: "consumer group \(group)", "subscribing to \(patterns) failed", kafkaError: error)
            }
        }
        queue.setSpecific(key: Self.onPollingQueue, value: true)
        queue.async { [self] in run() }
        if case .assignAll = membership {
            // Metadata requests wait behind the fetch long-poll on the broker connection: keep them off the
            // polling loop, so they never delay an update.
            DispatchQueue(label: "hps.kafka.\(group).metadata").async { [self] in
                defer { metadataFinished.signal() }
                while running.load(ordering: .acquiring) {
                    refreshAssignment()
                    usleep(20_000)
                }
            }
        } else {
            metadataFinished.signal()
        }
    }

    /// Stops polling and waits for the thread to leave the group (unless called on that thread).
    func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        if DispatchQueue.getSpecific(key: Self.onPollingQueue) != true { finished.wait() }
    }

    /// Before partitions are assigned (on the polling thread): with ``replayFromStart``, those this process
    /// has not had yet start at their beginning.
    private func prepareAssignment(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        let count = Int(list.pointee.cnt)
        var replayed = 0
        for i in 0..<count {
            let entry = list.pointee.elems + i
            let key = PartitionKey(topic: String(cString: entry.pointee.topic), partition: entry.pointee.partition)
            if replayFromStart && assignedBefore.insert(key).inserted {
                entry.pointee.offset = Int64(RD_KAFKA_OFFSET_BEGINNING)
                replayed += 1
            }
        }
        logger.info("Kafka update source \(group): assigned \(count) partition(s)\(replayed > 0 ? ", \(replayed) replayed from their beginning (this process's volatile database was loaded from the table files)" : "")")
    }

    /// With ``Membership/assignAll(filters:)`` (on the metadata queue): assigns the partitions of matching
    /// topics not assigned yet (their committed offset, or the beginning: see ``replayFromStart``).
    private func refreshAssignment() {
        guard case .assignAll(let filters) = membership, ContinuousClock.now >= nextMetadataRefresh else { return }
        nextMetadataRefresh = ContinuousClock.now + .milliseconds(max(10, config.metadataRefreshIntervalMs))
        var metadata: UnsafePointer<rd_kafka_metadata_t>?
        let error = rd_kafka_metadata(client, 1, nil, &metadata, 2000)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            logger.debug("Kafka consumer \(group): metadata request failed (\(String(cString: rd_kafka_err2str(error)))); trying again later")
            nextMetadataRefresh = ContinuousClock.now + .milliseconds(max(10, min(1000, config.metadataRefreshIntervalMs)))
            return
        }
        defer { rd_kafka_metadata_destroy(metadata) }
        var added: [(PartitionKey, Int64)] = []
        for t in 0..<Int(metadata.pointee.topic_cnt) {
            let topic = metadata.pointee.topics[t]
            guard topic.err == RD_KAFKA_RESP_ERR_NO_ERROR, let name = topic.topic.map({ String(cString: $0) }),
                !name.hasPrefix("__"), filters.matchAny(name)
            else { continue }
            for p in 0..<Int(topic.partition_cnt) {
                let key = PartitionKey(topic: name, partition: topic.partitions[p].id)
                guard assignedBefore.insert(key).inserted else { continue }
                added.append((key, replayFromStart ? Int64(RD_KAFKA_OFFSET_BEGINNING) : Int64(RD_KAFKA_OFFSET_STORED)))
            }
        }
        guard !added.isEmpty else { return }
        let list = rd_kafka_topic_partition_list_new(Int32(added.count))!
        for (key, offset) in added { rd_kafka_topic_partition_list_add(list, key.topic, key.partition)!.pointee.offset = offset }
        let failure = rd_kafka_incremental_assign(client, list)
        rd_kafka_topic_partition_list_destroy(list)
        if let failure {
            logger.error("Kafka consumer \(group): assigning \(added.count) partition(s) failed: \(String(cString: rd_kafka_error_string(failure)))")
            rd_kafka_error_destroy(failure)
            for (key, _) in added { assignedBefore.remove(key) }
            return
        }
        let topics = Set(added.map(\.0.topic)).sorted().joined(separator: ", ")
        logger.info(
            "Kafka update source \(group): assigned \(added.count) partition(s) of \(topics)"
                + (replayFromStart ? ", read from their beginning (this process's volatile database was loaded from the table files)" : ", from the committed offsets"))
    }

    // MARK: The polling thread

    private func run() {
        defer {
            flushAll()
            commit(sync: true)
            logSkipSummary(force: true)
            metadataFinished.wait()
            if case .assignAll = membership { _ = rd_kafka_assign(client, nil) }
            rd_kafka_consumer_close(client)
            rd_kafka_destroy(client)
            finished.signal()
        }
        while running.load(ordering: .acquiring) {
            // Take what is queued now; once the queue is empty, apply the partial batches before waiting, so
            // an update is visible right after its last message arrived, not a poll timeout later.
            var message = rd_kafka_consumer_poll(client, 0)
            if message == nil {
                if flushAll() { commit(sync: false) } else if uncommittedMessages > 0 { commit(sync: false) }
                logSkipSummary(force: false)
                logApplied(topic: nil, keys: 0, latency: nil)
                message = rd_kafka_consumer_poll(client, Int32(clamping: config.pollTimeoutMs))
            }
            guard let message else { continue }
            handle(message)
            rd_kafka_message_destroy(message)
            if uncommittedMessages >= config.maxCommitInterval, running.load(ordering: .acquiring) {
                flushAll()
                commit(sync: false)
            }
        }
    }

    private func handle(_ message: UnsafeMutablePointer<rd_kafka_message_t>) {
        let m = message.pointee
        if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            if m.err != RD_KAFKA_RESP_ERR__PARTITION_EOF {
                let text = String(cString: rd_kafka_err2str(m.err))
                logger.debug("Kafka consumer \(group): \(text)")
            }
            return
        }
        guard let rkt = m.rkt else { return }
        let topic = String(cString: rd_kafka_topic_name(rkt))
        let state = topicState(topic)
        defer {
            consumed[PartitionKey(topic: topic, partition: m.partition)] = m.offset + 1
            uncommittedMessages += 1
        }
        guard let table = state.table, let targets = state.targets else {
            skip(topic: topic, .unknownTable, "no table of the configuration has this tag")
            return
        }
        guard !targets.isEmpty else { return }  // not for this consumer's databases
        let payload = UnsafeRawBufferPointer(start: m.payload, count: m.payload == nil ? 0 : m.len)
        switch UpdateMessage.inspect(payload, keyWidth: keyWidth, expectedValueSize: table.valueSize) {
        case .beacon:
            statistics.recordBeacon()
        case .malformed(let problem):
            skip(topic: topic, problem, problemDetail(problem, payload: payload, table: table))
        case .rows(let count, let valueSize):
            var tsType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
            let timestamp = rd_kafka_message_timestamp(message, &tsType)
            var done = 0
            while done < count {
                if state.keys.count >= config.maxBatchSize { apply(topic: topic, state) }
                let n = min(count - done, config.maxBatchSize - state.keys.count)
                let keyStart = state.keys.count, valueStart = state.values.count
                state.keys.append(contentsOf: repeatElement(0, count: n))
                state.values.append(contentsOf: repeatElement(0, count: n * valueSize))
                state.keys.withUnsafeMutableBufferPointer { k in
                    state.values.withUnsafeMutableBytes { v in
                        UpdateMessage.copyRows(
                            payload, range: done..<(done + n), valueSize: valueSize, keyWidth: keyWidth,
                            keys: k.baseAddress! + keyStart, values: v.baseAddress! + valueStart)
                    }
                }
                if tsType != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE, timestamp > 0 {
                    state.oldestTimestampMs = min(state.oldestTimestampMs ?? timestamp, timestamp)
                }
                done += n
            }
            if state.keys.count >= config.maxBatchSize { apply(topic: topic, state) }
        }
    }

    private func problemDetail(_ problem: UpdateMessage.Problem, payload: UnsafeRawBufferPointer, table: TableConfig) -> String {
        switch problem {
        case .badHeader: return "\(payload.count) bytes, not starting with the HCTR header"
        case .valueSize:
            let size = payload.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
            return "value size \(UInt32(littleEndian: size)) bytes, the table's rows are \(table.valueSize) bytes (dimension \(table.dimension))"
        case .truncated: return "\(payload.count - UpdateMessage.headerSize) bytes of records are not a whole number of \(keyWidth.byteCount)+\(table.valueSize)-byte records"
        case .unknownTable: return "no table of the configuration has this tag"
        }
    }

    private func topicState(_ topic: String) -> TopicState {
        if let state = topics[topic] { return state }
        let table = server?.table(tag: topic)
        let state = TopicState(table: table, targets: table == nil ? nil : routing(topic))
        if let table {
            state.keys.reserveCapacity(config.maxBatchSize)
            state.values.reserveCapacity(config.maxBatchSize * table.valueSize)
        }
        topics[topic] = state
        return state
    }

    private func skip(topic: String, _ problem: UpdateMessage.Problem, _ detail: String) {
        if statistics.recordSkip(topic: topic, problem: problem) {
            logger.warning(
                "Kafka topic \(topic): skipping a message (\(problem): \(detail)); further messages skipped on this topic are counted and reported in summary lines")
        }
    }

    private func logSkipSummary(force: Bool) {
        let total = statistics.skippedTotal
        guard total != summarizedSkips, force || ContinuousClock.now - lastSummary >= .seconds(5) else { return }
        summarizedSkips = total
        lastSummary = ContinuousClock.now
        for line in statistics.skipSummary() { logger.warning("Kafka update source \(group): \(line)") }
    }

    /// Applies every buffered batch. - Returns: whether anything was applied.
    @discardableResult
    private func flushAll() -> Bool {
        var any = false
        for (topic, state) in topics where !state.keys.isEmpty {
            apply(topic: topic, state)
            any = true
        }
        return any
    }

    /// Applies the batch of `topic`, retrying every `failure_backoff_ms` until the targets take it or the
    /// consumer stops (then nothing past it is committed).
    private func apply(topic: String, _ state: TopicState) {
        guard let table = state.table, let targets = state.targets, !state.keys.isEmpty else { return }
        while true {
            guard let server else {
                abandoned = true
                return
            }
            do {
                try state.keys.withUnsafeBufferPointer { k in
                    try state.values.withUnsafeBytes { v in try server.applyUpdate(table: table, keys: k, values: v, targets: targets) }
                }
                break
            } catch {
                logger.error("Kafka update source \(group): applying \(state.keys.count) rows of \(topic) failed; retrying in \(config.failureBackoffMs) ms: \(error)")
                guard running.load(ordering: .acquiring) else {
                    // Not applied: drop the offsets of this consumer so nothing past them is committed.
                    consumed.removeAll()
                    uncommittedMessages = 0
                    return
                }
                usleep(UInt32(clamping: config.failureBackoffMs * 1000))
            }
        }
        let latency = state.oldestTimestampMs.map { Double(Self.nowMs() - $0) }
        statistics.recordBatch(keys: state.keys.count, latencyMs: latency)
        logApplied(topic: topic, keys: state.keys.count, latency: latency)
        state.keys.removeAll(keepingCapacity: true)
        state.values.removeAll(keepingCapacity: true)
        state.oldestTimestampMs = nil
    }

    /// One info line per second at most: keys applied and the worst publish → visible latency since the last
    /// line (`topic` nil: no new batch, only print what is pending once its second is over).
    private func logApplied(topic: String?, keys: Int, latency: Double?) {
        if let topic {
            pendingLog.keys += keys
            pendingLog.batches += 1
            pendingLog.lastTopic = topic
        }
        guard pendingLog.keys > 0 else { return }
        pendingLog.maxLatency = max(pendingLog.maxLatency, latency ?? 0)
        let now = ContinuousClock.now
        guard now - pendingLog.since >= .seconds(1) else {
            if let topic {
                logger.debug("Kafka update source \(group): applied \(keys) keys of \(topic); publish → visible \(latency.map { "\(milliseconds($0)) ms" } ?? "unknown")")
            }
            return
        }
        logger.info(
            "Kafka update source \(group): applied \(pendingLog.keys) keys in \(pendingLog.batches) batch(es) (last: \(pendingLog.lastTopic)); "
                + "publish → visible max \(milliseconds(pendingLog.maxLatency)) ms, p50 \(milliseconds(statistics.latencyQuantile(0.5) ?? 0)) ms, "
                + "p99 \(milliseconds(statistics.latencyQuantile(0.99) ?? 0)) ms")
        pendingLog = (0, 0, 0, now, pendingLog.lastTopic)
    }

    /// Commits the offsets of everything applied or skipped so far.
    private func commit(sync: Bool) {
        guard !consumed.isEmpty, !abandoned else { return }
        let list = rd_kafka_topic_partition_list_new(Int32(consumed.count))!
        for (key, offset) in consumed {
            let entry = rd_kafka_topic_partition_list_add(list, key.topic, key.partition)!
            entry.pointee.offset = offset
        }
        let error = rd_kafka_commit(client, list, sync ? 0 : 1)
        rd_kafka_topic_partition_list_destroy(list)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR && error != RD_KAFKA_RESP_ERR__NO_OFFSET {
            logger.debug("Kafka consumer \(group): commit failed (\(String(cString: rd_kafka_err2str(error)))); the messages may be applied again")
        }
        consumed.removeAll(keepingCapacity: true)
        uncommittedMessages = 0
    }

    static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// `;`-separated brokers (HPS's syntax) as librdkafka's `,`-separated list.
func bootstrapList(_ brokers: String) -> String { brokers.split(separator: ";").joined(separator: ",") }

/// Milliseconds with one decimal.
func milliseconds(_ value: Double) -> String { value.isFinite ? "\((value * 10).rounded() / 10)" : "\(value)" }
