import CRocksDB
import HPS
import HPSRocksDB

/// The baseline of `hps bench persistent`: a RocksDB directory opened read-only with the same options as
/// ``RocksDBDatabase`` (block cache, point-lookup tuning, threads), read with bare RocksDB C calls in a
/// loop — no table map, no locks, no per-key callbacks.
///
/// This file calls the C API directly on purpose (unlike the rest of HPSRocksDB, which goes through
/// `RocksNative`): the point of a baseline is to be what a C programmer would write. Buffers for key
/// pointers and results are allocated once, so each call measures only RocksDB and the copies.
///
/// Not for serving: it has no error recovery beyond throwing, and keeps its buffers for the largest batch
/// seen. Not thread-safe (one reader per thread).
public final class RawRocksDBReader {
    /// The RocksDB directory.
    public let path: String
    private let db: OpaquePointer
    private let options: OpaquePointer
    private let readOptions: OpaquePointer
    private var families: [String: OpaquePointer] = [:]
    private var handles: [OpaquePointer] = []
    private var keyPointers: [UnsafePointer<CChar>?] = []
    private var keySizes: [Int] = []
    private var pinned: [OpaquePointer?] = []
    private var plainValues: [UnsafeMutablePointer<CChar>?] = []
    private var valueSizes: [Int] = []
    private var errors: [UnsafeMutablePointer<CChar>?] = []
    private var familyList: [OpaquePointer?] = []

    /// Opens `path` read-only with every column family, tuned as ``RocksDBDatabase`` tunes it.
    /// - Throws: ``HPSError`` `.database` with RocksDB's message when the database cannot be opened.
    public init(path: String, numThreads: Int = 16) throws {
        self.path = path
        let names: [String]
        let listOptions = RocksNative.makeOptions(createIfMissing: false, tuned: false, numThreads: 1, blockCacheMB: 0)
        defer { RocksNative.destroyOptions(listOptions) }
        do {
            names = try RocksNative.listColumnFamilies(listOptions, path: path)
        } catch {
            throw RocksDBDatabase.openError(path: path, error)
        }
        let options = RocksNative.makeOptions(
            createIfMissing: false, tuned: true, numThreads: numThreads, blockCacheMB: RocksDBDatabase.blockCacheMB)
        let opened: (db: OpaquePointer, handles: [OpaquePointer])
        do {
            opened = try RocksNative.open(options, path: path, families: names, readOnly: true)
        } catch {
            RocksNative.destroyOptions(options)
            throw RocksDBDatabase.openError(path: path, error)
        }
        self.options = options
        self.db = opened.db
        self.handles = opened.handles
        for (name, handle) in zip(names, opened.handles) { families[name] = handle }
        readOptions = rocksdb_readoptions_create()!
        rocksdb_readoptions_set_fill_cache(readOptions, 1)
    }

    deinit {
        for handle in handles { rocksdb_column_family_handle_destroy(handle) }
        rocksdb_close(db)
        rocksdb_options_destroy(options)
        rocksdb_readoptions_destroy(readOptions)
    }

    private func family(_ table: String) throws -> OpaquePointer {
        guard let family = families[table] else {
            throw HPSError(.database, subject: path, "holds no table \(table)")
        }
        return family
    }

    private func prepare(_ keys: UnsafeBufferPointer<Int64>) {
        let n = keys.count
        if keyPointers.count < n {
            keyPointers = .init(repeating: nil, count: n)
            keySizes = .init(repeating: 8, count: n)
            pinned = .init(repeating: nil, count: n)
            plainValues = .init(repeating: nil, count: n)
            valueSizes = .init(repeating: 0, count: n)
            errors = .init(repeating: nil, count: n)
        }
        let base = UnsafeRawPointer(keys.baseAddress!)
        for i in 0..<n { keyPointers[i] = (base + i * 8).assumingMemoryBound(to: CChar.self) }
    }

    /// `rocksdb_batched_multi_get_cf` over `keys` (little-endian hosts: the key slices are the keys'
    /// own bytes), copying each found value into row `i` of `values`. - Returns: the number of hits.
    /// - Throws: ``HPSError`` `.database` when the database holds no table `table`, or when RocksDB's MultiGet
    ///   fails (its message as `underlying`).
    public func batchedMultiGet(table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeMutableRawBufferPointer, valueSize: Int) throws -> Int {
        guard !keys.isEmpty else { return 0 }
        let family = try family(table)
        prepare(keys)
        let n = keys.count
        rocksdb_batched_multi_get_cf(db, readOptions, family, n, &keyPointers, &keySizes, &pinned, &errors, false)
        var hits = 0
        var failure: String?
        for i in 0..<n {
            if let error = errors[i] {
                if failure == nil { failure = String(cString: error) }
                rocksdb_free(error)
                errors[i] = nil
            }
            if let slice = pinned[i] {
                var length = 0
                let bytes = rocksdb_pinnableslice_value(slice, &length)
                if length == valueSize, let bytes {
                    (values.baseAddress! + i * valueSize).copyMemory(from: bytes, byteCount: valueSize)
                    hits += 1
                }
                rocksdb_pinnableslice_destroy(slice)
                pinned[i] = nil
            }
        }
        if let failure { throw HPSError(.database, subject: path, "MultiGet failed", underlying: failure) }
        return hits
    }

    /// `rocksdb_multi_get_cf` (the plain C MultiGet: one malloc'd value per found key) over `keys`,
    /// copying each found value into row `i` of `values`. - Returns: the number of hits.
    /// - Throws: ``HPSError`` `.database` when the database holds no table `table`, or when RocksDB's MultiGet
    ///   fails (its message as `underlying`).
    public func multiGet(table: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeMutableRawBufferPointer, valueSize: Int) throws -> Int {
        guard !keys.isEmpty else { return 0 }
        let family = try family(table)
        prepare(keys)
        let n = keys.count
        if familyList.count < n || familyList.first != family { familyList = .init(repeating: family, count: keyPointers.count) }
        rocksdb_multi_get_cf(db, readOptions, familyList, n, &keyPointers, &keySizes, &plainValues, &valueSizes, &errors)
        var hits = 0
        var failure: String?
        for i in 0..<n {
            if let error = errors[i] {
                if failure == nil { failure = String(cString: error) }
                rocksdb_free(error)
                errors[i] = nil
            }
            if let value = plainValues[i] {
                if valueSizes[i] == valueSize {
                    (values.baseAddress! + i * valueSize).copyMemory(from: value, byteCount: valueSize)
                    hits += 1
                }
                rocksdb_free(value)
                plainValues[i] = nil
            }
        }
        if let failure { throw HPSError(.database, subject: path, "MultiGet failed", underlying: failure) }
        return hits
    }
}
