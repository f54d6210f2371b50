import Foundation
import HPS
import HPSRocksDB
import HPSRuntime
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Log lines kept in memory, to see what ``ParameterServer/loadTables(progress:)`` decided.
final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])

    var logger: HPSLogger {
        HPSLogger(level: .debug, sink: { [self] line in lines.withLock { $0.append(line) } })
    }

    var all: [String] { lines.withLock { $0 } }

    func count(_ fragment: String) -> Int { all.filter { $0.contains(fragment) }.count }
}

/// Forwards every call to `inner` and counts the writes, so a test can tell that a start loaded nothing.
final class CountingDatabase: Database, @unchecked Sendable {
    let inner: any Database
    let insertedRows = Atomic<Int>(0)
    let tableEvictions = Atomic<Int>(0)

    init(_ inner: any Database) { self.inner = inner }

    var name: String { inner.name }
    var isShared: Bool { inner.isShared }
    func capacity(table: String) -> Int { inner.capacity(table: table) }
    func size(table: String) throws -> Int { try inner.size(table: table) }
    func contains(table: String, keys: UnsafeBufferPointer<Int64>) throws -> Int { try inner.contains(table: table, keys: keys) }

    func insert(table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer, valueSize: Int) throws -> Int {
        insertedRows.wrappingAdd(keys.count, ordering: .relaxed)
        return try inner.insert(table: table, keys: keys, values: values, valueSize: valueSize)
    }

    func fetch(
        table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeMutableRawBufferPointer, valueSize: Int, onMiss: (Int) -> Void
    ) throws -> Int {
        try inner.fetch(table: table, keys: keys, values: values, valueSize: valueSize, onMiss: onMiss)
    }

    func fetch(
        table: String, indices: UnsafeBufferPointer<Int>, keys: UnsafeBufferPointer<Int64>,
        values: UnsafeMutableRawBufferPointer, valueSize: Int, onMiss: (Int) -> Void
    ) throws -> Int {
        try inner.fetch(table: table, indices: indices, keys: keys, values: values, valueSize: valueSize, onMiss: onMiss)
    }

    func evict(table: String) throws -> Int {
        tableEvictions.wrappingAdd(1, ordering: .relaxed)
        return try inner.evict(table: table)
    }

    func evict(table: String, keys: UnsafeBufferPointer<Int64>) throws -> Int { try inner.evict(table: table, keys: keys) }
    func findTables(model: String) throws -> [String] { try inner.findTables(model: model) }

    func forEachChunk(
        table: String, maxChunk: Int, _ body: (UnsafeBufferPointer<Int64>, UnsafeRawBufferPointer, Int) throws -> Void
    ) throws {
        try inner.forEachChunk(table: table, maxChunk: maxChunk, body)
    }

    func loadedFingerprint(table: String) throws -> String? { try inner.loadedFingerprint(table: table) }
    func recordLoadedFingerprint(_ fingerprint: String?, table: String) throws { try inner.recordLoadedFingerprint(fingerprint, table: table) }
}

/// Fault injection (a test double, on purpose): a volatile database whose every read fails, as a Redis
/// node that has gone away would. No real backend can be made to fail on demand like this. Inserts are
/// accepted and dropped, so loading succeeds and only lookups see the failure.
final class FailingFetchDatabase: Database, @unchecked Sendable {
    let fetchCalls = Atomic<Int>(0)

    var name: String { "failing_test_double" }
    func capacity(table: String) -> Int { .max }
    func size(table: String) throws -> Int { 0 }
    func contains(table: String, keys: UnsafeBufferPointer<Int64>) throws -> Int { throw failure() }
    func insert(table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer, valueSize: Int) throws -> Int { keys.count }

    func fetch(
        table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeMutableRawBufferPointer, valueSize: Int, onMiss: (Int) -> Void
    ) throws -> Int {
        fetchCalls.wrappingAdd(1, ordering: .relaxed)
        throw failure()
    }

    func fetch(
        table: String, indices: UnsafeBufferPointer<Int>, keys: UnsafeBufferPointer<Int64>,
        values: UnsafeMutableRawBufferPointer, valueSize: Int, onMiss: (Int) -> Void
    ) throws -> Int {
        fetchCalls.wrappingAdd(1, ordering: .relaxed)
        throw failure()
    }

    func evict(table: String) throws -> Int { 0 }
    func evict(table: String, keys: UnsafeBufferPointer<Int64>) throws -> Int { 0 }
    func findTables(model: String) throws -> [String] { [] }
    func forEachChunk(table: String, maxChunk: Int, _ body: (UnsafeBufferPointer<Int64>, UnsafeRawBufferPointer, Int) throws -> Void) throws {}

    private func failure() -> HPSError { HPSError(.database, subject: name, "injected failure") }
}

/// The `hps` executable built beside this test bundle, and a way to run it.
enum HPSBinary {
    /// `hps` in the directory of the running test binary (SwiftPM builds it there with the tests).
    static var path: String? {
        var directories: [String] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directories.append((exe as NSString).deletingLastPathComponent)
        }
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            directories.append((bundle.bundlePath as NSString).deletingLastPathComponent)
        }
        if let first = CommandLine.arguments.first {
            directories.append(((first as NSString).resolvingSymlinksInPath as NSString).deletingLastPathComponent)
        }
        return directories.map { $0 + "/hps" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static var required: String {
        get throws {
            try #require(path, "the hps executable is not next to the test binary; build it with `swift build --build-tests` (which builds every product)")
        }
    }

    struct Result {
        var status: Int32
        var output: String
        var errors: String
    }

    /// Runs `hps arguments…` to completion; stdout and stderr go through files in `directory`.
    static func run(_ arguments: [String], in directory: TemporaryDirectory) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try required)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["HPS_LOG_LEVEL"] = "info"
        process.environment = environment
        let out = directory.file("stdout-\(UUID().uuidString)")
        let err = directory.file("stderr-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: err, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        try process.run()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            output: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
            errors: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }
}

@Suite struct PersistentTierTests {
    func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    /// Rows (of `dim` floats) whose bits differ; `[-1]` when the lengths differ. Keeps failure messages short.
    func differingRows(_ got: [Float], _ expected: [Float], dim: Int) -> [Int] {
        guard got.count == expected.count else { return [-1] }
        return (0..<(got.count / dim)).filter { r in
            (0..<dim).contains { got[r * dim + $0].bitPattern != expected[r * dim + $0].bitPattern }
        }
    }

    /// The Fixture's tables behind RocksDB only (no volatile database).
    func rocksFixture(rows: [Int] = [2000, 500], dims: [Int] = [8, 3], maxBatch: Int = 64) throws -> Fixture {
        var fixture = try Fixture(rows: rows, dims: dims, maxBatch: maxBatch)
        fixture.config.volatileDatabase.type = .disabled
        fixture.config.persistentDatabase = rocksConfig(fixture.directory.file("rocksdb"))
        fixture.model.hitRateThreshold = 1.0  // exact answers even with a cache
        return fixture
    }

    /// What the table files of `fixture`'s table `t` hold, read back from disk: key → vector.
    func tableFiles(_ fixture: Fixture, _ t: Int) throws -> (keys: [Int64], rows: [Int64: [Float]]) {
        let table = fixture.model.tables[t]
        let directory = try TableDirectory(path: table.path, dimension: table.dimension)
        var keys: [Int64] = []
        var rows: [Int64: [Float]] = [:]
        try directory.forEachChunk(maxRows: 1000) { k, v in
            for i in 0..<k.count {
                keys.append(k[i])
                rows[k[i]] = Array(v[(i * table.dimension)..<((i + 1) * table.dimension)])
            }
        }
        return (keys, rows)
    }

    /// Looks every key of every table up (plus unknown keys) through `server`'s session and through its
    /// database path, and compares with the table files bit for bit.
    func expectAnswersLikeTheFiles(_ server: ParameterServer, _ fixture: Fixture, files: [[Int64: [Float]]]? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let session = try server.session(model: "demo", device: 0)
        for t in 0..<fixture.model.tableCount {
            let table = fixture.model.tables[t]
            let rows = try files?[t] ?? tableFiles(fixture, t).rows
            let fallback = [Float](repeating: table.defaultValue, count: table.dimension)
            var keys = rows.keys.sorted()
            keys += [-1, 1 << 40, keys[0], keys[keys.count / 2]]  // unknown keys and duplicates
            let expected = keys.flatMap { rows[$0] ?? fallback }
            let limit = fixture.model.maxQueryLength(table: t)
            var got: [Float] = []
            var start = 0
            while start < keys.count {
                let chunk = Array(keys[start..<min(keys.count, start + limit)])
                got += try session.lookup(table: t, keys: chunk)
                start += limit
            }
            let viaSession = differingRows(got, expected, dim: table.dimension)
            #expect(viaSession.isEmpty, "session lookups of table \(t): \(viaSession.count) rows differ, first \(viaSession.prefix(5))", sourceLocation: sourceLocation)
            let viaDatabases = differingRows(try server.lookup(model: "demo", table: t, keys: keys), expected, dim: table.dimension)
            #expect(viaDatabases.isEmpty, "database lookups of table \(t): \(viaDatabases.count) rows differ, first \(viaDatabases.prefix(5))", sourceLocation: sourceLocation)
        }
    }

    /// The content fingerprint in `db`'s load record of `tag` (nil when there is no valid record).
    func recordedContent(_ db: any Database, _ tag: String) throws -> String? {
        try db.loadedFingerprint(table: tag).flatMap(LoadedTableRecord.init)?.content
    }

    func jsonConfig(_ fixture: Fixture, deviceCache: Bool, persistentPath: String, volatile: String = #"{"type": "disabled"}"#, readOnly: Bool = false) -> String {
        let model = fixture.model
        let files = model.sparseFiles.map { "\"\($0)\"" }.joined(separator: ", ")
        let names = model.tableNames.map { "\"\($0)\"" }.joined(separator: ", ")
        return """
            {
              "supportlonglong": true,
              "volatile_db": \(volatile),
              "persistent_db": {"type": "rocks_db", "path": "\(persistentPath)", "num_threads": 2, "read_only": \(readOnly)},
              "models": [{
                "model": "demo",
                "sparse_files": [\(files)],
                "embedding_table_names": [\(names)],
                "deployed_device_list": [0],
                "max_batch_size": \(model.maxBatchSize),
                "maxnum_catfeature_query_per_table_per_sample": \(model.maxKeysPerSample),
                "embedding_vecsize_per_table": \(model.embeddingVectorSizes),
                "default_value_for_each_table": \(model.defaultValues),
                "gpucache": \(deviceCache),
                "gpucacheper": 0.1,
                "hit_rate_threshold": 1.0
              }]
            }
            """
    }

    // MARK: RocksDB as the only database

    @Test(arguments: [false, true])
    func rocksAloneAnswersBitExactly(deviceCache: Bool) throws {
        let fixture = try rocksFixture()
        defer { fixture.directory.remove() }
        let configFile = try fixture.directory.write(jsonConfig(fixture, deviceCache: deviceCache, persistentPath: "rocksdb"), to: "ps.json")
        let server = try HPSRuntime.makeParameterServer(configFile: configFile, logger: .silent)
        #expect(server.volatileDatabase == nil)
        let pdb = try #require(server.persistentDatabase as? RocksDBDatabase)
        #expect(pdb.path == fixture.directory.file("rocksdb"))  // relative to the config file
        #expect(try pdb.size(table: "hps_et.demo.t0") == 2000)
        try expectAnswersLikeTheFiles(server, fixture)
        let stats = server.statistics.snapshot
        #expect(stats.persistentHits > 0)
        #expect(stats.volatileHits == 0 && stats.volatileErrors == 0 && stats.persistentErrors == 0)
    }

    @Test func secondServerOnTheSamePathDoesNotReinsert() throws {
        let fixture = try rocksFixture()
        defer { fixture.directory.remove() }
        let first = LogCapture()
        do {
            let server = try HPSRuntime.makeParameterServer(config: fixture.config, logger: first.logger)
            try expectAnswersLikeTheFiles(server, fixture)
        }  // closes the database
        #expect(first.count("already holds") == 0)
        #expect(first.count("Table: hps_et.demo.t0; cached 2000 / 2000 embeddings in rocks_db") == 1)

        let second = LogCapture()
        let pdb = CountingDatabase(try RocksDBDatabase(config: fixture.config.persistentDatabase, logger: second.logger))
        let server = ParameterServer(config: fixture.config, volatileDatabase: nil, persistentDatabase: pdb, logger: second.logger)
        try server.loadTables()
        #expect(pdb.insertedRows.load(ordering: .relaxed) == 0)
        #expect(pdb.tableEvictions.load(ordering: .relaxed) == 0)
        #expect(second.count("rocks_db already holds these table files") == 2, "\(second.all)")
        #expect(second.count("; cached ") == 0)
        try expectAnswersLikeTheFiles(server, fixture)
    }

    @Test func twoReadOnlyServersAtOnce() async throws {
        let fixture = try rocksFixture()
        defer { fixture.directory.remove() }
        _ = try fixture.server()  // loads, then closes
        var readOnly = fixture
        readOnly.config.persistentDatabase.readOnly = true
        let logs = [LogCapture(), LogCapture()]
        let servers = try logs.map { try HPSRuntime.makeParameterServer(config: readOnly.config, logger: $0.logger) }
        for log in logs { #expect(log.count("already holds these table files") == 2) }
        // Both answer at the same time.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for server in servers {
                group.addTask { try self.expectAnswersLikeTheFiles(server, fixture) }
            }
            try await group.waitForAll()
        }
        // A read-only server never writes: inserting through its database fails with a clear error.
        #expect(throws: HPSError.self) {
            try [Int64(1)].withUnsafeBufferPointer { k in
                try [Float](repeating: 0, count: 8).withUnsafeBytes { _ = try servers[0].persistentDatabase!.insert(table: "hps_et.demo.t0", keys: k, values: $0, valueSize: 32) }
            }
        }
    }

    @Test func smallHashMapInFrontOfRocksStillAnswersEveryKey() throws {
        var fixture = try rocksFixture()
        defer { fixture.directory.remove() }
        fixture.config.volatileDatabase.type = .hashMap
        fixture.config.volatileDatabase.numPartitions = 4
        fixture.config.volatileDatabase.overflowMargin = 40
        fixture.model.deviceCache = false
        let server = try fixture.server()
        let vdb = try #require(server.volatileDatabase)
        #expect(try vdb.size(table: "hps_et.demo.t0") <= 4 * 40)
        try expectAnswersLikeTheFiles(server, fixture)
        let stats = server.statistics.snapshot
        #expect(stats.volatileHits > 0)
        #expect(stats.persistentHits > 0)
        #expect(stats.persistentHits + stats.volatileHits >= 2500)
    }

    @Test func changedTableFilesAreReloadedAtTheNextStart() throws {
        let fixture = try rocksFixture()
        defer { fixture.directory.remove() }
        _ = try fixture.server()
        // Rewrite table 0 with other values and fewer keys.
        let table = fixture.model.tables[0]
        let keys = (0..<1200).map { Int64($0) * 3 }
        let vectors = DatabaseConformance.rows(keys, dim: 8, salt: 100)
        try TableWriter.write(directory: table.path, keys: keys, vectors: vectors, dimension: 8)
        let log = LogCapture()
        let server = try HPSRuntime.makeParameterServer(config: fixture.config, logger: log.logger)
        #expect(log.count("Table hps_et.demo.t0: rocks_db already holds") == 0)
        #expect(log.count("Table hps_et.demo.t1: rocks_db already holds") == 1)
        #expect(log.count("Table: hps_et.demo.t0; cached 1200 / 1200 embeddings in rocks_db") == 1, "\(log.all)")
        let pdb = try #require(server.persistentDatabase)
        #expect(try pdb.size(table: "hps_et.demo.t0") == 1200)  // the removed keys are gone
        #expect(try recordedContent(pdb, "hps_et.demo.t0") == TableDirectory(path: table.path, dimension: 8).fingerprint())
        try expectAnswersLikeTheFiles(server, fixture)
        // Old keys beyond the new table get the default; kept keys the new values.
        #expect(try server.lookup(model: "demo", table: 0, keys: [1500 * 3]) == [Float](repeating: 0.5, count: 8))
        #expect(bits(try server.lookup(model: "demo", table: 0, keys: [3])) == bits(DatabaseConformance.row(3, dim: 8, salt: 100)))
    }

    // MARK: Volatile database in front

    @Test func cacheMissedEmbeddingsCopiesPersistentHitsIntoTheVolatileDatabase() throws {
        var fixture = try rocksFixture()
        defer { fixture.directory.remove() }
        fixture.config.volatileDatabase.type = .hashMap
        fixture.config.volatileDatabase.numPartitions = 4
        fixture.config.volatileDatabase.initializeAfterStartup = false  // starts empty
        fixture.config.volatileDatabase.cacheMissedEmbeddings = true
        fixture.model.deviceCache = false
        let server = try fixture.server()
        let vdb = try #require(server.volatileDatabase)
        #expect(try vdb.size(table: "hps_et.demo.t0") == 0)
        let keys: [Int64] = [0, 3, 6, 3, 9, -5, 1_000_000, 5997]
        let known = Set(keys).filter { fixture.tables[0][$0] != nil }
        #expect(bits(try server.lookup(model: "demo", table: 0, keys: keys)) == bits(fixture.expected(table: 0, keys: keys)))
        server.waitForBackgroundWork()
        #expect(try vdb.size(table: "hps_et.demo.t0") == known.count)
        let (values, misses, hits) = try DatabaseConformance.fetch(vdb, "hps_et.demo.t0", known.sorted(), dim: 8)
        #expect(misses.isEmpty && hits == known.count)
        #expect(bits(values) == bits(fixture.expected(table: 0, keys: known.sorted())))
        #expect(try DatabaseConformance.fetch(vdb, "hps_et.demo.t0", [-5, 1_000_000], dim: 8).hits == 0)
        // The second lookup is answered by the volatile database.
        let before = server.statistics.snapshot
        #expect(bits(try server.lookup(model: "demo", table: 0, keys: keys)) == bits(fixture.expected(table: 0, keys: keys)))
        let after = server.statistics.snapshot
        #expect(after.volatileHits - before.volatileHits == keys.count - 2)
        #expect(after.persistentHits == before.persistentHits)
    }

    @Test(arguments: [false, true])
    func failingVolatileDatabaseNeverLosesALookup(deviceCache: Bool) throws {
        var fixture = try rocksFixture()
        defer { fixture.directory.remove() }
        fixture.model.deviceCache = deviceCache
        let failing = FailingFetchDatabase()
        let pdb = try RocksDBDatabase(config: fixture.config.persistentDatabase, logger: .silent)
        let server = ParameterServer(config: fixture.config, volatileDatabase: failing, persistentDatabase: pdb, logger: .silent)
        try server.loadTables()
        try expectAnswersLikeTheFiles(server, fixture)
        let stats = server.statistics.snapshot
        #expect(failing.fetchCalls.load(ordering: .relaxed) > 0)
        #expect(stats.volatileErrors > 0)
        #expect(stats.volatileHits == 0)
        #expect(stats.persistentHits > 0)
    }

    // MARK: A crash while loading

    @Test func sigkillWhileLoadingLeavesNoFingerprintAndTheNextStartReloads() throws {
        let binary = try HPSBinary.required
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // 1M rows: large enough that loadTables logs progress ("loaded N / 1000000 rows") mid-way.
        let rows = 1_000_000
        let dim = 4
        let keys = (0..<rows).map { Int64($0) &* 2_654_435_761 &+ 5 }
        var vectors = [Float](repeating: 0, count: rows * dim)
        for i in 0..<rows { for j in 0..<dim { vectors[i * dim + j] = Float(i % 10007) * 0.25 + Float(j) } }
        let tablePath = directory.file("big")
        try TableWriter.write(directory: tablePath, keys: keys, vectors: vectors, dimension: dim)
        let dbPath = directory.file("rocksdb")
        let configFile = try directory.write(
            """
            {
              "supportlonglong": true,
              "volatile_db": {"type": "disabled"},
              "persistent_db": {"type": "rocks_db", "path": "\(dbPath)", "num_threads": 2},
              "models": [{"model": "big", "sparse_files": ["\(tablePath)"], "deployed_device_list": [0],
                          "maxnum_catfeature_query_per_table_per_sample": [1], "embedding_vecsize_per_table": [\(dim)],
                          "default_value_for_each_table": [-1], "gpucache": false}]
            }
            """, to: "ps.json")

        // Start `hps lookup`, which loads the table first; kill it once it reports loading progress.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["lookup", "--config", configFile, "--model", "big", "--table", "0", "--keys", "5"]
        var environment = ProcessInfo.processInfo.environment
        environment["HPS_LOG_LEVEL"] = "info"
        process.environment = environment
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        var log = ""
        var killed = false
        let deadline = ContinuousClock.now + .seconds(300)
        let reader = errors.fileHandleForReading
        while ContinuousClock.now < deadline {
            let data = reader.availableData  // blocks until some output or end of file
            if data.isEmpty { break }
            log += String(decoding: data, as: UTF8.self)
            if log.contains("big.sparse_embedding0: loaded ") {
                kill(process.processIdentifier, SIGKILL)
                killed = true
                break
            }
        }
        if !killed { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try #require(killed, "hps never reported loading progress before it exited or 300 s passed; its log:\n\(log)")
        #expect(process.terminationReason == .uncaughtSignal)
        #expect(process.terminationStatus == SIGKILL)
        #expect(!log.contains("cached 1000000 / 1000000"))

        // The killed load left part of the rows (a bulk load: what was ingested before the kill, maybe
        // nothing) and no fingerprint; opening the database for writing removes the SST files of the
        // interrupted bulk load.
        let tag = "hps_et.big.sparse_embedding0"
        do {
            let db = try openRocks(dbPath)
            #expect(try db.loadedFingerprint(table: tag) == nil)
            let partial = try db.size(table: tag)
            #expect(partial < rows, "the load finished before the kill; the test proves nothing")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: dbPath).filter { $0.hasPrefix("hps-bulk-load.") }
            #expect(leftovers.isEmpty)
        }

        // The next start reopens the database (RocksDB recovers its log) and reloads every row.
        let capture = LogCapture()
        let config = try ParameterServerConfig.load(path: configFile)
        let server = try HPSRuntime.makeParameterServer(config: config, logger: capture.logger)
        #expect(capture.count("already holds") == 0)
        #expect(capture.count("Table: \(tag); cached 1000000 / 1000000 embeddings in rocks_db") == 1, "\(capture.all)")
        let pdb = try #require(server.persistentDatabase)
        #expect(try recordedContent(pdb, tag) == TableDirectory(path: tablePath, dimension: dim).fingerprint())
        var start = 0
        var mismatches = 0
        while start < rows {
            let end = min(rows, start + 65536)
            let got = try server.lookup(model: "big", table: 0, keys: Array(keys[start..<end]))
            mismatches += differingRows(got, Array(vectors[(start * dim)..<(end * dim)]), dim: dim).count
            start = end
        }
        #expect(mismatches == 0, "every key must come back exact after the reload; \(mismatches) rows differ")
        #expect(server.statistics.snapshot.persistentHits == rows)
    }

    // MARK: The CLI: dump and load-dump

    @Test func dumpAndLoadDumpThroughTheCLI() throws {
        let fixture = try rocksFixture()
        defer { fixture.directory.remove() }
        let dir = fixture.directory
        let source = try dir.write(jsonConfig(fixture, deviceCache: false, persistentPath: "rocksdb"), to: "source.json")
        let target = try dir.write(jsonConfig(fixture, deviceCache: false, persistentPath: "restored"), to: "target.json")

        _ = try fixture.server()  // a server loaded the persistent database (same path as source.json's)

        // Dump both tables (by name and by index; .sst and .bin) from the persistent database: it holds
        // the current table files, so nothing is reloaded first.
        var result = try HPSBinary.run(["dump", "--config", source, "--model", "demo", "--table", "t0", "--output", dir.file("t0.sst")], in: dir)
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.errors.contains("dumped 2000 rows of hps_et.demo.t0"))
        #expect(result.errors.contains("already holds these table files"))
        result = try HPSBinary.run(["dump", "--config", source, "--model", "demo", "--table", "1", "--output", dir.file("t1.bin")], in: dir)
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.errors.contains("already holds these table files"))

        // Loading a dump into a database forgets the table's load record (it no longer holds exactly the
        // files), so the next start reloads that table and only that one.
        result = try HPSBinary.run(["load-dump", "--config", source, "--model", "demo", "--table", "t0", "--input", dir.file("t0.sst")], in: dir)
        #expect(result.status == 0, "\(result.errors)")
        do {
            let db = try openRocks(dir.file("rocksdb"))
            #expect(try db.loadedFingerprint(table: "hps_et.demo.t0") == nil)
            #expect(try recordedContent(db, "hps_et.demo.t1") != nil)
            #expect(try db.size(table: "hps_et.demo.t0") == 2000)
        }
        do {
            let log = LogCapture()
            _ = try HPSRuntime.makeParameterServer(configFile: source, logger: log.logger)
            #expect(log.count("Table hps_et.demo.t1: rocks_db already holds") == 1)
            #expect(log.count("Table: hps_et.demo.t0; cached 2000 / 2000 embeddings in rocks_db") == 1, "\(log.all)")
        }

        // Load them into another database; t0's record stays unset, so a start would reload it.
        result = try HPSBinary.run(["load-dump", "--config", target, "--model", "demo", "--table", "t0", "--input", dir.file("t0.sst")], in: dir)
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.errors.contains("loaded 2000 rows"))
        result = try HPSBinary.run(["load-dump", "--config", target, "--model", "demo", "--table", "t1", "--input", dir.file("t1.bin"), "--verify-table-files"], in: dir)
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.errors.contains("verified"))
        do {
            let restored = try openRocks(dir.file("restored"))
            #expect(try restored.loadedFingerprint(table: "hps_et.demo.t0") == nil)
            #expect(try recordedContent(restored, "hps_et.demo.t1") == TableDirectory(path: fixture.model.tables[1].path, dimension: 3).fingerprint())
            for t in 0..<2 {
                let keys = fixture.tables[t].keys.sorted()
                let (values, misses, _) = try DatabaseConformance.fetch(restored, "hps_et.demo.t\(t)", keys, dim: fixture.model.embeddingVectorSizes[t])
                #expect(misses.isEmpty)
                #expect(differingRows(values, fixture.expected(table: t, keys: keys), dim: fixture.model.embeddingVectorSizes[t]).isEmpty)
                #expect(try restored.size(table: "hps_et.demo.t\(t)") == keys.count)
            }
        }
        // A dump of other rows, loaded with --verify-table-files, is not taken for the table files.
        try dir.makeDirectory("other")
        let other = try openRocks(dir.file("other"))
        try DatabaseConformance.insert(other, "hps_et.demo.t1", [1, 4, 7], dim: 3, salt: 50)
        try DatabaseDump.dump(other, table: "hps_et.demo.t1", to: dir.file("other.bin"))
        result = try HPSBinary.run(["load-dump", "--config", target, "--model", "demo", "--table", "t1", "--input", dir.file("other.bin"), "--verify-table-files"], in: dir)
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.errors.contains("differs from its table files"))
        do {
            let restored = try openRocks(dir.file("restored"))
            #expect(try restored.loadedFingerprint(table: "hps_et.demo.t1") == nil)
            #expect(try restored.size(table: "hps_et.demo.t1") == 500)  // merged: same keys, other values
            #expect(bits(try DatabaseConformance.fetch(restored, "hps_et.demo.t1", [4], dim: 3).values) == bits(DatabaseConformance.row(4, dim: 3, salt: 50)))
        }
        // The next start reloads t0 and t1 (no fingerprint) from the files and serves the files' rows.
        let log = LogCapture()
        let server = try HPSRuntime.makeParameterServer(configFile: target, logger: log.logger)
        #expect(log.count("already holds") == 0)
        try expectAnswersLikeTheFiles(server, fixture)
    }

    @Test func dumpFromAHashMapAndLoadDumpErrors() throws {
        let fixture = try rocksFixture()
        defer { fixture.directory.remove() }
        let dir = fixture.directory
        let hashOnly = try dir.write(
            jsonConfig(fixture, deviceCache: false, persistentPath: "unused", volatile: #"{"type": "hash_map", "num_partitions": 2}"#)
                .replacingOccurrences(of: #""type": "rocks_db""#, with: #""type": "disabled""#),
            to: "hash.json")
        // With only a hash map the dump is of what was loaded: the table files.
        var result = try HPSBinary.run(["dump", "--config", hashOnly, "--model", "demo", "--table", "0", "--output", dir.file("h.bin")], in: dir)
        #expect(result.status == 0, "\(result.errors)")
        let copy = try openRocks(dir.file("copy"))
        #expect(try DatabaseDump.load(into: copy, table: "hps_et.demo.t0", from: dir.file("h.bin"), valueSize: 32) == 2000)
        let keys = fixture.tables[0].keys.sorted()
        #expect(differingRows(try DatabaseConformance.fetch(copy, "hps_et.demo.t0", keys, dim: 8).values, fixture.expected(table: 0, keys: keys), dim: 8).isEmpty)

        // load-dump needs a database that outlives the command.
        result = try HPSBinary.run(["load-dump", "--config", hashOnly, "--model", "demo", "--table", "0", "--input", dir.file("h.bin")], in: dir)
        #expect(result.status != 0)
        #expect(result.errors.contains("no database that outlives this command"))
        // Bad arguments name the problem.
        result = try HPSBinary.run(["dump", "--config", hashOnly, "--model", "demo", "--table", "t9", "--output", dir.file("x.bin")], in: dir)
        #expect(result.status != 0)
        #expect(result.errors.contains("has no table of that name"))
        result = try HPSBinary.run(["dump", "--config", hashOnly, "--model", "demo", "--table", "0", "--output", dir.file("x.txt")], in: dir)
        #expect(result.status != 0)
        #expect(result.errors.contains(".bin"))
        // A dump whose vectors do not fit the table is rejected.
        let persistent = try dir.write(jsonConfig(fixture, deviceCache: false, persistentPath: "rocksdb"), to: "ps.json")
        result = try HPSBinary.run(["load-dump", "--config", persistent, "--model", "demo", "--table", "t1", "--input", dir.file("h.bin")], in: dir)
        #expect(result.status != 0)
        #expect(result.errors.contains("invalid dump"), "\(result.errors)")
    }
}
