#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The C file calls of the table and config code, each behind a thin typed wrapper that turns `errno` into
/// an ``HPSError`` naming the path.
///
/// An open file descriptor, closed when the last reference goes away.
final class POSIXFile {
    let path: String
    let descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { _ = close(descriptor) }

    /// Opens `path` for reading.
    static func openForReading(_ path: String) throws -> POSIXFile {
        let fd = retryingOnInterrupt { open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw POSIXFile.error(.io, path, "cannot open for reading") }
        return POSIXFile(path: path, descriptor: fd)
    }

    /// Creates (or truncates) `path` for writing with mode 0644.
    static func create(_ path: String) throws -> POSIXFile {
        let fd = retryingOnInterrupt { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { throw POSIXFile.error(.io, path, "cannot create file") }
        return POSIXFile(path: path, descriptor: fd)
    }

    /// The current size in bytes.
    func size() throws -> Int {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw POSIXFile.error(.io, path, "fstat failed") }
        return Int(info.st_size)
    }

    /// Reads into `buffer` from `offset` until it is full or the file ends.
    /// - Returns: the number of bytes read (less than `buffer.count` only at the end of the file).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIXFile.error(.io, path, "read of \(buffer.count - done) bytes at offset \(offset + done) failed")
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Reads exactly `buffer.count` bytes at `offset`; a file that ends early is an ``HPSError/Code/invalidTable``
    /// error saying it changed or was truncated.
    func readExactly(into buffer: UnsafeMutableRawBufferPointer, at offset: Int, expectedFileSize: Int) throws {
        let n = try read(into: buffer, at: offset)
        if n < buffer.count {
            throw HPSError(
                .invalidTable, subject: path,
                "file ended at byte \(offset + n) but \(expectedFileSize) bytes were expected; was it truncated or replaced while being read?"
            )
        }
    }

    /// Writes all of `bytes` at the current position.
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc_write(descriptor, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIXFile.error(.io, path, "write failed")
            }
            done += n
        }
    }

    /// Flushes the file's data to stable storage.
    func synchronize() throws {
        guard retryingOnInterrupt({ fsync(descriptor) }) == 0 else { throw POSIXFile.error(.io, path, "fsync failed") }
    }

    // MARK: Path operations

    /// What `stat` says about a path.
    struct Status {
        enum Kind { case regular, directory, other }
        var kind: Kind
        var size: Int
        /// Last modification time, nanoseconds since the epoch.
        var modified: Int64 = 0
    }

    /// The status of `path`, or nil when it does not exist (any other failure throws).
    static func status(_ path: String) throws -> Status? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw POSIXFile.error(.io, path, "stat failed")
        }
        let type = info.st_mode & S_IFMT
        let kind: Status.Kind = type == S_IFREG ? .regular : type == S_IFDIR ? .directory : .other
        let modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        return Status(kind: kind, size: Int(info.st_size), modified: modified)
    }

    /// Whether the process may read `path`.
    static func isReadable(_ path: String) -> Bool { access(path, R_OK) == 0 }

    /// Creates `path` and any missing parents (like `mkdir -p`).
    static func makeDirectories(_ path: String) throws {
        if let status = try status(path) {
            guard status.kind == .directory else {
                throw HPSError(.io, subject: path, "exists and is not a directory")
            }
            return
        }
        let parent = directoryName(of: path)
        if parent != path && !parent.isEmpty && parent != "." { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw POSIXFile.error(.io, path, "cannot create directory")
        }
    }

    /// Renames `from` to `to`, replacing `to` atomically.
    static func rename(_ from: String, to: String) throws {
        guard Glibc_rename(from, to) == 0 else { throw POSIXFile.error(.io, to, "cannot rename \(from) to it") }
    }

    /// Removes a file; a missing file is not an error.
    static func remove(_ path: String) { _ = unlink(path) }

    /// Reads a whole (small) file.
    static func readAll(_ path: String) throws -> [UInt8] {
        let file = try openForReading(path)
        let size = try file.size()
        var bytes = [UInt8](repeating: 0, count: size)
        let n = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }
        bytes.removeSubrange(n...)
        return bytes
    }

    /// The directory part of `path` (`"."` when it has none).
    static func directoryName(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        let head = trimmed[..<slash]
        return head.isEmpty ? "/" : String(head)
    }

    /// The last component of `path`.
    static func baseName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// The names in directory `path` (without `.` and `..`), in no particular order.
    static func directoryEntries(_ path: String) throws -> [String] {
        guard let stream = opendir(path) else { throw POSIXFile.error(.io, path, "cannot list the directory") }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// `base/relative`, or `relative` unchanged when it is absolute or `base` is empty.
    static func join(_ base: String, _ relative: String) -> String {
        if relative.hasPrefix("/") || base.isEmpty { return relative }
        var rel = Substring(relative)
        while rel.hasPrefix("./") { rel = rel.dropFirst(2) }
        if rel == "." { return base }
        return base.hasSuffix("/") ? base + rel : base + "/" + rel
    }

    /// The current working directory.
    static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buffer, buffer.count) != nil else { return "." }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func error(_ code: HPSError.Code, _ path: String, _ message: String) -> HPSError {
        let number = errno
        return HPSError(code, subject: path, message, underlying: String(cString: strerror(number)))
    }
}

@inline(__always)
private func retryingOnInterrupt(_ call: () -> Int32) -> Int32 {
    while true {
        let r = call()
        if r < 0 && errno == EINTR { continue }
        return r
    }
}

// The C functions whose Swift names the methods above shadow.
@inline(__always)
private func Glibc_write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buffer, count) }
@inline(__always)
private func Glibc_rename(_ from: String, _ to: String) -> Int32 { rename(from, to) }

/// Whole-file reads for tools (small inputs such as key lists), with errors that name the file and the
/// system's reason.
public enum LocalFile {
    /// The bytes of `path`.
    /// - Throws: ``HPSError`` `io` naming `path`, with what failed (open, read) and `strerror`'s text, e.g.
    ///   `cannot open for reading (No such file or directory)` or `… (Is a directory)`.
    public static func read(_ path: String) throws -> [UInt8] {
        if try POSIXFile.status(path)?.kind == .directory {
            throw HPSError(.io, subject: path, "cannot read a directory", underlying: "Is a directory")
        }
        return try POSIXFile.readAll(path)
    }
}
