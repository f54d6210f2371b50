import HPS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A fresh directory under `$TMPDIR` (or `/tmp`) for one test; call ``remove()`` when done
/// (`defer { dir.remove() }`).
struct TemporaryDirectory {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The directory's absolute path.
    let path: String

    /// Creates a new, empty directory named `hps-test-XXXXXX`.
    init() throws {
        var base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        if base.isEmpty { base = "/tmp" }
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        var template = Array((base + "/hps-test-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else {
            throw Failure(description: "mkdtemp in \(base) failed: \(String(cString: strerror(errno)))")
        }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `<path>/<name>` (nothing is created).
    func file(_ name: String) -> String { path + "/" + name }

    /// Removes the directory and everything in it.
    func remove() { FileTree.remove(path) }

    /// Creates `<path>/<name>` (and parents) and returns its path.
    @discardableResult
    func makeDirectory(_ name: String) throws -> String {
        var current = path
        for part in name.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw Failure(description: "mkdir \(current) failed: \(String(cString: strerror(errno)))")
            }
        }
        return current
    }

    /// Writes `bytes` to `<path>/<name>` (replacing it) and returns its path.
    @discardableResult
    func write(_ bytes: [UInt8], to name: String) throws -> String {
        let target = file(name)
        let fd = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw Failure(description: "open \(target) failed: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc_write(fd, $0.baseAddress! + done, bytes.count - done) }
            guard n > 0 else { throw Failure(description: "write \(target) failed: \(String(cString: strerror(errno)))") }
            done += n
        }
        return target
    }

    /// Writes the UTF-8 of `text` to `<path>/<name>` and returns its path.
    @discardableResult
    func write(_ text: String, to name: String) throws -> String { try write(Array(text.utf8), to: name) }

    /// The names in `<path>/<name>` (or the directory itself for `""`), sorted.
    func list(_ name: String = "") -> [String] {
        let target = name.isEmpty ? path : file(name)
        guard let dir = opendir(target) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if entryName != "." && entryName != ".." { names.append(entryName) }
        }
        return names.sorted()
    }
}

private func Glibc_write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buffer, count) }
