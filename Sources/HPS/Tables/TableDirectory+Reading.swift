extension TableDirectory {
    /// Streams the table in file order, `maxRows` rows at a time, through two buffers allocated once per call
    /// (`maxRows × (8 + dimension × 4)` bytes at most).
    ///
    /// - Parameters:
    ///   - maxRows: the most rows per chunk (at least 1).
    ///   - keyWidth: how keys are mapped before `body` sees them (uint32 keys keep the low 32 bits).
    ///   - progress: called after each chunk with the rows read so far and the total.
    ///   - body: receives each chunk's keys and its `keys.count × dimension` floats; the buffers are reused, so
    ///     they are valid only during the call.
    /// - Throws: ``HPSError`` when a file cannot be read, or has changed size since the directory was opened
    ///   (a file truncated while reading is reported, not read past); errors thrown by `body`.
    public func forEachChunk(
        maxRows: Int = 65536, keyWidth: KeyWidth = .int64,
        progress: ((_ rowsDone: Int, _ rowsTotal: Int) -> Void)? = nil,
        _ body: (UnsafeBufferPointer<Int64>, UnsafeBufferPointer<Float>) throws -> Void
    ) throws {
        guard maxRows >= 1 else {
            throw HPSError(.invalidArgument, subject: path, "chunk size must be at least 1 row, got \(maxRows)")
        }
        let keys = try openChecked(keyFile, expectedSize: keyByteCount)
        let vectors = try openChecked(vectorFile, expectedSize: vectorByteCount)
        let chunkRows = min(maxRows, rowCount)
        let keyBuffer = UnsafeMutableBufferPointer<Int64>.allocate(capacity: chunkRows)
        defer { keyBuffer.deallocate() }
        let vectorBuffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: chunkRows * dimension)
        defer { vectorBuffer.deallocate() }
        let rowBytes = dimension * 4

        var row = 0
        while row < rowCount {
            let n = min(chunkRows, rowCount - row)
            try keys.readExactly(
                into: UnsafeMutableRawBufferPointer(start: keyBuffer.baseAddress, count: n * 8), at: row * 8,
                expectedFileSize: keyByteCount)
            try vectors.readExactly(
                into: UnsafeMutableRawBufferPointer(start: vectorBuffer.baseAddress, count: n * rowBytes),
                at: row * rowBytes, expectedFileSize: vectorByteCount)
            Self.fromLittleEndian(keys: keyBuffer, count: n, keyWidth: keyWidth)
            #if _endian(big)
            for i in 0..<(n * dimension) {
                vectorBuffer[i] = Float(bitPattern: UInt32(littleEndian: vectorBuffer[i].bitPattern))
            }
            #endif
            try body(
                UnsafeBufferPointer(start: keyBuffer.baseAddress, count: n),
                UnsafeBufferPointer(start: vectorBuffer.baseAddress, count: n * dimension))
            row += n
            progress?(row, rowCount)
        }
    }

    /// Streams only the keys, `maxRows` at a time (reads the `key` file alone).
    public func forEachKeyChunk(
        maxRows: Int = 65536, keyWidth: KeyWidth = .int64, _ body: (UnsafeBufferPointer<Int64>) throws -> Void
    ) throws {
        guard maxRows >= 1 else {
            throw HPSError(.invalidArgument, subject: path, "chunk size must be at least 1 row, got \(maxRows)")
        }
        let keys = try openChecked(keyFile, expectedSize: keyByteCount)
        let chunkRows = min(maxRows, rowCount)
        let keyBuffer = UnsafeMutableBufferPointer<Int64>.allocate(capacity: chunkRows)
        defer { keyBuffer.deallocate() }
        var row = 0
        while row < rowCount {
            let n = min(chunkRows, rowCount - row)
            try keys.readExactly(
                into: UnsafeMutableRawBufferPointer(start: keyBuffer.baseAddress, count: n * 8), at: row * 8,
                expectedFileSize: keyByteCount)
            Self.fromLittleEndian(keys: keyBuffer, count: n, keyWidth: keyWidth)
            try body(UnsafeBufferPointer(start: keyBuffer.baseAddress, count: n))
            row += n
        }
    }

    /// The smallest and largest key (after `keyWidth` mapping). Reads the `key` file once.
    public func keyRange(keyWidth: KeyWidth = .int64) throws -> (min: Int64, max: Int64) {
        var low = Int64.max
        var high = Int64.min
        try forEachKeyChunk(keyWidth: keyWidth) { keys in
            for k in keys {
                low = Swift.min(low, k)
                high = Swift.max(high, k)
            }
        }
        return (low, high)
    }

    /// Facts about the table for `hps inspect`: sizes, key range and duplicate keys.
    ///
    /// Counting duplicates holds every key in memory once (`rows × 8` bytes) and sorts them.
    public func statistics(keyWidth: KeyWidth = .int64) throws -> TableStatistics {
        var all: [Int64] = []
        all.reserveCapacity(rowCount)
        try forEachKeyChunk(keyWidth: keyWidth) { all.append(contentsOf: $0) }
        all.sort()
        var duplicates = 0
        for i in all.indices.dropFirst() where all[i] == all[i - 1] { duplicates += 1 }
        return TableStatistics(
            rowCount: rowCount, dimension: dimension, byteCount: byteCount,
            minKey: all.first ?? 0, maxKey: all.last ?? 0, duplicateKeyCount: duplicates)
    }

    /// Opens a table file and checks it still has the size seen when the directory was opened.
    func openChecked(_ file: String, expectedSize: Int) throws -> POSIXFile {
        let handle = try POSIXFile.openForReading(file)
        let size = try handle.size()
        guard size == expectedSize else {
            throw HPSError(
                .invalidTable, subject: file,
                "changed size since the table was opened (was \(expectedSize) bytes, now \(size)); reopen the table")
        }
        return handle
    }

    @inline(__always)
    private static func fromLittleEndian(keys: UnsafeMutableBufferPointer<Int64>, count: Int, keyWidth: KeyWidth) {
        #if _endian(big)
        for i in 0..<count { keys[i] = Int64(littleEndian: keys[i]) }
        #endif
        if keyWidth != .int64 {
            for i in 0..<count { keys[i] = keyWidth.normalize(keys[i]) }
        }
    }
}

/// What `hps inspect` reports about a table directory.
public struct TableStatistics: Sendable, Equatable {
    public var rowCount: Int
    public var dimension: Int
    /// Bytes of `key` and `emb_vector` together.
    public var byteCount: Int
    public var minKey: Int64
    public var maxKey: Int64
    /// Rows whose key already appeared in an earlier row (a lookup returns one of them).
    public var duplicateKeyCount: Int

    public init(rowCount: Int, dimension: Int, byteCount: Int, minKey: Int64, maxKey: Int64, duplicateKeyCount: Int) {
        self.rowCount = rowCount
        self.dimension = dimension
        self.byteCount = byteCount
        self.minKey = minKey
        self.maxKey = maxKey
        self.duplicateKeyCount = duplicateKeyCount
    }
}
