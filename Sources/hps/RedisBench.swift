import ArgumentParser
import Foundation
import HPS
import HPSBench
import HPSRedis
import HPSTestSupport

/// `hps bench redis`: the Redis Cluster volatile tier beside a raw pipelined HMGET loop.
struct RedisBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redis",
        abstract: "Redis Cluster volatile tier: fetch through RedisClusterDatabase beside a raw pipelined HMGET loop.",
        discussion: """
            Starts its own cluster of 3 redis-server processes on 127.0.0.1 (LocalRedisCluster; needs \
            redis-server and redis-cli on PATH) unless --address names one, loads a synthetic table \
            (default 1M rows × dim 32) with RedisClusterDatabase.insert, then looks up batches of \
            uniformly drawn keys: through RedisClusterDatabase.fetch (partitions in parallel on its \
            worker threads, num_node_connections per node), and through RedisRawBaseline, the same HMGET \
            commands on the same hashes, one connection per node, all nodes flushed before any reply is \
            read, on one thread. The two are measured in alternating rounds over the same batches; the \
            ratio is VDB / raw.
            """
    )

    @Option(help: "Rows of the table.")
    var rows = 1_000_000

    @Option(help: "Vector width (float32).")
    var dim = 32

    @Option(help: "Keys per lookup batch.")
    var batch = 65536

    @Option(help: "volatile_db.num_partitions (HPS suggests 2–5× the node count).")
    var partitions = 12

    @Option(help: "volatile_db.num_node_connections.")
    var connections = 5

    @Option(help: "volatile_db.max_batch_size (keys per HMGET/HSET).")
    var maxBatchSize = 65536

    @Option(help: "Keys looked up per path and round.")
    var keysPerRound = 1_048_576

    @Option(help: "Alternating measurement rounds.")
    var rounds = 3

    @Option(help: "Use this running cluster (host:port,…) instead of starting one; the table is written there and evicted afterwards.")
    var address: String?

    func validate() throws {
        guard rows >= 1000 else { throw ValidationError("--rows must be at least 1000") }
        guard dim >= 1, batch >= 1, rounds >= 1, partitions >= 1, connections >= 1, maxBatchSize >= 1, keysPerRound >= batch else {
            throw ValidationError("sizes must be positive and --keys-per-round at least --batch")
        }
    }

    struct Row {
        var path: String
        var threads: String
        var keysPerSecond: Double, p50: Double, p99: Double, ratio: Double?, note: String
    }

    func run() throws {
        print("hps bench redis: \(rows) rows × dim \(dim), batch \(batch), \(partitions) partitions, \(connections) connections/node, \(SystemInfo.processorCount) core(s), \(Date())")
        var cluster: LocalRedisCluster? = nil
        defer { cluster?.shutdown() }
        let seeds: String
        if let address {
            seeds = address
        } else {
            let watch = Stopwatch()
            cluster = try LocalRedisCluster()
            seeds = cluster!.address
            print(String(format: "started a 3-node cluster at %@ in %.1f s", seeds, watch.seconds))
        }
        var config = VolatileDatabaseConfig()
        config.type = .redisCluster
        config.address = seeds
        config.numPartitions = partitions
        config.numNodeConnections = connections
        config.maxBatchSize = maxBatchSize
        let logger = HPSLogger(level: .warning)
        let db = try RedisClusterDatabase(config: config, logger: logger)
        let tag = TableTag.make(model: "bench", table: "redis\(getpid())")
        defer { _ = try? db.evict(table: tag) }
        let valueSize = dim * 4

        // Load.
        let loadWatch = Stopwatch()
        let chunk = 65536
        var keys = [Int64](repeating: 0, count: chunk)
        var vectors = [Float](repeating: 0, count: chunk * dim)
        var start = 0
        while start < rows {
            let n = min(chunk, rows - start)
            for r in 0..<n {
                keys[r] = SyntheticTable.key(row: start + r)
                for j in 0..<dim { vectors[r * dim + j] = Self.value(row: start + r, column: j) }
            }
            try keys.withUnsafeBufferPointer { k in
                try vectors.withUnsafeBytes { v in
                    _ = try db.insert(table: tag, keys: UnsafeBufferPointer(rebasing: k[0..<n]), values: UnsafeRawBufferPointer(rebasing: v[0..<(n * valueSize)]), valueSize: valueSize)
                }
            }
            start += n
        }
        let loadSeconds = loadWatch.seconds
        print(String(format: "loaded %d rows in %.2f s (%@ rows/s, %.0f MB/s of keys + vectors)", rows, loadSeconds, formatRate(Double(rows) / loadSeconds),
                     Double(rows * (8 + valueSize)) / loadSeconds / 1e6))

        // Batches of uniformly drawn rows, shared by both paths.
        var rng = SplitMix64(seed: 0x5245_4449_53)
        let batchCount = max(1, keysPerRound / batch)
        let batchRows = (0..<batchCount).map { _ in (0..<batch).map { _ in Int(rng.next() % UInt64(rows)) } }
        let batchKeys = batchRows.map { $0.map { SyntheticTable.key(row: $0) } }

        let raw = try RedisRawBaseline(address: seeds, tag: tag, partitions: partitions, maxBatchSize: maxBatchSize, password: config.password)
        var serialOptions = RedisClusterDatabase.Options()
        serialOptions.workerThreads = 0
        let serial = try RedisClusterDatabase(config: config, options: serialOptions, logger: logger)

        // Both paths must return the same, correct rows.
        var output = [Float](repeating: .nan, count: batch * dim)
        var check = [Float](repeating: .nan, count: batch * dim)
        var misses = 0
        try batchKeys[0].withUnsafeBufferPointer { k in
            try output.withUnsafeMutableBytes { out in _ = try db.fetch(table: tag, keys: k, values: out, valueSize: valueSize) { _ in misses += 1 } }
            try check.withUnsafeMutableBytes { out in _ = try raw.fetch(keys: k, values: out, valueSize: valueSize) }
        }
        var wrong = misses
        for (i, row) in batchRows[0].enumerated() {
            for j in 0..<dim where output[i * dim + j].bitPattern != Self.value(row: row, column: j).bitPattern || check[i * dim + j] != output[i * dim + j] {
                wrong += 1
            }
        }
        guard wrong == 0 else { throw ValidationError("check failed: \(wrong) wrong values or misses in the first batch") }

        var samples: [String: [Double]] = [:]
        var totals: [String: Double] = [:]
        let paths = ["raw", "vdb", "vdb1"]
        for _ in 0..<rounds {
            for path in paths {
                let roundWatch = Stopwatch()
                for b in 0..<batchCount {
                    let w = Stopwatch()
                    try batchKeys[b].withUnsafeBufferPointer { k in
                        try output.withUnsafeMutableBytes { out in
                            switch path {
                            case "raw": _ = try raw.fetch(keys: k, values: out, valueSize: valueSize)
                            case "vdb": _ = try db.fetch(table: tag, keys: k, values: out, valueSize: valueSize) { _ in misses += 1 }
                            default: _ = try serial.fetch(table: tag, keys: k, values: out, valueSize: valueSize) { _ in misses += 1 }
                            }
                        }
                    }
                    samples[path, default: []].append(w.seconds)
                }
                totals[path, default: 0] += roundWatch.seconds
            }
        }
        let keysMeasured = Double(rounds * batchCount * batch)
        func row(_ path: String, _ name: String, threads: String, note: String) -> Row {
            let rate = keysMeasured / totals[path]!
            let baseline = keysMeasured / totals["raw"]!
            return Row(path: name, threads: threads, keysPerSecond: rate, p50: samples[path]!.percentile(50), p99: samples[path]!.percentile(99),
                       ratio: path == "raw" ? nil : rate / baseline, note: note)
        }
        let results = [
            row("raw", "baseline: raw pipelined HMGET (RedisRawBaseline)", threads: "1", note: "1 connection per node, all nodes flushed before reading"),
            row("vdb", "RedisClusterDatabase.fetch", threads: "\(min(partitions, 32))", note: misses > 0 ? "MISSES: \(misses)" : "partitions in parallel"),
            row("vdb1", "RedisClusterDatabase.fetch, no worker threads", threads: "1", note: "partitions one after another"),
        ]
        print("")
        print("| path | threads | keys/s | p50/batch | p99/batch | vs raw | notes |")
        print("|---|---|---|---|---|---|---|")
        for r in results {
            let ratio = r.ratio.map { String(format: "%.2fx", $0) } ?? "—"
            print("| \(r.path) | \(r.threads) | \(formatRate(r.keysPerSecond)) | \(formatMicros(r.p50)) | \(formatMicros(r.p99)) | \(ratio) | \(r.note) |")
        }
        let stats = db.statistics
        print("")
        print("redirects \(stats.redirects), failed lookup keys \(stats.failedLookupKeys), connections opened \(stats.connectionsOpened)")
    }

    /// The synthetic table's value at (row, column).
    static func value(row: Int, column: Int) -> Float {
        Float((row &* 31 &+ column) % 1000) / 1000 - 0.5
    }
}
