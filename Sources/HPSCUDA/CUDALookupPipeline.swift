import CCUDADriver
import HPS

/// The whole lookup of a batch on the device, HPS's way: deduplicate → query the cache with the distinct
/// keys → default value for misses → scatter the vectors back to input order (duplicates included).
///
/// Buffers are sized once for `maxKeys` keys, so a lookup allocates nothing. Stages can be enqueued one by
/// one (to time them) or with ``enqueueLookup(cache:keys:count:output:defaultValue:mode:stream:)``.
///
/// Two ways to produce the output:
/// - ``Mode/copy`` (as HPS): the query copies hit vectors into a buffer of distinct vectors, misses get the
///   default there, and the scatter copies from that buffer.
/// - ``Mode/direct``: the query only returns where each hit lives, and the scatter copies from the cache's
///   rows (or writes the default) straight into the output: one pass over the vectors instead of two.
/// Both give the same output. Misses are left for the caller to insert (``missingKeys``, ``missCount``).
public final class CUDALookupPipeline: @unchecked Sendable {
    // @unchecked Sendable: the device buffers are fixed at init; a pipeline belongs to one ``CUDATableLookup``
    // worker, which one call holds at a time.
    public enum Mode: String, Sendable, CaseIterable {
        case copy, direct
    }

    public let context: CUDAContext
    public let maxKeys: Int
    public let dimension: Int
    let kernels: CUDAKernels
    let tableShift: UInt32
    let table: CUDADeviceBuffer
    let slotIndex: CUDADeviceBuffer
    let sentinel: CUDADeviceBuffer
    /// Device UInt32: number of distinct keys of the last dedup.
    public let uniqueCount: CUDADeviceBuffer
    /// Device Int64[maxKeys]: the distinct keys.
    public let uniqueKeys: CUDADeviceBuffer
    let uniquePositions: CUDADeviceBuffer
    /// Device Int32[maxKeys]: position of each input key among the distinct keys.
    public let inverse: CUDADeviceBuffer
    /// Device Float[maxKeys × dim]: vectors of the distinct keys (copy mode).
    public let uniqueVectors: CUDADeviceBuffer
    /// Device Int32[maxKeys]: positions (among distinct keys) that missed.
    public let missing: CUDADeviceBuffer
    /// Device Int64[maxKeys]: keys that missed.
    public let missingKeys: CUDADeviceBuffer
    /// Device UInt32: number of misses.
    public let missCount: CUDADeviceBuffer
    /// Device UInt8[maxKeys]: hit flag of each distinct key.
    public let hitFlags: CUDADeviceBuffer
    /// Device Int32[maxKeys]: row of each distinct key's hit (direct mode), -1 for a miss.
    public let slots: CUDADeviceBuffer

    /// - Throws: ``CUDAError`` `.invalidArgument` for a dimension below 1 or a size beyond what the kernels index;
    ///   `.outOfMemory` naming the buffer when device memory is short; the driver's or NVRTC's error when the kernels
    ///   cannot be loaded.
    public init(context: CUDAContext, maxKeys: Int, dimension: Int) throws {
        guard maxKeys > 0, maxKeys < 1 << 30 else { throw CUDAError(.invalidArgument, what: "maxKeys \(maxKeys) of a lookup pipeline") }
        self.context = context
        self.maxKeys = maxKeys
        self.dimension = dimension
        kernels = try context.kernels()
        let capacity = powerOfTwo(atLeast: max(64, 2 * maxKeys))
        tableShift = UInt32(64 - capacity.log2)
        let what = "the lookup pipeline (\(maxKeys) keys)"
        table = try context.allocate(bytes: capacity.value * 8, what: "dedup table of \(what)")
        slotIndex = try context.allocate(bytes: (capacity.value + 1) * 4, what: "dedup table of \(what)")
        sentinel = try context.allocate(bytes: 16, what: "dedup table of \(what)")
        uniqueCount = try context.allocate(bytes: 16, what: "counters of \(what)")
        uniqueKeys = try context.allocate(bytes: maxKeys * 8, what: "distinct keys of \(what)")
        uniquePositions = try context.allocate(bytes: maxKeys * 4, what: "dedup positions of \(what)")
        inverse = try context.allocate(bytes: maxKeys * 4, what: "inverse index of \(what)")
        uniqueVectors = try context.allocate(bytes: maxKeys * dimension * 4, what: "distinct vectors of \(what)")
        missing = try context.allocate(bytes: maxKeys * 4, what: "misses of \(what)")
        missingKeys = try context.allocate(bytes: maxKeys * 8, what: "missing keys of \(what)")
        missCount = try context.allocate(bytes: 16, what: "counters of \(what)")
        hitFlags = try context.allocate(bytes: maxKeys, what: "hit flags of \(what)")
        slots = try context.allocate(bytes: maxKeys * 4, what: "hit rows of \(what)")
        let stream = try context.makeStream()
        // DEDUP_EMPTY = 0x7fffffff7fffffff: every 32-bit word 0x7fffffff.
        try context.fill32(table.pointer, value: 0x7FFF_FFFF, count: capacity.value * 2, stream: stream)
        try context.fill32(sentinel.pointer, value: 0, count: 4, stream: stream)
        try stream.synchronize()
    }

    /// Distinct keys of `keys[0 ..< count]` → ``uniqueKeys`` / ``uniqueCount``, and ``inverse``. The table stays
    /// claimed until ``enqueueClear(stream:)``.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func enqueueDedup(keys: DeviceAddress, count: Int, stream: CUDAStream) throws {
        precondition(count <= maxKeys, "batch of \(count) keys exceeds the pipeline's \(maxKeys)")
        try context.makeCurrent()
        try context.fill32(uniqueCount.pointer, value: 0, count: 1, stream: stream)
        try kernels.launch(
            kernels.dedupInsert, threads: count, stream: stream,
            [.pointer(keys), .count(count), .pointer(table.pointer), .pointer(slotIndex.pointer), .u32(tableShift), .pointer(sentinel.pointer),
             .pointer(uniqueCount.pointer), .pointer(uniqueKeys.pointer), .pointer(uniquePositions.pointer), .pointer(inverse.pointer)])
        try kernels.launch(
            kernels.dedupResolve, threads: count, stream: stream,
            [.pointer(inverse.pointer), .count(count), .pointer(slotIndex.pointer), .pointer(inverse.pointer)])
    }

    /// Returns the dedup table slots the last batch claimed (call after the batch's last use of ``inverse``
    /// is enqueued; `maxCount` bounds the distinct keys: the batch's key count).
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func enqueueClear(maxCount: Int, stream: CUDAStream) throws {
        try kernels.launch(
            kernels.dedupClear, threads: maxCount, stream: stream,
            [.pointer(uniquePositions.pointer), .pointer(uniqueCount.pointer), .count(maxCount), .pointer(table.pointer), .u32(tableShift),
             .pointer(sentinel.pointer)])
    }

    /// Queries `cache` with the distinct keys of the last dedup (`count` bounds them).
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func enqueueQuery(cache: any CUDADeviceCache, count: Int, mode: Mode, stream: CUDAStream) throws {
        try cache.enqueueQuery(
            keys: uniqueKeys.pointer, count: count, countPointer: uniqueCount.pointer, output: mode == .copy ? uniqueVectors.pointer : 0,
            missing: missing.pointer, missingKeys: missingKeys.pointer, missCount: missCount.pointer, hitFlags: hitFlags.pointer,
            slots: mode == .direct ? slots.pointer : 0, stream: stream)
    }

    /// Writes the output in input order: copy mode fills misses with `defaultValue` and scatters the distinct
    /// vectors; direct mode copies each key's row from the cache (or the default).
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func enqueueScatter(cache: any CUDADeviceCache, count: Int, output: DeviceAddress, defaultValue: Float, mode: Mode, stream: CUDAStream) throws {
        let dim = dimension
        switch mode {
        case .copy:
            try copyRows(
                dst: uniqueVectors.pointer, dstIndex: missing.pointer, src: 0, srcHigh: 0, split: .max, srcIndex: 0, srcIndex2: 0, count: count,
                countPointer: missCount.pointer, fill: defaultValue, streaming: false, stream: stream)
            try copyRows(
                dst: output, dstIndex: 0, src: uniqueVectors.pointer, srcHigh: 0, split: .max, srcIndex: inverse.pointer, srcIndex2: 0, count: count,
                countPointer: 0, fill: defaultValue, streaming: true, stream: stream)
        case .direct:
            let source = cache.rowSource
            precondition(cache.dimension == dim)
            try copyRows(
                dst: output, dstIndex: 0, src: source.base, srcHigh: source.high, split: source.split, srcIndex: inverse.pointer, srcIndex2: slots.pointer,
                count: count, countPointer: 0, fill: defaultValue, streaming: true, stream: stream)
        }
    }

    /// The whole lookup of `keys[0 ..< count]` into `output[count × dim]` (all device pointers).
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func enqueueLookup(cache: any CUDADeviceCache, keys: DeviceAddress, count: Int, output: DeviceAddress, defaultValue: Float, mode: Mode, stream: CUDAStream) throws {
        try enqueueDedup(keys: keys, count: count, stream: stream)
        try enqueueQuery(cache: cache, count: count, mode: mode, stream: stream)
        try enqueueScatter(cache: cache, count: count, output: output, defaultValue: defaultValue, mode: mode, stream: stream)
        try enqueueClear(maxCount: count, stream: stream)
    }

    /// The generic row mover (`copy_rows` in Kernels/rows.cu).
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func copyRows(
        dst: DeviceAddress, dstIndex: DeviceAddress, src: DeviceAddress, srcHigh: DeviceAddress, split: Int64, srcIndex: DeviceAddress, srcIndex2: DeviceAddress,
        count: Int, countPointer: DeviceAddress, fill: Float, streaming: Bool, stream: CUDAStream
    ) throws {
        try CUDAPrimitives.copyRows(
            kernels: kernels, dimension: dimension, dst: dst, dstIndex: dstIndex, src: src, srcHigh: srcHigh, split: split, srcIndex: srcIndex,
            srcIndex2: srcIndex2, count: count, countPointer: countPointer, fill: fill, streaming: streaming, stream: stream)
    }
}

/// Launch helpers for the generic kernels, for benchmarks and checks.
public enum CUDAPrimitives {
    /// `copy_rows`: see Kernels/rows.cu.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public static func copyRows(
        kernels: CUDAKernels, dimension: Int, dst: DeviceAddress, dstIndex: DeviceAddress, src: DeviceAddress, srcHigh: DeviceAddress, split: Int64,
        srcIndex: DeviceAddress, srcIndex2: DeviceAddress, count: Int, countPointer: DeviceAddress, fill: Float, streaming: Bool, stream: CUDAStream
    ) throws {
        let alignment = Int((dst | src | srcHigh) % 16)
        let width = kernels.copyRows.width(for: dimension, alignment: alignment == 0 ? 16 : alignment)
        try kernels.launch(
            width.function, threads: count, stream: stream,
            [
                .pointer(dst), .pointer(dstIndex), .pointer(src), .pointer(srcHigh == 0 ? src : srcHigh), .i64(split), .pointer(srcIndex), .pointer(srcIndex2),
                .count(count), .pointer(countPointer), .count(dimension), .u32(CUDAKernels.log2Lanes(units: dimension / width.width)), .f32(fill),
                .u32(streaming ? 1 : 0),
            ])
    }

    /// The pipelined dynamic-cache query's copy alone (`dyn_gather_d{dim}[_cs]`, Kernels/dynamic_cache.cu):
    /// `output[j × dim] = values[rows[j] × dim]` for j < count (rows[j] < 0: left alone); `streaming` adds its
    /// evict-first cache hints. Returns false (and does nothing) when `dimension` has no such kernel
    /// (``CUDAKernels/pipelinedGatherDimensions``) or a pointer is not 16-byte aligned.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    @discardableResult
    public static func gatherRowsPipelined(
        kernels: CUDAKernels, dimension: Int, values: DeviceAddress, rows: DeviceAddress, count: Int, output: DeviceAddress, streaming: Bool, stream: CUDAStream
    ) throws -> Bool {
        guard (values | output) % 16 == 0, let function = kernels.dynGatherRows["dyn_gather_d\(dimension)\(streaming ? "_cs" : "")"] else { return false }
        try kernels.launch(function, threads: count, stream: stream, [.pointer(values), .pointer(rows), .count(count), .pointer(output)])
        return true
    }

    /// Fills device `keys[0 ..< count]` with Zipf ranks (see Kernels/bench.cu and `CUDAWorkload` in HPSTestSupport).
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public static func zipfKeys(kernels: CUDAKernels, cdf: DeviceAddress, rows: Int, seed: UInt64, first: UInt64, count: Int, keys: DeviceAddress, stream: CUDAStream) throws {
        try kernels.launch(kernels.benchZipfKeys, threads: count, stream: stream, [.pointer(cdf), .count(rows), .u64(seed), .u64(first), .count(count), .pointer(keys)])
    }

    /// The benchmark vectors of `keys` (see `CUDAWorkload.value(key:element:dimension:seed:)` in HPSTestSupport).
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public static func keyValues(kernels: CUDAKernels, keys: DeviceAddress, count: Int, countPointer: DeviceAddress, dimension: Int, seed: UInt64, output: DeviceAddress, stream: CUDAStream) throws {
        try kernels.launch(
            kernels.benchKeyValues, threads: count * dimension, stream: stream,
            [.pointer(keys), .count(count), .pointer(countPointer), .count(dimension), .u64(seed), .pointer(output)])
    }

    /// keys[i] = (first + i) × multiplier + offset.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public static func sequenceKeys(kernels: CUDAKernels, keys: DeviceAddress, count: Int, first: UInt64, multiplier: UInt64, offset: UInt64, stream: CUDAStream) throws {
        try kernels.launch(kernels.benchSequenceKeys, threads: count, stream: stream, [.pointer(keys), .count(count), .u64(first), .u64(multiplier), .u64(offset)])
    }

    /// keys[i] = table[rows[i]].
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public static func pickKeys(kernels: CUDAKernels, table: DeviceAddress, rows: DeviceAddress, count: Int, keys: DeviceAddress, stream: CUDAStream) throws {
        try kernels.launch(kernels.benchPickKeys, threads: count, stream: stream, [.pointer(table), .pointer(rows), .count(count), .pointer(keys)])
    }

    /// Adds to the device UInt32 `counter` the inputs whose distinct key missed.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public static func countMissedAccesses(kernels: CUDAKernels, inverse: DeviceAddress, count: Int, hitFlags: DeviceAddress, counter: DeviceAddress, stream: CUDAStream) throws {
        try kernels.launch(kernels.countMissedAccesses, threads: count, stream: stream, [.pointer(inverse), .count(count), .pointer(hitFlags), .pointer(counter)])
    }
}
