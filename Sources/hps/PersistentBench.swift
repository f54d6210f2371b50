import ArgumentParser
import Foundation
import HPS
import HPSBench
import HPSRocksDB

/// `hps bench persistent`: the RocksDB tier beside raw RocksDB MultiGet, and loading from table files.
struct PersistentBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "persistent",
        abstract: "RocksDB persistent tier: lookups beside a raw RocksDB MultiGet loop, and load speed from table files.",
        discussion: """
            A synthetic table (default 1M rows × dim 32) is written to a temporary directory and loaded \
            into a fresh RocksDB database with ParameterServer.loadTables (fingerprint, evict, bulk load: \
            sorted SST files ingested): load MB/s counts the table files' bytes (keys + vectors). A \
            second start over the same files measures the restart (RocksDB open + fingerprint skip). The \
            same is measured for the write path (inserts in max_batch_size write batches, bulk loading \
            off) into another directory.

            Then Zipf-distributed batches are looked up (over the bulk-loaded directory, as ingested: no \
            compaction ran) through RocksDBDatabase.fetch, and the same batches through bare C calls (RawRocksDBReader) on the same directory opened read-only with \
            the same options in the same run: rocksdb_batched_multi_get_cf (the baseline the ratio uses) \
            and the plain rocksdb_multi_get_cf. Both sides are opened read-only and measured in \
            alternating rounds, so page cache and block cache warm-up favour neither. The last row is a \
            lookup session without a device cache: deduplication, then the persistent tier.
            """
    )

    @Option(help: "Rows of the table.")
    var rows = 1_000_000

    @Option(help: "Vector width.")
    var dim = 32

    @Option(help: "Keys per lookup batch.")
    var batch = 65536

    @Option(help: "Zipf exponent.")
    var alpha = 1.05

    @Option(help: "Keys looked up per path and round.")
    var keysPerRound = 1_048_576

    @Option(help: "Alternating measurement rounds.")
    var rounds = 6

    @Option(help: "persistent_db.num_threads (RocksDB background threads).")
    var numThreads = 16

    @Flag(help: "Look up over the database loaded by inserts (memtables flushed to level 0) instead of the bulk-loaded one (SST files as ingested).")
    var lookupsOverInserts = false

    @Option(help: "Directory for the table files and the database (default: a new temporary directory, removed afterwards).")
    var directory: String?

    func validate() throws {
        guard rows >= 1000 else { throw ValidationError("--rows must be at least 1000") }
        guard dim >= 1, batch >= 1, rounds >= 1, keysPerRound >= batch else {
            throw ValidationError("--dim, --batch and --rounds must be positive and --keys-per-round at least --batch")
        }
    }

    struct Row {
        var path: String
        var keysPerSecond: Double, p50: Double, p99: Double, ratio: Double?, note: String
    }

    func run() throws {
        let fm = FileManager.default
        let root = directory ?? NSTemporaryDirectory() + "hps-bench-persistent-\(getpid())"
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { if directory == nil { try? fm.removeItem(atPath: root) } }
        let tablePath = root + "/table"
        let dbPath = root + "/rocksdb"
        try? fm.removeItem(atPath: dbPath)
        print("hps bench persistent: \(rows) rows × dim \(dim), batch \(batch), Zipf α=\(alpha), \(SystemInfo.processorCount) core(s), \(Date())")
        try SyntheticTable.write(to: tablePath, rows: rows, dim: dim, seed: 7)
        let files = try TableDirectory(path: tablePath, dimension: dim)
        let megabytes = Double(files.byteCount) / 1e6

        var config = ParameterServerConfig()
        var model = ModelConfig()
        model.name = "bench"
        model.sparseFiles = [tablePath]
        model.deployedDevices = [0]
        model.maxBatchSize = batch
        model.maxKeysPerSample = [1]
        model.embeddingVectorSizes = [dim]
        model.defaultValues = [0]
        model.deviceCache = false
        config.models = [model]
        config.volatileDatabase.type = .disabled
        config.persistentDatabase.type = .rocksDB
        config.persistentDatabase.path = dbPath
        config.persistentDatabase.numThreads = numThreads
        let tag = model.tables[0].tag
        let logger = HPSLogger(level: .warning)

        // Loading: a fresh database, then a restart over unchanged files; by bulk load (the lookups below
        // use this directory) and by the write path.
        struct Load {
            var seconds = 0.0, closeSeconds = 0.0, restartSeconds = 0.0, openSeconds = 0.0
            var levels: [Int] = []
        }
        func measureLoad(path: String, bulk: Bool) throws -> Load {
            var load = Load()
            var pdbConfig = config
            pdbConfig.persistentDatabase.path = path
            try? fm.removeItem(atPath: path)
            var closing = Stopwatch()
            do {
                let pdb = try RocksDBDatabase(config: pdbConfig.persistentDatabase, logger: logger, bulkLoading: bulk)
                try withExtendedLifetime(pdb) {
                    let server = ParameterServer(config: pdbConfig, volatileDatabase: nil, persistentDatabase: pdb, logger: logger)
                    let watch = Stopwatch()
                    try server.loadTables()
                    load.seconds = watch.seconds
                    guard try pdb.size(table: tag) == rows else { throw HPSError(.database, subject: tag, "holds \(try pdb.size(table: tag)) rows after loading \(rows)") }
                    load.levels = pdb.filesPerLevel(table: tag)
                    closing = Stopwatch()
                }
            }
            load.closeSeconds = closing.seconds  // RocksDB's close waits for running compactions
            do {
                let watch = Stopwatch()
                let pdb = try RocksDBDatabase(config: pdbConfig.persistentDatabase, logger: logger)
                load.openSeconds = watch.seconds
                let server = ParameterServer(config: pdbConfig, volatileDatabase: nil, persistentDatabase: pdb, logger: logger)
                try server.loadTables()
                load.restartSeconds = watch.seconds
                guard try pdb.size(table: tag) == rows else { throw HPSError(.database, subject: tag, "the restart lost rows") }
            }
            return load
        }
        let bulkLoad = try measureLoad(path: dbPath, bulk: true)
        let insertPath = root + "/rocksdb-inserts"
        let insertLoad = try measureLoad(path: insertPath, bulk: false)
        let lookupPath = lookupsOverInserts ? insertPath : dbPath
        defer { try? fm.removeItem(atPath: insertPath) }
        let loadSeconds = bulkLoad.seconds
        let fingerprintWatch = Stopwatch()
        _ = try files.fingerprint()
        let fingerprintSeconds = fingerprintWatch.seconds
        // Baselines: the same chunks written with bare RocksDB calls: write batches with and without the
        // write-ahead log, and sorted SST files ingested.
        var rawLoadSeconds: [Double] = []
        for (n, method) in [RawRocksDBLoader.Method.writeBatch(wal: true), .writeBatch(wal: false), .ingestSortedChunks].enumerated() {
            let path = root + "/raw-\(n)"
            try? fm.removeItem(atPath: path)
            let watch = Stopwatch()
            try RawRocksDBLoader.load(path: path, table: tag, numThreads: numThreads, valueSize: dim * 4, method: method) { write in
                try files.forEachChunk(maxRows: config.persistentDatabase.maxBatchSize) { keys, vectors in
                    try write(keys, UnsafeRawBufferPointer(vectors))
                }
            }
            rawLoadSeconds.append(watch.seconds)
            try? fm.removeItem(atPath: path)
        }
        print(String(format: "load: %.1f MB of table files in %.2f s = %.0f MB/s by bulk load (goal ≥ 200 MB/s), %.0f MB/s by inserts; raw WriteBatch %.0f MB/s, without WAL %.0f MB/s, SST ingestion %.0f MB/s; restart over unchanged files %.2f s after the bulk load, %.2f s after inserts",
                     megabytes, loadSeconds, megabytes / loadSeconds, megabytes / insertLoad.seconds, megabytes / rawLoadSeconds[0], megabytes / rawLoadSeconds[1], megabytes / rawLoadSeconds[2], bulkLoad.restartSeconds, insertLoad.restartSeconds))
        print("bulk-loaded table: SST files per level L0…L6 \(bulkLoad.levels); after inserts \(insertLoad.levels)")

        // Lookups: both sides read-only on the same directory.
        config.persistentDatabase.readOnly = true
        config.persistentDatabase.path = lookupPath
        let pdb = try RocksDBDatabase(config: config.persistentDatabase, logger: logger)
        let raw = try RawRocksDBReader(path: lookupPath, numThreads: numThreads)
        let server = ParameterServer(config: config, volatileDatabase: nil, persistentDatabase: pdb, logger: logger)
        try server.loadTables()  // read-only and current: only the fingerprint check
        let session = try server.session(model: "bench", device: 0)

        var zipf = ZipfSampler(rows: rows, alpha: alpha, seed: 42)
        let batchCount = min(32, max(1, keysPerRound / batch))
        let batches = (0..<batchCount).map { _ in zipf.batch(batch).map { SyntheticTable.key(row: $0) } }
        let uniqueShare = Double(batches.map { Set($0).count }.reduce(0, +)) / Double(batchCount * batch)
        let perRound = max(1, keysPerRound / batch)
        let valueSize = dim * 4
        var output = [Float](repeating: 0, count: batch * dim)

        struct Series {
            var latencies: [Double] = []
            var seconds = 0.0
            var keys = 0
        }
        var series = [Series](repeating: Series(), count: 4)
        var misses = 0
        var step = 0

        try output.withUnsafeMutableBufferPointer { buffer in
            let out = buffer
            let bytes = UnsafeMutableRawBufferPointer(out)
            let paths: [(Int) throws -> Void] = [
                { b in
                    try batches[b].withUnsafeBufferPointer { k in
                        if try raw.batchedMultiGet(table: tag, keys: k, values: bytes, valueSize: valueSize) != k.count { misses += 1 }
                    }
                },
                { b in
                    try batches[b].withUnsafeBufferPointer { k in
                        if try raw.multiGet(table: tag, keys: k, values: bytes, valueSize: valueSize) != k.count { misses += 1 }
                    }
                },
                { b in
                    try batches[b].withUnsafeBufferPointer { k in
                        if try pdb.fetch(table: tag, keys: k, values: bytes, valueSize: valueSize, onMiss: { _ in misses += 1 }) != k.count { misses += 1 }
                    }
                },
                { b in
                    try batches[b].withUnsafeBufferPointer { k in try session.lookup(table: 0, keys: k, into: out) }
                },
            ]
            // Warm-up: every path over every batch once.
            for path in paths { for b in 0..<batchCount { try path(b) } }
            for round in 0..<rounds {
                for j in 0..<paths.count {
                    let p = (j + round) % paths.count  // rotate the order between rounds
                    let total = Stopwatch()
                    for _ in 0..<perRound {
                        let watch = Stopwatch()
                        try paths[p](step % batchCount)
                        series[p].latencies.append(watch.seconds)
                        step += 1
                    }
                    series[p].seconds += total.seconds
                    series[p].keys += perRound * batch
                }
            }
        }
        guard misses == 0 else { throw HPSError(.database, subject: tag, "\(misses) lookups missed keys that were loaded") }
        let rate = series.map { Double($0.keys) / $0.seconds }
        let results = [
            Row(path: "baseline: raw rocksdb_batched_multi_get_cf", keysPerSecond: rate[0], p50: series[0].latencies.percentile(50), p99: series[0].latencies.percentile(99), ratio: nil, note: "same options, buffers reused"),
            Row(path: "baseline: raw rocksdb_multi_get_cf", keysPerSecond: rate[1], p50: series[1].latencies.percentile(50), p99: series[1].latencies.percentile(99), ratio: nil, note: "malloc'd value per key"),
            Row(path: "RocksDBDatabase.fetch", keysPerSecond: rate[2], p50: series[2].latencies.percentile(50), p99: series[2].latencies.percentile(99), ratio: rate[2] / rate[0],
                note: String(format: "p50 ratio %.2fx; %.2fx the plain multi_get; goal ≥ 0.9x", series[0].latencies.percentile(50) / series[2].latencies.percentile(50), rate[2] / rate[1])),
            Row(path: "session, no device cache (dedup → PDB)", keysPerSecond: rate[3], p50: series[3].latencies.percentile(50), p99: series[3].latencies.percentile(99), ratio: rate[3] / rate[0],
                note: String(format: "%.0f%% of keys unique per batch", uniqueShare * 100)),
        ]
        print("")
        print("lookups over the database loaded by \(lookupsOverInserts ? "inserts" : "bulk load")")
        print("| path | keys/s | p50/batch | p99/batch | vs baseline | notes |")
        print("|---|---|---|---|---|---|")
        for r in results {
            let ratio = r.ratio.map { String(format: "%.2fx", $0) } ?? "—"
            print("| \(r.path) | \(formatRate(r.keysPerSecond)) | \(formatMicros(r.p50)) | \(formatMicros(r.p99)) | \(ratio) | \(r.note) |")
        }
        print("")
        print("| load path | MB/s | seconds | vs baseline | notes |")
        print("|---|---|---|---|---|")
        print(String(format: "| baseline: raw WriteBatch per %d rows, WAL on | %.0f | %.2f | — | bare put_cf + write, same options |", config.persistentDatabase.maxBatchSize, megabytes / rawLoadSeconds[0], rawLoadSeconds[0]))
        print(String(format: "| baseline: raw WriteBatch, WAL off, flush at end | %.0f | %.2f | — | what a load recorded only after a flush could do |", megabytes / rawLoadSeconds[1], rawLoadSeconds[1]))
        print(String(format: "| baseline: raw sorted SST per %d rows + IngestExternalFile | %.0f | %.2f | — | no memtable, no log; files land in level 0 |", config.persistentDatabase.maxBatchSize, megabytes / rawLoadSeconds[2], rawLoadSeconds[2]))
        print(String(format: "| ParameterServer.loadTables into a fresh RocksDB: bulk load | %.0f | %.2f | %.2fx | %.1f MB of table files (keys + vectors); goal ≥ 200 MB/s; SST files per level L0…L6 %@; close %.2f s |", megabytes / loadSeconds, loadSeconds, rawLoadSeconds[0] / loadSeconds, megabytes, "\(bulkLoad.levels)", bulkLoad.closeSeconds))
        print(String(format: "| ParameterServer.loadTables into a fresh RocksDB: inserts (bulk loading off) | %.0f | %.2f | %.2fx | write batches, memtables flushed when the load record is written; close %.2f s |", megabytes / insertLoad.seconds, insertLoad.seconds, rawLoadSeconds[0] / insertLoad.seconds, insertLoad.closeSeconds))
        print(String(format: "| restart over unchanged files after the bulk load | — | %.2f | — | RocksDB open %.2f s, then the size+mtime check; hashing the files would take %.2f s |", bulkLoad.restartSeconds, bulkLoad.openSeconds, fingerprintSeconds))
        print(String(format: "| restart over unchanged files after the inserts | — | %.2f | — | RocksDB open %.2f s |", insertLoad.restartSeconds, insertLoad.openSeconds))
    }
}
