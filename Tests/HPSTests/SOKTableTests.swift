import HPS
import HPSRuntime
import Testing

/// The raw bytes of `values` (host order, little-endian on every supported machine).
private func rawBytes<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

/// Writes a table the way SOK's `sok.Saver.dump_to_file` does: `<variable>_keys.file` (raw int64) and
/// `<variable>_values.file` (raw float32, rows × dimension), in the hash table's order (not sorted).
private func writeSOKDump(
    _ dir: TemporaryDirectory, _ name: String, keys: [Int64], vectors: [Float], variable: String = "EmbeddingVariable"
) throws -> String {
    let path = try dir.makeDirectory(name)
    try dir.write(rawBytes(keys), to: name + "/" + variable + "_keys.file")
    try dir.write(rawBytes(vectors), to: name + "/" + variable + "_values.file")
    return path
}

private func expectInvalidTable(_ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected an invalidTable error", sourceLocation: sourceLocation)
    } catch let error as HPSError {
        #expect(error.code == .invalidTable, "\(error)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(error.description.contains(fragment), "\"\(fragment)\" not in: \(error)", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

@Suite struct SOKTableTests {
    /// Keys 0 ..< rows in a scrambled order, as a hash table dump gives them, and vectors encoding each key.
    private func sample(rows: Int, dimension: Int) -> (keys: [Int64], vectors: [Float]) {
        let keys = (0..<rows).map { Int64(($0 * 37) % rows) }
        let vectors = keys.flatMap { k in (0..<dimension).map { Float(k) + Float($0) / 16 } }
        return (keys, vectors)
    }

    @Test func sokDumpDirectoryIsReadAsATable() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (keys, vectors) = sample(rows: 100, dimension: 4)
        let path = try writeSOKDump(dir, "sok", keys: keys, vectors: vectors)
        let table = try TableDirectory(path: path, dimension: 4)
        #expect(table.rowCount == 100)
        #expect(table.keyFile == path + "/EmbeddingVariable_keys.file")
        #expect(table.vectorFile == path + "/EmbeddingVariable_values.file")
        #expect(try TableDirectory(path: path).dimension == 4)
        var readKeys: [Int64] = []
        var readVectors: [Float] = []
        try table.forEachChunk(maxRows: 7) { k, v in
            readKeys += k
            readVectors += v
        }
        #expect(readKeys == keys)
        #expect(readVectors == vectors)

        // Any variable name works (SOK names later variables EmbeddingVariable_1, …).
        let other = try writeSOKDump(dir, "sok1", keys: keys, vectors: vectors, variable: "EmbeddingVariable_1")
        #expect(try TableDirectory(path: other, dimension: 4).keyFile == other + "/EmbeddingVariable_1_keys.file")
    }

    @Test func hpsFilesTakePrecedenceOverASOKDump() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = try writeSOKDump(dir, "both", keys: [1, 2], vectors: [1, 2, 3, 4])
        try TableWriter.write(directory: path, keys: [9], vectors: [5, 6], dimension: 2)
        let table = try TableDirectory(path: path, dimension: 2)
        #expect(table.keyFile == path + "/key")
        #expect(table.rowCount == 1)
    }

    @Test func brokenSOKDumpsAreReported() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let two = try writeSOKDump(dir, "two", keys: [1], vectors: [1])
        try dir.write(rawBytes([Int64(2)]), to: "two/Other_keys.file")
        expectInvalidTable(["holds 2 SOK dumps", "EmbeddingVariable_keys.file", "Other_keys.file"]) {
            _ = try TableDirectory(path: two)
        }
        let lone = try dir.makeDirectory("lone")
        try dir.write(rawBytes([Int64(1)]), to: "lone/EmbeddingVariable_keys.file")
        expectInvalidTable(["EmbeddingVariable_values.file", "SOK vector file is missing"]) {
            _ = try TableDirectory(path: lone)
        }
        let wrong = try writeSOKDump(dir, "wrong", keys: [1, 2], vectors: [1, 2, 3, 4])
        expectInvalidTable(["EmbeddingVariable_values.file is 16 bytes", "expected 24 bytes"]) {
            _ = try TableDirectory(path: wrong, dimension: 3)
        }
        let empty = try dir.makeDirectory("empty")
        expectInvalidTable(["key file is missing"]) { _ = try TableDirectory(path: empty) }
    }

    @Test func configAndParameterServerServeASOKDumpUnchanged() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (keys, vectors) = sample(rows: 300, dimension: 8)
        _ = try writeSOKDump(dir, "dlrm_sparse0", keys: keys, vectors: vectors)
        let json = """
            {"supportlonglong": true, "models": [{"model": "dlrm", "sparse_files": ["dlrm_sparse0"],
              "embedding_table_names": ["t0"], "embedding_vecsize_per_table": [8],
              "maxnum_catfeature_query_per_table_per_sample": [4], "default_value_for_each_table": [0.5],
              "deployed_device_list": [0], "max_batch_size": 16}]}
            """
        let config = try ParameterServerConfig.parse(json: json, file: "ps.json", baseDirectory: dir.path, checkFiles: true)
        let server = try HPSRuntime.makeParameterServer(config: config, logger: .silent)
        let query: [Int64] = [0, 299, 17, 5000]
        let got = try server.lookup(model: "dlrm", table: 0, keys: query)
        let want = query.flatMap { k -> [Float] in
            k < 300 ? (0..<8).map { Float(k) + Float($0) / 16 } : [Float](repeating: 0.5, count: 8)
        }
        #expect(got == want)
    }
}
