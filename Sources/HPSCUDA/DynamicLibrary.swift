import CCUDADriver
import HPS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why `dlopen` failed (its `dlerror` text).
struct LoadFailure: Error {
    let message: String
}

/// A NUL-terminated C string in `buffer`.
func string(fromCBuffer buffer: [CChar]) -> String {
    buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// A shared library opened with `dlopen` (never closed: the CUDA libraries live as long as the process).
struct DynamicLibrary: @unchecked Sendable {
    // @unchecked Sendable: the handle is immutable and never closed; `dlsym` is thread-safe.
    let handle: UnsafeMutableRawPointer
    /// The name or path it was opened by.
    let name: String

    /// Opens `name` (a file name searched the usual way, or a path), or returns nil with `dlerror`'s text.
    static func open(_ name: String) -> Result<DynamicLibrary, LoadFailure> {
        guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else {
            let message = dlerror().map { String(cString: $0) } ?? "dlopen failed"
            return .failure(LoadFailure(message: message))
        }
        return .success(DynamicLibrary(handle: handle, name: name))
    }

    /// The address of `symbol`, or nil.
    func address(_ symbol: String) -> UnsafeMutableRawPointer? { dlsym(handle, symbol) }

    /// The entry point `symbol` as the C function type `T`.
    func function<T>(_ symbol: String, as type: T.Type) throws -> T {
        guard let pointer = dlsym(handle, symbol) else {
            throw CUDAError(.driverTooOld, what: "\(name) lacks the entry point \(symbol)", detail: "a newer library is needed")
        }
        return unsafeBitCast(pointer, to: type)
    }

    /// The first of `symbols` the library has, as `T`.
    func function<T>(anyOf symbols: [String], as type: T.Type) throws -> T {
        for symbol in symbols {
            if let pointer = dlsym(handle, symbol) { return unsafeBitCast(pointer, to: type) }
        }
        throw CUDAError(.driverTooOld, what: "\(name) lacks the entry points \(symbols.joined(separator: " / "))", detail: "a newer library is needed")
    }

    /// The file the library was loaded from (resolved through the dynamic linker), when it can tell.
    func loadedPath(probeSymbol: String) -> String? {
        guard let pointer = dlsym(handle, probeSymbol), let file = hps_loaded_library_path(pointer) else { return nil }
        return String(cString: file)
    }
}

/// Small file-system helpers (no Foundation in this module).
enum FileSystem {
    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Names in `directory` (not `.`/`..`), or [] when it cannot be read.
    static func list(_ directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    static func directoryName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// The whole file, or nil.
    static func contents(of path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { return nil }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    /// Writes `bytes` to `path` through a temporary file and a rename (so readers never see half a file).
    /// Creates missing parent directories. Failures are ignored (it is a cache).
    static func writeAtomically(_ bytes: [UInt8], to path: String) {
        makeDirectories(directoryName(path))
        let temporary = path + ".tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        if written == bytes.count { rename(temporary, path) } else { unlink(temporary) }
    }

    static func makeDirectories(_ path: String) {
        guard !path.isEmpty, !exists(path) else { return }
        makeDirectories(directoryName(path))
        mkdir(path, 0o755)
    }

    /// The directory of the running executable (`/proc/self/exe`), when it can tell.
    static var executableDirectory: String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        buffer[n] = 0
        return directoryName(string(fromCBuffer: buffer))
    }

    static func environment(_ name: String) -> String? { SystemInfo.environment(name) }
}
