import ArgumentParser
import Dispatch
import Foundation
import HPS
import HPSKafka
import HPSRuntime
import Synchronization

/// `hps bench updates`: Kafka updates applied while lookups run, against librdkafka's mock cluster.
struct UpdatesBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "updates",
        abstract: "Online updates: keys/s applied from Kafka while lookups run, lookup latency with and without updates, publish → visible latency.",
        discussion: """
            --updates rows (90% Zipf-picked keys of the table, 10% new keys) are published first to an \
            in-process mock cluster (64 partitions, 64 key groups). Then a server with a synthetic table in its hash map, a CPU \
            cache (cpu_cache: true) and a Kafka update_source starts: its consumer applies the backlog while one \
            thread looks up Zipf batches at full speed (keys/s from the first to the last applied batch; lookup \
            latency meanwhile); then lookups alone; then a steady stream of small publishes (--stream-rate \
            keys/s) for --stream-seconds: the publish → visible latency of each applied batch. Baseline, same \
            run: the same rows inserted straight into a hash map of the same partitions (no Kafka, no lookups).
            """
    )

    @Option(help: "Rows of the table.")
    var rows = 1_000_000

    @Option(parsing: .upToNextOption, help: "Vector widths to measure.")
    var dims: [Int] = [16, 128]

    @Option(help: "Rows published in phase 2 (keys of the table, Zipf-picked, and new keys).")
    var updates = 400_000

    @Option(help: "Keys per lookup batch.")
    var batch = 1024

    @Option(help: "Seconds of lookups alone (phase 1).")
    var baselineSeconds = 3.0

    @Option(help: "update_source.poll_timeout_ms.")
    var pollTimeoutMs = 100

    @Option(help: "update_source.max_batch_size (keys per database dispatch).")
    var maxBatchSize = 8192

    @Option(help: "Keys per second published in phase 3.")
    var streamRate = 100_000

    @Option(help: "Seconds of phase 3.")
    var streamSeconds = 5.0

    func validate() throws {
        guard rows >= 10_000, updates >= 10_000 else { throw ValidationError("--rows and --updates must be at least 10000") }
        guard dims.allSatisfy({ $0 >= 1 }), batch >= 1 else { throw ValidationError("dims and --batch must be positive") }
    }

    struct Result {
        var dim: Int
        var baselineInsert: Double, applied: Double, publish: Double
        var p50Idle: Double, p99Idle: Double, p50Busy: Double, p99Busy: Double
        var fresh50: Double, fresh99: Double, freshMax: Double, batches: Int
    }

    func run() throws {
        print("hps bench updates: \(rows) rows, \(updates) updates, lookups of \(batch) keys, poll_timeout_ms \(pollTimeoutMs), max_batch_size \(maxBatchSize), \(SystemInfo.processorCount) core(s), \(Date())")
        var results: [Result] = []
        for dim in dims { results.append(try measure(dim: dim)) }
        print("")
        print("| dim | baseline: hash map insert | applied from Kafka (lookups running) | vs baseline | published | lookup p50 / p99 alone | lookup p50 / p99 during updates | p99 ratio | publish → visible p50 / p99 / max (batches) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results {
            print(String(format: "| %d | %@ keys/s | %@ keys/s | %.2fx | %@ keys/s | %@ / %@ | %@ / %@ | %.2fx | %.0f / %.0f / %.0f ms (%d) |",
                         r.dim, formatRate(r.baselineInsert), formatRate(r.applied), r.applied / r.baselineInsert, formatRate(r.publish),
                         formatMicros(r.p50Idle), formatMicros(r.p99Idle), formatMicros(r.p50Busy), formatMicros(r.p99Busy), r.p99Busy / r.p99Idle,
                         r.fresh50, r.fresh99, r.freshMax, r.batches))
        }
    }

    private func measure(dim: Int) throws -> Result {
        let fm = FileManager.default
        let root = NSTemporaryDirectory() + "hps-bench-updates-\(getpid())-\(dim)"
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: root) }
        try SyntheticTable.write(to: root + "/t", rows: rows, dim: dim, seed: UInt64(dim))

        let cluster = try KafkaMockCluster()
        defer { withExtendedLifetime(cluster) {} }  // the brokers must outlive every client below
        // 64 partitions and 64 key groups: the mock keeps only a few MB per partition, so a large backlog must be
        // spread (a real broker keeps what its retention says).
        try cluster.createTopic("hps_et.bench.t", partitions: 64)

        // The update rows: 90% Zipf-picked keys of the table (hot keys are in the cache), 10% new keys.
        var zipf = ZipfSampler(rows: rows, alpha: 1.05, seed: UInt64(dim) &* 7)
        let updateKeys: [Int64] = (0..<updates).map { i in i % 10 == 9 ? Int64(10_000_000_000) + Int64(i) : SyntheticTable.key(row: zipf.next()) }
        let updateRows: [Float] = (0..<(updates * dim)).map { Float($0 % 1009) * 0.001 }
        let logger = HPSLogger(level: .warning)

        // Baseline: the same rows straight into a hash map of the same partitions.
        let baselineDB = HashMapDatabase(config: VolatileDatabaseConfig(), logger: logger)
        let insertWatch = Stopwatch()
        try updateKeys.withUnsafeBufferPointer { k in
            try updateRows.withUnsafeBytes { v in
                var start = 0
                while start < updates {
                    let n = min(maxBatchSize, updates - start)
                    try baselineDB.insert(
                        table: "baseline", keys: UnsafeBufferPointer(rebasing: k[start..<(start + n)]),
                        values: UnsafeRawBufferPointer(rebasing: v[(start * dim * 4)..<((start + n) * dim * 4)]), valueSize: dim * 4)
                    start += n
                }
            }
        }
        let baselineInsert = Double(updates) / insertWatch.seconds

        // The backlog: every update published before the server starts.
        let publisher = try KafkaPublisher(brokers: cluster.bootstrapServers, keyGroups: 64)
        let publishWatch = Stopwatch()
        try updateKeys.withUnsafeBufferPointer { k in
            try updateRows.withUnsafeBytes { v in
                var start = 0
                while start < updates {
                    let n = min(65536, updates - start)
                    try publisher.post(
                        model: "bench", table: "t", keys: UnsafeBufferPointer(rebasing: k[start..<(start + n)]),
                        values: UnsafeRawBufferPointer(rebasing: v[(start * dim * 4)..<((start + n) * dim * 4)]), valueSize: dim * 4)
                    start += n
                }
            }
        }
        try publisher.flush()
        let publishRate = Double(updates) / publishWatch.seconds

        var config = ParameterServerConfig()
        var model = ModelConfig()
        model.name = "bench"
        model.sparseFiles = [root + "/t"]
        model.tableNames = ["t"]
        model.deployedDevices = [0]
        model.maxBatchSize = batch
        model.maxKeysPerSample = [1]
        model.embeddingVectorSizes = [dim]
        model.defaultValues = [0]
        model.cpuCache = true
        model.deviceCachePercentage = 0.5
        model.hitRateThreshold = 1.0
        model.cacheRefreshPercentagePerIteration = 0.1  // warm the cache at start
        config.models = [model]
        config.updateSource.type = .kafkaMessageQueue
        config.updateSource.brokers = cluster.bootstrapServers
        config.updateSource.pollTimeoutMs = pollTimeoutMs
        config.updateSource.maxBatchSize = maxBatchSize
        config.updateSource.metadataRefreshIntervalMs = 100
        config.updateSource.nodeName = "bench"
        let server = try HPSRuntime.makeParameterServer(config: config, logger: logger)
        defer { server.updateSource?.stop() }
        let source = server.updateSource as! KafkaUpdateSource
        let session = try server.session(model: "bench", device: 0)

        // One lookup thread at full speed from now on; latencies recorded per phase (0 before the first batch
        // is applied, not reported; 1 while the backlog is applied, 2 alone, 3 during the stream).
        let shared = LookupLoop()
        var lookupZipf = ZipfSampler(rows: rows, alpha: 1.05, seed: 99)
        let batches = (0..<64).map { _ in lookupZipf.batch(batch).map { SyntheticTable.key(row: $0) } }
        let lookupsDone = DispatchSemaphore(value: 0)
        let batchSize = batch
        let thread = Thread {
            var output = [Float](repeating: 0, count: batchSize * dim)
            var local: [[Double]] = [[], [], [], []]
            var i = 0
            while true {
                let p = shared.phase.load(ordering: .relaxed)
                if p == 4 { break }
                let w = Stopwatch()
                batches[i % 64].withUnsafeBufferPointer { k in output.withUnsafeMutableBufferPointer { try? session.lookup(table: 0, keys: k, into: $0) } }
                local[p].append(w.seconds)
                i += 1
            }
            shared.latencies.withLock { $0 = local }
            lookupsDone.signal()
        }
        thread.start()

        // The backlog, applied while lookups run: from the first to the last applied batch.
        let all = Stopwatch()
        var firstApplied: Double?
        var lastCount = 0
        while true {
            let applied = source.statistics.appliedKeys
            if applied > 0 && firstApplied == nil {
                firstApplied = all.seconds
                shared.phase.store(1, ordering: .relaxed)
            }
            if applied >= updates { break }
            if applied != lastCount { lastCount = applied }
            guard all.seconds < 600 else { throw ValidationError("only \(applied) of \(updates) updates applied after 600 s") }
            usleep(500)
        }
        let applySeconds = all.seconds - (firstApplied ?? 0)
        let applied = Double(updates) / max(applySeconds, 1e-9)
        // Correctness spot check: the last row of each key wins.
        var last: [Int64: Int] = [:]
        for (i, k) in updateKeys.enumerated() { last[k] = i }
        let probe = Array(last.keys.prefix(min(batch, last.count)))
        let got = try session.lookup(table: 0, keys: probe)
        let want = probe.flatMap { k in updateRows[(last[k]! * dim)..<((last[k]! + 1) * dim)] }
        if got != want { print("dim \(dim): WARNING: lookups after the updates do not answer the published rows") }

        // Lookups alone.
        shared.phase.store(2, ordering: .relaxed)
        Thread.sleep(forTimeInterval: baselineSeconds)

        // A steady stream of small publishes; publish → visible latency per applied batch.
        shared.phase.store(3, ordering: .relaxed)
        source.statistics.resetLatencies()
        let batchesBefore = source.statistics.appliedBatches
        let perTick = max(1, streamRate / 100)
        let streamWatch = Stopwatch()
        var tick = 0
        try updateKeys.withUnsafeBufferPointer { k in
            try updateRows.withUnsafeBytes { v in
                while streamWatch.seconds < streamSeconds {
                    let start = (tick * perTick) % (updates - perTick)
                    try publisher.post(
                        model: "bench", table: "t", keys: UnsafeBufferPointer(rebasing: k[start..<(start + perTick)]),
                        values: UnsafeRawBufferPointer(rebasing: v[(start * dim * 4)..<((start + perTick) * dim * 4)]), valueSize: dim * 4)
                    try publisher.flush()
                    tick += 1
                    let next = Double(tick) * 0.01
                    let wait = next - streamWatch.seconds
                    if wait > 0 { usleep(UInt32(wait * 1e6)) }
                }
            }
        }
        Thread.sleep(forTimeInterval: Double(pollTimeoutMs) / 1000 + 0.5)
        shared.phase.store(4, ordering: .relaxed)
        lookupsDone.wait()
        let lat = shared.latencies.withLock { $0 }
        let stats = source.statistics
        print(String(format: "dim %d: baseline hash map insert %@ keys/s; applied %d updates in %.2f s (%@ keys/s) while %d lookups ran; backlog published at %@ keys/s; stream: %d keys in %d batches",
                     dim, formatRate(baselineInsert), updates, applySeconds, formatRate(applied), lat[1].count, formatRate(publishRate), tick * perTick, stats.appliedBatches - batchesBefore))
        return Result(
            dim: dim, baselineInsert: baselineInsert, applied: applied, publish: publishRate,
            p50Idle: lat[2].percentile(50), p99Idle: lat[2].percentile(99), p50Busy: lat[1].percentile(50), p99Busy: lat[1].percentile(99),
            fresh50: stats.latencyQuantile(0.5) ?? .nan, fresh99: stats.latencyQuantile(0.99) ?? .nan, freshMax: stats.latencyQuantile(1.0) ?? .nan,
            batches: stats.appliedBatches - batchesBefore)
    }
}

/// What the lookup thread of `hps bench updates` shares with the driver: the phase (0 waiting for the first
/// applied batch, 1 backlog applied, 2 lookups alone, 3 stream, 4 stop) and the latencies of each phase.
private final class LookupLoop: Sendable {
    let phase = Atomic<Int>(0)
    let latencies = Mutex<[[Double]]>([[], [], [], []])
}
