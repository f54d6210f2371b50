import Foundation
import HPS
import HPSRocksDB
import Synchronization
import Testing

@Suite struct RocksDBDatabaseTests {
    typealias C = DatabaseConformance

    @Test func conformance() throws {
        var directories: [TemporaryDirectory] = []
        defer { directories.forEach { $0.remove() } }
        try C.run {
            let directory = try TemporaryDirectory()
            directories.append(directory)
            return try openRocks(directory.path)
        }
    }

    @Test func conformanceSmallBatches() throws {
        // Batches of 7 rows split every insert, MultiGet and eviction into many write batches.
        var directories: [TemporaryDirectory] = []
        defer { directories.forEach { $0.remove() } }
        try C.run {
            let directory = try TemporaryDirectory()
            directories.append(directory)
            return try openRocks(directory.path, maxBatchSize: 7)
        }
    }

    @Test func roundTripIsBitExactAcrossBatches() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let db = try openRocks(directory.path, maxBatchSize: 100)
        let tag = "hps_et.m.cos"
        let keys = (0..<5000).map { Int64($0) * 104_729 - 1_000_000 }
        #expect(try C.insert(db, tag, keys, dim: 32) == 5000)
        // Duplicates inside one call count once; existing keys count zero.
        #expect(try C.insert(db, tag, [keys[0], -5, -5, keys[1]], dim: 32) == 1)
        #expect(try db.size(table: tag) == 5001)
        let probe = [keys[4999], 42, keys[0], keys[2500], 43, -5]
        let (values, misses, hits) = try C.fetch(db, tag, probe, dim: 32)
        #expect(hits == 4)
        #expect(misses == [1, 4])
        for (i, key) in probe.enumerated() where ![1, 4].contains(i) {
            #expect(Array(values[(i * 32)..<((i + 1) * 32)]).map(\.bitPattern) == C.row(key, dim: 32).map(\.bitPattern))
        }
        #expect(db.capacity(table: tag) == .max)
        #expect(db.name == "rocks_db")
    }

    @Test func fetchWithWrongValueSizeThrows() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let db = try openRocks(directory.path)
        try C.insert(db, "hps_et.m.t", [1, 2], dim: 4)
        #expect(throws: HPSError.self) { try C.fetch(db, "hps_et.m.t", [1], dim: 8) }
    }

    @Test func dataAndCountsPersistAcrossReopen() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let keys = (0..<3000).map(Int64.init)
        do {
            let db = try openRocks(directory.path)
            try C.insert(db, "hps_et.a.t0", keys, dim: 8)
            try C.insert(db, "hps_et.a.t1", [7, 8, 9], dim: 2)
            try C.insert(db, "hps_et.b.t0", [1], dim: 1)
            try [Int64](arrayLiteral: 8).withUnsafeBufferPointer { _ = try db.evict(table: "hps_et.a.t1", keys: $0) }
        }
        let db = try openRocks(directory.path)
        #expect(try db.findTables(model: "a") == ["hps_et.a.t0", "hps_et.a.t1"])
        #expect(try db.size(table: "hps_et.a.t0") == 3000)
        #expect(try db.size(table: "hps_et.a.t1") == 2)
        let (values, misses, _) = try C.fetch(db, "hps_et.a.t0", keys, dim: 8)
        #expect(misses.isEmpty)
        #expect(values.map(\.bitPattern) == C.rows(keys, dim: 8).map(\.bitPattern))
        #expect(try C.fetch(db, "hps_et.a.t1", [7, 8, 9], dim: 2).misses == [1])
        // Keep inserting after the reopen: the count continues from the stored one.
        #expect(try C.insert(db, "hps_et.a.t0", [2999, 3000], dim: 8) == 1)
        #expect(try db.size(table: "hps_et.a.t0") == 3001)
    }

    @Test func evictedTableIsGoneAfterReopen() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        do {
            let db = try openRocks(directory.path)
            try C.insert(db, "hps_et.m.gone", [1, 2, 3], dim: 2)
            try C.insert(db, "hps_et.m.kept", [1], dim: 2)
            #expect(try db.evict(table: "hps_et.m.gone") == 3)
            #expect(try db.evict(table: "hps_et.m.gone") == 0)
        }
        let db = try openRocks(directory.path)
        #expect(try db.findTables(model: "m") == ["hps_et.m.kept"])
        #expect(try db.size(table: "hps_et.m.gone") == 0)
        // A new table of the same name starts empty.
        #expect(try C.insert(db, "hps_et.m.gone", [3, 4], dim: 2) == 2)
        #expect(try db.size(table: "hps_et.m.gone") == 2)
    }

    @Test func twoReadOnlyInstancesShareTheData() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        do {
            let db = try openRocks(directory.path)
            try C.insert(db, "hps_et.m.t", [10, 20, 30], dim: 4)
            try db.recordLoadedFingerprint("abc", table: "hps_et.m.t")
        }
        let first = try openRocks(directory.path, readOnly: true)
        let second = try openRocks(directory.path, readOnly: true)
        for db in [first, second] {
            #expect(db.isReadOnly)
            let (values, misses, _) = try C.fetch(db, "hps_et.m.t", [30, 10, 99], dim: 4)
            #expect(misses == [2])
            #expect(Array(values[0..<4]).map(\.bitPattern) == C.row(30, dim: 4).map(\.bitPattern))
            #expect(try db.size(table: "hps_et.m.t") == 3)
            #expect(try db.loadedFingerprint(table: "hps_et.m.t") == "abc")
            #expect(try db.findTables(model: "m") == ["hps_et.m.t"])
        }
        // Writes are refused with a clear error.
        let error = try #require(throws: HPSError.self) { try C.insert(first, "hps_et.m.t", [1], dim: 4) }
        #expect(error.code == .database)
        #expect(error.message.contains("read-only"))
        #expect(throws: HPSError.self) { try first.evict(table: "hps_et.m.t") }
        #expect(throws: HPSError.self) { try first.recordLoadedFingerprint(nil, table: "hps_et.m.t") }
        // A writer can still open while readers are open.
        let writer = try openRocks(directory.path)
        #expect(try writer.size(table: "hps_et.m.t") == 3)
    }

    @Test func readOnlyWithoutDatabaseIsAnError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let missing = directory.file("nothing/here")
        let error = try #require(throws: HPSError.self) { try openRocks(missing, readOnly: true) }
        #expect(error.subject == missing)
        #expect(!FileManager.default.fileExists(atPath: missing))
        let empty = try #require(throws: HPSError.self) { try openRocks(directory.path, readOnly: true) }
        #expect(empty.code == .database)
    }

    @Test func missingPathIsCreated() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let nested = directory.file("a/b/c")
        let db = try openRocks(nested)
        try C.insert(db, "hps_et.m.t", [1], dim: 1)
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: nested + "/CURRENT"))
        #expect(FileManager.default.fileExists(atPath: nested, isDirectory: &isDirectory) && isDirectory.boolValue)
    }

    @Test func secondWriterGetsALockError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let first = try openRocks(directory.path)
        try C.insert(first, "hps_et.m.t", [1], dim: 1)
        let error = try #require(throws: HPSError.self) { try openRocks(directory.path) }
        #expect(error.code == .database)
        #expect(error.subject == directory.path)
        #expect(error.message.contains("locked"))
        #expect(error.underlying?.contains("lock") == true)
        // The first writer is unaffected.
        #expect(try C.fetch(first, "hps_et.m.t", [1], dim: 1).hits == 1)
    }

    @Test func regularFileAsPathIsAnErrorAndUntouched() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let file = directory.file("not-a-db")
        try Data("precious".utf8).write(to: URL(fileURLWithPath: file))
        for readOnly in [false, true] {
            let error = try #require(throws: HPSError.self) { try openRocks(file, readOnly: readOnly) }
            #expect(error.code == .database)
            #expect(error.subject == file)
            #expect(error.message.contains("not a directory"))
        }
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "precious")
    }

    @Test func foreignDirectoryIsNotTurnedIntoADatabase() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try Data("notes".utf8).write(to: URL(fileURLWithPath: directory.file("notes.txt")))
        let error = try #require(throws: HPSError.self) { try openRocks(directory.path) }
        #expect(error.message.contains("notes.txt"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["notes.txt"])
    }

    @Test func corruptedCurrentFileIsAnErrorWithoutChanges() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        do {
            let db = try openRocks(directory.path)
            try C.insert(db, "hps_et.m.t", [1, 2], dim: 2)
        }
        let current = directory.file("CURRENT")
        let garbage = Data([0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x41])
        try garbage.write(to: URL(fileURLWithPath: current))
        let before = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        for readOnly in [false, true] {
            let error = try #require(throws: HPSError.self) { try openRocks(directory.path, readOnly: readOnly) }
            #expect(error.code == .database)
            #expect(error.subject == directory.path)
            #expect(error.underlying != nil)
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: current)) == garbage)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == before)
    }

    @Test func missingManifestIsAnError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        do {
            let db = try openRocks(directory.path)
            try C.insert(db, "hps_et.m.t", [1, 2], dim: 2)
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) where name.hasPrefix("MANIFEST-") {
            try FileManager.default.removeItem(atPath: directory.file(name))
        }
        let error = try #require(throws: HPSError.self) { try openRocks(directory.path) }
        #expect(error.code == .database)
        #expect(error.underlying != nil)
    }

    @Test func fingerprintsAreRecordedClearedAndPersisted() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let tag = "hps_et.m.t"
        do {
            let db = try openRocks(directory.path)
            #expect(try db.loadedFingerprint(table: tag) == nil)
            try db.recordLoadedFingerprint("v1", table: tag)
            #expect(try db.loadedFingerprint(table: tag) == "v1")
            try db.recordLoadedFingerprint(nil, table: tag)
            #expect(try db.loadedFingerprint(table: tag) == nil)
            try C.insert(db, tag, [1, 2, 3], dim: 2)
            try db.recordLoadedFingerprint("xxh64:0123456789abcdef/3", table: tag)
            try db.recordLoadedFingerprint("other", table: "hps_et.m.u")
        }
        do {
            let db = try openRocks(directory.path)
            #expect(try db.loadedFingerprint(table: tag) == "xxh64:0123456789abcdef/3")
            #expect(try db.loadedFingerprint(table: "hps_et.m.u") == "other")
            // Evicting a table forgets what was loaded into it.
            try db.evict(table: tag)
            #expect(try db.loadedFingerprint(table: tag) == nil)
            #expect(try db.loadedFingerprint(table: "hps_et.m.u") == "other")
        }
        let db = try openRocks(directory.path)
        #expect(try db.loadedFingerprint(table: tag) == nil)
    }

    @Test func concurrentReadersAndWriters() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let db = try openRocks(directory.path, maxBatchSize: 64)
        let tag = "hps_et.m.shared"
        try C.insert(db, tag, (0..<1000).map(Int64.init), dim: 4)
        let failures = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            do {
                if worker % 2 == 0 {
                    // Writers: disjoint new keys per worker.
                    let keys = (0..<500).map { Int64(10_000 * (worker + 1) + $0) }
                    let inserted = try C.insert(db, tag, keys, dim: 4)
                    if inserted != 500 { failures.withLock { $0 += 1 } }
                } else {
                    for _ in 0..<5 {
                        let (values, misses, _) = try C.fetch(db, tag, (0..<1000).map(Int64.init), dim: 4)
                        if !misses.isEmpty || values.map(\.bitPattern) != C.rows((0..<1000).map(Int64.init), dim: 4).map(\.bitPattern) {
                            failures.withLock { $0 += 1 }
                        }
                    }
                }
            } catch {
                failures.withLock { $0 += 1 }
            }
        }
        #expect(failures.withLock { $0 } == 0)
        #expect(try db.size(table: tag) == 1000 + 4 * 500)
    }

    @Test func badSettingsAreConfigErrors() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var config = rocksConfig(directory.path)
        config.maxBatchSize = 0
        let error = try #require(throws: HPSError.self) { try RocksDBDatabase(config: config, logger: .silent) }
        #expect(error.code == .invalidConfig)
        #expect(error.subject == "persistent_db.max_batch_size")
        config = rocksConfig("")
        #expect(throws: HPSError.self) { try RocksDBDatabase(config: config, logger: .silent) }
    }
}
