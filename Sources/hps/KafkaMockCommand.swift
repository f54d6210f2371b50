import ArgumentParser
import Foundation
import HPSKafka

struct KafkaMockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kafka-mock",
        abstract: "Run librdkafka's mock Kafka cluster on loopback ports until SIGTERM or SIGINT.",
        discussion: """
            Prints one line, `bootstrap.servers=HOST:PORT[,HOST:PORT...]`, once the brokers listen; give that \
            address to `hps publish --brokers` and to `update_source.brokers`. The brokers speak the real Kafka \
            protocol (topics are created on first use, consumer groups and committed offsets work) and keep \
            everything in memory: stopping the command drops every topic.
            """
    )

    @Option(help: "Number of mock brokers.")
    var brokers: Int = 1

    @Option(help: "Partitions of topics created up front (see --topic); topics created on first use get librdkafka's default.")
    var partitions: Int = 4

    @Option(help: "A topic to create at start (a table tag, hps_et.<model>.<table>); repeatable.")
    var topic: [String] = []

    func validate() throws {
        guard (1...16).contains(brokers) else { throw ValidationError("--brokers must be 1...16") }
        guard (1...1024).contains(partitions) else { throw ValidationError("--partitions must be 1...1024") }
    }

    func run() throws {
        let cluster = try KafkaMockCluster(brokers: brokers)
        for name in topic { try cluster.createTopic(name, partitions: partitions) }
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let stop = DispatchSemaphore(value: 0)
        let sources = [SIGTERM, SIGINT].map { sig in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stop.signal() }
            source.resume()
            return source
        }
        FileHandle.standardOutput.write(Data("bootstrap.servers=\(cluster.bootstrapServers)\n".utf8))
        stop.wait()
        sources.forEach { $0.cancel() }
        withExtendedLifetime(cluster) {}
    }
}
