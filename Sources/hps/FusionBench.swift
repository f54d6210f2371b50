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
        print("| mode | server | call | threads | keys/s (median of 5 rounds) | p50/call | p99/call | CPU ns/key | fused vs this (keys/s) |")
        print("|---|---|---|---|---|---|---|---|---|")
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

            // The variants take turns, `rounds` times, each for iterations / rounds calls, so that a burst of other
            // load on the machine hits all of them alike; keys/s is the median over the rounds.
            struct Variant {
                var server: String, call: String, threads: Int
                var body: ([Int64], UnsafeMutableBufferPointer<Float>) throws -> Void
                var around: ((() throws -> Void) throws -> Void)?
            }
            let fusedThreads = tables * batch >= LookupSession.parallelThreshold ? min(cores, 8) : 1
            var variants = [
                Variant(server: "unfused (baseline)", call: "lookup(tables:) — \(tables) tables one after another", threads: 1) { request, out in
                    try request.withUnsafeBufferPointer { try plainSession.lookup(tables: order, keys: $0, counts: counts, into: out) }
                },
                Variant(server: "unfused", call: "\(tables) lookup(table:) calls spread over the cores", threads: min(cores, tables)) { request, out in
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
                },
                Variant(server: "**fused**", call: "lookup(tables:) — one pass of \(tables * batch) keys", threads: fusedThreads) { request, out in
                    try request.withUnsafeBufferPointer { try fusedSession.lookup(tables: order, keys: $0, counts: counts, into: out) }
                },
            ]
            if mode == "direct", let hashMap = fused.volatileDatabase as? HashMapDatabase {
                // The fused pass on one thread: the hash map's fetch is what spreads a large batch over the cores.
                var single = variants[2]
                single.server = "fused"
                single.call = "the same pass on one thread"
                single.threads = 1
                single.around = { body in
                    let threshold = hashMap.parallelThreshold
                    hashMap.parallelThreshold = .max
                    defer { hashMap.parallelThreshold = threshold }
                    try body()
                }
                variants.append(single)
            }
            let rounds = 5
            let perRound = max(1, iterations / rounds)
            var rates = [[Double]](repeating: [], count: variants.count)
            var latencies = [[Double]](repeating: [], count: variants.count)
            var cpu = [Double](repeating: 0, count: variants.count)
            var out = [Float](repeating: 0, count: tables * batch * dim)
            for round in 0..<rounds {
                for (v, variant) in variants.enumerated() {
                    let measure = {
                        let total = Stopwatch()
                        let cpuBefore = LookupBench.cpuSeconds()
                        defer { cpu[v] += LookupBench.cpuSeconds() - cpuBefore }
                        for i in 0..<perRound {
                            let w = Stopwatch()
                            try out.withUnsafeMutableBufferPointer { try variant.body(requests[(round * perRound + i) % batchCount], $0) }
                            latencies[v].append(w.seconds)
                        }
                        rates[v].append(Double(perRound * tables * batch) / total.seconds)
                    }
                    if let around = variant.around { try around(measure) } else { try measure() }
                }
            }
            let medians = rates.map { $0.percentile(50) }
            let label = mode == "direct" ? "direct (hash map)" : mode == "dynamic" ? "dynamic (cpu_cache)" : "static"
            for (v, variant) in variants.enumerated() {
                let ratio = v == 2 ? "—" : String(format: "%.2fx", medians[2] / medians[v])
                let cpuPerKey = cpu[v] / Double(rounds * perRound * tables * batch) * 1e9
                print("| \(label) | \(variant.server) | \(variant.call) | \(variant.threads) | \(formatRate(medians[v])) | \(formatMicros(latencies[v].percentile(50))) | \(formatMicros(latencies[v].percentile(99))) | \(String(format: "%.1f", cpuPerKey)) | \(ratio) |")
            }
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
