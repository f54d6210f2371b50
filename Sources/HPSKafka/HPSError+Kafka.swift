import CRdKafka
import HPS

extension HPSError.Code {
    /// A Kafka client property was rejected (`rd_kafka_conf_set`).
    public static let kafkaConfiguration = HPSError.Code("Kafka configuration")
    /// A Kafka client or mock cluster could not be created.
    public static let kafkaClient = HPSError.Code("Kafka client")
    /// Subscribing, committing or producing failed.
    public static let kafkaOperation = HPSError.Code("Kafka operation")
    /// Messages were not delivered before the flush timed out, or the broker refused them.
    public static let kafkaDelivery = HPSError.Code("Kafka delivery")

    /// Whether this is the code of a Kafka client failure (malformed publish arguments are `invalidArgument`).
    public var isKafka: Bool {
        self == .kafkaConfiguration || self == .kafkaClient || self == .kafkaOperation || self == .kafkaDelivery
    }
}

extension HPSError {
    /// A Kafka client failure about `subject` (the brokers, topic, group or property concerned), with
    /// librdkafka's text for `error`.
    init(_ code: Code, subject: String? = nil, _ message: String, kafkaError error: rd_kafka_resp_err_t) {
        self.init(code, subject: subject, message, underlying: String(cString: rd_kafka_err2str(error)))
    }
}
