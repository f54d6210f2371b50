import CRdKafka
import HPS
#if canImport(Glibc)
import Glibc
#endif

/// The properties of a librdkafka client (`rd_kafka_conf_t`), checked one by one so a rejected property is an
/// error naming it.
struct KafkaClientConfig {
    private(set) var properties: [(String, String)] = []

    init(_ properties: [(String, String)] = []) { self.properties = properties }

    mutating func set(_ name: String, _ value: String) { properties.append((name, value)) }

    /// A new `rd_kafka_conf_t` holding every property (the caller hands it to `rd_kafka_new`, which takes it).
    /// - Throws: ``HPSError`` `kafkaConfiguration` naming the property librdkafka rejected.
    func make() throws -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        var text = [CChar](repeating: 0, count: 512)
        var properties = self.properties
        // HPS_KAFKA_DEBUG=cgrp,topic,… turns on librdkafka's own debug contexts (printed to stderr).
        if let debug = getenv("HPS_KAFKA_DEBUG").map({ String(cString: $0) }), !debug.isEmpty {
            properties.removeAll { $0.0 == "log_level" }
            properties += [("debug", debug), ("log_level", "7")]
        }
        for (name, value) in properties {
            let result = rd_kafka_conf_set(conf, name, value, &text, text.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw HPSError(.kafkaConfiguration, subject: "\(name)=\(value)", "librdkafka rejected the property", underlying: cText(text))
            }
        }
        return conf
    }

    /// Creates a client of `type` with these properties and `configure` applied to the raw configuration.
    /// - Throws: ``HPSError`` `kafkaConfiguration` naming the rejected property; `kafkaClient` with
    ///   librdkafka's reason.
    func makeClient(_ type: rd_kafka_type_t, what: String, configure: (OpaquePointer) -> Void = { _ in }) throws -> OpaquePointer {
        let conf = try make()
        configure(conf)
        var text = [CChar](repeating: 0, count: 512)
        guard let client = rd_kafka_new(type, conf, &text, text.count) else {
            rd_kafka_conf_destroy(conf)
            throw HPSError(.kafkaClient, subject: what, "could not create the Kafka client", underlying: cText(text))
        }
        return client
    }
}

/// The NUL-terminated text librdkafka wrote into `buffer`.
func cText(_ buffer: [CChar]) -> String { buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } }
