import CRdKafka
import HPS

/// librdkafka's mock cluster: brokers inside this process that speak the real Kafka protocol on loopback
/// ports (topics auto-created on first use, consumer groups, committed offsets), for tests and demos.
public final class KafkaMockCluster: @unchecked Sendable {
    /// `host:port,…` of the brokers, for `bootstrap.servers` / `update_source.brokers`.
    public let bootstrapServers: String
    private let handle: OpaquePointer
    private let cluster: OpaquePointer

    /// Starts `brokers` mock brokers.
    /// - Throws: ``HPSError`` `invalidArgument` for a broker count outside 1...16; `kafkaClient` when the
    ///   cluster cannot be started.
    public init(brokers: Int = 1) throws {
        guard (1...16).contains(brokers) else { throw HPSError(.invalidArgument, subject: "brokers", "\(brokers) must be 1 to 16") }
        handle = try KafkaClientConfig([("log_level", "3")]).makeClient(RD_KAFKA_PRODUCER, what: "mock cluster handle")
        guard let cluster = rd_kafka_mock_cluster_new(handle, Int32(brokers)) else {
            rd_kafka_destroy(handle)
            throw HPSError(.kafkaClient, subject: "mock cluster", "librdkafka could not start \(brokers) mock broker(s)")
        }
        self.cluster = cluster
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    /// Creates `topic` with `partitions` partitions now (topics are otherwise created on first use).
    /// - Throws: ``HPSError`` `kafkaOperation` with the broker's reason.
    public func createTopic(_ topic: String, partitions: Int) throws {
        let error = rd_kafka_mock_topic_create(cluster, topic, Int32(partitions), 1)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR { throw HPSError(.kafkaOperation, subject: topic, "creating the topic failed", kafkaError: error) }
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(handle)
    }
}
