import CRocksDB
import HPS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// Every RocksDB C API call of HPSRocksDB lives in this file (`RocksNative`); files and directories go
// through HPS's `OpenFile`/`FileSystem` (swift-system). Each wrapper is thin: it converts Swift values to
// the C shapes, turns `char** errptr` into a thrown status, and frees what the C side allocated.

/// The text of a failed RocksDB call (what RocksDB put into `errptr`), e.g. `IO error: lock …`.
package struct RocksStatus: Error, CustomStringConvertible {
    package var message: String
    package var description: String { message }
}

/// Thin wrappers over the RocksDB C API. Handles are `OpaquePointer`s owned by the caller.
package enum RocksNative {
    /// Runs `body` with an `errptr` and throws its message, if RocksDB set one.
    @inline(__always)
    static func check<T>(_ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> T) throws(RocksStatus) -> T {
        var error: UnsafeMutablePointer<CChar>? = nil
        let result = body(&error)
        if let error {
            let message = String(cString: error)
            rocksdb_free(error)
            throw RocksStatus(message: message)
        }
        return result
    }

    // MARK: Options

    /// Database and column family options. `tuned` applies HPS's choices: point-lookup tuning with a block
    /// cache of `blockCacheMB`, level-style compaction, `numThreads` background threads.
    package static func makeOptions(createIfMissing: Bool, tuned: Bool, numThreads: Int, blockCacheMB: UInt64) -> OpaquePointer {
        let options = rocksdb_options_create()!
        rocksdb_options_set_create_if_missing(options, createIfMissing ? 1 : 0)
        rocksdb_options_set_create_missing_column_families(options, 1)
        if tuned {
            rocksdb_options_optimize_for_point_lookup(options, blockCacheMB)
            rocksdb_options_optimize_level_style_compaction(options, 512 << 20)
            rocksdb_options_increase_parallelism(options, Int32(clamping: max(1, numThreads)))
        }
        rocksdb_options_set_keep_log_file_num(options, 4)
        return options
    }

    package static func destroyOptions(_ options: OpaquePointer) { rocksdb_options_destroy(options) }

    /// A copy of `options` for writing SST files that are ingested right away: the same table format
    /// (bloom filters, block index) and comparator, no compression on any level (vectors of floats barely
    /// compress, and lookups then skip decompression).
    static func makeSstWriterOptions(copying options: OpaquePointer) -> OpaquePointer {
        let copy = rocksdb_options_create_copy(options)!
        rocksdb_options_set_compression(copy, Int32(rocksdb_no_compression))
        let levels = [Int32](repeating: Int32(rocksdb_no_compression), count: 7)
        levels.withUnsafeBufferPointer { rocksdb_options_set_compression_per_level(copy, $0.baseAddress, $0.count) }
        return copy
    }

    static func makeReadOptions(fillCache: Bool) -> OpaquePointer {
        let options = rocksdb_readoptions_create()!
        rocksdb_readoptions_set_fill_cache(options, fillCache ? 1 : 0)
        return options
    }

    static func destroyReadOptions(_ options: OpaquePointer) { rocksdb_readoptions_destroy(options) }

    static func makeWriteOptions(sync: Bool) -> OpaquePointer {
        let options = rocksdb_writeoptions_create()!
        rocksdb_writeoptions_set_sync(options, sync ? 1 : 0)
        return options
    }

    static func destroyWriteOptions(_ options: OpaquePointer) { rocksdb_writeoptions_destroy(options) }

    // MARK: Open, close, column families

    package static func listColumnFamilies(_ options: OpaquePointer, path: String) throws(RocksStatus) -> [String] {
        var count = 0
        var error: UnsafeMutablePointer<CChar>? = nil
        // RocksDB returns an allocated (empty) list even when it fails: free it before throwing.
        let list = rocksdb_list_column_families(options, path, &count, &error)
        defer { if let list { rocksdb_list_column_families_destroy(list, count) } }
        if let error {
            let message = String(cString: error)
            rocksdb_free(error)
            throw RocksStatus(message: message)
        }
        guard let list else { return [] }
        var names: [String] = []
        for i in 0..<count { if let name = list[i] { names.append(String(cString: name)) } }
        return names
    }

    /// Opens `path` with every family in `families` (all with `options`); returns the database and one
    /// handle per family, in order.
    package static func open(
        _ options: OpaquePointer, path: String, families: [String], readOnly: Bool
    ) throws(RocksStatus) -> (db: OpaquePointer, handles: [OpaquePointer]) {
        let names = families.map { strdup($0) }
        defer { for name in names { free(name) } }
        let namePointers: [UnsafePointer<CChar>?] = names.map { UnsafePointer($0) }
        let familyOptions = [OpaquePointer?](repeating: options, count: families.count)
        var handles = [OpaquePointer?](repeating: nil, count: families.count)
        let count = Int32(families.count)
        let db = try handles.withUnsafeMutableBufferPointer { out throws(RocksStatus) in
            try check { error in
                readOnly
                    ? rocksdb_open_for_read_only_column_families(
                        options, path, count, namePointers, familyOptions, out.baseAddress, 0, error)
                    : rocksdb_open_column_families(options, path, count, namePointers, familyOptions, out.baseAddress, error)
            }
        }
        guard let db else { throw RocksStatus(message: "RocksDB returned no database") }
        return (db, handles.map { $0! })
    }

    static func close(_ db: OpaquePointer) { rocksdb_close(db) }

    static func createColumnFamily(_ db: OpaquePointer, options: OpaquePointer, name: String) throws(RocksStatus) -> OpaquePointer {
        let handle = try check { rocksdb_create_column_family(db, options, name, $0) }
        guard let handle else { throw RocksStatus(message: "RocksDB returned no column family handle") }
        return handle
    }

    static func dropColumnFamily(_ db: OpaquePointer, _ handle: OpaquePointer) throws(RocksStatus) {
        try check { rocksdb_drop_column_family(db, handle, $0) }
    }

    static func destroyColumnFamilyHandle(_ handle: OpaquePointer) { rocksdb_column_family_handle_destroy(handle) }

    // MARK: Single keys in the default column family (metadata)

    static func get(_ db: OpaquePointer, _ readOptions: OpaquePointer, key: String) throws(RocksStatus) -> [UInt8]? {
        var length = 0
        let value = try check { rocksdb_get(db, readOptions, key, key.utf8.count, &length, $0) }
        guard let value else { return nil }
        defer { rocksdb_free(value) }
        return Array(UnsafeRawBufferPointer(start: value, count: length))
    }

    static func put(_ db: OpaquePointer, _ writeOptions: OpaquePointer, key: String, value: [UInt8]) throws(RocksStatus) {
        let chars = value.map { CChar(bitPattern: $0) }
        try check { rocksdb_put(db, writeOptions, key, key.utf8.count, chars, chars.count, $0) }
    }

    static func delete(_ db: OpaquePointer, _ writeOptions: OpaquePointer, key: String) throws(RocksStatus) {
        try check { rocksdb_delete(db, writeOptions, key, key.utf8.count, $0) }
    }

    // MARK: Write batches

    static func makeBatch() -> OpaquePointer { rocksdb_writebatch_create()! }
    static func destroyBatch(_ batch: OpaquePointer) { rocksdb_writebatch_destroy(batch) }
    static func clearBatch(_ batch: OpaquePointer) { rocksdb_writebatch_clear(batch) }

    /// Adds a put to `batch`, into `family` or (nil) the default column family.
    @inline(__always)
    static func batchPut(_ batch: OpaquePointer, family: OpaquePointer?, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let k = key.baseAddress!.assumingMemoryBound(to: CChar.self)
        let v = value.baseAddress?.assumingMemoryBound(to: CChar.self) ?? k
        if let family {
            rocksdb_writebatch_put_cf(batch, family, k, key.count, v, value.count)
        } else {
            rocksdb_writebatch_put(batch, k, key.count, v, value.count)
        }
    }

    @inline(__always)
    static func batchDelete(_ batch: OpaquePointer, family: OpaquePointer?, key: UnsafeRawBufferPointer) {
        let k = key.baseAddress!.assumingMemoryBound(to: CChar.self)
        if let family {
            rocksdb_writebatch_delete_cf(batch, family, k, key.count)
        } else {
            rocksdb_writebatch_delete(batch, k, key.count)
        }
    }

    static func write(_ db: OpaquePointer, _ writeOptions: OpaquePointer, _ batch: OpaquePointer) throws(RocksStatus) {
        try check { rocksdb_write(db, writeOptions, batch, $0) }
    }

    static func flushWAL(_ db: OpaquePointer, sync: Bool) throws(RocksStatus) {
        try check { rocksdb_flush_wal(db, sync ? 1 : 0, $0) }
    }

    /// Flushes the memtable of each of `families` (nil: the default column family) to SST files and waits,
    /// so that a reopen does not replay their writes from the write-ahead log.
    static func flush(_ db: OpaquePointer, families: [OpaquePointer?]) throws(RocksStatus) {
        let options = rocksdb_flushoptions_create()!
        defer { rocksdb_flushoptions_destroy(options) }
        rocksdb_flushoptions_set_wait(options, 1)
        for family in families {
            try check { error in
                if let family {
                    rocksdb_flush_cf(db, options, family, error)
                } else {
                    rocksdb_flush(db, options, error)
                }
            }
        }
    }

    /// Changes options of `family` while the database is open (`SetOptions`), e.g.
    /// `disable_auto_compactions`. Not kept: the next open uses the options it is given.
    static func setOptions(_ db: OpaquePointer, family: OpaquePointer, _ settings: [(String, String)]) throws(RocksStatus) {
        let keys = settings.map { strdup($0.0) }
        let values = settings.map { strdup($0.1) }
        defer { for p in keys + values { free(p) } }
        let keyPointers: [UnsafePointer<CChar>?] = keys.map { UnsafePointer($0) }
        let valuePointers: [UnsafePointer<CChar>?] = values.map { UnsafePointer($0) }
        try check { rocksdb_set_options_cf(db, family, Int32(settings.count), keyPointers, valuePointers, $0) }
    }

    /// A property of `family` (e.g. `rocksdb.num-files-at-level0`) as text; nil when RocksDB has none.
    static func property(_ db: OpaquePointer, family: OpaquePointer, _ name: String) -> String? {
        guard let value = rocksdb_property_value_cf(db, family, name) else { return nil }
        defer { rocksdb_free(value) }
        return String(cString: value)
    }

    // MARK: MultiGet

    /// Looks up `count` key slices of `keyLength` bytes each, stored back to back at `keys`, in `family`;
    /// then calls `body(i, value)` for each key, `value` nil when absent. The value bytes are valid only
    /// during the call. Throws the first per-key error RocksDB reports (other than "not found").
    static func multiGet(
        _ db: OpaquePointer, _ readOptions: OpaquePointer, family: OpaquePointer,
        keys: UnsafeRawPointer, keyLength: Int, count: Int,
        _ body: (Int, UnsafeRawBufferPointer?) throws -> Void
    ) throws {
        guard count > 0 else { return }
        try withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: count) { keyPointers in
            try withUnsafeTemporaryAllocation(of: Int.self, capacity: count) { keySizes in
                try withUnsafeTemporaryAllocation(of: OpaquePointer?.self, capacity: count) { values in
                    try withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<CChar>?.self, capacity: count) { errors in
                        for i in 0..<count {
                            keyPointers[i] = (keys + i * keyLength).assumingMemoryBound(to: CChar.self)
                            keySizes[i] = keyLength
                        }
                        rocksdb_batched_multi_get_cf(
                            db, readOptions, family, count, keyPointers.baseAddress, keySizes.baseAddress, values.baseAddress,
                            errors.baseAddress, false)
                        defer {
                            for i in 0..<count {
                                if let value = values[i] { rocksdb_pinnableslice_destroy(value) }
                                if let error = errors[i] { rocksdb_free(error) }
                            }
                        }
                        for i in 0..<count {
                            if let error = errors[i] { throw RocksStatus(message: String(cString: error)) }
                        }
                        for i in 0..<count {
                            if let value = values[i] {
                                var length = 0
                                let bytes = rocksdb_pinnableslice_value(value, &length)
                                try body(i, UnsafeRawBufferPointer(start: bytes, count: length))
                            } else {
                                try body(i, nil)
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: Iterators

    /// An iterator over `family` (nil: the default column family).
    static func makeIterator(_ db: OpaquePointer, _ readOptions: OpaquePointer, family: OpaquePointer?) -> OpaquePointer {
        if let family { return rocksdb_create_iterator_cf(db, readOptions, family)! }
        return rocksdb_create_iterator(db, readOptions)!
    }

    static func destroyIterator(_ iterator: OpaquePointer) { rocksdb_iter_destroy(iterator) }
    static func seekToFirst(_ iterator: OpaquePointer) { rocksdb_iter_seek_to_first(iterator) }
    static func isValid(_ iterator: OpaquePointer) -> Bool { rocksdb_iter_valid(iterator) != 0 }
    static func next(_ iterator: OpaquePointer) { rocksdb_iter_next(iterator) }

    static func key(_ iterator: OpaquePointer) -> UnsafeRawBufferPointer {
        var length = 0
        let bytes = rocksdb_iter_key(iterator, &length)
        return UnsafeRawBufferPointer(start: bytes, count: length)
    }

    static func value(_ iterator: OpaquePointer) -> UnsafeRawBufferPointer {
        var length = 0
        let bytes = rocksdb_iter_value(iterator, &length)
        return UnsafeRawBufferPointer(start: bytes, count: length)
    }

    static func iteratorStatus(_ iterator: OpaquePointer) throws(RocksStatus) {
        try check { rocksdb_iter_get_error(iterator, $0) }
    }

    // MARK: SST files

    /// An `SstFileWriter` with default options (bytewise key order), and what it borrows.
    package final class SstWriter {
        let writer: OpaquePointer
        private let envOptions: OpaquePointer
        private let options: OpaquePointer

        /// A writer with `options` (copied; nil: RocksDB's defaults).
        package init(options source: OpaquePointer? = nil) {
            envOptions = rocksdb_envoptions_create()!
            options = source.map { rocksdb_options_create_copy($0)! } ?? rocksdb_options_create()!
            writer = rocksdb_sstfilewriter_create(envOptions, options)!
        }

        deinit {
            rocksdb_sstfilewriter_destroy(writer)
            rocksdb_options_destroy(options)
            rocksdb_envoptions_destroy(envOptions)
        }

        package func open(_ path: String) throws(RocksStatus) {
            try RocksNative.check { rocksdb_sstfilewriter_open(writer, path, $0) }
        }

        /// Appends an entry; keys must come in strictly increasing bytewise order.
        package func put(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws(RocksStatus) {
            let k = key.baseAddress!.assumingMemoryBound(to: CChar.self)
            let v = value.baseAddress?.assumingMemoryBound(to: CChar.self) ?? k
            try RocksNative.check { rocksdb_sstfilewriter_put(writer, k, key.count, v, value.count, $0) }
        }

        /// Appends one entry per element `r` of `order`, in that order: the 8-byte key at `keys + 8 × r`
        /// and the value at `values + valueSize × r`; the keys so taken must be strictly increasing bytewise.
        func put(
            keys: UnsafeRawPointer, values: UnsafeRawPointer, valueSize: Int, order: UnsafeBufferPointer<UInt32>
        ) throws(RocksStatus) {
            var error: UnsafeMutablePointer<CChar>? = nil
            for i in order {
                let row = Int(i)
                rocksdb_sstfilewriter_put(
                    writer, (keys + row * 8).assumingMemoryBound(to: CChar.self), 8,
                    (values + row * valueSize).assumingMemoryBound(to: CChar.self), valueSize, &error)
                if let message = error {
                    defer { rocksdb_free(message) }
                    throw RocksStatus(message: String(cString: message))
                }
            }
        }

        package func finish() throws(RocksStatus) {
            try RocksNative.check { rocksdb_sstfilewriter_finish(writer, $0) }
        }
    }

    /// Ingests SST files into `family` (nil: the default column family). With `move` the files are
    /// hard-linked into the database and their names removed (they must be on the database's file system);
    /// without, they are copied and stay.
    package static func ingest(_ db: OpaquePointer, family: OpaquePointer?, files: [String], move: Bool = false) throws(RocksStatus) {
        let options = rocksdb_ingestexternalfileoptions_create()!
        defer { rocksdb_ingestexternalfileoptions_destroy(options) }
        rocksdb_ingestexternalfileoptions_set_move_files(options, move ? 1 : 0)
        let names = files.map { strdup($0) }
        defer { for name in names { free(name) } }
        let pointers: [UnsafePointer<CChar>?] = names.map { UnsafePointer($0) }
        try check { error in
            if let family {
                rocksdb_ingest_external_file_cf(db, family, pointers, pointers.count, options, error)
            } else {
                rocksdb_ingest_external_file(db, pointers, pointers.count, options, error)
            }
        }
    }
}

