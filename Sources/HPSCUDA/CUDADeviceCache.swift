import CCUDADriver
import HPS

/// A GPU embedding cache: the host-pointer ``EmbeddingCache`` API (stage keys to the device, run the kernels,
/// copy results back; safe from any thread) plus a device-pointer API for callers whose keys and vectors
/// already live on the device (benchmarks, a future device lookup path).
///
/// Device-pointer calls enqueue work on a stream (the cache's own by default) and return without waiting.
/// They take the cache's lock only to advance its clock: the caller orders them against host-pointer calls
/// (by using the cache's stream, or by synchronising).
public protocol CUDADeviceCache: EmbeddingCache {
    var context: CUDAContext { get }
    /// The cache's own stream (one per table).
    var stream: CUDAStream { get }

    /// Queries `keys[0 ..< count]` (count = `*countPointer` when given, bounded by `count`): a hit stamps its
    /// entry (dynamic cache) and, when `output` is given, copies its vector to `output[i × dim]`. Misses are
    /// appended to `missing` (positions) and `missingKeys` (each optional; order unspecified) and counted in
    /// `missCount` (a device UInt32 this call zeroes first). `hitFlags[i]` (UInt8, optional) = hit;
    /// `slots[i]` (Int32, optional) = row of the hit in ``rowSource`` or -1. Keys must be distinct.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    func enqueueQuery(
        keys: DeviceAddress, count: Int, countPointer: DeviceAddress, output: DeviceAddress, missing: DeviceAddress,
        missingKeys: DeviceAddress, missCount: DeviceAddress, hitFlags: DeviceAddress, slots: DeviceAddress, stream: CUDAStream?
    ) throws

    /// Inserts or overwrites `keys[i] → values[i × dim]` for i < count (device pointers), as ``replace(keys:values:)``.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    func enqueueReplace(keys: DeviceAddress, values: DeviceAddress, count: Int, stream: CUDAStream?) throws

    /// Where the rows named by `slots` live: row r < split at `base + r × dim × 4`, else at
    /// `high + (r − split) × dim × 4` (the uvm table's host part).
    var rowSource: (base: DeviceAddress, high: DeviceAddress, split: Int64) { get }

    /// The error that disabled the cache, if a CUDA call failed.
    var failure: CUDAError? { get }
}

/// Device and pinned host buffers a cache uses to move host-pointer batches, sized for `chunk` keys.
final class CUDAStaging: Sendable {
    let chunk: Int
    let dimension: Int
    let deviceKeys: CUDADeviceBuffer
    let deviceValues: CUDADeviceBuffer
    let deviceFlags: CUDADeviceBuffer
    let deviceRows: CUDADeviceBuffer
    let deviceRows2: CUDADeviceBuffer
    let deviceCount: CUDADeviceBuffer
    let hostKeys: CUDAPinnedBuffer
    let hostValues: CUDAPinnedBuffer
    let hostFlags: CUDAPinnedBuffer
    let hostRows: CUDAPinnedBuffer
    let hostRows2: CUDAPinnedBuffer
    let hostCount: CUDAPinnedBuffer

    init(context: CUDAContext, chunk: Int, dimension: Int, what: String) throws {
        self.chunk = chunk
        self.dimension = dimension
        deviceKeys = try context.allocate(bytes: chunk * 8, what: "staged keys of \(what)")
        deviceValues = try context.allocate(bytes: chunk * dimension * 4, what: "staged vectors of \(what)")
        deviceFlags = try context.allocate(bytes: chunk, what: "hit flags of \(what)")
        deviceRows = try context.allocate(bytes: chunk * 4, what: "row indices of \(what)")
        deviceRows2 = try context.allocate(bytes: chunk * 4, what: "row indices of \(what)")
        deviceCount = try context.allocate(bytes: 16, what: "counters of \(what)")
        hostKeys = try context.allocatePinned(bytes: chunk * 8, what: "staged keys of \(what)")
        hostValues = try context.allocatePinned(bytes: chunk * dimension * 4, what: "staged vectors of \(what)")
        hostFlags = try context.allocatePinned(bytes: chunk, what: "hit flags of \(what)")
        hostRows = try context.allocatePinned(bytes: chunk * 4, what: "row indices of \(what)")
        hostRows2 = try context.allocatePinned(bytes: chunk * 4, what: "row indices of \(what)")
        hostCount = try context.allocatePinned(bytes: 16, what: "counters of \(what)")
    }

    /// Runs a host-pointer query through the staging buffers, chunk by chunk: copies the keys to the device,
    /// calls `launch(deviceKeys, count)` (which must write hit flags to `deviceFlags` and vectors to
    /// `deviceValues`), copies flags and vectors back, writes hits to `output` and miss positions to
    /// `missing`. - Returns: the number of misses.
    func query(
        keys base: UnsafePointer<Int64>, count n: Int, into output: UnsafeMutablePointer<Float>,
        missing: UnsafeMutablePointer<Int32>, context: CUDAContext, stream: CUDAStream,
        launch: (_ keys: DeviceAddress, _ count: Int) throws -> Void
    ) throws -> Int {
        let dim = dimension
        var misses = 0
        try forEachChunk(n, chunk: chunk) { start, m in
            hostKeys.host.copyMemory(from: base + start, byteCount: m * 8)
            try context.copy(toDevice: deviceKeys.pointer, from: hostKeys.host, bytes: m * 8, stream: stream)
            try launch(deviceKeys.pointer, m)
            try context.copy(toHost: hostValues.host, from: deviceValues.pointer, bytes: m * dim * 4, stream: stream)
            try context.copy(toHost: hostFlags.host, from: deviceFlags.pointer, bytes: m, stream: stream)
            try stream.synchronize()
            let flags = hostFlags.typed(UInt8.self)
            let vectors = hostValues.typed(Float.self)
            for i in 0..<m {
                if flags[i] != 0 {
                    (output + (start + i) * dim).update(from: vectors + i * dim, count: dim)
                } else {
                    missing[misses] = Int32(truncatingIfNeeded: start + i)
                    misses += 1
                }
            }
        }
        return misses
    }

    /// Device bytes of the staging buffers for `chunk` keys (keys, vectors, flags, two row arrays, counters).
    static func deviceBytes(chunk: Int, dimension: Int) -> Int { chunk * 8 + chunk * dimension * 4 + chunk + 2 * chunk * 4 + 16 }

    /// Keys per chunk for vectors of `dimension` floats: the largest batch expected (at least 1024), at most
    /// what fits in 256 MiB of staged vectors. Larger calls (a table fill) are processed in chunks.
    static func chunkSize(maxBatch: Int, dimension: Int) -> Int {
        let limit = max(1024, (256 << 20) / max(1, dimension * 4))
        return max(1, min(max(maxBatch, 1024), limit))
    }
}

/// Runs `body` over `0 ..< n` in chunks of at most `chunk`: body(start, count).
@inline(__always)
func forEachChunk(_ n: Int, chunk: Int, _ body: (Int, Int) throws -> Void) rethrows {
    var start = 0
    while start < n {
        let count = min(chunk, n - start)
        try body(start, count)
        start += count
    }
}

/// Next power of two ≥ n (n ≥ 1) and its log2.
func powerOfTwo(atLeast n: Int) -> (value: Int, log2: Int) {
    var value = 1, log = 0
    while value < n {
        value <<= 1
        log += 1
    }
    return (value, log)
}

extension CUDADeviceCache {
    public var location: String { "CUDA device \(context.device)" }
    public var queriesScaleAcrossThreads: Bool { false }
}
