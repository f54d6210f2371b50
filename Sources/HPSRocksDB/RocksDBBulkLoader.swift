import Dispatch
import HPS
import Synchronization

/// Fills an empty RocksDB table without the write path: rows are buffered (up to
/// ``RocksDBDatabase/bulkFileBytes`` per file), each full buffer is sorted by the bytewise order of the
/// 8 little-endian key bytes (RocksDB's default comparator), duplicates within it dropped (the last row
/// of a key wins), written as SST files with `SstFileWriter` and ingested with `IngestExternalFile`, which
/// moves (hard-links) them into the database. No memtable, no write-ahead log, no per-chunk MultiGet.
///
/// Files ingested later get newer sequence numbers, so a key repeated across buffers ends with its later
/// row. The number of distinct keys is counted exactly at ``finish()`` by merging the sorted key runs of
/// every buffer (8 bytes per row, kept in memory up to 8 Mi keys, spilled to the temporary directory
/// beyond that), so ``RocksDBDatabase/size(table:)`` stays exact.
///
/// The temporary files live in a directory `hps-bulk-load.XXXXXX` inside the database directory (the same
/// file system, so ingestion can link them); it is removed at ``finish()``, on ``cancel()``, when the
/// loader is released, and — after a crash — when the database is next opened for writing.
///
/// One thread at a time; nothing else may write to the table until ``finish()``.
final class RocksDBBulkLoader: BulkLoader {
    private let database: RocksDBDatabase
    private let family: RocksDBDatabase.ColumnFamily
    private let valueSize: Int
    private let rowsPerFile: Int
    private let writerOptions: OpaquePointer
    /// How many SST files one buffer may be split into, written concurrently (key ranges never overlap).
    private let parallelWriters: Int
    /// The most run keys kept in memory; beyond, runs go to files.
    private let keysInMemory: Int

    /// Rows waiting for the next file: keys (host order) and values.
    private let keys: UnsafeMutableBufferPointer<Int64>
    private let values: UnsafeMutableRawBufferPointer
    private var buffered = 0
    /// Sort scratch: byte-swapped keys (their numeric order is the bytewise order of the little-endian
    /// bytes) and row indices, twice for the radix sort's ping-pong.
    private let sortKeys: UnsafeMutableBufferPointer<UInt64>
    private let sortRows: UnsafeMutableBufferPointer<UInt32>
    private let spareKeys: UnsafeMutableBufferPointer<UInt64>
    private let spareRows: UnsafeMutableBufferPointer<UInt32>

    /// The sorted distinct (byte-swapped) keys of every buffer written, for the exact count.
    private var runs: [KeyRun] = []
    private var runKeysInMemory = 0
    private var directory: String?
    private var files = 0
    private var done = false
    private var completed = false

    enum KeyRun {
        case memory([UInt64])
        case file(path: String, count: Int)

        var count: Int {
            switch self {
            case .memory(let keys): keys.count
            case .file(_, let count): count
            }
        }
    }

    init(
        database: RocksDBDatabase, family: RocksDBDatabase.ColumnFamily, valueSize: Int, rowsPerFile: Int, parallelWriters: Int,
        keysInMemory: Int
    ) {
        self.keysInMemory = keysInMemory
        self.database = database
        self.family = family
        self.valueSize = valueSize
        self.rowsPerFile = max(1, min(rowsPerFile, Int(UInt32.max)))
        self.parallelWriters = max(1, parallelWriters)
        writerOptions = database.makeSstWriterOptions()
        keys = .allocate(capacity: self.rowsPerFile)
        values = .allocate(byteCount: self.rowsPerFile * valueSize, alignment: 16)
        sortKeys = .allocate(capacity: self.rowsPerFile)
        sortRows = .allocate(capacity: self.rowsPerFile)
        spareKeys = .allocate(capacity: self.rowsPerFile)
        spareRows = .allocate(capacity: self.rowsPerFile)
        database.setBulkLoading(family, true)
    }

    deinit {
        if !done { cancel() }
        keys.deallocate()
        values.deallocate()
        sortKeys.deallocate()
        sortRows.deallocate()
        spareKeys.deallocate()
        spareRows.deallocate()
        RocksNative.destroyOptions(writerOptions)
    }

    // MARK: BulkLoader

    func add(keys newKeys: UnsafeBufferPointer<Int64>, values newValues: UnsafeRawBufferPointer) throws {
        guard !done else { throw finishedError() }
        guard newValues.count >= newKeys.count * valueSize else {
            throw HPSError(
                .invalidArgument, subject: family.name,
                "the values buffer holds \(newValues.count) bytes; \(newKeys.count) rows of \(valueSize) bytes need \(newKeys.count * valueSize)")
        }
        var start = 0
        while start < newKeys.count {
            let n = min(rowsPerFile - buffered, newKeys.count - start)
            (keys.baseAddress! + buffered).update(from: newKeys.baseAddress! + start, count: n)
            (values.baseAddress! + buffered * valueSize).copyMemory(from: newValues.baseAddress! + start * valueSize, byteCount: n * valueSize)
            buffered += n
            start += n
            if buffered == rowsPerFile { try writeBuffer() }
        }
    }

    func finish() throws -> Int {
        guard !done else { throw finishedError() }
        do {
            if buffered > 0 { try writeBuffer() }
            let count = try countDistinctKeys()
            try database.completeBulkLoad(family, count: count, valueSize: valueSize)
            completed = true
            cancel()
            return count
        } catch {
            cancel()
            throw error
        }
    }

    func cancel() {
        if !done {
            database.setBulkLoading(family, false)
            // The table holds an unknown part of the rows: the next size(table:) counts them.
            if !completed { database.forgetCount(family) }
        }
        done = true
        buffered = 0
        runs = []
        if let directory { FileTree.remove(directory) }
        directory = nil
    }

    // MARK: Writing files

    /// Sorts the buffered rows, drops all but the last row of each key, writes them as SST files and
    /// ingests those; keeps the sorted distinct keys for the count.
    private func writeBuffer() throws {
        let n = buffered
        buffered = 0
        guard n > 0 else { return }
        let distinct = sortAndDeduplicate(n)
        let directory = try temporaryDirectory()
        // Split into key ranges written concurrently; each part at least 64 Ki rows.
        let parts = max(1, min(parallelWriters, distinct / 65536))
        var paths: [String] = []
        for _ in 0..<parts {
            paths.append(directory + "/\(files).sst")
            files += 1
        }
        let bounds = (0...parts).map { distinct * $0 / parts }
        let failures = Failures(parts)
        let keyBytes = UnsafeRawPointer(keys.baseAddress!)
        let valueBytes = UnsafeRawPointer(values.baseAddress!)
        let rows = UnsafeBufferPointer(sortRows)
        let options = writerOptions
        let valueSize = valueSize
        let write = { (part: Int) in
            let writer = RocksNative.SstWriter(options: options)
            do {
                try writer.open(paths[part])
                try writer.put(
                    keys: keyBytes, values: valueBytes, valueSize: valueSize,
                    order: UnsafeBufferPointer(rebasing: rows[bounds[part]..<bounds[part + 1]]))
                try writer.finish()
            } catch {
                failures.set(part, error.message)
            }
        }
        if parts == 1 {
            write(0)
        } else {
            let task = UnsafeTransfer(write)  // the parts touch disjoint rows; the call waits for every part
            DispatchQueue.concurrentPerform(iterations: parts) { task.value($0) }
        }
        if let message = failures.first {
            for path in paths { FileSystem.remove(path) }
            throw HPSError(.database, subject: database.path, "cannot write an SST file for table \(family.name)", underlying: message)
        }
        try database.ingestBulkFiles(family, paths)
        try keepRun(UnsafeBufferPointer(rebasing: sortKeys[0..<distinct]))
    }

    /// Sorts rows `0..<n` by the bytewise order of their keys' little-endian bytes (a stable LSD radix
    /// sort on the byte-swapped keys, skipping bytes all keys share), then keeps the last row of each key.
    /// Afterwards `sortKeys[0..<m]` holds the distinct byte-swapped keys in order and `sortRows[0..<m]`
    /// their rows; returns m.
    private func sortAndDeduplicate(_ n: Int) -> Int {
        var src = (keys: sortKeys, rows: sortRows)
        var dst = (keys: spareKeys, rows: spareRows)
        var counts = [Int](repeating: 0, count: 8 * 256)
        counts.withUnsafeMutableBufferPointer { counts in
            for i in 0..<n {
                let key = UInt64(bitPattern: keys[i]).byteSwapped
                src.keys[i] = key
                src.rows[i] = UInt32(truncatingIfNeeded: i)
                for byte in 0..<8 { counts[byte * 256 + Int((key >> (byte * 8)) & 0xFF)] += 1 }
            }
            for byte in 0..<8 {
                let histogram = UnsafeMutableBufferPointer(rebasing: counts[(byte * 256)..<((byte + 1) * 256)])
                if histogram.contains(n) { continue }  // every key has the same byte here
                var sum = 0
                for b in 0..<256 {
                    let c = histogram[b]
                    histogram[b] = sum
                    sum += c
                }
                let shift = UInt64(byte * 8)
                for i in 0..<n {
                    let key = src.keys[i]
                    let b = Int((key >> shift) & 0xFF)
                    let at = histogram[b]
                    histogram[b] = at + 1
                    dst.keys[at] = key
                    dst.rows[at] = src.rows[i]
                }
                swap(&src, &dst)
            }
        }
        // Keep the last of equal keys (the sort is stable, so that is the row added last).
        var m = 0
        for i in 0..<n where i + 1 == n || src.keys[i + 1] != src.keys[i] {
            sortKeys[m] = src.keys[i]
            sortRows[m] = src.rows[i]
            m += 1
        }
        return m
    }

    private func temporaryDirectory() throws -> String {
        if let directory { return directory }
        do {
            let made = try FileSystem.makeTemporaryDirectory(in: database.path, prefix: RocksDBDatabase.bulkDirectoryPrefix)
            directory = made
            return made
        } catch {
            throw HPSError(.io, subject: database.path, "cannot create a directory for SST files", cause: error)
        }
    }

    // MARK: Counting

    private func keepRun(_ sorted: UnsafeBufferPointer<UInt64>) throws {
        guard !sorted.isEmpty else { return }
        if runKeysInMemory + sorted.count <= keysInMemory {
            runs.append(.memory(Array(sorted)))
            runKeysInMemory += sorted.count
            return
        }
        let path = try temporaryDirectory() + "/keys-\(runs.count)"
        do {
            try OpenFile.create(path).write(UnsafeRawBufferPointer(sorted), at: 0)
        } catch {
            throw HPSError(.io, subject: path, "cannot write the keys of a bulk load", cause: error)
        }
        runs.append(.file(path: path, count: sorted.count))
    }

    /// The number of distinct keys over every run: their sum when there is one run, else a k-way merge.
    private func countDistinctKeys() throws -> Int {
        if runs.count <= 1 { return runs.first?.count ?? 0 }
        var cursors: [RunCursor] = []
        defer { for c in cursors { c.close() } }
        for run in runs { cursors.append(try RunCursor(run)) }
        // A binary min-heap of cursor indices by their current key.
        var heap = cursors.indices.filter { cursors[$0].valid }
        func less(_ a: Int, _ b: Int) -> Bool { cursors[heap[a]].key < cursors[heap[b]].key }
        func down(_ start: Int) {
            var i = start
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && less(l, m) { m = l }
                if r < heap.count && less(r, m) { m = r }
                if m == i { return }
                heap.swapAt(i, m)
                i = m
            }
        }
        for i in stride(from: heap.count / 2 - 1, through: 0, by: -1) { down(i) }
        var count = 0
        var last: UInt64? = nil
        while let top = heap.first {
            let cursor = cursors[top]
            let key = cursor.key
            if key != last {
                count += 1
                last = key
            }
            try cursor.advance()
            if !cursor.valid {
                heap.swapAt(0, heap.count - 1)
                heap.removeLast()
            }
            if !heap.isEmpty { down(0) }
        }
        return count
    }

    /// Reads one sorted key run, from memory or through a buffer from its file.
    final class RunCursor {
        private var buffer: [UInt64]
        private var position = 0
        private var file: OpenFile?
        private var path = ""
        private var offset = 0
        private var remaining = 0
        private(set) var key: UInt64 = 0
        private(set) var valid = false

        init(_ run: KeyRun) throws {
            switch run {
            case .memory(let keys):
                buffer = keys
            case .file(let path, let count):
                self.path = path
                buffer = []
                remaining = count
                do { file = try OpenFile.openForReading(path) } catch {
                    throw HPSError(.io, subject: path, "cannot read the keys of a bulk load", cause: error)
                }
                try refill()
            }
            valid = position < buffer.count
            if valid { key = buffer[position] }
        }

        func close() { file = nil }

        @inline(__always)
        func advance() throws {
            position += 1
            if position == buffer.count && remaining > 0 { try refill() }
            valid = position < buffer.count
            if valid { key = buffer[position] }
        }

        private func refill() throws {
            let n = min(remaining, 1 << 16)
            buffer = [UInt64](repeating: 0, count: n)
            let read = try buffer.withUnsafeMutableBytes { bytes in
                do { return try file?.read(into: bytes, at: offset) ?? 0 } catch {
                    throw HPSError(.io, subject: path, "cannot read the keys of a bulk load", cause: error)
                }
            }
            guard read == n * 8 else { throw HPSError(.io, subject: path, "the key file of a bulk load is shorter than written") }
            offset += read
            remaining -= n
            position = 0
        }
    }

    /// The first error of the concurrent SST writers.
    final class Failures: Sendable {
        private let messages: Mutex<[String?]>
        init(_ count: Int) { messages = Mutex(Array(repeating: nil, count: count)) }
        func set(_ part: Int, _ message: String) { messages.withLock { $0[part] = message } }
        var first: String? { messages.withLock { $0.compactMap { $0 }.first } }
    }

    private func finishedError() -> HPSError {
        HPSError(.invalidArgument, subject: family.name, "the bulk load of this table has already finished or was cancelled")
    }
}

extension Error {
    fileprivate var message: String { (self as? RocksStatus)?.message ?? "\(self)" }
}
