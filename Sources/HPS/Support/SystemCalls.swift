#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// POSIX helpers more than one module of the package needs (HPSRocksDB's file calls, HPSTestSupport's
// process calls, the tests' temporary directories). Package access: not part of HPS's public API.

/// The text of a failed POSIX call: the call's name and `strerror(errno)`.
package struct SystemCallError: Error, CustomStringConvertible {
    package var call: String
    package var errno: Int32

    package init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    package var description: String { "\(call): \(String(cString: strerror(errno)))" }
}

/// File-system calls shared by the package's modules.
package enum FileTree {
    /// Removes `target` and, when it is a directory, everything in it (`rm -r`), best effort: errors are
    /// ignored. Symbolic links are removed, never followed.
    package static func remove(_ target: String) {
        var info = stat()
        guard lstat(target, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            if let dir = opendir(target) {
                var children: [String] = []
                while let entry = readdir(dir) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                    }
                    if name != "." && name != ".." { children.append(name) }
                }
                closedir(dir)
                for child in children { remove(target + "/" + child) }
            }
            rmdir(target)
        } else {
            unlink(target)
        }
    }
}
