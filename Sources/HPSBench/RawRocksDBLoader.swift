import CRocksDB
import HPS
import HPSRocksDB

/// The load baseline of `hps bench persistent`: rows written into a fresh RocksDB directory with bare C
/// calls — one `WriteBatch` of `put_cf` per chunk, the same tuned options as ``RocksDBDatabase`` — and
/// nothing else (no entry counts, no check for keys already present, no fingerprint).
///
/// Like ``RawRocksDBReader`` it calls the C API directly on purpose: it measures what RocksDB itself
/// costs, so the gap to ``ParameterServer/loadTables(progress:)`` is the wrapper's. With `wal: false`
/// the batches skip the write-ahead log and the table is flushed to SST files at the end (what a
/// crash-safe load could do, since a load only counts once its fingerprint is recorded after a flush).
public enum RawRocksDBLoader {
    /// How the rows go in.
    public enum Method: Sendable {
        /// One `WriteBatch` per chunk, with or without the write-ahead log (flushed at the end without).
        case writeBatch(wal: Bool)
        /// Each chunk sorted, written as an SST file with `SstFileWriter` and ingested with
        /// `IngestExternalFile` (no memtable, no log; the files land in level 0).
        case ingestSortedChunks
    }

    /// Creates the database at `path` (which must not hold one), writes every chunk `rows` hands out
    /// into column family `table` with `method`, and closes it.
    /// - Parameter rows: calls its argument with successive `(keys, values)` chunks of `valueSize`-byte rows.
    /// - Throws: ``HPSError`` `.database` with RocksDB's message when the database cannot be created or written;
    ///   whatever `rows` throws.
    public static func load(
        path: String, table: String, numThreads: Int = 16, valueSize: Int, method: Method,
        rows: ((UnsafeBufferPointer<Int64>, UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        let wal: Bool
        switch method {
        case .writeBatch(let on): wal = on
        case .ingestSortedChunks: wal = true
        }
        let options = RocksNative.makeOptions(
            createIfMissing: true, tuned: true, numThreads: numThreads, blockCacheMB: RocksDBDatabase.blockCacheMB)
        defer { RocksNative.destroyOptions(options) }
        let opened: (db: OpaquePointer, handles: [OpaquePointer])
        do {
            opened = try RocksNative.open(options, path: path, families: ["default"], readOnly: false)
        } catch {
            throw RocksDBDatabase.openError(path: path, error)
        }
        let db = opened.db
        defer {
            for handle in opened.handles { rocksdb_column_family_handle_destroy(handle) }
            rocksdb_close(db)
        }
        var error: UnsafeMutablePointer<CChar>? = nil
        func check(_ what: String) throws {
            if let message = error {
                error = nil
                defer { rocksdb_free(message) }
                throw HPSError(.database, subject: path, what, underlying: String(cString: message))
            }
        }
        let family = rocksdb_create_column_family(db, options, table, &error)
        try check("cannot create table \(table)")
        defer { if let family { rocksdb_column_family_handle_destroy(family) } }
        let writeOptions = rocksdb_writeoptions_create()!
        defer { rocksdb_writeoptions_destroy(writeOptions) }
        if !wal { rocksdb_writeoptions_disable_WAL(writeOptions, 1) }
        let batch = rocksdb_writebatch_create()!
        defer { rocksdb_writebatch_destroy(batch) }

        if case .ingestSortedChunks = method {
            let scratch = path + ".sst-chunks"
            do { try FileSystem.makeDirectories(scratch) } catch {
                throw HPSError(.io, subject: scratch, "cannot create a directory for SST files", cause: error)
            }
            defer { FileTree.remove(scratch) }
            var chunk = 0
            var order: [Int] = []
            try rows { keys, values in
                // Bytewise order of the little-endian key bytes = numeric order of the byte-swapped keys.
                order = Array(0..<keys.count)
                order.sort { UInt64(bitPattern: keys[$0]).byteSwapped < UInt64(bitPattern: keys[$1]).byteSwapped }
                let file = scratch + "/\(chunk).sst"
                chunk += 1
                let writer = RocksNative.SstWriter()
                do {
                    try writer.open(file)
                    for (j, i) in order.enumerated() {
                        // Equal keys: keep the last row (as a write would); the writer needs strictly increasing keys.
                        if j + 1 < order.count && keys[order[j + 1]] == keys[i] { continue }
                        try withUnsafeBytes(of: keys[i].littleEndian) { key in
                            try writer.put(key: key, value: UnsafeRawBufferPointer(rebasing: values[(i * valueSize)..<((i + 1) * valueSize)]))
                        }
                    }
                    try writer.finish()
                    try RocksNative.ingest(db, family: family, files: [file])
                } catch let status as RocksStatus {
                    throw HPSError(.database, subject: path, "cannot ingest \(file)", underlying: status.message)
                }
                FileSystem.remove(file)
            }
            return
        }
        try rows { keys, values in
            rocksdb_writebatch_clear(batch)
            let keyBytes = UnsafeRawPointer(keys.baseAddress!)  // little-endian hosts: the keys' own bytes
            let valueBytes = values.baseAddress!
            for i in 0..<keys.count {
                rocksdb_writebatch_put_cf(
                    batch, family, (keyBytes + i * 8).assumingMemoryBound(to: CChar.self), 8,
                    (valueBytes + i * valueSize).assumingMemoryBound(to: CChar.self), valueSize)
            }
            rocksdb_write(db, writeOptions, batch, &error)
            try check("cannot write to table \(table)")
        }
        if !wal {
            let flushOptions = rocksdb_flushoptions_create()!
            defer { rocksdb_flushoptions_destroy(flushOptions) }
            rocksdb_flushoptions_set_wait(flushOptions, 1)
            rocksdb_flush_cf(db, flushOptions, family, &error)
            try check("cannot flush table \(table)")
        }
    }
}
