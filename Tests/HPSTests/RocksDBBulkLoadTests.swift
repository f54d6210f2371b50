import Foundation
import HPS
import HPSRocksDB
import HPSRuntime
import Testing

/// Bulk loading into RocksDB: sorted SST files ingested into an empty table (``RocksDBDatabase/makeBulkLoader(table:valueSize:)``).
@Suite struct RocksDBBulkLoadTests {
    typealias C = DatabaseConformance

    func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    /// Adds `keys` with `C.row(key, dim, salt)` values in chunks of `chunk` rows.
    func add(_ loader: any BulkLoader, _ keys: [Int64], dim: Int, salt: Float = 0, chunk: Int = 1000) throws {
        var start = 0
        while start < keys.count {
            let part = Array(keys[start..<min(keys.count, start + chunk)])
            let values = C.rows(part, dim: dim, salt: salt)
            try part.withUnsafeBufferPointer { k in try values.withUnsafeBytes { v in try loader.add(keys: k, values: v) } }
            start += chunk
        }
    }

    /// Entries of the database directory that bulk loads leave while they run.
    func bulkLeftovers(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasPrefix("hps-bulk-load.") }
    }

    /// Keys in no particular order, negative ones included (their bytes sort unlike their values).
    func scrambledKeys(_ n: Int, seed: Int64 = 1) -> [Int64] {
        (0..<n).map { Int64($0) &* 6_364_136_223_846_793_005 &+ seed &* 1_442_695_040_888_963_407 }
    }

    @Test(arguments: [(rowsPerFile: 1000, writers: 1), (rowsPerFile: 977, writers: 2), (rowsPerFile: 200_000, writers: 2)])
    func roundTripIsBitExactAndTheCountExact(rowsPerFile: Int, writers: Int) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let dim = 5
        let tag = "hps_et.m.t"
        let keys = scrambledKeys(150_000)
        do {
            let db = try openRocks(directory.path)
            let loader = try #require(try db.makeBulkLoader(table: tag, valueSize: dim * 4, rowsPerFile: rowsPerFile, parallelWriters: writers))
            try add(loader, keys, dim: dim, chunk: 4096)
            #expect(try loader.finish() == keys.count)
            #expect(try db.size(table: tag) == keys.count)
            #expect(bulkLeftovers(directory.path).isEmpty)
            let (values, misses, hits) = try C.fetch(db, tag, keys + [12345, -1], dim: dim)
            #expect(hits == keys.count && misses == [keys.count, keys.count + 1])
            #expect(bits(Array(values[0..<(keys.count * dim)])) == bits(C.rows(keys, dim: dim)))
            // Every row once, in bytewise key order.
            var seen = 0
            var previous: [UInt8]? = nil
            var ordered = true
            try db.forEachChunk(table: tag, maxChunk: 10_000) { k, v, valueSize in
                #expect(valueSize == dim * 4)
                for i in 0..<k.count {
                    let bytes = withUnsafeBytes(of: k[i].littleEndian) { Array($0) }
                    if let previous, !previous.lexicographicallyPrecedes(bytes) { ordered = false }
                    previous = bytes
                }
                seen += k.count
            }
            #expect(seen == keys.count && ordered)
            // Inserts after the bulk load keep the count exact.
            #expect(try C.insert(db, tag, [keys[7], 999_999_999], dim: dim, salt: 3) == 1)
            #expect(try db.size(table: tag) == keys.count + 1)
        }
        // A reopen sees every row and the count.
        let db = try openRocks(directory.path)
        #expect(try db.size(table: tag) == keys.count + 1)
        let (values, misses, _) = try C.fetch(db, tag, keys, dim: dim)
        #expect(misses.isEmpty)
        var expected = C.rows(keys, dim: dim)
        expected.replaceSubrange((7 * dim)..<(8 * dim), with: C.row(keys[7], dim: dim, salt: 3))
        #expect(bits(values) == bits(expected))
    }

    @Test(arguments: [1 << 30, 100])  // key runs in memory, or spilled to files (at most 100 keys in memory)
    func aKeyRepeatedAcrossFilesEndsWithItsLaterRow(keysInMemory: Int) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let db = try openRocks(directory.path)
        let tag = "hps_et.m.dup"
        let dim = 3
        let loader = try #require(try db.makeBulkLoader(table: tag, valueSize: dim * 4, rowsPerFile: 500, parallelWriters: 1, keysInMemory: keysInMemory))
        // Buffers of 500 rows: file 1 holds base[0..<500] (salt 0), file 2 base[100..<600] (salt 1), file 3
        // (written at finish) key 42 three times (the last with salt 6), base[0..<200] and base[450..<600]
        // (salt 2).
        let base = (0..<600).map { Int64($0) * 7 - 2000 }
        try add(loader, Array(base[0..<500]), dim: dim, salt: 0, chunk: 500)
        try add(loader, Array(base[100..<600]), dim: dim, salt: 1, chunk: 500)
        try add(loader, [42, 42], dim: dim, salt: 5, chunk: 2)
        try add(loader, [42], dim: dim, salt: 6, chunk: 1)
        try add(loader, Array(base[0..<200]) + Array(base[450..<600]), dim: dim, salt: 2, chunk: 97)
        #expect(db.filesPerLevel(table: tag).reduce(0, +) == 2)
        #expect(try loader.finish() == 601)
        #expect(db.filesPerLevel(table: tag).reduce(0, +) == 3)
        #expect(try db.size(table: tag) == 601)
        var expected: [Int64: Float] = [42: 6]
        for (i, key) in base.enumerated() { expected[key] = i < 200 ? 2 : i < 450 ? 1 : 2 }
        let keys = expected.keys.sorted()
        let (values, misses, _) = try C.fetch(db, tag, keys, dim: dim)
        #expect(misses.isEmpty)
        let want = keys.flatMap { C.row($0, dim: dim, salt: expected[$0]!) }
        #expect(bits(values) == bits(want))
        #expect(bulkLeftovers(directory.path).isEmpty)
    }

    @Test func lastRowWinsInsideOneBuffer() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let db = try openRocks(directory.path)
        let loader = try #require(try db.makeBulkLoader(table: "hps_et.m.t", valueSize: 4))
        let keys: [Int64] = [5, -5, 5, 0, Int64.min, Int64.max, -5, 5, 256, 1]
        let values: [Float] = (0..<keys.count).map(Float.init)
        try keys.withUnsafeBufferPointer { k in try values.withUnsafeBytes { try loader.add(keys: k, values: $0) } }
        #expect(try loader.finish() == 7)
        let probe: [Int64] = [5, -5, 0, Int64.min, Int64.max, 256, 1]
        #expect(try C.fetch(db, "hps_et.m.t", probe, dim: 1).values == [7, 6, 3, 4, 5, 8, 9])
    }

    @Test func emptyLoadLeavesAnEmptyTable() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let db = try openRocks(directory.path)
        let loader = try #require(try db.makeBulkLoader(table: "hps_et.m.e", valueSize: 8))
        #expect(try loader.finish() == 0)
        #expect(try db.size(table: "hps_et.m.e") == 0)
        #expect(try db.findTables(model: "m") == ["hps_et.m.e"])
        #expect(throws: HPSError.self) { try loader.finish() }
    }

    @Test func noLoaderForANonEmptyTableOrWhenOff() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        do {
            let db = try openRocks(directory.path)
            try C.insert(db, "hps_et.m.full", [1, 2], dim: 2)
            #expect(try db.makeBulkLoader(table: "hps_et.m.full", valueSize: 8) == nil)
            #expect(try db.makeBulkLoader(table: "hps_et.m.new", valueSize: 8) != nil)
            #expect(throws: HPSError.self) { try db.makeBulkLoader(table: "hps_et.m.new", valueSize: 0) }
            let loader = try #require(try db.makeBulkLoader(table: "hps_et.m.x", valueSize: 8))
            #expect(throws: HPSError.self) {  // too few value bytes
                try [Int64(1), 2].withUnsafeBufferPointer { k in try [Float](repeating: 0, count: 2).withUnsafeBytes { try loader.add(keys: k, values: $0) } }
            }
        }
        let off = try RocksDBDatabase(config: rocksConfig(directory.file("off")), logger: .silent, bulkLoading: false)
        #expect(try off.makeBulkLoader(table: "hps_et.m.t", valueSize: 8) == nil)
        let readOnly = try openRocks(directory.path, readOnly: true)
        #expect(throws: HPSError.self) { try readOnly.makeBulkLoader(table: "hps_et.m.t", valueSize: 8) }
    }

    @Test func cancelAndCrashLeftoversAreRemoved() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        do {
            let db = try openRocks(directory.path)
            let loader = try #require(try db.makeBulkLoader(table: "hps_et.m.t", valueSize: 8, rowsPerFile: 100, keysInMemory: 0))
            try add(loader, (0..<250).map(Int64.init), dim: 2)
            #expect(bulkLeftovers(directory.path).count == 1)  // spilled key runs
            loader.cancel()
            #expect(bulkLeftovers(directory.path).isEmpty)
            #expect(throws: HPSError.self) { try add(loader, [1], dim: 2) }
            // The two files ingested before the cancel stay, and are counted.
            #expect(try db.size(table: "hps_et.m.t") == 200)
            #expect(try db.loadedFingerprint(table: "hps_et.m.t") == nil)
        }
        #expect(try openRocks(directory.path).size(table: "hps_et.m.t") == 200)
        // What a killed process leaves behind goes at the next open for writing (not read-only).
        try directory.makeDirectory("hps-bulk-load.abc123")
        _ = try directory.write([1, 2, 3], to: "hps-bulk-load.abc123/0.sst")
        _ = try openRocks(directory.path, readOnly: true)
        #expect(bulkLeftovers(directory.path) == ["hps-bulk-load.abc123"])
        _ = try openRocks(directory.path)
        #expect(bulkLeftovers(directory.path).isEmpty)
    }

    /// Total bytes of the write-ahead log files in `path`.
    func walBytes(_ path: String) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".log") }.reduce(0) {
            $0 + ((try FileManager.default.attributesOfItem(atPath: path + "/" + $1)[.size] as? Int) ?? 0)
        }
    }

    @Test(arguments: [true, false])
    func loadTablesLeavesNothingToReplayAndServesTheFiles(bulk: Bool) throws {
        var fixture = try Fixture(rows: [30_000, 500], dims: [16, 3], maxBatch: 64)
        defer { fixture.directory.remove() }
        fixture.config.volatileDatabase.type = .hashMap  // gets ordinary inserts of the same chunks
        fixture.config.persistentDatabase = rocksConfig(fixture.directory.file("rocksdb"), maxBatchSize: 4096)
        fixture.model.deviceCache = false
        let path = fixture.config.persistentDatabase.path
        do {
            let pdb = try RocksDBDatabase(config: fixture.config.persistentDatabase, logger: .silent, bulkLoading: bulk)
            let vdb = HashMapDatabase(config: fixture.config.volatileDatabase)
            let server = ParameterServer(config: fixture.config, volatileDatabase: vdb, persistentDatabase: pdb, logger: .silent)
            try server.loadTables()
            #expect(try pdb.size(table: "hps_et.demo.t0") == 30_000)
            #expect(try vdb.size(table: "hps_et.demo.t0") == 30_000)
            if bulk { #expect(pdb.filesPerLevel(table: "hps_et.demo.t0")[0] == 0) }  // ingested below level 0
            // The load's rows are in SST files, not only in the log: a reopen replays (almost) nothing.
            let wal = try walBytes(path)
            #expect(wal < 64 << 10, "write-ahead log of \(wal) bytes after the load")
        }
        let log = LogCapture()
        var rocksOnly = fixture.config
        rocksOnly.volatileDatabase.type = .disabled
        let server = try HPSRuntime.makeParameterServer(config: rocksOnly, logger: log.logger)
        #expect(log.count("already holds") == 2)
        let pdb = try #require(server.persistentDatabase)
        for t in 0..<2 {
            let keys = fixture.tables[t].keys.sorted()
            let dim = fixture.model.embeddingVectorSizes[t]
            let (values, misses, _) = try C.fetch(pdb, "hps_et.demo.t\(t)", keys, dim: dim)
            #expect(misses.isEmpty)
            #expect(bits(values) == bits(fixture.expected(table: t, keys: keys)))
            #expect(try pdb.size(table: "hps_et.demo.t\(t)") == keys.count)
        }
    }
}
