import Foundation
import HPS
import Testing

/// The contract every ``Database`` backend must meet, written once and run against each backend.
///
/// Values are deterministic functions of the key (`row(key, dim)`), so every fetch can be checked against
/// an independent plain-array model.
enum DatabaseConformance {
    static func row(_ key: Int64, dim: Int, salt: Float = 0) -> [Float] {
        (0..<dim).map { j in Float(cos(Double(key) * 0.37 + Double(j))) + salt }
    }

    static func rows(_ keys: [Int64], dim: Int, salt: Float = 0) -> [Float] {
        keys.flatMap { row($0, dim: dim, salt: salt) }
    }

    @discardableResult
    static func insert(_ db: any Database, _ tag: String, _ keys: [Int64], dim: Int, salt: Float = 0) throws -> Int {
        let values = rows(keys, dim: dim, salt: salt)
        return try keys.withUnsafeBufferPointer { k in
            try values.withUnsafeBytes { v in try db.insert(table: tag, keys: k, values: v, valueSize: dim * 4) }
        }
    }

    static func fetch(_ db: any Database, _ tag: String, _ keys: [Int64], dim: Int) throws -> (values: [Float], misses: [Int], hits: Int) {
        var values = [Float](repeating: .nan, count: keys.count * dim)
        var misses: [Int] = []
        let hits = try keys.withUnsafeBufferPointer { k in
            try values.withUnsafeMutableBytes { v in
                try db.fetch(table: tag, keys: k, values: v, valueSize: dim * 4) { misses.append($0) }
            }
        }
        return (values, misses.sorted(), hits)
    }

    /// Runs the whole contract against databases made by `make` (each call returns an empty database).
    static func run(_ make: () throws -> any Database) throws {
        try insertAndFetch(make())
        try missesAndMissingTable(make())
        try overwrite(make())
        try indexedFetch(make())
        try evictions(make())
        try findTables(make())
        try chunks(make())
        try largeBatch(make())
        try valueSizeMismatch(make())
    }

    static func insertAndFetch(_ db: any Database) throws {
        let tag = "hps_et.m.t0"
        let keys: [Int64] = (0..<100).map { Int64($0 * $0) }
        let inserted = try insert(db, tag, Array(keys[0..<10]), dim: 8)
        #expect(inserted == 10)
        // Then in batches of 10.
        for b in 1..<10 { try insert(db, tag, Array(keys[(b * 10)..<(b * 10 + 10)]), dim: 8) }
        #expect(try db.size(table: tag) == 100)
        let (values, misses, hits) = try fetch(db, tag, keys, dim: 8)
        #expect(misses.isEmpty)
        #expect(hits == 100)
        #expect(values.map(\.bitPattern) == rows(keys, dim: 8).map(\.bitPattern))
        #expect(try [Int64](arrayLiteral: 0, 1, 4, 5, 7).withUnsafeBufferPointer { try db.contains(table: tag, keys: $0) } == 3)
        // Extreme keys round-trip too.
        let extremes: [Int64] = [.min, .max, -1, 0]
        try insert(db, "hps_et.m.extremes", extremes, dim: 3)
        let back = try fetch(db, "hps_et.m.extremes", extremes, dim: 3)
        #expect(back.misses.isEmpty)
        #expect(back.values.map(\.bitPattern) == rows(extremes, dim: 3).map(\.bitPattern))
    }

    static func missesAndMissingTable(_ db: any Database) throws {
        let tag = "hps_et.m.t1"
        try insert(db, tag, [1, 2, 3], dim: 4)
        let (values, misses, hits) = try fetch(db, tag, [3, 10, 1, 11, 2], dim: 4)
        #expect(hits == 3)
        #expect(misses == [1, 3])
        #expect(Array(values[0..<4]).map(\.bitPattern) == row(3, dim: 4).map(\.bitPattern))
        #expect(Array(values[8..<12]).map(\.bitPattern) == row(1, dim: 4).map(\.bitPattern))
        let none = try fetch(db, "hps_et.m.absent", [1, 2], dim: 4)
        #expect(none.misses == [0, 1])
        #expect(none.hits == 0)
        #expect(try db.size(table: "hps_et.m.absent") == 0)
    }

    static func overwrite(_ db: any Database) throws {
        let tag = "hps_et.m.t2"
        #expect(try insert(db, tag, [5, 6], dim: 2) == 2)
        #expect(try insert(db, tag, [5, 6, 7], dim: 2, salt: 100) == 1)
        let (values, _, _) = try fetch(db, tag, [5, 6, 7], dim: 2)
        #expect(values.map(\.bitPattern) == rows([5, 6, 7], dim: 2, salt: 100).map(\.bitPattern))
        #expect(try db.size(table: tag) == 3)
    }

    static func indexedFetch(_ db: any Database) throws {
        let tag = "hps_et.m.t3"
        try insert(db, tag, [10, 20, 30], dim: 2)
        let keys: [Int64] = [10, 99, 20, 98, 30]
        let indices = [1, 2, 4]
        var values = [Float](repeating: -7, count: keys.count * 2)
        var misses: [Int] = []
        let hits = try keys.withUnsafeBufferPointer { k in
            try indices.withUnsafeBufferPointer { ix in
                try values.withUnsafeMutableBytes { v in
                    try db.fetch(table: tag, indices: ix, keys: k, values: v, valueSize: 8) { misses.append($0) }
                }
            }
        }
        #expect(hits == 2)
        #expect(misses == [1])
        #expect(Array(values[4..<6]).map(\.bitPattern) == row(20, dim: 2).map(\.bitPattern))
        #expect(Array(values[8..<10]).map(\.bitPattern) == row(30, dim: 2).map(\.bitPattern))
        // Rows not selected are untouched.
        #expect(Array(values[0..<2]) == [-7, -7])
        #expect(Array(values[6..<8]) == [-7, -7])
    }

    static func evictions(_ db: any Database) throws {
        let tag = "hps_et.m.t4"
        try insert(db, tag, Array(0..<50), dim: 4)
        let removed = try [Int64](arrayLiteral: 1, 2, 3, 1000).withUnsafeBufferPointer { try db.evict(table: tag, keys: $0) }
        #expect(removed == 3)
        #expect(try db.size(table: tag) == 47)
        let after = try fetch(db, tag, [0, 1, 2, 3, 4], dim: 4)
        #expect(after.misses == [1, 2, 3])
        #expect(Array(after.values[0..<4]).map(\.bitPattern) == row(0, dim: 4).map(\.bitPattern))
        #expect(Array(after.values[16..<20]).map(\.bitPattern) == row(4, dim: 4).map(\.bitPattern))
        // Re-insert after evict reuses slots and stays exact.
        try insert(db, tag, [1, 2, 3], dim: 4, salt: 3)
        let again = try fetch(db, tag, [1, 2, 3, 49], dim: 4)
        #expect(again.misses.isEmpty)
        #expect(Array(again.values[0..<12]).map(\.bitPattern) == rows([1, 2, 3], dim: 4, salt: 3).map(\.bitPattern))
        #expect(try db.evict(table: tag) == 50)
        #expect(try db.size(table: tag) == 0)
        #expect(try fetch(db, tag, [4], dim: 4).misses == [0])
    }

    static func findTables(_ db: any Database) throws {
        for model in ["a", "b", "ab"] {
            for table in ["x", "y", "z"] { try insert(db, TableTag.make(model: model, table: table), [1], dim: 1) }
        }
        #expect(try db.findTables(model: "a") == ["hps_et.a.x", "hps_et.a.y", "hps_et.a.z"])
        for tag in try db.findTables(model: "a") { try db.evict(table: tag) }
        #expect(try db.findTables(model: "a").isEmpty)
        #expect(try db.findTables(model: "ab").count == 3)
        #expect(try db.findTables(model: "b").count == 3)
    }

    static func chunks(_ db: any Database) throws {
        let tag = "hps_et.m.t5"
        let keys = (0..<1000).map { Int64($0) * 7919 - 3_000_000 }
        try insert(db, tag, keys, dim: 3)
        var seen: [Int64: [Float]] = [:]
        try db.forEachChunk(table: tag, maxChunk: 64) { k, v, valueSize in
            #expect(k.count <= 64)
            #expect(valueSize == 12)
            let floats = v.bindMemory(to: Float.self)
            for (i, key) in k.enumerated() { seen[key] = Array(floats[(i * 3)..<(i * 3 + 3)]) }
        }
        #expect(seen.count == keys.count)
        for key in keys { #expect(seen[key]?.map(\.bitPattern) == row(key, dim: 3).map(\.bitPattern)) }
    }

    static func largeBatch(_ db: any Database) throws {
        let tag = "hps_et.m.big"
        var rng = SplitMix64(seed: 7)
        let keys = (0..<40_000).map { _ in Int64(bitPattern: rng.next()) }
        #expect(try insert(db, tag, keys, dim: 16) == Set(keys).count)
        let probe = keys.shuffled(using: &rng) + [12345, 67890]
        let (values, misses, _) = try fetch(db, tag, probe, dim: 16)
        let known = Set(keys)
        #expect(misses == probe.indices.filter { !known.contains(probe[$0]) })
        for (i, key) in probe.enumerated() where known.contains(key) {
            #expect(Array(values[(i * 16)..<(i * 16 + 16)]).map(\.bitPattern) == row(key, dim: 16).map(\.bitPattern))
        }
    }

    static func valueSizeMismatch(_ db: any Database) throws {
        let tag = "hps_et.m.t6"
        try insert(db, tag, [1], dim: 4)
        #expect(throws: HPSError.self) { try insert(db, tag, [2], dim: 5) }
    }
}
