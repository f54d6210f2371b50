import CRdKafka

/// A Kafka client failure: what was being done, with which brokers or topic, and librdkafka's own text.
public struct KafkaError: Error, CustomStringConvertible, Sendable {
    /// The kind of failure. Extensible.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A client property was rejected (`rd_kafka_conf_set`).
        public static let configuration = Code("Kafka configuration")
        /// The client or mock cluster could not be created.
        public static let client = Code("Kafka client")
        /// Subscribing, committing or producing failed.
        public static let operation = Code("Kafka operation")
        /// Messages were not delivered before the flush timed out, or the broker refused them.
        public static let delivery = Code("Kafka delivery")
        /// Arguments to a publish (keys, rows, names) are malformed.
        public static let invalidArgument = Code("invalid argument")
    }

    public var code: Code
    /// The brokers, topic, group or property concerned.
    public var subject: String?
    public var message: String
    /// librdkafka's error text, when there is one.
    public var underlying: String?

    public init(_ code: Code, subject: String? = nil, _ message: String, underlying: String? = nil) {
        self.code = code
        self.subject = subject
        self.message = message
        self.underlying = underlying
    }

    /// An error carrying librdkafka's text for `error`.
    init(_ code: Code, subject: String? = nil, _ message: String, kafkaError error: rd_kafka_resp_err_t) {
        self.init(code, subject: subject, message, underlying: String(cString: rd_kafka_err2str(error)))
    }

    public var description: String {
        var text = "\(code)"
        if let subject { text += ": \(subject)" }
        text += ": \(message)"
        if let underlying { text += " (\(underlying))" }
        return text
    }
}
