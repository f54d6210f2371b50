extension TableDirectory {
    /// Streams the table in file order, `maxRows` rows at a time. A table of more than one chunk is read one
    /// chunk ahead on a background thread (``ChunkReadAhead``) while `body` works on the current chunk, through
    /// two pairs of buffers allocated once per call (`2 × maxRows × (8 + dimension × 4)` bytes at most; one
    /// pair for a table of one chunk).
    ///
    /// - Parameters:
    ///   - maxRows: the most rows per chunk (at least 1).
    ///   - keyWidth: the configuration's key width; with `.uint32` every key must lie in `0 ... 2^32 - 1`.
    ///   - progress: called after each chunk with the rows read so far and the total.
    ///   - body: receives each chunk's keys and its `keys.count × dimension` floats, in file order on the calling
    ///     thread; the buffers are reused, so they are valid only during the call.
    /// - Throws: ``HPSError`` when a file cannot be read, or has changed size since the directory was opened
    ///   (a file truncated while reading is reported, not read past); `invalidTable` naming the key file, the
    ///   row and the key when a key does not fit `keyWidth` (keys are never truncated); errors thrown by `body`.
    ///   A chunk that cannot be read is reported after `body` has taken every chunk before it.
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
        let chunks = chunkRows == 0 ? 0 : (rowCount + chunkRows - 1) / chunkRows
        let slots = chunks > 1 ? 2 : 1
        let keyBuffer = UnsafeMutableBufferPointer<Int64>.allocate(capacity: slots * chunkRows)
        defer { keyBuffer.deallocate() }
        let vectorBuffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: slots * chunkRows * dimension)
        defer { vectorBuffer.deallocate() }
        let rowBytes = dimension * 4

        try ChunkReadAhead.run(chunks: chunks) { chunk, slot in
            let row = chunk * chunkRows
            let n = min(chunkRows, rowCount - row)
            let chunkKeys = UnsafeMutableBufferPointer(rebasing: keyBuffer[(slot * chunkRows)..<(slot * chunkRows + n)])
            let chunkVectors = vectorBuffer.baseAddress! + slot * chunkRows * dimension
            try keys.readExactly(into: UnsafeMutableRawBufferPointer(chunkKeys), at: row * 8, expectedFileSize: keyByteCount)
            try vectors.readExactly(
                into: UnsafeMutableRawBufferPointer(start: chunkVectors, count: n * rowBytes), at: row * rowBytes,
                expectedFileSize: vectorByteCount)
            try fromLittleEndian(keys: chunkKeys, count: n, firstRow: row, keyWidth: keyWidth)
            #if _endian(big)
            for i in 0..<(n * dimension) {
                chunkVectors[i] = Float(bitPattern: UInt32(littleEndian: chunkVectors[i].bitPattern))
            }
            #endif
        } use: { chunk, slot in
            let row = chunk * chunkRows
            let n = min(chunkRows, rowCount - row)
            try body(
                UnsafeBufferPointer(start: keyBuffer.baseAddress! + slot * chunkRows, count: n),
                UnsafeBufferPointer(start: vectorBuffer.baseAddress! + slot * chunkRows * dimension, count: n * dimension))
            progress?(row + n, rowCount)
        }
    }

    /// Streams only the keys, `maxRows` at a time (reads the `key` file alone). Keys that do not fit
    /// `keyWidth` are an error, as in ``forEachChunk(maxRows:keyWidth:progress:_:)``.
    /// - Throws: ``HPSError`` as ``forEachChunk(maxRows:keyWidth:progress:_:)`` for the `key` file; whatever `body`
    ///   throws.
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
            try fromLittleEndian(keys: keyBuffer, count: n, firstRow: row, keyWidth: keyWidth)
            try body(UnsafeBufferPointer(start: keyBuffer.baseAddress, count: n))
            row += n
        }
    }

    /// The smallest and largest key (after `keyWidth` mapping). Reads the `key` file once.
    /// - Throws: ``HPSError`` as ``forEachKeyChunk(maxRows:keyWidth:_:)``.
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
    /// Streams the key file; see ``scanKeys(keyWidth:maxKeysInMemory:)`` for the memory it takes.
    /// - Throws: ``HPSError`` as ``scanKeys(keyWidth:maxKeysInMemory:)`` (file reads, keys that do not fit
    ///   `keyWidth`).
    public func statistics(keyWidth: KeyWidth = .int64, maxKeysInMemory: Int? = nil) throws -> TableStatistics {
        let scan = try scanKeys(keyWidth: keyWidth, maxKeysInMemory: maxKeysInMemory)
        return TableStatistics(
            rowCount: rowCount, dimension: dimension, byteCount: byteCount,
            minKey: scan.minKey, maxKey: scan.maxKey, duplicateKeyCount: scan.duplicateCount)
    }

    /// Reads the key file in chunks and counts duplicate keys exactly, holding at most `maxKeysInMemory`
    /// distinct keys in memory at once (16 bytes each, in an open-addressing set that grows as needed).
    ///
    /// When the table has more distinct keys than that, the keys are split by hash into groups that each fit,
    /// and the file is read once per group. The default limit is a quarter of the machine's memory, so a
    /// key file of any size is read in a few passes and never whole.
    ///
    /// - Throws: ``HPSError`` as ``forEachKeyChunk(maxRows:keyWidth:_:)`` does (a key that does not fit
    ///   `keyWidth` included).
    public func scanKeys(keyWidth: KeyWidth = .int64, maxKeysInMemory: Int? = nil) throws -> KeyScan {
        let budget = max(16, maxKeysInMemory ?? Self.defaultKeysInMemory)
        var groups = rowCount <= budget ? 1 : (rowCount / budget) + 1
        while true {
            do {
                return try scanKeys(keyWidth: keyWidth, groups: groups, budget: budget)
            } catch is KeySetFull {
                // Keys clustered in one group (hash skew): split finer and read again.
                groups = groups > Int.max / 2 ? Int.max : groups * 2
            }
        }
    }

    private struct KeySetFull: Error {}

    private func scanKeys(keyWidth: KeyWidth, groups: Int, budget: Int) throws -> KeyScan {
        var scan = KeyScan()
        var low = Int64.max
        var high = Int64.min
        for group in 0..<UInt64(groups) {
            let set = KeySet(expected: Swift.min(rowCount, 1 << 16))
            var row = 0
            try forEachKeyChunk(keyWidth: keyWidth) { keys in
                for key in keys {
                    defer { row += 1 }
                    if group == 0 {
                        low = Swift.min(low, key)
                        high = Swift.max(high, key)
                    }
                    if groups > 1 && hpsKeyMix(key) % UInt64(groups) != group { continue }
                    if !set.insert(key) {
                        scan.duplicateCount += 1
                        if scan.firstDuplicate.map({ row < $0.row }) ?? true { scan.firstDuplicate = (key, row) }
                    } else if set.count > budget {
                        throw KeySetFull()
                    }
                }
            }
        }
        scan.minKey = rowCount == 0 ? 0 : low
        scan.maxKey = rowCount == 0 ? 0 : high
        return scan
    }

    /// A quarter of the machine's memory, in keys of 16 bytes (at least 2^20).
    static var defaultKeysInMemory: Int { Swift.max(1 << 20, SystemInfo.physicalMemory / 4 / 16) }

    /// Opens a table file and checks it still has the size seen when the directory was opened.
    func openChecked(_ file: String, expectedSize: Int) throws -> OpenFile {
        let handle = try OpenFile.openForReading(file)
        let size = try handle.size()
        guard size == expectedSize else {
            throw HPSError(
                .invalidTable, subject: file,
                "changed size since the table was opened (was \(expectedSize) bytes, now \(size)); reopen the table")
        }
        return handle
    }

    /// Converts keys read from the key file to host order and checks them against `keyWidth`.
    @inline(__always)
    private func fromLittleEndian(keys: UnsafeMutableBufferPointer<Int64>, count: Int, firstRow: Int, keyWidth: KeyWidth) throws {
        #if _endian(big)
        for i in 0..<count { keys[i] = Int64(littleEndian: keys[i]) }
        #endif
        if keyWidth == .uint32 {
            for i in 0..<count where keys[i] < 0 || keys[i] > Int64(UInt32.max) {
                throw HPSError(
                    .invalidTable, subject: keyFile,
                    "row \(firstRow + i) holds key \(keys[i]), which does not fit the configuration's 32-bit keys "
                        + "(supportlonglong: false takes keys 0 ... 4294967295); set supportlonglong: true or remove the key")
            }
        }
    }
}

/// What one read of a key file found: the key range and the duplicate keys.
public struct KeyScan: Sendable {
    public var minKey: Int64 = 0
    public var maxKey: Int64 = 0
    /// Rows whose key already appeared in an earlier row.
    public var duplicateCount = 0
    /// The earliest row whose key appeared in an earlier row, with that key.
    public var firstDuplicate: (key: Int64, row: Int)?
}

/// An open-addressing set of keys for counting duplicates: 8 bytes per slot, at most 3/4 full, doubling
/// as it fills.
final class KeySet {
    private var slots: UnsafeMutablePointer<Int64>
    private var mask: Int
    private var shift: UInt64
    /// `Int64.min` marks an empty slot; whether the key `Int64.min` itself is present is kept aside.
    private var holdsEmptyMarker = false
    private(set) var count = 0

    init(expected: Int) {
        var capacity = 16
        var log: UInt64 = 4
        while capacity < expected * 2 && capacity < 1 << 40 { capacity *= 2; log += 1 }
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: .min, count: capacity)
        mask = capacity - 1
        shift = 64 - log
    }

    deinit { slots.deallocate() }

    /// Adds `key`; false when it was already present.
    func insert(_ key: Int64) -> Bool {
        if key == .min {
            defer { holdsEmptyMarker = true }
            if holdsEmptyMarker { return false }
            count += 1
            return true
        }
        if (count + 1) * 4 > (mask + 1) * 3 { grow() }
        var pos = Int(truncatingIfNeeded: hpsKeyMix(key) >> shift)
        while true {
            let slot = slots[pos]
            if slot == key { return false }
            if slot == .min {
                slots[pos] = key
                count += 1
                return true
            }
            pos = (pos + 1) & mask
        }
    }

    private func grow() {
        let old = slots
        let oldCapacity = mask + 1
        let capacity = oldCapacity * 2
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: .min, count: capacity)
        mask = capacity - 1
        shift -= 1
        for i in 0..<oldCapacity where old[i] != .min {
            var pos = Int(truncatingIfNeeded: hpsKeyMix(old[i]) >> shift)
            while slots[pos] != .min { pos = (pos + 1) & mask }
            slots[pos] = old[i]
        }
        old.deallocate()
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
