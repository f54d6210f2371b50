#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes table directories in HPS's format (`key` + `emb_vector`).
///
/// Files are written under temporary names in the target directory and renamed into place only once
/// complete, so a failure leaves no half-written `key` or `emb_vector` behind.
public enum TableWriter {
    /// Writes `keys` and their `vectors` (`keys.count × dimension` floats, row-major) as a table directory,
    /// creating the directory (and its parents) when needed and replacing existing table files.
    ///
    /// - Throws: ``HPSError`` `invalidArgument` when the sizes do not agree or there are no rows; `io` when a
    ///   file cannot be written.
    public static func write(
        directory: String, keys: UnsafeBufferPointer<Int64>, vectors: UnsafeBufferPointer<Float>, dimension: Int
    ) throws {
        guard dimension >= 1 else {
            throw HPSError(.invalidArgument, subject: directory, "table dimension must be at least 1, got \(dimension)")
        }
        guard keys.count > 0 else {
            throw HPSError(.invalidArgument, subject: directory, "a table needs at least one row")
        }
        guard vectors.count == keys.count * dimension else {
            throw HPSError(
                .invalidArgument, subject: directory,
                "\(vectors.count) floats given for \(keys.count) keys × dimension \(dimension) = \(keys.count * dimension)")
        }
        let sink = try TableFileSink(directory: directory, dimension: dimension)
        try sink.append(keys: keys, vectors: vectors)
        try sink.commit()
    }

    /// Writes a table from arrays; see the buffer-pointer overload.
    /// - Throws: as the buffer-pointer overload: ``HPSError`` `invalidArgument` when the sizes do not agree or there
    ///   are no rows; `io` when a file cannot be written.
    public static func write(directory: String, keys: [Int64], vectors: [Float], dimension: Int) throws {
        try keys.withUnsafeBufferPointer { k in
            try vectors.withUnsafeBufferPointer { v in
                try write(directory: directory, keys: k, vectors: v, dimension: dimension)
            }
        }
    }
}

/// Appends rows to a table directory's temporary files; ``commit()`` renames them into place. Dropping an
/// uncommitted sink removes the temporary files.
final class TableFileSink {
    let directory: String
    let dimension: Int
    private(set) var rowCount = 0
    private let keyTemporary: String
    private let vectorTemporary: String
    private var keyFile: OpenFile?
    private var vectorFile: OpenFile?
    private var finished = false

    init(directory: String, dimension: Int) throws {
        self.directory = directory
        self.dimension = dimension
        let suffix = ".tmp-\(getpid())"
        keyTemporary = FileSystem.join(directory, "." + TableDirectory.keyFileName + suffix)
        vectorTemporary = FileSystem.join(directory, "." + TableDirectory.vectorFileName + suffix)
        try FileSystem.makeDirectories(directory)
        keyFile = try OpenFile.create(keyTemporary)
        do {
            vectorFile = try OpenFile.create(vectorTemporary)
        } catch {
            discard()
            throw error
        }
    }

    deinit { if !finished { discard() } }

    /// Appends `keys.count` rows.
    func append(keys: UnsafeBufferPointer<Int64>, vectors: UnsafeBufferPointer<Float>) throws {
        guard vectors.count == keys.count * dimension else {
            throw HPSError(.invalidArgument, subject: directory, "\(vectors.count) floats given for \(keys.count) keys × dimension \(dimension)")
        }
        guard let keyFile, let vectorFile else {
            throw HPSError(.io, subject: directory, "table files were already committed or discarded")
        }
        do {
            #if _endian(big)
            let keyBytes = keys.map { $0.littleEndian }
            let vectorBits = vectors.map { $0.bitPattern.littleEndian }
            try keyBytes.withUnsafeBytes { try keyFile.write($0) }
            try vectorBits.withUnsafeBytes { try vectorFile.write($0) }
            #else
            try keyFile.write(UnsafeRawBufferPointer(keys))
            try vectorFile.write(UnsafeRawBufferPointer(vectors))
            #endif
        } catch {
            discard()
            throw error
        }
        rowCount += keys.count
    }

    /// Flushes both files and renames them to `key` and `emb_vector`.
    func commit() throws {
        guard let keyFile, let vectorFile else {
            throw HPSError(.io, subject: directory, "table files were already committed or discarded")
        }
        do {
            try keyFile.synchronize()
            try vectorFile.synchronize()
            self.keyFile = nil
            self.vectorFile = nil
            try FileSystem.rename(vectorTemporary, to: FileSystem.join(directory, TableDirectory.vectorFileName))
            try FileSystem.rename(keyTemporary, to: FileSystem.join(directory, TableDirectory.keyFileName))
        } catch {
            discard()
            throw error
        }
        finished = true
    }

    /// Closes and removes the temporary files.
    func discard() {
        keyFile = nil
        vectorFile = nil
        FileSystem.remove(keyTemporary)
        FileSystem.remove(vectorTemporary)
        finished = true
    }
}
