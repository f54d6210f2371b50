import ArgumentParser
import Dispatch
import Foundation
import HPS
import HPSRuntime
import Synchronization

/// `hps bench fusion`: a model of many tables of one vector size looked up whole (every table's keys in one
/// `lookup(tables:keys:counts:into:)` call), with `fuse_embedding_table` and without, in the same run.
struct FusionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fusion",
        abstract: "Fused vs unfused tables: one multi-table lookup of a whole model, keys/s with and without fuse_embedding_table.",
        discussion: """
            Writes --tables synthetic tables of --rows rows × --dim (the same keys in every table, vectors \
            different), builds two servers over them, one with fuse_embedding_table (one cache and one hash-map \
            table for all of them) and one without, and times a lookup of --batch Zipf keys per table, all tables \
            in one call, for each cache mode. The baseline is the unfused server in the same run, through the \
            same call (one table after another), and also with its tables spread over the cores. Every fused \
            answer is checked bit-identical to the unfused one.
            """
    )

    @Option(help: "Tables of the model.")
    var tables = 26

    @Option(help: "Vector width of every table.")
    var dim = 16

    @Option(help: "Rows per table.")
    var rows = 50_000

    @Option(help: "Keys per table per lookup.")
    var batch = 1024

    @Option(help: "Zipf exponent of the keys.")
    var alpha = 1.05

    @Option(help: "Lookups (whole-model calls) per measurement.")
    var iterations = 300

    @Option(parsing: .upToNextOption, help: "Cache modes: direct (hash map looked up directly), dynamic (cpu_cache, every row cached), static.")
    var modes: [String] = ["direct", "dynamic", "static"]

    func validate() throws {
        guard tables >= 2, dim >= 1, rows >= 100, batch >= 1, iterations >= 1 else {
            throw ValidationError("--tables must be at least 2, --rows at least 100, the others positive")
        }
        let known = ["direct", "dynamic", "static"]
        if let bad = modes.first(where: { !known.contains($0) }) { throw ValidationError("--modes: unknown mode '\(bad)'; use \(known.joined(separator: ", "))") }
    }

    func run() throws {
        let cores = SystemInfo.processorCount
        print("hps bench fusion: \(tables) tables × \(rows) rows × dim \(dim), \(batch) keys per table per lookup (\(tables * batch) per call), Zipf α=\(alpha), \(cores) core(s), \(Date())")
        let fm = FileManager.default
        let root = NSTemporaryDirectory() + "hps-bench-fusion-\(getpid())"
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: root) }
        for t in 0..<tables { try SyntheticTable.write(to: root + "/t\(t)", rows: rows, dim: dim, seed: UInt64(t + 1)) }

        // The same Zipf keys in every table's batches (tables share keys: the fused group keeps them apart).
        var zipf = ZipfSampler(rows: rows, alpha: alpha, seed: 7)
        let batchCount = 16
        let requests: [[Int64]] = (0..<batchCount).map { _ in (0..<tables).flatMap { _ in zipf.batch(batch).map { SyntheticTable.key(row: $0) } } }
        let order = Array(0..<tables)
        let counts = [Int](repeating: batch, count: tables)

        print("")
        print("| mode | server | call | threads | keys/s | p50/call | p99/call | fused vs this |")
        print("|---|---|---|---|---|---|---|---|")
        for mode in modes {
            let plain = try makeServer(root: root, mode: mode, fused: false)
            let fused = try makeServer(root: root, mode: mode, fused: true)
            let plainSession = try plain.session(model: "bench", device: 0)
            let fusedSession = try fused.session(model: "bench", device: 0)
            precondition(fusedSession.fusion.groups.count == 1, "every table should be in one fused group")
            var plainOut = [Float](repeating: 0, count: tables * batch * dim)
            var fusedOut = plainOut
            // Same answers first (and warm both).
            var differing = 0
            for request in requests {
                try request.withUnsafeBufferPointer { k in
                    try plainOut.withUnsafeMutableBufferPointer { try plainSession.lookup(tables: order, keys: k, counts: counts, into: $0) }
                    try fusedOut.withUnsafeMutableBufferPointer { try fusedSession.lookup(tables: order, keys: k, counts: counts, into: $0) }
                }
                differing += zip(plainOut, fusedOut).filter { $0.bitPattern != $1.bitPattern }.count
            }
            guard differing == 0 else { throw ValidationError("\(mode): fused answers differ from unfused in \(differing) floats") }

            func time(_ body: ([Int64], UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows -> (rate: Double, p50: Double, p99: Double) {
                var out = [Float](repeating: 0, count: tables * batch * dim)
                var latencies: [Double] = []
                let total = Stopwatch()
                for i in 0..<iterations {
                    let w = Stopwatch()
                    try out.withUnsafeMutableBufferPointer { try body(requests[i % batchCount], $0) }
                    latencies.append(w.seconds)
                }
                return (Double(iterations * tables * batch) / total.seconds, latencies.percentile(50), latencies.percentile(99))
            }
            let unfused = try time { request, out in
                try request.withUnsafeBufferPointer { try plainSession.lookup(tables: order, keys: $0, counts: counts, into: out) }
            }
            // The unfused tables spread over the cores: one table's lookup per task.
            let unfusedParallel = try time { request, out in
                try request.withUnsafeBufferPointer { k in
                    let failure = Mutex<(any Error)?>(nil)
                    let job = UnsafeTransfer((k, out))
                    DispatchQueue.concurrentPerform(iterations: tables) { t in
                        let (k, out) = job.value
                        do {
                            try plainSession.lookup(
                                table: t, keys: UnsafeBufferPointer(rebasing: k[(t * batch)..<((t + 1) * batch)]),
                                into: UnsafeMutableBufferPointer(rebasing: out[(t * batch * dim)..<((t + 1) * batch * dim)]))
                        } catch let e {
                            failure.withLock { $0 = $0 ?? e }
                        }
                    }
                    if let error = failure.withLock({ $0 }) { throw error }
                }
            }
            let fusedRate = try time { request, out in
                try request.withUnsafeBufferPointer { try fusedSession.lookup(tables: order, keys: $0, counts: counts, into: out) }
            }
            let fusedThreads = tables * batch >= LookupSession.parallelThreshold ? min(cores, 8) : 1
            let label = mode == "direct" ? "direct (hash map)" : mode == "dynamic" ? "dynamic (cpu_cache)" : "static"
            func row(_ server: String, _ call: String, _ threads: Int, _ r: (rate: Double, p50: Double, p99: Double), baseline: Bool) {
                let ratio = baseline ? String(format: "%.2fx", fusedRate.rate / r.rate) : "—"
                print("| \(label) | \(server) | \(call) | \(threads) | \(formatRate(r.rate)) | \(formatMicros(r.p50)) | \(formatMicros(r.p99)) | \(ratio) |")
            }
            row("unfused (baseline)", "lookup(tables:) — \(tables) tables one after another", 1, unfused, baseline: true)
            row("unfused", "\(tables) lookup(table:) calls spread over the cores", min(cores, tables), unfusedParallel, baseline: true)
            row("**fused**", "lookup(tables:) — one pass of \(tables * batch) keys", fusedThreads, fusedRate, baseline: false)
        }
        print("")
        print("Fused answers were bit-identical to unfused for all \(batchCount) request batches in every mode.")
    }

    private func makeServer(root: String, mode: String, fused: Bool) throws -> ParameterServer {
        var config = ParameterServerConfig()
        config.fuseEmbeddingTable = fused
        var model = ModelConfig()
        model.name = "bench"
        model.sparseFiles = (0..<tables).map { root + "/t\($0)" }
        model.deployedDevices = [0]
        model.maxBatchSize = batch
        model.maxKeysPerSample = [Int](repeating: 1, count: tables)
        model.embeddingVectorSizes = [Int](repeating: dim, count: tables)
        model.defaultValues = [Float](repeating: 0, count: tables)
        model.workerBuffers = max(2, SystemInfo.processorCount)
        model.hitRateThreshold = 1.0
        model.deviceCachePercentage = 1.0  // the dynamic cache holds every row: the cache-hit path
        model.cacheRefreshPercentagePerIteration = 0.1  // warm it at start
        model.cpuCache = mode != "direct"
        model.embeddingCacheType = mode == "static" ? .static : .dynamic
        config.models = [model]
        return try HPSRuntime.makeParameterServer(config: config, logger: HPSLogger(level: .warning))
    }
}
