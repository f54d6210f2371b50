#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Memory for large tables read at random (hash-map indexes, row pages, benchmark baselines).
///
/// A block of at least ``hugePageSize`` bytes is aligned to it, rounded up to a multiple of it, and on Linux
/// marked `MADV_HUGEPAGE`, so that where transparent huge pages are in `madvise` mode (the common default)
/// the kernel backs it with 2 MiB pages: a random row then costs a data cache miss but rarely a TLB miss and
/// page walk as well. Smaller blocks are plain aligned allocations. Where the advice is refused, the block
/// works as ordinary memory.
///
/// `HPS_HUGE_PAGES=0` in the environment turns the advice off: where the kernel (or a hypervisor) is slow to
/// hand out fresh huge pages, loading a table is then faster and random lookups slower (docs/benchmarks.md).
package enum LargeAllocation {
    /// The huge page size the advice asks for, bytes.
    package static let hugePageSize = 2 << 20

    /// Whether large blocks are advised to huge pages (`HPS_HUGE_PAGES`, default on; `0` turns it off).
    package static let advisesHugePages = SystemInfo.environment("HPS_HUGE_PAGES") != "0"

    /// Allocates `byteCount` bytes (at least 1) aligned to `alignment` (a power of two), or to
    /// ``hugePageSize`` for a block that large. Traps when the memory cannot be allocated, as `allocate` does.
    /// Free the block with ``deallocate(_:)``.
    package static func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer {
        let large = byteCount >= hugePageSize
        let size = large ? (byteCount + hugePageSize - 1) & ~(hugePageSize - 1) : max(1, byteCount)
        var block: UnsafeMutableRawPointer?
        let result = posix_memalign(&block, max(large ? hugePageSize : alignment, MemoryLayout<Int>.alignment), size)
        guard result == 0, let block else { fatalError("cannot allocate \(size) bytes: \(String(cString: strerror(result)))") }
        #if os(Linux)
        if large && advisesHugePages { _ = madvise(block, size, MADV_HUGEPAGE) }
        #endif
        return block
    }

    /// Allocates room for `count` values of `T` (see ``allocate(byteCount:alignment:)``), uninitialized.
    package static func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        allocate(byteCount: max(1, count) * MemoryLayout<T>.stride, alignment: max(64, MemoryLayout<T>.alignment))
            .bindMemory(to: T.self, capacity: max(1, count))
    }

    /// Frees a block from ``allocate(byteCount:alignment:)`` or ``allocate(_:count:)``.
    package static func deallocate(_ block: UnsafeMutableRawPointer) { free(block) }
}
