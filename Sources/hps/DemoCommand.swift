import ArgumentParser
import Foundation
import HPS
import HPSRuntime

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Make synthetic tables and a config, load them, and run Zipf-distributed lookups.",
        discussion: "Prints per-tier hit rates, latency percentiles and throughput, and checks the answers against the table files."
    )

    @Option(help: "Rows of the larger table.")
    var rows = 200_000

    @Option(help: "Lookup batches to run.")
    var batches = 300

    @Option(help: "Keys per batch.")
    var batchSize = 4096

    @Option(help: "Zipf exponent of the key popularity.")
    var alpha = 1.05

    @Option(help: "Fraction of keys that are not in the table (answered with the default value).")
    var unknownFraction = 0.01

    @Option(help: "Directory for the tables and config (default: a new temporary directory, removed afterwards).")
    var directory: String?

    func validate() throws {
        guard rows >= 1000 else { throw ValidationError("--rows must be at least 1000") }
        guard batches >= 1, batchSize >= 1 else { throw ValidationError("--batches and --batch-size must be positive") }
        guard (0...1).contains(unknownFraction) else { throw ValidationError("--unknown-fraction must be within 0...1") }
    }

    func run() throws {
        let fm = FileManager.default
        let root = directory ?? (NSTemporaryDirectory() + "hps-demo-\(getpid())")
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { if directory == nil { try? fm.removeItem(atPath: root) } }

        let tables = [(name: "item", rows: rows, dim: 32), (name: "user", rows: max(1000, rows / 4), dim: 16)]
        print("HPS demo in \(root)")
        for (i, t) in tables.enumerated() {
            try SyntheticTable.write(to: root + "/\(t.name)", rows: t.rows, dim: t.dim, seed: UInt64(i + 1))
            print("  table \(t.name): \(t.rows) rows × dim \(t.dim)")
        }
        let configPath = root + "/demo.json"
        let json = """
            {
              "supportlonglong": true,
              "volatile_db": { "type": "parallel_hash_map", "num_partitions": 8 },
              "models": [{
                "model": "demo",
                "sparse_files": ["\(root)/item", "\(root)/user"],
                "embedding_table_names": ["item", "user"],
                "embedding_vecsize_per_table": [32, 16],
                "maxnum_catfeature_query_per_table_per_sample": [1, 1],
                "default_value_for_each_table": [0.0, 0.0],
                "deployed_device_list": [0],
                "max_batch_size": \(batchSize),
                "gpucache": true,
                "gpucacheper": 0.1,
                "hit_rate_threshold": 1.0,
                "cache_refresh_percentage_per_iteration": 0
              }]
            }
            """
        try json.write(toFile: configPath, atomically: true, encoding: .utf8)
        print("  config: \(configPath)")

        let loadWatch = Stopwatch()
        let logger = HPSLogger(level: .warning)
        let config = try ParameterServerConfig.load(path: configPath)
        let server = try HPSRuntime.makeParameterServer(config: config, logger: logger)
        print("  loaded in \(String(format: "%.2f", loadWatch.seconds)) s")
        let session = try server.session(model: "demo", device: 0)

        // Reference values of the user table for checking answers.
        let user = try TableDirectory(path: root + "/user", dimension: 16)
        var reference: [Int64: [Float]] = [:]
        try user.forEachChunk(maxRows: 65536) { keys, vectors in
            for (i, k) in keys.enumerated() { reference[k] = Array(vectors[(i * 16)..<(i * 16 + 16)]) }
        }

        var samplers = tables.enumerated().map { ZipfSampler(rows: $0.element.rows, alpha: alpha, seed: UInt64(100 + $0.offset)) }
        var rng = SplitMix64(seed: 99)
        var latencies: [Double] = []
        var totalKeys = 0
        var verified = 0
        var mismatches = 0
        let start = server.statistics.snapshot
        let watch = Stopwatch()
        for b in 0..<batches {
            let table = b % 2
            let keys: [Int64] = samplers[table].batch(batchSize).map { row in
                Double(rng.next() % 1_000_000) / 1e6 < unknownFraction ? -Int64(row) - 1 : SyntheticTable.key(row: row)
            }
            let t = Stopwatch()
            let vectors = try session.lookup(table: table, keys: keys)
            latencies.append(t.seconds)
            totalKeys += keys.count
            if table == 1 {
                for (i, k) in keys.enumerated() {
                    let expected = reference[k] ?? [Float](repeating: 0, count: 16)
                    if Array(vectors[(i * 16)..<(i * 16 + 16)]).map(\.bitPattern) != expected.map(\.bitPattern) { mismatches += 1 }
                    verified += 1
                }
            }
        }
        let elapsed = watch.seconds
        let s = server.statistics.snapshot
        let unique = s.uniqueKeys - start.uniqueKeys
        func share(_ n: Int) -> String { String(format: "%6.2f%%", unique == 0 ? 0 : 100 * Double(n) / Double(unique)) }
        print("")
        print("  \(batches) batches × \(batchSize) keys, Zipf α=\(alpha), \(Int(unknownFraction * 100))% unknown keys")
        print("  \(totalKeys) keys, \(unique) unique per batch summed (deduplicated before the cache)")
        print("  tier               answered   share of unique keys")
        print("  device cache (CPU) \(pad(s.cacheHits - start.cacheHits))   \(share(s.cacheHits - start.cacheHits))")
        print("  volatile db        \(pad(s.volatileHits - start.volatileHits))   \(share(s.volatileHits - start.volatileHits))")
        print("  persistent db      \(pad(s.persistentHits - start.persistentHits))   \(share(s.persistentHits - start.persistentHits))")
        print("  default value      \(pad(s.defaults - start.defaults))   \(share(s.defaults - start.defaults))")
        print("  latency per batch: p50 \(formatMicros(latencies.percentile(50))), p99 \(formatMicros(latencies.percentile(99)))")
        print("  throughput: \(formatRate(Double(totalKeys) / elapsed)) keys/s")
        print("  checked \(verified) answers of table user against its files: \(mismatches == 0 ? "all bit-exact" : "\(mismatches) MISMATCHES")")
        if mismatches > 0 { throw ExitCode.failure }
    }

    private func pad(_ n: Int) -> String {
        let text = String(n)
        return String(repeating: " ", count: max(0, 9 - text.count)) + text
    }
}
