import HPS

/// Dumps one table of any ``Database`` to a file and loads such a file into a table (HPS's
/// `dump` / `load_dump`). The format follows the file name:
///
/// - `.bin`: `"bin\0"`, then little-endian u32 version (1), u32 key size (8, or 4 for uint32 keys), u32
///   value size, then `(key, value)` records back to back. A dump of an empty table has value size 0.
/// - `.sst`: a RocksDB SST file (`SstFileWriter`, default bytewise order) whose keys are the raw
///   little-endian key bytes and whose values are the rows. Loading one into a ``RocksDBDatabase`` uses
///   RocksDB's `IngestExternalFile`; other databases receive its rows through `insert`.
///
/// A table of a fused group (``FusedTableMember``) is dumped from and loaded into its group's database
/// table: a dump holds that table's rows only, with its own (untagged) keys, so it is the dump an unfused
/// deployment of the table gives, and loading it tags the keys again.
///
/// Any other extension is an error. A dump is written to a temporary file beside `path` and renamed into
/// place when complete, so a failed dump never leaves a partial file under `path`. A dump whose header,
/// length, key size or value size is wrong is rejected before anything is inserted.
public enum DatabaseDump {
    /// Rows per chunk when reading a database or a dump.
    static let chunkRows = 65536

    enum Format { case bin, sst }

    static func format(of path: String) throws -> Format {
        if path.hasSuffix(".bin") { return .bin }
        if path.hasSuffix(".sst") { return .sst }
        throw HPSError(
            .invalidArgument, subject: path,
            "unknown dump format; the file name must end in .bin (raw records) or .sst (RocksDB SST file)")
    }

    /// Writes every entry of `table` of `db` to `path` (`.bin` or `.sst`), keys as `keySize` bytes (8, or
    /// 4 for `supportlonglong: false` keys, which must then fit in a uint32).
    /// - Throws: ``HPSError`` `.invalidArgument` for an unknown extension, a bad key size, a key that does not
    ///   fit, or (for `.sst`) an empty table; `.io` when the file cannot be written; the database's errors.
    public static func dump(_ db: any Database, table: String, to path: String, keySize: Int = 8) throws {
        try dump(db, table: table, selecting: nil, to: path, keySize: keySize)
    }

    /// Writes the rows of one table of a fused group to `path` (`.bin` or `.sst`): the rows of
    /// `member.table` (the group's database table) that belong to `member`, with their untagged keys, as
    /// `keySize` bytes (8, or 4 for `supportlonglong: false` keys).
    /// - Returns: the rows written.
    /// - Throws: ``HPSError`` `.database` naming the member table when `db` holds none of its rows (nothing is
    ///   written); otherwise what ``dump(_:table:to:keySize:)`` throws.
    @discardableResult
    public static func dump(_ db: any Database, member: FusedTableMember, to path: String, keySize: Int = 8) throws -> Int {
        try dump(db, table: member.table.tag, selecting: member, to: path, keySize: keySize)
    }

    /// The rows of `table`, or (with `member`) the rows of that member of the fused `table` under their own
    /// keys, to `path`; returns the rows written.
    @discardableResult
    private static func dump(_ db: any Database, table: String, selecting member: FusedTableMember?, to path: String, keySize: Int) throws -> Int {
        let format = try format(of: path)
        guard keySize == 4 || keySize == 8 else {
            throw HPSError(.invalidArgument, subject: path, "key size must be 4 or 8 bytes, not \(keySize)")
        }
        let temporary = path + ".partial-\(FileSystem.processID)"
        FileSystem.remove(temporary)
        var done = false
        defer { if !done { FileSystem.remove(temporary) } }
        let rows: Int
        switch format {
        case .bin: rows = try dumpBin(db, table: table, member: member, to: temporary, keySize: keySize)
        case .sst: rows = try dumpSST(db, table: table, member: member, to: temporary, keySize: keySize)
        }
        if let member, rows == 0 {
            throw HPSError(
                .database, subject: member.memberTable.tag,
                "\(db.name) holds no rows of this table in \(table), the database table of its fused group; nothing to dump")
        }
        do {
            try FileSystem.rename(temporary, to: path)
        } catch {
            throw HPSError(.io, subject: path, "cannot move the finished dump into place", cause: error)
        }
        done = true
        return rows
    }

    /// Reads the dump at `path` (`.bin` or `.sst`) and inserts its entries into `table` of `db`
    /// (existing keys are overwritten).
    /// - Parameters:
    ///   - expected: the table's value size in bytes (`dim × 4`); nil accepts the dump's.
    ///   - expectedKeySize: the key size the dump must have; nil accepts 4 or 8 (4-byte keys are widened).
    /// - Returns: the number of entries read from the dump.
    /// - Throws: ``HPSError`` `.invalidDump` (nothing inserted) when the file is not a dump of this kind, is
    ///   truncated, or its key or value size differs from the expected one; `.io` when it cannot be read.
    @discardableResult
    public static func load(
        into db: any Database, table: String, from path: String, valueSize expected: Int?, keySize expectedKeySize: Int? = nil
    ) throws -> Int {
        try load(into: db, table: table, member: nil, from: path, valueSize: expected, keySize: expectedKeySize)
    }

    /// Reads the dump at `path` (`.bin` or `.sst`) of one table of a fused group and inserts its entries,
    /// keys tagged as `member`, into `member.table` (the group's database table; existing keys are
    /// overwritten). Every key is checked before anything is inserted. An `.sst` dump is inserted entry by
    /// entry (its keys change), not ingested as a file.
    /// - Parameter expectedKeySize: the key size the dump must have; nil accepts 4 or 8 (4-byte keys are widened).
    /// - Returns: the number of entries read from the dump.
    /// - Throws: ``HPSError`` `.invalidTable` (subject `path`, nothing inserted) naming the first key outside the
    ///   fused key space (``FusedKeySpace/rangeError(key:table:file:)``); otherwise what
    ///   ``load(into:table:from:valueSize:keySize:)`` throws, the value size being the group table's.
    @discardableResult
    public static func load(into db: any Database, member: FusedTableMember, from path: String, keySize expectedKeySize: Int? = nil) throws -> Int {
        try load(into: db, table: member.table.tag, member: member, from: path, valueSize: member.table.valueSize, keySize: expectedKeySize)
    }

    private static func load(
        into db: any Database, table: String, member: FusedTableMember?, from path: String, valueSize expected: Int?, keySize expectedKeySize: Int?
    ) throws -> Int {
        let format = try format(of: path)
        switch format {
        case .bin: return try loadBin(into: db, table: table, member: member, from: path, valueSize: expected, keySize: expectedKeySize)
        case .sst: return try loadSST(into: db, table: table, member: member, from: path, valueSize: expected, keySize: expectedKeySize)
        }
    }

    // MARK: .bin

    static let binMagic: [UInt8] = [0x62, 0x69, 0x6E, 0x00]  // "bin\0"
    static let binHeaderSize = 16

    static func binHeader(keySize: Int, valueSize: Int) -> [UInt8] {
        var header = binMagic
        for word in [UInt32(1), UInt32(keySize), UInt32(valueSize)] {
            withUnsafeBytes(of: word.littleEndian) { header.append(contentsOf: $0) }
        }
        return header
    }

    private static func dumpBin(_ db: any Database, table: String, member: FusedTableMember?, to path: String, keySize: Int) throws -> Int {
        let fd: OpenFile
        do { fd = try OpenFile.create(path) } catch { throw writeError(path, error) }
        var valueSize = 0
        var offset = binHeaderSize
        var rows = 0
        var buffer: [UInt8] = []
        try writeAll(fd, binHeader(keySize: keySize, valueSize: 0), at: 0, path: path)
        var first = true
        try db.forEachChunk(table: table, maxChunk: chunkRows) { keys, values, chunkValueSize in
            if first {
                valueSize = chunkValueSize
                first = false
            } else if chunkValueSize != valueSize {
                throw HPSError(
                    .database, subject: table, "holds values of \(valueSize) and of \(chunkValueSize) bytes; cannot dump it")
            }
            let record = keySize + valueSize
            buffer.removeAll(keepingCapacity: true)
            buffer.reserveCapacity(keys.count * record)
            for i in 0..<keys.count {
                guard let key = selected(keys[i], member) else { continue }
                try appendKey(key, size: keySize, to: &buffer, table: table)
                buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: values[(i * valueSize)..<((i + 1) * valueSize)]))
                rows += 1
            }
            try writeAll(fd, buffer, at: offset, path: path)
            offset += buffer.count
        }
        try writeAll(fd, binHeader(keySize: keySize, valueSize: valueSize), at: 0, path: path)
        do { try fd.synchronize() } catch { throw writeError(path, error) }
        return rows
    }

    private static func loadBin(
        into db: any Database, table: String, member: FusedTableMember?, from path: String, valueSize expected: Int?, keySize expectedKeySize: Int?
    ) throws -> Int {
        let fd: OpenFile
        do { fd = try OpenFile.openForReading(path) } catch { throw readError(path, error) }
        let fileSize: Int
        do { fileSize = try fd.size() } catch { throw readError(path, error) }

        var header = [UInt8](repeating: 0, count: binHeaderSize)
        let got = try header.withUnsafeMutableBytes { buffer in
            do { return try fd.read(into: buffer, at: 0) } catch { throw readError(path, error) }
        }
        guard got == binHeaderSize else {
            throw HPSError(.invalidDump, subject: path, "is \(fileSize) bytes, too short for a .bin dump header (16 bytes)")
        }
        guard Array(header[0..<4]) == binMagic else {
            throw HPSError(.invalidDump, subject: path, "does not start with the .bin dump magic \"bin\\0\"")
        }
        func word(_ at: Int) -> Int {
            Int(UInt32(header[at]) | UInt32(header[at + 1]) << 8 | UInt32(header[at + 2]) << 16 | UInt32(header[at + 3]) << 24)
        }
        let version = word(4), keySize = word(8), valueSize = word(12)
        guard version == 1 else {
            throw HPSError(.invalidDump, subject: path, "has format version \(version); only version 1 is known")
        }
        guard keySize == 4 || keySize == 8 else {
            throw HPSError(.invalidDump, subject: path, "has \(keySize)-byte keys; keys must be 4 or 8 bytes")
        }
        if let expectedKeySize, keySize != expectedKeySize {
            throw HPSError(.invalidDump, subject: path, "has \(keySize)-byte keys, but \(expectedKeySize)-byte keys are expected")
        }
        let body = fileSize - binHeaderSize
        if valueSize == 0 {
            guard body == 0 else {
                throw HPSError(.invalidDump, subject: path, "has value size 0 but holds \(body) bytes of records")
            }
            return 0
        }
        if let expected, valueSize != expected {
            throw HPSError(
                .invalidDump, subject: path,
                "has \(valueSize)-byte values, but table \(table) needs \(expected)-byte values (\(expected / 4) float32s)")
        }
        let record = keySize + valueSize
        guard body % record == 0 else {
            throw HPSError(
                .invalidDump, subject: path,
                "is truncated or malformed: \(body) bytes after the header are not a whole number of \(record)-byte records")
        }
        let records = body / record
        let chunk = max(1, min(chunkRows, (64 << 20) / record))
        var raw = [UInt8](repeating: 0, count: min(chunk, records) * record)
        var keys = [Int64](repeating: 0, count: min(chunk, records))
        var values = [UInt8](repeating: 0, count: min(chunk, records) * valueSize)
        /// Reads the records chunk by chunk into `keys` and `values` (`n` of each) and calls `body(n)`.
        func forEachChunk(_ body: (Int) throws -> Void) throws {
            var done = 0
            while done < records {
                let n = min(chunk, records - done)
                let got = try raw.withUnsafeMutableBytes { buffer in
                    do {
                        return try fd.read(
                            into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(n * record)]),
                            at: binHeaderSize + done * record)
                    } catch { throw readError(path, error) }
                }
                guard got == n * record else {
                    throw HPSError(.io, subject: path, "the dump shrank while it was being read")
                }
                raw.withUnsafeBytes { source in
                    values.withUnsafeMutableBytes { target in
                        for i in 0..<n {
                            let at = i * record
                            keys[i] = decodeKey(UnsafeRawBufferPointer(rebasing: source[at..<(at + keySize)]))
                            (target.baseAddress! + i * valueSize).copyMemory(
                                from: source.baseAddress! + at + keySize, byteCount: valueSize)
                        }
                    }
                }
                try body(n)
                done += n
            }
        }
        if let member {
            // Every key must fit the fused key space before anything is inserted.
            try forEachChunk { n in
                for key in keys[0..<n] where !member.keySpace.fits(key) {
                    throw member.keySpace.rangeError(key: key, table: member.memberTable, file: path)
                }
            }
        }
        var tagged = member == nil ? [] : [Int64](repeating: 0, count: keys.count)
        try forEachChunk { n in
            if let member {
                try keys.withUnsafeBufferPointer { k in
                    try tagged.withUnsafeMutableBufferPointer { t in
                        try member.tag(UnsafeBufferPointer(rebasing: k[0..<n]), file: path, into: t.baseAddress!)
                    }
                }
            }
            try (member == nil ? keys : tagged).withUnsafeBufferPointer { k in
                try values.withUnsafeBytes { v in
                    _ = try db.insert(
                        table: table, keys: UnsafeBufferPointer(rebasing: k[0..<n]),
                        values: UnsafeRawBufferPointer(rebasing: v[0..<(n * valueSize)]), valueSize: valueSize)
                }
            }
        }
        return records
    }

    // MARK: .sst

    /// The order of SST keys: bytewise over the little-endian key bytes.
    @inline(__always)
    static func sstOrder(_ key: Int64, keySize: Int) -> UInt64 {
        keySize == 8 ? UInt64(bitPattern: key).byteSwapped : UInt64(UInt32(truncatingIfNeeded: key).byteSwapped)
    }

    private static func dumpSST(_ db: any Database, table: String, member: FusedTableMember?, to path: String, keySize: Int) throws -> Int {
        let writer = RocksNative.SstWriter()
        do { try writer.open(path) } catch {
            throw HPSError(.io, subject: path, "cannot create the SST file", underlying: error.message, cause: error)
        }
        var entries = 0
        var valueSize = -1
        var keyBytes: [UInt8] = []
        func put(_ key: Int64, _ value: UnsafeRawBufferPointer) throws {
            keyBytes.removeAll(keepingCapacity: true)
            try appendKey(key, size: keySize, to: &keyBytes, table: table)
            try keyBytes.withUnsafeBytes { k in
                do { try writer.put(key: k, value: value) } catch {
                    throw HPSError(.io, subject: path, "cannot write to the SST file", cause: error)
                }
            }
            entries += 1
        }
        func checkValueSize(_ size: Int) throws {
            if valueSize < 0 {
                valueSize = size
            } else if size != valueSize {
                throw HPSError(.database, subject: table, "holds values of \(valueSize) and of \(size) bytes; cannot dump it")
            }
        }

        if db is RocksDBDatabase {
            // RocksDB hands out its keys in bytewise order already: stream them. The keys of one member of
            // a fused table keep that order untagged (the tag replaces the sign extension of the key's top
            // bit, in the bytes compared last).
            var last: UInt64? = nil
            try db.forEachChunk(table: table, maxChunk: chunkRows) { keys, values, chunkValueSize in
                try checkValueSize(chunkValueSize)
                for i in 0..<keys.count {
                    guard let key = selected(keys[i], member) else { continue }
                    let order = sstOrder(key, keySize: keySize)
                    if let last, order <= last {
                        throw HPSError(.database, subject: table, "keys came out of RocksDB out of order; cannot write an SST file")
                    }
                    last = order
                    try put(key, UnsafeRawBufferPointer(rebasing: values[(i * chunkValueSize)..<((i + 1) * chunkValueSize)]))
                }
            }
        } else {
            // Other databases have no order: gather the table, then sort.
            var keys: [Int64] = []
            var values: [UInt8] = []
            try db.forEachChunk(table: table, maxChunk: chunkRows) { chunkKeys, chunkValues, chunkValueSize in
                try checkValueSize(chunkValueSize)
                guard let member else {
                    keys.append(contentsOf: chunkKeys)
                    values.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunkValues[0..<(chunkKeys.count * chunkValueSize)]))
                    return
                }
                for (i, fused) in chunkKeys.enumerated() {
                    guard let key = member.untag(fused) else { continue }
                    keys.append(key)
                    values.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunkValues[(i * chunkValueSize)..<((i + 1) * chunkValueSize)]))
                }
            }
            let order = keys.indices.sorted { sstOrder(keys[$0], keySize: keySize) < sstOrder(keys[$1], keySize: keySize) }
            try values.withUnsafeBytes { v in
                for i in order {
                    try put(keys[i], UnsafeRawBufferPointer(rebasing: v[(i * valueSize)..<((i + 1) * valueSize)]))
                }
            }
        }
        if member != nil && entries == 0 { return 0 }  // the caller names the member table
        guard entries > 0 else {
            throw HPSError(
                .invalidArgument, subject: table, "is empty or does not exist; an .sst dump needs at least one entry (a .bin dump does not)")
        }
        do { try writer.finish() } catch {
            throw HPSError(.io, subject: path, "cannot finish the SST file", underlying: error.message, cause: error)
        }
        return entries
    }

    private static func loadSST(
        into db: any Database, table: String, member: FusedTableMember?, from path: String, valueSize expected: Int?, keySize expectedKeySize: Int?
    ) throws -> Int {
        switch FileSystem.kind(path) {
        case .regular: break
        case nil: throw HPSError(.io, subject: path, "cannot open the dump", underlying: "No such file or directory")
        default: throw HPSError(.invalidDump, subject: path, "is not a regular file")
        }
        // The C API has no SST reader: ingest a copy into a scratch database and read it there.
        let scratch = try ScratchDatabase(source: path)
        do { try scratch.ingest(path) } catch {
            throw HPSError(.invalidDump, subject: path, "is not a readable RocksDB SST file", underlying: scratch.mentioningSource(error.message))
        }

        // Pass 1: check every entry before inserting anything.
        var entries = 0
        var keySize = -1
        var valueSize = -1
        try scratch.scan { key, value in
            if keySize < 0 {
                keySize = key.count
                valueSize = value.count
                guard keySize == 4 || keySize == 8 else {
                    throw HPSError(.invalidDump, subject: path, "has \(keySize)-byte keys; keys must be 4 or 8 bytes")
                }
                if let expectedKeySize, keySize != expectedKeySize {
                    throw HPSError(.invalidDump, subject: path, "has \(keySize)-byte keys, but \(expectedKeySize)-byte keys are expected")
                }
                guard valueSize > 0 else { throw HPSError(.invalidDump, subject: path, "has empty values") }
                if let expected, valueSize != expected {
                    throw HPSError(
                        .invalidDump, subject: path,
                        "has \(valueSize)-byte values, but table \(table) needs \(expected)-byte values (\(expected / 4) float32s)")
                }
            } else if key.count != keySize || value.count != valueSize {
                throw HPSError(
                    .invalidDump, subject: path,
                    "mixes entry sizes: \(keySize)+\(valueSize) bytes and \(key.count)+\(value.count) bytes")
            }
            if let member {
                let decoded = decodeKey(key)
                guard member.keySpace.fits(decoded) else {
                    throw member.keySpace.rangeError(key: decoded, table: member.memberTable, file: path)
                }
            }
            entries += 1
        }
        guard entries > 0 else { return 0 }

        // Pass 2: into the table.
        if let rocks = db as? RocksDBDatabase, keySize == 8, member == nil {
            try rocks.ingest(table: table, sstFile: path, entries: entries, valueSize: valueSize)
            return entries
        }
        var keys: [Int64] = []
        var values: [UInt8] = []
        keys.reserveCapacity(min(chunkRows, entries))
        values.reserveCapacity(min(chunkRows, entries) * valueSize)
        var tagged: [Int64] = member == nil ? [] : [Int64](repeating: 0, count: min(chunkRows, entries))
        func flush() throws {
            try keys.withUnsafeBufferPointer { k in
                try values.withUnsafeBytes { v in
                    guard let member else {
                        _ = try db.insert(table: table, keys: k, values: v, valueSize: valueSize)
                        return
                    }
                    try tagged.withUnsafeMutableBufferPointer { t in
                        try member.tag(k, file: path, into: t.baseAddress!)
                        _ = try db.insert(table: table, keys: UnsafeBufferPointer(rebasing: t[0..<k.count]), values: v, valueSize: valueSize)
                    }
                }
            }
            keys.removeAll(keepingCapacity: true)
            values.removeAll(keepingCapacity: true)
        }
        try scratch.scan { key, value in
            keys.append(decodeKey(key))
            values.append(contentsOf: value)
            if keys.count == chunkRows { try flush() }
        }
        if !keys.isEmpty { try flush() }
        return entries
    }

    /// A throwaway RocksDB directory used to read an SST file (`source`); its errors name `source`.
    private final class ScratchDatabase {
        let source: String
        let directory: String
        let options: OpaquePointer
        let readOptions: OpaquePointer
        let db: OpaquePointer
        let handles: [OpaquePointer]

        init(source: String) throws {
            self.source = source
            do {
                directory = try FileSystem.makeTemporaryDirectory(in: SystemInfo.temporaryDirectory, prefix: "hps-sst-")
            } catch {
                throw HPSError(
                    .io, subject: SystemInfo.temporaryDirectory, "cannot create a scratch directory to read an SST file",
                    cause: error)
            }
            options = RocksNative.makeOptions(createIfMissing: true, tuned: false, numThreads: 1, blockCacheMB: 0)
            readOptions = RocksNative.makeReadOptions(fillCache: false)
            do {
                (db, handles) = try RocksNative.open(options, path: directory, families: ["default"], readOnly: false)
            } catch {
                RocksNative.destroyOptions(options)
                RocksNative.destroyReadOptions(readOptions)
                FileTree.remove(directory)
                throw HPSError(.database, subject: directory, "cannot create a scratch database to read an SST file", underlying: error.message, cause: error)
            }
        }

        deinit {
            for handle in handles { RocksNative.destroyColumnFamilyHandle(handle) }
            RocksNative.close(db)
            RocksNative.destroyOptions(options)
            RocksNative.destroyReadOptions(readOptions)
            FileTree.remove(directory)
        }

        /// RocksDB's `message` with the path of the scratch copy replaced by the user's file.
        func mentioningSource(_ message: String) -> String {
            var text = ""
            var rest = Substring(message)
            // The copy is `<directory>/<number>.sst`; name the file the user gave instead.
            while let found = rest.firstRange(of: directory) {
                text += rest[..<found.lowerBound]
                var end = found.upperBound
                while end < rest.endIndex, rest[end] != " ", rest[end] != ":", rest[end] != "," { end = rest.index(after: end) }
                text += source
                rest = rest[end...]
            }
            text += rest
            return text
        }

        func ingest(_ file: String) throws(RocksStatus) {
            try RocksNative.ingest(db, family: nil, files: [file])
        }

        func scan(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws {
            let iterator = RocksNative.makeIterator(db, readOptions, family: nil)
            defer { RocksNative.destroyIterator(iterator) }
            RocksNative.seekToFirst(iterator)
            while RocksNative.isValid(iterator) {
                try body(RocksNative.key(iterator), RocksNative.value(iterator))
                RocksNative.next(iterator)
            }
            do { try RocksNative.iteratorStatus(iterator) } catch {
                throw HPSError(.invalidDump, subject: source, "is a corrupted RocksDB SST file: reading its entries failed", underlying: mentioningSource(error.message))
            }
        }
    }

    // MARK: Keys and errors

    /// The key `stored` is dumped as: itself for a whole table, its untagged key when it is a row of
    /// `member`, nil when it is another member's row.
    @inline(__always)
    static func selected(_ stored: Int64, _ member: FusedTableMember?) -> Int64? {
        guard let member else { return stored }
        return member.untag(stored)
    }

    /// Appends `key` as `size` little-endian bytes.
    static func appendKey(_ key: Int64, size: Int, to buffer: inout [UInt8], table: String) throws {
        if size == 8 {
            withUnsafeBytes(of: key.littleEndian) { buffer.append(contentsOf: $0) }
        } else {
            guard let narrow = UInt32(exactly: key) else {
                throw HPSError(.invalidArgument, subject: table, "key \(key) does not fit in a 4-byte (uint32) dump key")
            }
            withUnsafeBytes(of: narrow.littleEndian) { buffer.append(contentsOf: $0) }
        }
    }

    /// A 4- or 8-byte little-endian key; 4-byte keys are uint32 widened.
    @inline(__always)
    static func decodeKey(_ bytes: UnsafeRawBufferPointer) -> Int64 {
        bytes.count == 8
            ? Int64(littleEndian: bytes.loadUnaligned(as: Int64.self))
            : Int64(UInt32(littleEndian: bytes.loadUnaligned(as: UInt32.self)))
    }

    private static func writeAll(_ fd: OpenFile, _ bytes: [UInt8], at offset: Int, path: String) throws {
        try bytes.withUnsafeBytes { raw in
            do { try fd.write(raw, at: offset) } catch { throw writeError(path, error) }
        }
    }

    private static func writeError(_ path: String, _ error: any Error) -> HPSError {
        HPSError(.io, subject: path, "cannot write the dump", cause: error)
    }

    private static func readError(_ path: String, _ error: any Error) -> HPSError {
        HPSError(.io, subject: path, "cannot read the dump", cause: error)
    }
}
