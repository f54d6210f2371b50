import Foundation
@testable import HPS
import Testing

/// ``ParameterServer/loadTables(progress:)`` into the hash map over many chunks (read one chunk ahead, each
/// chunk's keys grouped by partition and inserted in one batch per partition) holds exactly the rows of the
/// table files, read here with Foundation rather than ``TableDirectory``.
@Suite struct HashMapLoadTests {
    /// key → vector of the table files at `path`, the later row of a repeated key winning.
    static func reference(_ path: String, dim: Int) throws -> [Int64: [Float]] {
        let keyBytes = try Data(contentsOf: URL(fileURLWithPath: path + "/key"))
        let vectorBytes = try Data(contentsOf: URL(fileURLWithPath: path + "/emb_vector"))
        let rows = keyBytes.count / 8
        #expect(vectorBytes.count == rows * dim * 4)
        var table: [Int64: [Float]] = [:]
        keyBytes.withUnsafeBytes { k in
            vectorBytes.withUnsafeBytes { v in
                for row in 0..<rows {
                    let key = Int64(littleEndian: k.loadUnaligned(fromByteOffset: row * 8, as: Int64.self))
                    table[key] = (0..<dim).map { j in
                        Float(bitPattern: UInt32(littleEndian: v.loadUnaligned(fromByteOffset: (row * dim + j) * 4, as: UInt32.self)))
                    }
                }
            }
        }
        return table
    }

    /// A table of `rows` rows with scattered keys; rows 20000..<20100 repeat the keys of rows 5000..<5100 (a
    /// later chunk overwrites an earlier one), and one key is `Int64.min`.
    static func writeTable(_ path: String, rows: Int, dim: Int) throws {
        var keys = (0..<rows).map { Int64($0) &* 0x9E37_79B9 &- 77_777 }
        for row in 20000..<min(rows, 20100) { keys[row] = keys[row - 15000] }
        keys[rows / 2] = .min
        let vectors = (0..<(rows * dim)).map { Float($0 % 100_003) * 0.5 - Float($0 % 7) }
        try TableWriter.write(directory: path, keys: keys, vectors: vectors, dimension: dim)
    }

    func server(table path: String, dim: Int, partitions: Int, maxBatchSize: Int, margin: Int = .max) throws -> ParameterServer {
        var model = ModelConfig()
        model.name = "load"
        model.sparseFiles = [path]
        model.deployedDevices = [0]
        model.maxBatchSize = 64
        model.maxKeysPerSample = [1]
        model.embeddingVectorSizes = [dim]
        model.defaultValues = [0]
        var config = ParameterServerConfig()
        config.models = [model]
        config.volatileDatabase.type = .hashMap
        config.volatileDatabase.numPartitions = partitions
        config.volatileDatabase.maxBatchSize = maxBatchSize
        config.volatileDatabase.overflowMargin = margin
        config.persistentDatabase.type = .disabled
        let vdb = HashMapDatabase(config: config.volatileDatabase, logger: .silent)
        let server = ParameterServer(config: config, volatileDatabase: vdb, persistentDatabase: nil, logger: .silent)
        try server.loadTables()
        return server
    }

    /// Chunks of `maxBatchSize` rows (30011 rows: the last chunk is short, and every chunk boundary falls in
    /// the middle of every partition's keys), in parallel (≥ 4096 rows per chunk) and inline, with a power-of-two
    /// partition count and without.
    @Test(arguments: [(4, 5000), (1, 1000), (3, 7001), (16, 30011)])
    func multiChunkLoadHoldsExactlyTheFiles(partitions: Int, maxBatchSize: Int) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("t")
        let dim = 5
        try Self.writeTable(path, rows: 30011, dim: dim)
        let expected = try Self.reference(path, dim: dim)
        let server = try server(table: path, dim: dim, partitions: partitions, maxBatchSize: maxBatchSize)
        let vdb = try #require(server.volatileDatabase as? HashMapDatabase)
        let tag = "hps_et.load.sparse_embedding0"
        #expect(try vdb.size(table: tag) == expected.count)
        let keys = Array(expected.keys)
        let (values, misses, hits) = try DatabaseConformance.fetch(vdb, tag, keys, dim: dim)
        #expect(misses.isEmpty && hits == keys.count)
        for (i, key) in keys.enumerated() where Array(values[(i * dim)..<((i + 1) * dim)]).map(\.bitPattern) != expected[key]!.map(\.bitPattern) {
            Issue.record("key \(key): \(values[(i * dim)..<((i + 1) * dim)]) instead of \(expected[key]!)")
            break
        }
    }

    /// A load that overflows `overflow_margin`: the first chunks go in as whole batches, later ones key by key
    /// with evictions; every partition ends within the margin and every key kept holds its file row.
    @Test func overflowingLoadStaysWithinTheMarginAndExact() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("t")
        let dim = 3
        try Self.writeTable(path, rows: 30011, dim: dim)
        let expected = try Self.reference(path, dim: dim)
        let server = try server(table: path, dim: dim, partitions: 2, maxBatchSize: 5000, margin: 6000)
        let vdb = try #require(server.volatileDatabase as? HashMapDatabase)
        let tag = "hps_et.load.sparse_embedding0"
        let size = try vdb.size(table: tag)
        #expect(size <= 2 * 6000 && size > 2 * 3000)
        let keys = Array(expected.keys)
        let (values, misses, hits) = try DatabaseConformance.fetch(vdb, tag, keys, dim: dim)
        #expect(hits == size)
        let missed = Set(misses)
        for (i, key) in keys.enumerated() where !missed.contains(i) {
            #expect(Array(values[(i * dim)..<((i + 1) * dim)]).map(\.bitPattern) == expected[key]!.map(\.bitPattern))
        }
    }
}
