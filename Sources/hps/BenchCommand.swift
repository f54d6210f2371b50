import ArgumentParser
import Dispatch
import Foundation
import HPS
import HPSBench
import HPSRuntime

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks; each prints a baseline measured in the same run.",
        subcommands: [LookupBench.self, PersistentBench.self, RedisBench.self, CacheBench.self, FusionBench.self, UpdatesBench.self]
    )
}

/// `hps bench lookup`: the hash-map tier and the cache-hit path beside a plain array gather.
struct LookupBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookup",
        abstract: "Hash-map tier and cache-hit lookups beside a plain array gather of the same rows.",
        discussion: """
            Synthetic tables (default 1M rows at dim 16 and 128) are written to a temporary directory and \
            loaded; Zipf-distributed keys are looked up in batches. The baseline gathers the same rows \
            from a plain array by row index, with the same number of threads as the path it is compared with.
            """
    )

    @Option(help: "Rows per table.")
    var rows = 1_000_000

    @Option(parsing: .upToNextOption, help: "Vector widths to measure.")
    var dims: [Int] = [16, 128]

    @Option(parsing: .upToNextOption, help: "Batch sizes to measure.")
    var batches: [Int] = [1024, 65536]

    @Option(help: "Zipf exponent.")
    var alpha = 1.05

    @Option(help: "Approximate keys to look up per measurement.")
    var keysPerMeasurement = 8_000_000

    @Option(help: "Volatile database partitions (default: min(16, cores)).")
    var partitions: Int?

    @Option(help: "gpucacheper of the session's cache (1.0: the whole table fits; the cache-hit path).")
    var cacheFraction = 1.0

    @Option(help: "hit_rate_threshold of the session.")
    var hitRateThreshold = 1.0

    func validate() throws {
        guard rows >= 1000 else { throw ValidationError("--rows must be at least 1000") }
        guard dims.allSatisfy({ $0 >= 1 }), batches.allSatisfy({ $0 >= 1 }) else { throw ValidationError("dims and batches must be positive") }
    }

    struct Row {
        var dim: Int, batch: Int, path: String, threads: Int
        var keysPerSecond: Double, p50: Double, p99: Double, ratio: Double?, note: String
    }

    func run() throws {
        let cores = SystemInfo.processorCount
        print("hps bench lookup: \(rows) rows, Zipf α=\(alpha), \(cores) core(s), \(Date())")
        var results: [Row] = []
        for dim in dims {
            results += try measure(dim: dim, cores: cores)
        }
        print("")
        print("| dim | batch | path | threads | keys/s | p50/batch | p99/batch | vs baseline | notes |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results {
            let ratio = r.ratio.map { String(format: "%.2fx", $0) } ?? "—"
            print("| \(r.dim) | \(r.batch) | \(r.path) | \(r.threads) | \(formatRate(r.keysPerSecond)) | \(formatMicros(r.p50)) | \(formatMicros(r.p99)) | \(ratio) | \(r.note) |")
        }
    }

    private func measure(dim: Int, cores: Int) throws -> [Row] {
        let fm = FileManager.default
        let root = NSTemporaryDirectory() + "hps-bench-\(getpid())-\(dim)"
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: root) }
        try SyntheticTable.write(to: root + "/t", rows: rows, dim: dim, seed: UInt64(dim))
        let directory = try TableDirectory(path: root + "/t", dimension: dim)

        // The baseline's plain array, in row order, in the same kind of memory as the hash map's (huge pages
        // where the kernel gives them, as NumPy's and TensorFlow's large arrays get).
        let plain = UnsafeMutableBufferPointer(start: LargeAllocation.allocate(Float.self, count: rows * dim), count: rows * dim)
        plain.initialize(repeating: 0)
        defer { LargeAllocation.deallocate(plain.baseAddress!) }
        var offset = 0
        try directory.forEachChunk(maxRows: 65536) { _, vectors in
            _ = UnsafeMutableBufferPointer(rebasing: plain[offset..<(offset + vectors.count)]).initialize(from: vectors)
            offset += vectors.count
        }

        let maxBatch = batches.max()!
        var config = ParameterServerConfig()
        var model = ModelConfig()
        model.name = "bench"
        model.sparseFiles = [root + "/t"]
        model.deployedDevices = [0]
        model.maxBatchSize = maxBatch
        model.maxKeysPerSample = [1]
        model.embeddingVectorSizes = [dim]
        model.defaultValues = [0]
        model.deviceCachePercentage = cacheFraction
        model.hitRateThreshold = hitRateThreshold
        model.cacheRefreshPercentagePerIteration = 0.1  // warm the cache with the table at start
        // The same table twice: "bench" as configured (on the CPU: the hash map looked up directly), and
        // "bench_cache" with `cpu_cache: true` (HPS's CPU cache in front of the hash map).
        var cached = model
        cached.name = "bench_cache"
        cached.cpuCache = true
        config.models = [model, cached]
        if let partitions { config.volatileDatabase.numPartitions = partitions }
        // The raw read speed of the same files (page cache warm: they were just written), then the load into
        // the hash map, then the sessions (the cpu_cache model's warm-up), each timed apart.
        let catSeconds = try Self.cat([directory.keyFile, directory.vectorFile])
        let logger = HPSLogger(level: .warning)
        try HPSRuntime.checkResources(config, logger: logger)
        let server = ParameterServer(
            config: config, volatileDatabase: try HPSRuntime.makeVolatileDatabase(config.volatileDatabase, logger: logger),
            persistentDatabase: nil, logger: logger)
        let loadWatch = Stopwatch()
        let cpuBefore = Self.cpuSeconds()
        try server.loadTables()
        let loadSeconds = loadWatch.seconds
        let loadCPU = Self.cpuSeconds() - cpuBefore
        let sessionWatch = Stopwatch()
        try server.makeAllSessions()
        let sessionSeconds = sessionWatch.seconds
        let vdb = server.volatileDatabase as! HashMapDatabase
        let usage = vdb.memoryUsage(table: "hps_et.bench.sparse_embedding0")
        let raw = Double(8 + dim * 4)
        let perEntry = Double(usage.bytes) / Double(max(1, usage.entries))
        let bytes = Double(directory.byteCount)
        print(String(format: "dim %d: cat key emb_vector > /dev/null: %.0f MB/s (baseline); loaded 2 × %d rows into the hash map in %.2f s (%.2f s of CPU): %.0f MB/s, %.2f M rows/s = %.2fx cat; sessions (cache warm-up) %.2f s; hash map %.1f bytes/entry = %.2fx raw key+value (%d B)",
                     dim, bytes / catSeconds / 1e6, rows, loadSeconds, loadCPU, 2 * bytes / loadSeconds / 1e6, 2 * Double(rows) / loadSeconds / 1e6,
                     (2 * bytes / loadSeconds) / (bytes / catSeconds), sessionSeconds, perEntry, perEntry / raw, Int(raw)))
        let session = try server.session(model: "bench", device: 0)
        let cacheSession = try server.session(model: "bench_cache", device: 0)
        print("dim \(dim): session of \"bench\" looks the hash map up directly: \(session.direct[0]); \"bench_cache\" (cpu_cache: true) has a \(cacheSession.caches[0].map { "\($0.location) cache of \($0.capacity) slots" } ?? "no cache")")

        var rowsOut: [Row] = []
        for batch in batches {
            let count = max(3, keysPerMeasurement / batch)
            var zipf = ZipfSampler(rows: rows, alpha: alpha, seed: UInt64(batch * 31 + dim))
            let batchRows = (0..<min(count, 64)).map { _ in zipf.batch(batch) }
            let batchKeys = batchRows.map { $0.map { SyntheticTable.key(row: $0) } }
            var output = [Float](repeating: 0, count: batch * dim)
            let threads = batch >= vdb.parallelThreshold ? min(cores, max(1, vdb.config.numPartitions)) : 1

            func time(_ body: (Int) throws -> Void) rethrows -> (rate: Double, p50: Double, p99: Double) {
                for i in 0..<min(3, count) { try body(i % batchRows.count) }  // warm up
                var lat: [Double] = []
                lat.reserveCapacity(count)
                let total = Stopwatch()
                for i in 0..<count {
                    let w = Stopwatch()
                    try body(i % batchRows.count)
                    lat.append(w.seconds)
                }
                return (Double(count * batch) / total.seconds, lat.percentile(50), lat.percentile(99))
            }

            // Baselines: plain gather by row index, 1 thread and `threads` threads.
            let table = UnsafePointer(plain.baseAddress!)
            let gather1 = output.withUnsafeMutableBufferPointer { out in
                time { b in ArrayGather.gather(table, rows: batchRows[b], dim: dim, into: out.baseAddress!, threads: 1) }
            }
            let gatherN = output.withUnsafeMutableBufferPointer { out in
                time { b in ArrayGather.gather(table, rows: batchRows[b], dim: dim, into: out.baseAddress!, threads: threads) }
            }
            rowsOut.append(Row(dim: dim, batch: batch, path: "baseline: array gather", threads: 1, keysPerSecond: gather1.rate, p50: gather1.p50, p99: gather1.p99, ratio: nil, note: ""))
            if threads > 1 {
                rowsOut.append(Row(dim: dim, batch: batch, path: "baseline: array gather", threads: threads, keysPerSecond: gatherN.rate, p50: gatherN.p50, p99: gatherN.p99, ratio: nil, note: ""))
            }
            // The hash-map tier alone.
            var misses = 0
            let hashMap = try output.withUnsafeMutableBytes { out in
                try time { b in
                    try batchKeys[b].withUnsafeBufferPointer { k in
                        _ = try vdb.fetch(table: "hps_et.bench.sparse_embedding0", keys: k, values: out, valueSize: dim * 4) { _ in misses += 1 }
                    }
                }
            }
            rowsOut.append(Row(dim: dim, batch: batch, path: "hash-map tier (fetch)", threads: threads, keysPerSecond: hashMap.rate, p50: hashMap.p50, p99: hashMap.p99,
                               ratio: hashMap.rate / (threads > 1 ? gatherN.rate : gather1.rate), note: String(format: "%.2f B/entry (%.2fx raw)%@", perEntry, perEntry / raw, misses > 0 ? " MISSES: \(misses)" : "")))
            let sessionThreads = batch >= LookupSession.parallelThreshold ? cores : 1
            // The session as configured: on the CPU with the whole table in the hash map, one direct fetch.
            let plainSession = try output.withUnsafeMutableBufferPointer { out in
                try time { b in
                    try batchKeys[b].withUnsafeBufferPointer { k in try session.lookup(table: 0, keys: k, into: out) }
                }
            }
            rowsOut.append(Row(dim: dim, batch: batch, path: session.direct[0] ? "**session (hash map direct)**" : "session", threads: threads, keysPerSecond: plainSession.rate, p50: plainSession.p50, p99: plainSession.p99,
                               ratio: plainSession.rate / (threads > 1 ? gatherN.rate : gather1.rate), note: String(format: "gpucacheper %.2f, hit_rate_threshold %.2f", cacheFraction, hitRateThreshold)))
            // The cache path (cpu_cache: true): dedup, cache query, scatter.
            cacheSession.waitForBackgroundInserts()
            let before = server.statistics.snapshot
            let cached = try output.withUnsafeMutableBufferPointer { out in
                try time { b in
                    try batchKeys[b].withUnsafeBufferPointer { k in try cacheSession.lookup(table: 0, keys: k, into: out) }
                }
            }
            cacheSession.waitForBackgroundInserts()
            let after = server.statistics.snapshot
            let hits = after.cacheHits - before.cacheHits
            let queried = hits + after.cacheMisses - before.cacheMisses
            let uniqueShare = Double(after.uniqueKeys - before.uniqueKeys) / Double(after.keys - before.keys)
            rowsOut.append(Row(dim: dim, batch: batch, path: "session, cpu_cache: true", threads: sessionThreads, keysPerSecond: cached.rate, p50: cached.p50, p99: cached.p99,
                               ratio: cached.rate / (sessionThreads > 1 ? gatherN.rate : gather1.rate), note: String(format: "hit rate %.4f, %.0f%% keys unique", Double(hits) / Double(max(1, queried)), uniqueShare * 100)))
        }
        return rowsOut
    }

    /// User + system CPU seconds of this process so far (all threads).
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// Seconds `cat FILES > /dev/null` takes (the best of three runs).
    static func cat(_ files: [String]) throws -> Double {
        var best = Double.infinity
        for _ in 0..<3 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/cat")
            process.arguments = files
            process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            let watch = Stopwatch()
            try process.run()
            process.waitUntilExit()
            best = min(best, watch.seconds)
        }
        return best
    }
}
