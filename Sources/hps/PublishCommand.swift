import ArgumentParser
import Foundation
import HPS
import HPSKafka

struct PublishCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Post rows of a table to Kafka in HPS's update format, for serving processes with an update_source.",
        discussion: """
            Rows come from a table directory (--from: `key` int64 and `emb_vector` float32 files) or from two \
            raw files of the same layout (--keys-file, --vectors-file). They go to topic hps_et.<model>.<table>, \
            keys grouped by HPS's partition mixer into --key-groups groups (one Kafka partition per group), at \
            most --send-buffer-size bytes per message. The command flushes and prints what the brokers \
            acknowledged: `published R rows in M messages to TOPIC (delivered R rows in M messages)`; it exits \
            non-zero when anything was not delivered.
            """
    )

    @Option(help: "Kafka bootstrap servers (host:port, separated by , or ;).")
    var brokers: String

    @Option(help: "Model name.")
    var model: String

    @Option(help: "Table name.")
    var table: String

    @Option(help: "A table directory holding key and emb_vector.")
    var from: String?

    @Option(help: "A file of int64 little-endian keys.")
    var keysFile: String?

    @Option(help: "A file of float32 little-endian rows, one per key.")
    var vectorsFile: String?

    @Option(help: ArgumentHelp("Send this file's bytes as one message, unchanged (no header added), for testing consumers; repeatable. Alone or with rows.", valueName: "file"))
    var rawMessage: [String] = []

    @Flag(help: "Write 4-byte keys (for servers with supportlonglong false).")
    var uint32Keys = false

    @Option(help: "Key groups (HPS's num_partitions of the sink).")
    var keyGroups: Int = 8

    @Option(help: "Most payload bytes per message.")
    var sendBufferSize: Int = 262_144

    @Option(help: "Milliseconds to wait for the brokers to acknowledge every message.")
    var timeoutMs: Int = 30_000

    func validate() throws {
        switch (from, keysFile, vectorsFile) {
        case (.some, nil, nil), (nil, .some, .some): break
        case (nil, nil, nil) where !rawMessage.isEmpty: break
        default: throw ValidationError("give either --from TABLE_DIR, or both --keys-file and --vectors-file")
        }
        guard TableTag.isValidName(model) else { throw ValidationError("--model \(model) is not a valid name (1 to 120 characters of [a-zA-Z0-9_-])") }
        guard TableTag.isValidName(table) else { throw ValidationError("--table \(table) is not a valid name (1 to 120 characters of [a-zA-Z0-9_-])") }
        guard keyGroups >= 1 else { throw ValidationError("--key-groups must be at least 1") }
        guard timeoutMs >= 1 else { throw ValidationError("--timeout-ms must be positive") }
    }

    func run() throws {
        let publisher = try KafkaPublisher(
            brokers: brokers, keyGroups: keyGroups, sendBufferSize: sendBufferSize, keyWidth: uint32Keys ? .uint32 : .int64)
        for path in rawMessage {
            guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("--raw-message \(path): cannot read the file") }
            try publisher.postRaw(topic: TableTag.make(model: model, table: table), payload: [UInt8](data))
        }
        if let from {
            let directory = try TableDirectory(path: from)
            try directory.forEachChunk(maxRows: 65536) { keys, vectors in
                try publisher.post(model: model, table: table, keys: keys, values: UnsafeRawBufferPointer(vectors), valueSize: directory.dimension * 4)
            }
        } else if let keysFile, let vectorsFile {
            let (keys, rows, dimension) = try Self.readRawFiles(keys: keysFile, vectors: vectorsFile)
            try keys.withUnsafeBufferPointer { k in
                try rows.withUnsafeBytes { try publisher.post(model: model, table: table, keys: k, values: $0, valueSize: dimension * 4) }
            }
        }
        let report: KafkaPublisher.Report
        do {
            report = try publisher.flush(timeoutMs: timeoutMs)
        } catch {
            throw ValidationError("\(error)")
        }
        print("published \(report.rows) rows in \(report.messages) messages to \(TableTag.make(model: model, table: table)) (delivered \(report.deliveredRows) rows in \(report.deliveredMessages) messages)")
    }

    /// Keys and rows of two raw files; the dimension is inferred from their sizes.
    static func readRawFiles(keys keyPath: String, vectors vectorPath: String) throws -> ([Int64], [Float], Int) {
        let keyData: Data, vectorData: Data
        do { keyData = try Data(contentsOf: URL(fileURLWithPath: keyPath)) } catch {
            throw ValidationError("--keys-file \(keyPath): cannot read (\(error.localizedDescription))")
        }
        do { vectorData = try Data(contentsOf: URL(fileURLWithPath: vectorPath)) } catch {
            throw ValidationError("--vectors-file \(vectorPath): cannot read (\(error.localizedDescription))")
        }
        guard !keyData.isEmpty, keyData.count % 8 == 0 else {
            throw ValidationError("--keys-file \(keyPath): \(keyData.count) bytes is not a positive multiple of 8 (int64 keys)")
        }
        let count = keyData.count / 8
        guard !vectorData.isEmpty, vectorData.count % (count * 4) == 0 else {
            throw ValidationError("--vectors-file \(vectorPath): \(vectorData.count) bytes is not a whole number of float32 rows for \(count) keys")
        }
        let dimension = vectorData.count / (count * 4)
        let keys = keyData.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
        let rows = vectorData.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return (keys, rows, dimension)
    }
}
