import Foundation
import HPS
import HPSRocksDB
import Testing

@Suite struct RocksDBDumpTests {
    typealias C = DatabaseConformance

    static let keys: [Int64] = (0..<2500).map { Int64($0) * 7_919 - 9_000_000 } + [.min, .max, -1, 0x0100_0000_0000]

    func hashMap() -> HashMapDatabase {
        var config = VolatileDatabaseConfig()
        config.type = .hashMap
        config.numPartitions = 4
        return HashMapDatabase(config: config, logger: .silent)
    }

    func expectHolds(_ db: any Database, _ tag: String, _ keys: [Int64], dim: Int, salt: Float = 0, size: Int? = nil) throws {
        #expect(try db.size(table: tag) == size ?? Set(keys).count)
        let (values, misses, _) = try C.fetch(db, tag, keys, dim: dim)
        #expect(misses.isEmpty)
        #expect(values.map(\.bitPattern) == C.rows(keys, dim: dim, salt: salt).map(\.bitPattern))
    }

    @Test(arguments: ["bin", "sst"])
    func rocksToRocksRoundTrip(ext: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let source = try openRocks(directory.file("source"), maxBatchSize: 1000)
        try C.insert(source, "hps_et.m.t", Self.keys, dim: 16)
        let dump = directory.file("t.\(ext)")
        try DatabaseDump.dump(source, table: "hps_et.m.t", to: dump)
        let target = try openRocks(directory.file("target"))
        #expect(try DatabaseDump.load(into: target, table: "hps_et.m.copy", from: dump, valueSize: 64) == Self.keys.count)
        try expectHolds(target, "hps_et.m.copy", Self.keys, dim: 16)
        // Loading again over existing rows overwrites them and keeps the count exact.
        #expect(try DatabaseDump.load(into: target, table: "hps_et.m.copy", from: dump, valueSize: nil) == Self.keys.count)
        try expectHolds(target, "hps_et.m.copy", Self.keys, dim: 16)
        // Into a table holding other keys too (SST ingestion then recounts).
        try C.insert(target, "hps_et.m.mixed", [1, 2, 3, Self.keys[0]], dim: 16, salt: 9)
        try DatabaseDump.load(into: target, table: "hps_et.m.mixed", from: dump, valueSize: 64)
        try expectHolds(target, "hps_et.m.mixed", Self.keys, dim: 16, size: Set(Self.keys + [1, 2, 3]).count)
        // And the counts survive a reopen.
        _ = consume target
        let reopened = try openRocks(directory.file("target"))
        #expect(try reopened.size(table: "hps_et.m.copy") == Self.keys.count)
        #expect(try reopened.size(table: "hps_et.m.mixed") == Set(Self.keys + [1, 2, 3]).count)
    }

    @Test(arguments: ["bin", "sst"])
    func hashMapRoundTripsThroughEveryBackend(ext: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let source = hashMap()
        try C.insert(source, "hps_et.m.t", Self.keys, dim: 5)
        let dump = directory.file("t.\(ext)")
        try DatabaseDump.dump(source, table: "hps_et.m.t", to: dump)
        let rocks = try openRocks(directory.file("rocks"))
        try DatabaseDump.load(into: rocks, table: "hps_et.m.t", from: dump, valueSize: 20)
        try expectHolds(rocks, "hps_et.m.t", Self.keys, dim: 5)
        let map = hashMap()
        try DatabaseDump.load(into: map, table: "hps_et.m.t", from: dump, valueSize: 20)
        try expectHolds(map, "hps_et.m.t", Self.keys, dim: 5)
        // The RocksDB table dumps to the same bytes as the hash map (both sorted for .sst).
        if ext == "sst" {
            let again = directory.file("again.sst")
            try DatabaseDump.dump(rocks, table: "hps_et.m.t", to: again)
            #expect(try C.fetch(map, "hps_et.m.t", Self.keys, dim: 5).misses.isEmpty)
            let reloaded = hashMap()
            try DatabaseDump.load(into: reloaded, table: "hps_et.m.t", from: again, valueSize: 20)
            try expectHolds(reloaded, "hps_et.m.t", Self.keys, dim: 5)
        }
    }

    @Test func binLayoutMatchesHPS() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let db = try openRocks(directory.path + "/db")
        try C.insert(db, "hps_et.m.t", [0x0102_0304_0506_0708], dim: 1)
        let dump = directory.file("one.bin")
        try DatabaseDump.dump(db, table: "hps_et.m.t", to: dump)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dump)))
        let value = withUnsafeBytes(of: C.row(0x0102_0304_0506_0708, dim: 1)[0].bitPattern.littleEndian) { [UInt8]($0) }
        #expect(bytes == [0x62, 0x69, 0x6E, 0x00, 1, 0, 0, 0, 8, 0, 0, 0, 4, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1] + value)
    }

    @Test(arguments: ["bin", "sst"])
    func fourByteKeysRoundTrip(ext: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let keys: [Int64] = [0, 1, 255, 256, 65_536, 4_294_967_295]
        let source = hashMap()
        try C.insert(source, "hps_et.m.t", keys, dim: 2)
        let dump = directory.file("t.\(ext)")
        try DatabaseDump.dump(source, table: "hps_et.m.t", to: dump, keySize: 4)
        let target = try openRocks(directory.file("db"))
        #expect(throws: HPSError.self) {
            try DatabaseDump.load(into: target, table: "hps_et.m.t", from: dump, valueSize: 8, keySize: 8)
        }
        #expect(try DatabaseDump.load(into: target, table: "hps_et.m.t", from: dump, valueSize: 8, keySize: 4) == keys.count)
        try expectHolds(target, "hps_et.m.t", keys, dim: 2)
        // A key that does not fit in 4 bytes cannot be dumped as one.
        try C.insert(source, "hps_et.m.big", [-1], dim: 2)
        #expect(throws: HPSError.self) { try DatabaseDump.dump(source, table: "hps_et.m.big", to: directory.file("big.\(ext)"), keySize: 4) }
        #expect(!FileManager.default.fileExists(atPath: directory.file("big.\(ext)")))
    }

    @Test(arguments: ["bin", "sst"])
    func wrongValueSizeIsRejectedBeforeInserting(ext: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let source = hashMap()
        try C.insert(source, "hps_et.m.t", Self.keys, dim: 4)
        let dump = directory.file("t.\(ext)")
        try DatabaseDump.dump(source, table: "hps_et.m.t", to: dump)
        let rocks = try openRocks(directory.file("db"))
        for target in [rocks as any Database, hashMap()] {
            let error = try #require(throws: HPSError.self) {
                try DatabaseDump.load(into: target, table: "hps_et.m.t", from: dump, valueSize: 32)
            }
            #expect(error.code == .invalidDump)
            #expect(error.subject == dump)
            #expect(error.message.contains("16-byte values"))
            #expect(try target.size(table: "hps_et.m.t") == 0)
            #expect(try target.findTables(model: "m").isEmpty)
        }
    }

    @Test func malformedBinDumpsAreRejected() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let db = try openRocks(directory.file("db"))
        try C.insert(db, "hps_et.m.t", [1, 2, 3], dim: 4)
        let good = directory.file("good.bin")
        try DatabaseDump.dump(db, table: "hps_et.m.t", to: good)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))

        func rejects(_ name: String, _ data: Data, _ phrase: String) throws {
            let path = directory.file(name)
            try data.write(to: URL(fileURLWithPath: path))
            let target = hashMap()
            let error = try #require(throws: HPSError.self) {
                try DatabaseDump.load(into: target, table: "hps_et.m.x", from: path, valueSize: 16)
            }
            #expect(error.code == .invalidDump, "\(name)")
            #expect(error.message.contains(phrase), "\(name): \(error)")
            #expect(try target.size(table: "hps_et.m.x") == 0)
        }
        try rejects("truncated.bin", bytes.dropLast(3), "truncated")
        try rejects("short.bin", bytes.prefix(10), "too short")
        var magic = bytes
        magic[0] = 0x42
        try rejects("magic.bin", magic, "magic")
        var version = bytes
        version[4] = 2
        try rejects("version.bin", version, "version 2")
        var keySize = bytes
        keySize[8] = 5
        try rejects("keysize.bin", keySize, "5-byte keys")

        // Not an SST file at all.
        let fake = directory.file("fake.sst")
        try bytes.write(to: URL(fileURLWithPath: fake))
        let error = try #require(throws: HPSError.self) {
            try DatabaseDump.load(into: db, table: "hps_et.m.x", from: fake, valueSize: 16)
        }
        #expect(error.code == .invalidDump)
        #expect(try db.size(table: "hps_et.m.x") == 0)

        // A missing file is an I/O error naming it.
        let missing = try #require(throws: HPSError.self) {
            try DatabaseDump.load(into: db, table: "hps_et.m.x", from: directory.file("missing.bin"), valueSize: 16)
        }
        #expect(missing.code == .io)
        #expect(missing.subject == directory.file("missing.bin"))
    }

    @Test func unknownExtensionIsAnError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let db = hashMap()
        try C.insert(db, "hps_et.m.t", [1], dim: 1)
        let error = try #require(throws: HPSError.self) { try DatabaseDump.dump(db, table: "hps_et.m.t", to: directory.file("t.txt")) }
        #expect(error.code == .invalidArgument)
        #expect(error.message.contains(".bin"))
        #expect(throws: HPSError.self) { try DatabaseDump.load(into: db, table: "hps_et.m.t", from: directory.file("t.csv"), valueSize: nil) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
    }

    @Test func emptyTables() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let db = try openRocks(directory.file("db"))
        // .bin: an empty dump with value size 0 loads as nothing.
        let bin = directory.file("empty.bin")
        try DatabaseDump.dump(db, table: "hps_et.m.none", to: bin)
        #expect(try Data(contentsOf: URL(fileURLWithPath: bin)).count == 16)
        #expect(try DatabaseDump.load(into: db, table: "hps_et.m.none", from: bin, valueSize: 16) == 0)
        // .sst cannot hold nothing: a clear error and no file.
        let sst = directory.file("empty.sst")
        let error = try #require(throws: HPSError.self) { try DatabaseDump.dump(db, table: "hps_et.m.none", to: sst) }
        #expect(error.message.contains("empty"))
        #expect(!FileManager.default.fileExists(atPath: sst))
    }

    @Test func failedDumpKeepsTheOldFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let db = hashMap()
        try C.insert(db, "hps_et.m.t", [1], dim: 1)
        let dump = directory.file("t.sst")
        try DatabaseDump.dump(db, table: "hps_et.m.t", to: dump)
        let before = try Data(contentsOf: URL(fileURLWithPath: dump))
        #expect(throws: HPSError.self) { try DatabaseDump.dump(db, table: "hps_et.m.empty", to: dump) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dump)) == before)
    }

    @Test func readOnlyDatabaseRefusesLoads() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let dump = directory.file("t.sst")
        do {
            let db = try openRocks(directory.file("db"))
            try C.insert(db, "hps_et.m.t", [1, 2], dim: 2)
            try DatabaseDump.dump(db, table: "hps_et.m.t", to: dump)
        }
        let reader = try openRocks(directory.file("db"), readOnly: true)
        #expect(throws: HPSError.self) { try DatabaseDump.load(into: reader, table: "hps_et.m.u", from: dump, valueSize: 8) }
        // But a read-only database can be dumped.
        try DatabaseDump.dump(reader, table: "hps_et.m.t", to: directory.file("copy.bin"))
        let map = hashMap()
        try DatabaseDump.load(into: map, table: "hps_et.m.t", from: directory.file("copy.bin"), valueSize: 8)
        try expectHolds(map, "hps_et.m.t", [1, 2], dim: 2)
    }
}
