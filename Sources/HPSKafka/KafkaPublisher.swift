import CRdKafka
import HPS
import Synchronization

/// The update sink: posts rows of tables to Kafka in HPS's message format with HPS's partitioning, so a
/// training loop can stream the rows it changed to every serving process.
///
/// Each table's rows go to topic `hps_et.<model>.<table>`. Keys are grouped by
/// `rrxmrrxmsx_0(key) % keyGroups` (HPS's `num_partitions`, 8), each group filling its own send buffer of up
/// to `sendBufferSize` bytes per message; a group's messages go to Kafka partition `group % partition count`,
/// so every update of one key travels through one partition, in order.
///
/// Post and flush from one thread at a time.
public final class KafkaPublisher: @unchecked Sendable {
    /// What a ``flush(timeoutMs:)`` found delivered since the publisher was made.
    public struct Report: Sendable, Equatable, CustomStringConvertible {
        /// Messages and rows handed to the client.
        public var messages = 0, rows = 0
        /// Messages and rows the brokers acknowledged.
        public var deliveredMessages = 0, deliveredRows = 0
        /// Messages the brokers refused or that timed out.
        public var failedMessages = 0
        /// librdkafka's text for the first failed message.
        public var firstFailure: String?
        public var description: String {
            "\(deliveredRows) of \(rows) rows delivered in \(deliveredMessages) of \(messages) messages"
                + (failedMessages > 0 ? "; \(failedMessages) failed (\(firstFailure ?? "unknown"))" : "")
        }
    }

    /// Counts the delivery reports (librdkafka calls back on the thread that polls or flushes).
    final class Deliveries: Sendable {
        let report = Mutex(Report())
        let keyBytes: Int
        init(keyBytes: Int) { self.keyBytes = keyBytes }
    }

    public let brokers: String
    public let keyGroups: Int
    public let sendBufferSize: Int
    public let keyWidth: KeyWidth
    private let client: OpaquePointer
    private let deliveries: Deliveries
    private var topics: [String: OpaquePointer] = [:]
    private var partitionCounts: [String: Int] = [:]
    /// Per topic, the open buffer of each key group.
    private var buffers: [String: [[UInt8]]] = [:]
    private var valueSizes: [String: Int] = [:]

    /// A producer for `brokers` (`host:port`, separated by `,` or `;`).
    /// - Parameters:
    ///   - keyGroups: HPS's `num_partitions` of the sink (8): how keys are grouped into messages.
    ///   - sendBufferSize: most payload bytes per message (HPS: 256 KiB).
    ///   - keyWidth: 8-byte keys (`supportlonglong: true`) or 4-byte keys.
    /// - Throws: ``HPSError`` `invalidArgument` for no broker or a bad size; `kafkaConfiguration` or
    ///   `kafkaClient` when the client cannot be made.
    public init(brokers: String, keyGroups: Int = 8, sendBufferSize: Int = 262_144, keyWidth: KeyWidth = .int64) throws {
        guard !brokers.isEmpty else { throw HPSError(.invalidArgument, subject: "brokers", "no broker given") }
        guard keyGroups >= 1 else { throw HPSError(.invalidArgument, subject: "key groups", "\(keyGroups) must be at least 1") }
        guard sendBufferSize >= 1024 else { throw HPSError(.invalidArgument, subject: "send buffer size", "\(sendBufferSize) bytes is below 1024") }
        self.brokers = brokers
        self.keyGroups = keyGroups
        self.sendBufferSize = sendBufferSize
        self.keyWidth = keyWidth
        deliveries = Deliveries(keyBytes: keyWidth.byteCount)
        let properties = KafkaClientConfig([
            ("bootstrap.servers", bootstrapList(brokers)),
            ("client.id", "hps-publisher"),
            ("linger.ms", "2"),
            ("message.max.bytes", String(max(1_000_000, sendBufferSize + 4096))),
            ("log_level", "3"),
        ])
        let opaque = Unmanaged.passUnretained(deliveries).toOpaque()
        client = try properties.makeClient(RD_KAFKA_PRODUCER, what: "producer for \(brokers)") { conf in
            rd_kafka_conf_set_opaque(conf, opaque)
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
                guard let message, let opaque else { return }
                let deliveries = Unmanaged<Deliveries>.fromOpaque(opaque).takeUnretainedValue()
                let m = message.pointee
                var rows = 0
                if m.len > UpdateMessage.headerSize, let payload = m.payload {
                    let valueSize = Int(UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
                    rows = (m.len - UpdateMessage.headerSize) / (deliveries.keyBytes + valueSize)
                }
                deliveries.report.withLock { r in
                    if m.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                        r.deliveredMessages += 1
                        r.deliveredRows += rows
                    } else {
                        r.failedMessages += 1
                        if r.firstFailure == nil { r.firstFailure = String(cString: rd_kafka_err2str(m.err)) }
                    }
                }
            }
        }
    }

    deinit {
        for (_, topic) in topics { rd_kafka_topic_destroy(topic) }
        rd_kafka_destroy(client)
    }

    /// Queues `keys.count` rows of table `table` of `model`: `values` holds `keys.count × valueSize` bytes
    /// (float32 rows). Rows are sent as their group's buffer fills, the rest by ``flush(timeoutMs:)``.
    /// - Throws: ``HPSError`` `invalidArgument` for a bad name, size or a value size that changed for the
    ///   table; `kafkaOperation` when the client refuses a message.
    public func post(model: String, table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer, valueSize: Int) throws {
        guard TableTag.isValidName(model) else { throw HPSError(.invalidArgument, subject: "model \"\(model)\"", "not a valid model name (1 to 120 characters of [a-zA-Z0-9_-])") }
        guard TableTag.isValidName(table) else { throw HPSError(.invalidArgument, subject: "table \"\(table)\"", "not a valid table name (1 to 120 characters of [a-zA-Z0-9_-])") }
        guard valueSize > 0, valueSize % 4 == 0, valueSize + keyWidth.byteCount + UpdateMessage.headerSize <= sendBufferSize else {
            throw HPSError(.invalidArgument, subject: "value size", "\(valueSize) bytes per row must be a positive multiple of 4 that fits a \(sendBufferSize)-byte message")
        }
        guard values.count == keys.count * valueSize else {
            throw HPSError(.invalidArgument, subject: "values", "\(values.count) bytes for \(keys.count) keys of \(valueSize) bytes each (expected \(keys.count * valueSize))")
        }
        let tag = TableTag.make(model: model, table: table)
        if let known = valueSizes[tag], known != valueSize {
            throw HPSError(.invalidArgument, subject: tag, "rows of \(valueSize) bytes after rows of \(known) bytes; flush before changing the dimension")
        }
        valueSizes[tag] = valueSize
        if buffers[tag] == nil { buffers[tag] = Array(repeating: [], count: keyGroups) }
        let record = keyWidth.byteCount + valueSize
        for i in 0..<keys.count {
            let group = Int(hpsKeyMix(keys[i]) % UInt64(keyGroups))
            if buffers[tag]![group].isEmpty {
                buffers[tag]![group] = UpdateMessage.header(valueSize: valueSize)
                buffers[tag]![group].reserveCapacity(min(sendBufferSize, UpdateMessage.headerSize + record * 4096))
            }
            UpdateMessage.appendRecord(
                to: &buffers[tag]![group], key: keys[i], value: UnsafeRawBufferPointer(rebasing: values[(i * valueSize)..<((i + 1) * valueSize)]),
                keyWidth: keyWidth)
            if buffers[tag]![group].count + record > sendBufferSize { try send(tag: tag, group: group) }
        }
        rd_kafka_poll(client, 0)
    }

    /// Sends every open buffer and waits up to `timeoutMs` for the brokers to acknowledge every message.
    /// - Returns: what was delivered since the publisher was made.
    /// - Throws: ``HPSError`` `kafkaDelivery` when messages are still undelivered at the timeout or were refused
    ///   (the report is in the message).
    @discardableResult
    public func flush(timeoutMs: Int = 30_000) throws -> Report {
        for tag in buffers.keys.sorted() {
            for group in 0..<keyGroups where !(buffers[tag]![group].isEmpty) { try send(tag: tag, group: group) }
        }
        let error = rd_kafka_flush(client, Int32(clamping: timeoutMs))
        let report = self.report
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw HPSError(.kafkaDelivery, subject: brokers, "not every message was acknowledged within \(timeoutMs) ms: \(report)", kafkaError: error)
        }
        if report.failedMessages > 0 {
            throw HPSError(.kafkaDelivery, subject: brokers, "\(report)")
        }
        return report
    }

    /// Queues `payload` as one message to `topic` exactly as given (no header added, Kafka partition 0 of
    /// the topic's key group rule): for testing consumers with hand-made or captured messages.
    /// - Throws: ``HPSError`` `kafkaOperation` when the client refuses it.
    public func postRaw(topic tag: String, payload: [UInt8]) throws {
        guard !tag.isEmpty else { throw HPSError(.invalidArgument, subject: "topic", "empty topic name") }
        try produce(tag: tag, payload: payload, group: 0, rows: 0)
    }

    /// What was queued and delivered so far.
    public var report: Report { deliveries.report.withLock { $0 } }

    /// The handle of topic `tag` and its partition count (asked of the brokers once; the topic is created on
    /// first use where the brokers allow it).
    private func topic(_ tag: String) throws -> (handle: OpaquePointer, partitions: Int) {
        if let topic = topics[tag], let count = partitionCounts[tag] { return (topic, count) }
        let handle: OpaquePointer
        if let known = topics[tag] {
            handle = known
        } else {
            guard let made = rd_kafka_topic_new(client, tag, nil) else {
                throw HPSError(.kafkaOperation, subject: tag, "could not create the topic handle", kafkaError: rd_kafka_last_error())
            }
            topics[tag] = made
            handle = made
        }
        // The partition is chosen here, not by a partitioner callback: librdkafka gives messages without a key
        // to its sticky partitioner, which would scatter one key group over several partitions.
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(15)
        var lastError = RD_KAFKA_RESP_ERR_NO_ERROR
        while clock.now < deadline {
            var metadata: UnsafePointer<rd_kafka_metadata_t>?
            let error = rd_kafka_metadata(client, 0, handle, &metadata, 5000)
            if error == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata {
                defer { rd_kafka_metadata_destroy(metadata) }
                if metadata.pointee.topic_cnt > 0 {
                    let t = metadata.pointee.topics[0]
                    if t.err == RD_KAFKA_RESP_ERR_NO_ERROR && t.partition_cnt > 0 {
                        partitionCounts[tag] = Int(t.partition_cnt)
                        return (handle, Int(t.partition_cnt))
                    }
                    lastError = t.err
                }
            } else {
                lastError = error
            }
            rd_kafka_poll(client, 100)
        }
        throw HPSError(.kafkaOperation, subject: tag, "the brokers at \(brokers) did not report the topic's partitions within 15 s", kafkaError: lastError)
    }

    private func send(tag: String, group: Int) throws {
        let payload = buffers[tag]![group]
        buffers[tag]![group] = []
        let rows = (payload.count - UpdateMessage.headerSize) / (keyWidth.byteCount + (valueSizes[tag] ?? 1))
        try produce(tag: tag, payload: payload, group: group, rows: rows)
    }

    private func produce(tag: String, payload: [UInt8], group: Int, rows: Int) throws {
        let (topic, partitions) = try topic(tag)
        let partition = Int32(group % partitions)
        while true {
            let result = payload.withUnsafeBytes { p in
                rd_kafka_produce(topic, partition, RD_KAFKA_MSG_F_COPY, UnsafeMutableRawPointer(mutating: p.baseAddress), p.count, nil, 0, nil)
            }
            if result == 0 { break }
            let error = rd_kafka_last_error()
            guard error == RD_KAFKA_RESP_ERR__QUEUE_FULL else {
                throw HPSError(.kafkaOperation, subject: tag, "the client refused a message of \(payload.count) bytes", kafkaError: error)
            }
            rd_kafka_poll(client, 50)  // wait for deliveries to make room
        }
        deliveries.report.withLock { r in
            r.messages += 1
            r.rows += rows
        }
    }
}
