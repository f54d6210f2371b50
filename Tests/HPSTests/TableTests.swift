#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import HPS

// MARK: Helpers

/// The raw bytes of `values` (host order, little-endian on every supported machine).
private func bytes<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

/// A `.npy` file written by hand: magic, version, header length, the dict header padded to 64 bytes, data.
private func npy(descr: String, shape: [Int], data: [UInt8], version: UInt8 = 1, fortranOrder: Bool = false) -> [UInt8] {
    let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '\(descr)', 'fortran_order': \(fortranOrder ? "True" : "False"), 'shape': \(shapeText), }"
    let prefixLength = version == 1 ? 10 : 12
    let unpadded = prefixLength + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
    let length = header.utf8.count
    var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [version, 0]
    if version == 1 {
        out += [UInt8(length & 0xFF), UInt8(length >> 8)]
    } else {
        out += [UInt8(length & 0xFF), UInt8((length >> 8) & 0xFF), UInt8((length >> 16) & 0xFF), UInt8(length >> 24)]
    }
    return out + Array(header.utf8) + data
}

/// Reads a whole table through `forEachChunk`.
private func readAll(_ table: TableDirectory, maxRows: Int = 65536, keyWidth: KeyWidth = .int64) throws -> (keys: [Int64], vectors: [Float]) {
    var keys: [Int64] = []
    var vectors: [Float] = []
    try table.forEachChunk(maxRows: maxRows, keyWidth: keyWidth) { k, v in
        keys += k
        vectors += v
    }
    return (keys, vectors)
}

/// A table of `rows` rows whose values encode their row and column.
private func sampleTable(rows: Int, dimension: Int) -> (keys: [Int64], vectors: [Float]) {
    let keys = (0..<rows).map { Int64($0) * 7 - 11 }
    let vectors = (0..<(rows * dimension)).map { Float($0) * 0.25 - 3 }
    return (keys, vectors)
}

private func expectHPSError(
    _ code: HPSError.Code, subjectSuffix: String? = nil, containing fragments: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) {
    do {
        try body()
        Issue.record("expected an HPSError \(code)", sourceLocation: sourceLocation)
    } catch let error as HPSError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        if let subjectSuffix {
            #expect(error.subject?.hasSuffix(subjectSuffix) == true, "subject of \(error)", sourceLocation: sourceLocation)
        }
        for fragment in fragments {
            #expect(error.description.contains(fragment), "\"\(fragment)\" not in: \(error)", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

// MARK: Reading and writing

@Suite struct TableTests {
    @Test func writeThenReadIsBitExact() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let keys: [Int64] = [Int64.min, -1, 0, 1, Int64.max]
        let specials: [Float] = [
            -0.0, .infinity, -.infinity, .leastNonzeroMagnitude, Float(bitPattern: 0x7FC0_1234), .greatestFiniteMagnitude,
        ]
        let vectors: [Float] = (0..<(keys.count * 3)).map { $0 < specials.count ? specials[$0] : Float($0) / 3 }
        try TableWriter.write(directory: dir.file("t"), keys: keys, vectors: vectors, dimension: 3)

        let table = try TableDirectory(path: dir.file("t"))
        #expect(table.rowCount == 5)
        #expect(table.dimension == 3)
        #expect(table.keyByteCount == 40)
        #expect(table.vectorByteCount == 60)
        #expect(table.byteCount == 100)
        #expect(table.keyFile == dir.file("t/key"))
        #expect(table.vectorFile == dir.file("t/emb_vector"))

        let read = try readAll(table)
        #expect(read.keys == keys)
        #expect(read.vectors.map(\.bitPattern) == vectors.map(\.bitPattern))
        #expect(dir.list("t") == ["emb_vector", "key"], "no temporary files may remain")
    }

    @Test func writerReplacesAnExistingTable() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TableWriter.write(directory: dir.file("a/b/t"), keys: [1, 2, 3], vectors: [1, 2, 3, 4, 5, 6], dimension: 2)
        try TableWriter.write(directory: dir.file("a/b/t"), keys: [9], vectors: [7, 8, 9, 10], dimension: 4)
        let table = try TableDirectory(path: dir.file("a/b/t"), dimension: 4)
        let read = try readAll(table)
        #expect(read.keys == [9])
        #expect(read.vectors == [7, 8, 9, 10])
    }

    @Test func writerRejectsInconsistentInput() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        expectHPSError(.invalidArgument, containing: ["5 floats given for 2 keys × dimension 3 = 6"]) {
            try TableWriter.write(directory: dir.file("t"), keys: [1, 2], vectors: [1, 2, 3, 4, 5], dimension: 3)
        }
        expectHPSError(.invalidArgument, containing: ["at least one row"]) {
            try TableWriter.write(directory: dir.file("t"), keys: [], vectors: [], dimension: 3)
        }
        expectHPSError(.invalidArgument, containing: ["dimension must be at least 1"]) {
            try TableWriter.write(directory: dir.file("t"), keys: [1], vectors: [], dimension: 0)
        }
        #expect(dir.list().isEmpty, "nothing may be created for rejected input")
    }

    @Test func chunkedReadOverSeveralChunksEqualsWholeRead() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let sample = sampleTable(rows: 10, dimension: 3)
        try TableWriter.write(directory: dir.path, keys: sample.keys, vectors: sample.vectors, dimension: 3)
        let table = try TableDirectory(path: dir.path, dimension: 3)

        var chunkSizes: [Int] = []
        var progress: [Int] = []
        var keys: [Int64] = []
        var vectors: [Float] = []
        try table.forEachChunk(maxRows: 3, progress: { done, total in
            #expect(total == 10)
            progress.append(done)
        }) { k, v in
            #expect(v.count == k.count * 3)
            chunkSizes.append(k.count)
            keys += k
            vectors += v
        }
        #expect(chunkSizes == [3, 3, 3, 1])
        #expect(progress == [3, 6, 9, 10])
        #expect(keys == sample.keys)
        #expect(vectors == sample.vectors)

        let whole = try readAll(table, maxRows: 1000)
        #expect(whole.keys == keys)
        #expect(whole.vectors == vectors)

        var keyChunks: [[Int64]] = []
        try table.forEachKeyChunk(maxRows: 4) { keyChunks.append(Array($0)) }
        #expect(keyChunks.map(\.count) == [4, 4, 2])
        #expect(keyChunks.flatMap { $0 } == sample.keys)
    }

    /// With 32-bit keys a key outside 0 ... 2^32 - 1 is an error naming the key file, the row and the key:
    /// truncating it would make key 5 answer the row of key 2^32 + 5.
    @Test func uint32KeyWidthRejectsKeysThatDoNotFit() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TableWriter.write(directory: dir.file("big"), keys: [4_294_967_295, 7, (1 << 32) + 5], vectors: [1, 2, 3], dimension: 1)
        try TableWriter.write(directory: dir.file("negative"), keys: [0, -1, 7], vectors: [1, 2, 3], dimension: 1)
        let big = try TableDirectory(path: dir.file("big"))
        expectHPSError(.invalidTable, containing: [dir.file("big/key"), "row 2 holds key 4294967301", "supportlonglong: false"]) {
            _ = try readAll(big, keyWidth: .uint32)
        }
        expectHPSError(.invalidTable, containing: [dir.file("negative/key"), "row 1 holds key -1"]) {
            try TableDirectory(path: dir.file("negative")).forEachKeyChunk(keyWidth: .uint32) { _ in }
        }
        #expect(try readAll(big, keyWidth: .int64).keys == [4_294_967_295, 7, (1 << 32) + 5])
        let fits = try TableDirectory(path: dir.file("big"))
        var firstChunk: [Int64] = []
        try? fits.forEachKeyChunk(maxRows: 2, keyWidth: .uint32) { firstChunk += $0 }
        #expect(firstChunk == [4_294_967_295, 7], "rows before the bad key are read unchanged")
    }

    /// Duplicate counting streams the key file: with room for only a few keys in memory it reads the file
    /// in several passes and still counts exactly, and names the earliest repeated row.
    @Test(arguments: [nil, 16, 40])
    func duplicateCountIsExactWithBoundedMemory(maxKeysInMemory: Int?) throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var keys: [Int64] = (0..<300).map { Int64($0) * 1_000_003 - 150_000_000 }
        keys += [keys[17], keys[3], keys[17], keys[299], Int64.min, Int64.min]
        try TableWriter.write(directory: dir.path, keys: keys, vectors: [Float](repeating: 0, count: keys.count), dimension: 1)
        let table = try TableDirectory(path: dir.path)
        let scan = try table.scanKeys(maxKeysInMemory: maxKeysInMemory)
        #expect(scan.duplicateCount == 5)
        #expect(scan.firstDuplicate?.key == keys[17])
        #expect(scan.firstDuplicate?.row == 300)
        #expect(scan.minKey == Int64.min)
        #expect(scan.maxKey == keys[299])
        let stats = try table.statistics(maxKeysInMemory: maxKeysInMemory)
        #expect(stats.duplicateKeyCount == 5)
    }

    @Test func invalidChunkSizeIsAnError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TableWriter.write(directory: dir.path, keys: [1], vectors: [1], dimension: 1)
        let table = try TableDirectory(path: dir.path)
        expectHPSError(.invalidArgument, containing: ["at least 1 row"]) {
            try table.forEachChunk(maxRows: 0) { _, _ in }
        }
    }

    // MARK: Broken tables

    @Test func missingDirectoryIsReported() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        expectHPSError(.invalidTable, subjectSuffix: "/nope", containing: ["table directory does not exist"]) {
            _ = try TableDirectory(path: dir.file("nope"))
        }
        try dir.write([1, 2, 3], to: "plain")
        expectHPSError(.invalidTable, subjectSuffix: "/plain", containing: ["is not a directory"]) {
            _ = try TableDirectory(path: dir.file("plain"))
        }
    }

    @Test func missingKeyOrVectorFileIsReported() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try dir.makeDirectory("only_vectors")
        try dir.write(bytes([Float(1)]), to: "only_vectors/emb_vector")
        expectHPSError(.invalidTable, subjectSuffix: "only_vectors/key", containing: ["key file is missing"]) {
            _ = try TableDirectory(path: dir.file("only_vectors"))
        }
        try dir.makeDirectory("only_keys")
        try dir.write(bytes([Int64(1)]), to: "only_keys/key")
        expectHPSError(.invalidTable, subjectSuffix: "only_keys/emb_vector", containing: ["embedding vector file is missing"]) {
            _ = try TableDirectory(path: dir.file("only_keys"))
        }
    }

    @Test func emptyOrMisalignedKeyFileIsReported() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try dir.write(bytes([Float(1), 2]), to: "emb_vector")
        try dir.write([], to: "key")
        expectHPSError(.invalidTable, subjectSuffix: "/key", containing: ["key file is empty"]) {
            _ = try TableDirectory(path: dir.path)
        }
        try dir.write([UInt8](repeating: 1, count: 13), to: "key")
        expectHPSError(.invalidTable, subjectSuffix: "/key", containing: ["13 bytes", "not a multiple of 8"]) {
            _ = try TableDirectory(path: dir.path)
        }
    }

    @Test func emptyVectorFileIsReported() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try dir.write(bytes([Int64(1)]), to: "key")
        try dir.write([], to: "emb_vector")
        expectHPSError(.invalidTable, subjectSuffix: "/emb_vector", containing: ["is empty"]) {
            _ = try TableDirectory(path: dir.path)
        }
    }

    @Test func vectorSizeMustMatchTheConfiguredDimension() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let sample = sampleTable(rows: 5, dimension: 4)
        try TableWriter.write(directory: dir.path, keys: sample.keys, vectors: sample.vectors, dimension: 4)
        #expect(try TableDirectory(path: dir.path, dimension: 4).dimension == 4)
        expectHPSError(
            .invalidTable, subjectSuffix: "/emb_vector",
            containing: ["emb_vector is 80 bytes", "expected 160 bytes", "5 rows × dimension 8 × 4 bytes", "dimension 4"]
        ) {
            _ = try TableDirectory(path: dir.path, dimension: 8)
        }
    }

    @Test func inferredDimensionMustDivideEvenly() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try dir.write(bytes([Int64(1), 2]), to: "key")
        try dir.write(bytes([Float(1), 2, 3]), to: "emb_vector")
        expectHPSError(.invalidTable, subjectSuffix: "/emb_vector", containing: ["12 bytes", "not a multiple of 8"]) {
            _ = try TableDirectory(path: dir.path)
        }
    }

    @Test func fileChangedAfterOpeningIsReportedNotRead() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let sample = sampleTable(rows: 8, dimension: 2)
        try TableWriter.write(directory: dir.path, keys: sample.keys, vectors: sample.vectors, dimension: 2)
        let table = try TableDirectory(path: dir.path)
        #expect(truncate(table.vectorFile, 24) == 0)
        expectHPSError(.invalidTable, subjectSuffix: "/emb_vector", containing: ["changed size", "was 64 bytes, now 24"]) {
            try table.forEachChunk { _, _ in }
        }
    }

    @Test func fileTruncatedWhileReadingIsReported() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let sample = sampleTable(rows: 8, dimension: 2)
        try TableWriter.write(directory: dir.path, keys: sample.keys, vectors: sample.vectors, dimension: 2)
        let table = try TableDirectory(path: dir.path)
        var chunks = 0
        var failure: HPSError?
        do {
            try table.forEachChunk(maxRows: 2) { _, _ in
                chunks += 1
                _ = truncate(table.keyFile, 16)
            }
        } catch let error as HPSError {
            failure = error
        }
        // The chunk after the first was read ahead either before the truncation (then it is delivered, as
        // rows the file held when read, and the next read fails) or after it.
        #expect(chunks == 1 || chunks == 2)
        let error = try #require(failure)
        #expect(error.code == .invalidTable && error.subject?.hasSuffix("/key") == true)
        #expect(error.description.contains("file ended at byte \(16 * chunks)") && error.description.contains("64 bytes were expected"), "\(error)")
    }

    /// Chunks are read one ahead on another thread, yet delivered in order, and a chunk that cannot be read
    /// fails the call after every chunk before it was delivered, naming the file, row and key.
    @Test func readAheadDeliversInOrderAndFailsAtTheBadChunk() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var sample = sampleTable(rows: 1000, dimension: 3)
        sample.keys = sample.keys.map { $0 & 0xFFFF }
        sample.keys[737] = 1 << 40
        try TableWriter.write(directory: dir.path, keys: sample.keys, vectors: sample.vectors, dimension: 3)
        let table = try TableDirectory(path: dir.path, dimension: 3)
        for _ in 0..<50 {
            var keys: [Int64] = []
            var vectors: [Float] = []
            expectHPSError(.invalidTable, containing: [table.keyFile, "row 737 holds key 1099511627776"]) {
                try table.forEachChunk(maxRows: 7, keyWidth: .uint32) { k, v in
                    keys += k
                    vectors += v
                }
            }
            #expect(keys == Array(sample.keys[0..<735]))
            #expect(vectors == Array(sample.vectors[0..<(735 * 3)]))
            #expect(try readAll(table, maxRows: 7).vectors == sample.vectors)
        }
    }

    /// An error thrown by the body stops the reading thread; the call returns that error and no later chunk.
    @Test func bodyErrorStopsReadingAhead() throws {
        struct Stop: Error {}
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let sample = sampleTable(rows: 100, dimension: 2)
        try TableWriter.write(directory: dir.path, keys: sample.keys, vectors: sample.vectors, dimension: 2)
        let table = try TableDirectory(path: dir.path, dimension: 2)
        for stopAt in [0, 1, 5, 9] {
            var chunks = 0
            #expect(throws: Stop.self) {
                try table.forEachChunk(maxRows: 10) { _, _ in
                    if chunks == stopAt { throw Stop() }
                    chunks += 1
                }
            }
            #expect(chunks == stopAt)
        }
    }

    // MARK: Fingerprints and statistics

    @Test func fingerprintFollowsContent() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var sample = sampleTable(rows: 100, dimension: 8)
        try TableWriter.write(directory: dir.path, keys: sample.keys, vectors: sample.vectors, dimension: 8)
        let first = try TableDirectory(path: dir.path).fingerprint()
        #expect(first.hasPrefix("hpst1-100x8-"))
        #expect(try TableDirectory(path: dir.path).fingerprint() == first, "unchanged files keep the fingerprint")

        try TableWriter.write(directory: dir.path, keys: sample.keys, vectors: sample.vectors, dimension: 8)
        #expect(try TableDirectory(path: dir.path).fingerprint() == first, "rewriting identical bytes keeps it")

        sample.vectors[517] = 42
        try TableWriter.write(directory: dir.path, keys: sample.keys, vectors: sample.vectors, dimension: 8)
        let vectorChanged = try TableDirectory(path: dir.path).fingerprint()
        #expect(vectorChanged != first)

        sample.keys[3] = 123_456
        try TableWriter.write(directory: dir.path, keys: sample.keys, vectors: sample.vectors, dimension: 8)
        let keyChanged = try TableDirectory(path: dir.path).fingerprint()
        #expect(keyChanged != vectorChanged)
        #expect(keyChanged != first)
    }

    @Test func xxhash64MatchesTheReferenceAndStreams() {
        #expect(XXHash64().finalize() == 0xEF46_DB37_51D8_E999, "XXH64 of no bytes with seed 0")
        func xxh64(_ text: String) -> UInt64 {
            var hasher = XXHash64()
            Array(text.utf8).withUnsafeBytes { hasher.update($0) }
            return hasher.finalize()
        }
        #expect(xxh64("abc") == 0x44BC_2CF5_AD77_0999)
        #expect(xxh64("Nobody inspects the spammish repetition") == 0xFBCE_A83C_8A37_8BF1)
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var whole = XXHash64()
        data.withUnsafeBytes { whole.update($0) }
        for split in [1, 7, 31, 32, 33, 64, 999] {
            var pieces = XXHash64()
            var start = 0
            while start < data.count {
                let end = min(start + split, data.count)
                data[start..<end].withUnsafeBytes { pieces.update($0) }
                start = end
            }
            #expect(pieces.finalize() == whole.finalize(), "split \(split)")
        }
        var other = XXHash64()
        data.dropLast().withUnsafeBytes { other.update($0) }
        #expect(other.finalize() != whole.finalize())
    }

    @Test func keyRangeAndStatistics() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TableWriter.write(directory: dir.path, keys: [5, -3, 9, 5, 5, 9], vectors: [Float](repeating: 1, count: 12), dimension: 2)
        let table = try TableDirectory(path: dir.path)
        let range = try table.keyRange()
        #expect(range.min == -3)
        #expect(range.max == 9)
        let stats = try table.statistics()
        #expect(stats == TableStatistics(rowCount: 6, dimension: 2, byteCount: 96, minKey: -3, maxKey: 9, duplicateKeyCount: 3))
    }

    // MARK: NumPy

    @Test func numpyConversionRoundTrip() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let sample = sampleTable(rows: 6, dimension: 3)
        try dir.write(npy(descr: "<f4", shape: [6, 3], data: bytes(sample.vectors)), to: "v.npy")
        try dir.write(npy(descr: "<i8", shape: [6], data: bytes(sample.keys)), to: "k.npy")
        var progress: [Int] = []
        let result = try TableConverter.convert(
            vectorsNPY: dir.file("v.npy"), keysNPY: dir.file("k.npy"), output: dir.file("out"), chunkRows: 4,
            progress: { done, _ in progress.append(done) })
        #expect(result.rows == 6)
        #expect(result.dimension == 3)
        #expect(progress == [4, 6])
        let read = try readAll(try TableDirectory(path: dir.file("out"), dimension: 3))
        #expect(read.keys == sample.keys)
        #expect(read.vectors.map(\.bitPattern) == sample.vectors.map(\.bitPattern))
        #expect(dir.list("out") == ["emb_vector", "key"])
    }

    @Test func numpyConversionWithDefaultKeysVersion2AndWideTypes() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let doubles: [Double] = [0.5, -1.25, 3, 4, 1e-3, 6]
        try dir.write(npy(descr: "<f8", shape: [3, 2], data: bytes(doubles), version: 2), to: "v.npy")
        let result = try TableConverter.convert(vectorsNPY: dir.file("v.npy"), output: dir.file("out"))
        #expect(result.rows == 3)
        #expect(result.dimension == 2)
        let read = try readAll(try TableDirectory(path: dir.file("out")))
        #expect(read.keys == [0, 1, 2])
        #expect(read.vectors == doubles.map { Float($0) })

        try dir.write(npy(descr: "<i4", shape: [3, 1], data: bytes([Int32(-7), 8, 9]), version: 3), to: "k.npy")
        try TableConverter.convert(vectorsNPY: dir.file("v.npy"), keysNPY: dir.file("k.npy"), output: dir.file("out2"))
        #expect(try readAll(try TableDirectory(path: dir.file("out2"))).keys == [-7, 8, 9])
    }

    @Test func numpyHeaderIsParsed() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try dir.write(npy(descr: "<u4", shape: [2, 2], data: bytes([UInt32(1), 2, 3, 0xFFFF_FFFF])), to: "a.npy")
        let array = try NumpyArray(path: dir.file("a.npy"))
        #expect(array.elementType == .uint32)
        #expect(array.shape == [2, 2])
        #expect(array.formatVersion == 1)
        #expect(array.dataOffset % 64 == 0)
        var values = [Int64](repeating: 0, count: 3)
        try values.withUnsafeMutableBufferPointer { try array.read(elements: 1..<4, into: $0) }
        #expect(values == [2, 3, 4_294_967_295])
    }

    @Test func numpyWrongDtypeIsReported() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try dir.write(npy(descr: "<i8", shape: [2, 2], data: bytes([Int64(1), 2, 3, 4])), to: "v.npy")
        expectHPSError(.invalidTable, subjectSuffix: "v.npy", containing: ["dtype <i8", "float32"]) {
            try TableConverter.convert(vectorsNPY: dir.file("v.npy"), output: dir.file("out"))
        }
        try dir.write(npy(descr: "<f4", shape: [2, 2], data: bytes([Float(1), 2, 3, 4])), to: "v.npy")
        try dir.write(npy(descr: "<f4", shape: [2], data: bytes([Float(1), 2])), to: "k.npy")
        expectHPSError(.invalidTable, subjectSuffix: "k.npy", containing: ["dtype <f4", "int64"]) {
            try TableConverter.convert(vectorsNPY: dir.file("v.npy"), keysNPY: dir.file("k.npy"), output: dir.file("out"))
        }
        try dir.write(npy(descr: "<f2", shape: [2, 2], data: [UInt8](repeating: 0, count: 8)), to: "h.npy")
        expectHPSError(.invalidTable, subjectSuffix: "h.npy", containing: ["unsupported dtype '<f2'", "'<f4'"]) {
            _ = try NumpyArray(path: dir.file("h.npy"))
        }
        try dir.write(npy(descr: ">f4", shape: [2, 2], data: [UInt8](repeating: 0, count: 16)), to: "b.npy")
        expectHPSError(.invalidTable, subjectSuffix: "b.npy", containing: ["big-endian"]) {
            _ = try NumpyArray(path: dir.file("b.npy"))
        }
        #expect(!dir.list().contains("out"), "a failed conversion leaves no table behind")
    }

    @Test func numpyShapeProblemsAreReported() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try dir.write(npy(descr: "<f4", shape: [4], data: bytes([Float(1), 2, 3, 4])), to: "flat.npy")
        expectHPSError(.invalidTable, subjectSuffix: "flat.npy", containing: ["shape (4,)", "rank 2"]) {
            try TableConverter.convert(vectorsNPY: dir.file("flat.npy"), output: dir.file("out"))
        }
        try dir.write(npy(descr: "<f4", shape: [3, 2], data: bytes([Float](repeating: 1, count: 6))), to: "v.npy")
        try dir.write(npy(descr: "<i8", shape: [2], data: bytes([Int64(1), 2])), to: "k.npy")
        expectHPSError(.invalidTable, subjectSuffix: "k.npy", containing: ["keys have 2 rows", "have 3"]) {
            try TableConverter.convert(vectorsNPY: dir.file("v.npy"), keysNPY: dir.file("k.npy"), output: dir.file("out"))
        }
        try dir.write(npy(descr: "<i8", shape: [3, 2], data: bytes([Int64](repeating: 1, count: 6))), to: "k2.npy")
        expectHPSError(.invalidTable, subjectSuffix: "k2.npy", containing: ["rank 2", "expected rank 1"]) {
            try TableConverter.convert(vectorsNPY: dir.file("v.npy"), keysNPY: dir.file("k2.npy"), output: dir.file("out"))
        }
        try dir.write(npy(descr: "<f4", shape: [3, 2], data: bytes([Float](repeating: 1, count: 6)), fortranOrder: true), to: "f.npy")
        expectHPSError(.invalidTable, subjectSuffix: "f.npy", containing: ["Fortran order"]) {
            _ = try NumpyArray(path: dir.file("f.npy"))
        }
    }

    @Test func numpyTruncatedOrForeignFilesAreReported() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try dir.write(npy(descr: "<f4", shape: [10, 4], data: bytes([Float](repeating: 1, count: 25))), to: "t.npy")
        expectHPSError(.invalidTable, subjectSuffix: "t.npy", containing: ["truncated", "shape (10, 4)", "needs 160 bytes", "only 100"]) {
            try TableConverter.convert(vectorsNPY: dir.file("t.npy"), output: dir.file("out"))
        }
        try dir.write("not numpy at all", to: "x.npy")
        expectHPSError(.invalidTable, subjectSuffix: "x.npy", containing: ["not a NumPy .npy file"]) {
            _ = try NumpyArray(path: dir.file("x.npy"))
        }
        expectHPSError(.io, subjectSuffix: "missing.npy") {
            _ = try NumpyArray(path: dir.file("missing.npy"))
        }
    }
}
