#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Facts about the machine that defaults depend on.
public enum SystemInfo {
    /// Online processors, read once (sysconf reads a file each time, too slow for the lookup path).
    public static let processorCount: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// Bytes of physical memory (0 when unknown), read once.
    public static let physicalMemory: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return 0 }
        let (bytes, overflow) = Int(pages).multipliedReportingOverflow(by: Int(pageSize))
        return overflow ? .max : bytes
    }()

    /// The value of environment variable `name`, or nil when it is unset or empty.
    package static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        let text = String(cString: value)
        return text.isEmpty ? nil : text
    }

    /// `$TMPDIR` or `/tmp`, without a trailing slash.
    public static var temporaryDirectory: String {
        var dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        while dir.count > 1 && dir.hasSuffix("/") { dir.removeLast() }
        return dir.isEmpty ? "/tmp" : dir
    }
}
