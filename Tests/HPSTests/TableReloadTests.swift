import Foundation
import HPS
import Testing

/// A persistent-tier stand-in that keeps rows in a hash map and records fingerprints in memory, and
/// counts inserted rows, so reload decisions can be observed. (RocksDB itself is covered in
/// RocksDB*Tests and PersistentTierTests.)
final class RecordingDatabase: Database, @unchecked Sendable {
    let inner = HashMapDatabase(logger: .silent)
    var name: String { "recording" }
    private let lock = Lock()
    private var fingerprints: [String: String] = [:]
    private(set) var insertedRows = 0

    func capacity(table: String) -> Int { .max }
    func size(table: String) throws -> Int { try inner.size(table: table) }
    func contains(table: String, keys: UnsafeBufferPointer<Int64>) throws -> Int { try inner.contains(table: table, keys: keys) }
    func insert(table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer, valueSize: Int) throws -> Int {
        lock.withLock { insertedRows += keys.count }
        return try inner.insert(table: table, keys: keys, values: values, valueSize: valueSize)
    }
    func fetch(table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeMutableRawBufferPointer, valueSize: Int, onMiss: (Int) -> Void) throws -> Int {
        try inner.fetch(table: table, keys: keys, values: values, valueSize: valueSize, onMiss: onMiss)
    }
    func evict(table: String) throws -> Int { try inner.evict(table: table) }
    func evict(table: String, keys: UnsafeBufferPointer<Int64>) throws -> Int { try inner.evict(table: table, keys: keys) }
    func findTables(model: String) throws -> [String] { try inner.findTables(model: model) }
    func forEachChunk(table: String, maxChunk: Int, _ body: (UnsafeBufferPointer<Int64>, UnsafeRawBufferPointer, Int) throws -> Void) throws {
        try inner.forEachChunk(table: table, maxChunk: maxChunk, body)
    }
    func loadedFingerprint(table: String) throws -> String? { lock.withLock { fingerprints[table] } }
    func recordLoadedFingerprint(_ fingerprint: String?, table: String) throws { lock.withLock { fingerprints[table] = fingerprint } }
}

@Suite struct TableReloadTests {
    func server(_ fixture: Fixture, _ db: RecordingDatabase) throws -> ParameterServer {
        var config = fixture.config
        config.volatileDatabase.type = .disabled
        let server = ParameterServer(config: config, volatileDatabase: nil, persistentDatabase: db, logger: .silent)
        try server.loadTables()
        return server
    }

    @Test func unchangedTablesAreNotReloaded() throws {
        let fixture = try Fixture(rows: [300], dims: [4], defaults: [0], keysPerSample: [8])
        let db = RecordingDatabase()
        _ = try server(fixture, db)
        #expect(db.insertedRows == 300)
        // Same files: skipped on sizes + mtimes alone.
        _ = try server(fixture, db)
        #expect(db.insertedRows == 300)
        // Touched (new mtime) but identical: skipped after hashing.
        let path = fixture.model.sparseFiles[0] + "/emb_vector"
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 60)], ofItemAtPath: path)
        _ = try server(fixture, db)
        #expect(db.insertedRows == 300)
        // Changed content: reloaded, and the new values are served.
        let keys = (0..<300).map { Int64($0) * 3 }
        let vectors = [Float](repeating: 9, count: 300 * 4)
        try TableWriter.write(directory: fixture.model.sparseFiles[0], keys: keys, vectors: vectors, dimension: 4)
        let reloaded = try server(fixture, db)
        #expect(db.insertedRows == 600)
        #expect(try reloaded.lookup(model: "demo", table: 0, keys: [0, 3]) == [Float](repeating: 9, count: 8))
    }

    @Test func interruptedLoadLeavesNoRecord() throws {
        let fixture = try Fixture(rows: [300], dims: [4], defaults: [0], keysPerSample: [8])
        let db = RecordingDatabase()
        _ = try server(fixture, db)
        // A load that dies after clearing the record (as a killed process would) is redone.
        try db.recordLoadedFingerprint(nil, table: "hps_et.demo.t0")
        _ = try server(fixture, db)
        #expect(db.insertedRows == 600)
        #expect(LoadedTableRecord(try #require(try db.loadedFingerprint(table: "hps_et.demo.t0"))) != nil)
    }

    @Test func recordRoundTrip() {
        let record = LoadedTableRecord(content: "hpst1-3x4-aa-bb", stamp: "24@1,48@2")
        #expect(LoadedTableRecord(record.text) == record)
        #expect(LoadedTableRecord("garbage") == nil)
    }
}
