import SystemPackage

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// Files and paths for the table, config, dump and bulk-load code of every module: swift-system's
// `FileDescriptor`, `FilePath`, `Stat` and `Errno`, with errors as ``HPSError`` naming the path and keeping
// the `Errno` as their cause. swift-system has no `mkdir`, `mkdtemp`, directory listing, `rename`,
// `unlink`, `access`, `fsync` or `getcwd` in its public API; those few calls are made here directly, with
// the same error form.

/// A file opened with swift-system's `FileDescriptor`, closed when the last reference goes away. Every
/// error is an ``HPSError`` `io` naming ``path``, with the `Errno` as its cause.
package final class OpenFile {
    package let path: String
    package let descriptor: FileDescriptor

    private init(path: String, descriptor: FileDescriptor) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { try? descriptor.close() }

    /// Opens `path` for reading.
    /// - Throws: ``HPSError`` `io`: "cannot open for reading" with the system's reason.
    package static func openForReading(_ path: String) throws -> OpenFile {
        do {
            return OpenFile(path: path, descriptor: try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec]))
        } catch {
            throw HPSError(.io, subject: path, "cannot open for reading", cause: error)
        }
    }

    /// Creates (or truncates) `path` for writing, mode 0644.
    /// - Throws: ``HPSError`` `io`: "cannot create file" with the system's reason.
    package static func create(_ path: String) throws -> OpenFile {
        do {
            let descriptor = try FileDescriptor.open(
                FilePath(path), .writeOnly, options: [.create, .truncate, .closeOnExec],
                permissions: [.ownerReadWrite, .groupRead, .otherRead])
            return OpenFile(path: path, descriptor: descriptor)
        } catch {
            throw HPSError(.io, subject: path, "cannot create file", cause: error)
        }
    }

    /// The current size in bytes.
    /// - Throws: ``HPSError`` `io` when `fstat` fails.
    package func size() throws -> Int {
        do { return Int(try Stat(descriptor).size) } catch { throw HPSError(.io, subject: path, "fstat failed", cause: error) }
    }

    /// Reads into `buffer` from `offset` until it is full or the file ends.
    /// - Returns: the number of bytes read (less than `buffer.count` only at the end of the file).
    /// - Throws: ``HPSError`` `io` naming the offset and byte count of the read that failed.
    package func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n: Int
            do {
                n = try descriptor.read(fromAbsoluteOffset: Int64(offset + done), into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            } catch {
                throw HPSError(.io, subject: path, "read of \(buffer.count - done) bytes at offset \(offset + done) failed", cause: error)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Reads exactly `buffer.count` bytes at `offset`.
    /// - Throws: ``HPSError`` `invalidTable` saying the file changed or was truncated when it ends early;
    ///   `io` when the read fails.
    package func readExactly(into buffer: UnsafeMutableRawBufferPointer, at offset: Int, expectedFileSize: Int) throws {
        let n = try read(into: buffer, at: offset)
        if n < buffer.count {
            throw HPSError(
                .invalidTable, subject: path,
                "file ended at byte \(offset + n) but \(expectedFileSize) bytes were expected; was it truncated or replaced while being read?"
            )
        }
    }

    /// Writes all of `bytes` at the current position.
    /// - Throws: ``HPSError`` `io` when a write fails (e.g. the disk is full).
    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        do { _ = try descriptor.writeAll(bytes) } catch { throw HPSError(.io, subject: path, "write failed", cause: error) }
    }

    /// Writes all of `bytes` at `offset`.
    /// - Throws: ``HPSError`` `io` when a write fails.
    package func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        do { _ = try descriptor.writeAll(toAbsoluteOffset: Int64(offset), bytes) } catch {
            throw HPSError(.io, subject: path, "write of \(bytes.count) bytes at offset \(offset) failed", cause: error)
        }
    }

    /// Flushes the file's data to stable storage (`fsync`).
    /// - Throws: ``HPSError`` `io` when `fsync` fails.
    package func synchronize() throws {
        while fsync(descriptor.rawValue) != 0 {
            let code = Errno(rawValue: errno)
            if code == .interrupted { continue }
            throw HPSError(.io, subject: path, "fsync failed", cause: code)
        }
    }
}

/// Path operations: `stat` through swift-system's `Stat`, path arithmetic through `FilePath`.
package enum FileSystem {
    /// What `stat` says about a path.
    package struct Status {
        package enum Kind { case regular, directory, other }
        package var kind: Kind
        package var size: Int
        /// Last modification time, nanoseconds since the epoch.
        package var modified: Int64 = 0
    }

    /// The status of `path`, or nil when it does not exist.
    /// - Throws: ``HPSError`` `io` for any failure but a missing path (e.g. permission denied).
    package static func status(_ path: String) throws -> Status? {
        let info: Stat
        do {
            info = try Stat(FilePath(path))
        } catch .noSuchFileOrDirectory, .notDirectory {
            return nil
        } catch {
            throw HPSError(.io, subject: path, "stat failed", cause: error)
        }
        let kind: Status.Kind = info.type == .regular ? .regular : info.type == .directory ? .directory : .other
        let modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        return Status(kind: kind, size: Int(info.size), modified: modified)
    }

    /// The kind of `path`, `nil` when it does not exist or cannot be examined.
    package static func kind(_ path: String) -> Status.Kind? { (try? status(path))??.kind }

    /// Whether the process may read `path`.
    package static func isReadable(_ path: String) -> Bool { access(path, R_OK) == 0 }

    /// Creates `path` and any missing parents (like `mkdir -p`).
    /// - Throws: ``HPSError`` `io` naming the path that exists and is not a directory, or that cannot be made.
    package static func makeDirectories(_ path: String) throws {
        if let status = try status(path) {
            guard status.kind == .directory else { throw HPSError(.io, subject: path, "exists and is not a directory") }
            return
        }
        let parent = directoryName(of: path)
        if parent != path && !parent.isEmpty && parent != "." { try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw HPSError(.io, subject: path, "cannot create directory", cause: Errno(rawValue: errno))
        }
    }

    /// A new empty directory `<parent>/<prefix>XXXXXX` (`mkdtemp`).
    /// - Throws: ``HPSError`` `io` naming `parent`.
    package static func makeTemporaryDirectory(in parent: String, prefix: String) throws -> String {
        var template = Array((parent + "/" + prefix + "XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HPSError(.io, subject: parent, "cannot create a temporary directory", cause: Errno(rawValue: errno))
        }
        return String(cString: made)
    }

    /// Renames `from` to `to`, replacing `to` atomically.
    /// - Throws: ``HPSError`` `io` naming `to`.
    package static func rename(_ from: String, to: String) throws {
        guard systemRename(from, to) == 0 else {
            throw HPSError(.io, subject: to, "cannot rename \(from) to it", cause: Errno(rawValue: errno))
        }
    }

    /// Removes a file; a missing file is not an error.
    package static func remove(_ path: String) { _ = unlink(path) }

    /// The bytes of a whole (small) file.
    /// - Throws: ``HPSError`` `io` when it cannot be opened or read.
    package static func readAll(_ path: String) throws -> [UInt8] {
        let file = try OpenFile.openForReading(path)
        var bytes = [UInt8](repeating: 0, count: try file.size())
        let n = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }
        bytes.removeSubrange(n...)
        return bytes
    }

    /// The names in directory `path` (without `.` and `..`), in no particular order.
    /// - Throws: ``HPSError`` `io` when the directory cannot be listed.
    package static func directoryEntries(_ path: String) throws -> [String] {
        guard let stream = opendir(path) else {
            throw HPSError(.io, subject: path, "cannot list the directory", cause: Errno(rawValue: errno))
        }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The directory part of `path` (`"."` when it has none, `"/"` for the root).
    package static func directoryName(of path: String) -> String {
        let file = FilePath(path)
        guard file.lastComponent != nil, !(file.root != nil && file.components.isEmpty) else { return file.root != nil ? "/" : "." }
        let parent = file.removingLastComponent()
        return parent.isEmpty ? "." : parent.string
    }

    /// The last component of `path`.
    package static func baseName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// `base/relative`, or `relative` unchanged when it is absolute or `base` is empty.
    package static func join(_ base: String, _ relative: String) -> String {
        if relative.hasPrefix("/") || base.isEmpty { return relative }
        var rel = Substring(relative)
        while rel.hasPrefix("./") { rel = rel.dropFirst(2) }
        if rel == "." { return base }
        return base.hasSuffix("/") ? base + rel : base + "/" + rel
    }

    /// The current working directory (`"."` when it cannot be read).
    package static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buffer, buffer.count) != nil else { return "." }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// This process's id (unique names of scratch files).
    package static var processID: Int32 { getpid() }
}

@inline(__always)
private func systemRename(_ from: String, _ to: String) -> Int32 { rename(from, to) }

/// Whole-file reads for tools (small inputs such as key lists), with errors that name the file and the
/// system's reason.
public enum LocalFile {
    /// The bytes of `path`.
    /// - Throws: ``HPSError`` `io` naming `path`, with what failed (open, read) and the system's reason, e.g.
    ///   `cannot open for reading (No such file or directory)` or `… (Is a directory)`.
    public static func read(_ path: String) throws -> [UInt8] {
        if try FileSystem.status(path)?.kind == .directory {
            throw HPSError(.io, subject: path, "cannot read a directory", underlying: "Is a directory")
        }
        return try FileSystem.readAll(path)
    }
}
