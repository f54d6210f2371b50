import CCUDADriver
import HPS

/// The static and uvm embedding tables on a CUDA device: the whole table behind an open-addressing index on
/// the GPU; misses are final (the default value), as in HPS.
///
/// - `static`: every row in device memory.
/// - `uvm`: the first `deviceRows` rows (HPS: `gpucacheper` × rows, the rows loaded first) in device memory,
///   the rest in pinned host memory (`cuMemHostAlloc`) that the kernels read through its mapped device
///   pointer.
///
/// Rows are numbered in insertion order by the host, so the table fills exactly like the CPU ``StaticCache``
/// (same rows kept when the capacity is reached, same order in ``keys(inUnits:)``). Operations are serialised
/// by a lock per table and run on the table's stream. A CUDA failure cannot be answered correctly by a table
/// whose misses are final, so it stops the process with the error.
public final class CUDAStaticCache: CUDADeviceCache, @unchecked Sendable {
    // @unchecked Sendable: the device buffers, kernels and stream are fixed at init; `lock` guards `rowCount` and
    // serialises every operation, so one call at a time uses the staging buffers and the stream.
    public enum Kind: String, Sendable {
        case `static`, uvm
    }

    public let kind: Kind
    public let dimension: Int
    public let capacity: Int
    /// Rows held in device memory (all for `static`).
    public let deviceRows: Int
    public var holdsWholeTable: Bool { true }
    public let context: CUDAContext
    public let stream: CUDAStream
    public let label: String

    let kernels: CUDAKernels
    let index: CUDADeviceBuffer
    let indexMask: UInt32
    let rowKeys: CUDADeviceBuffer
    let deviceValues: CUDADeviceBuffer
    let hostValues: CUDAPinnedBuffer?
    let staging: CUDAStaging
    private let queryWidth: (function: CUDAFunction, width: Int)
    private let writeWidth: (function: CUDAFunction, width: Int)
    private let lock = Lock()
    private var rowCount = 0

    /// A table for up to `capacity` rows of `dimension` floats. For `uvm`, `deviceFraction` of the rows live
    /// on the device (HPS's `gpucacheper`); `static` ignores it.
    /// - Throws: ``CUDAError`` `.invalidArgument` for a dimension below 1 or a size beyond what the kernels index;
    ///   `.outOfMemory` naming the buffer when device memory is short; the driver's or NVRTC's error when the kernels
    ///   cannot be loaded.
    public init(
        context: CUDAContext, kind: Kind, capacity: Int, dimension: Int, deviceFraction: Double = 1, maxBatch: Int = 65536, label: String = "table",
        logger: HPSLogger = .standard
    ) throws {
        guard dimension > 0 else { throw CUDAError(.invalidArgument, what: "dimension \(dimension) of \(label)") }
        guard capacity < Int(Int32.max) else { throw CUDAError(.invalidArgument, what: "capacity \(capacity) of \(label)", detail: "at most \(Int32.max - 1) rows") }
        self.context = context
        self.kind = kind
        self.dimension = dimension
        self.capacity = max(1, capacity)
        self.label = label
        let device = kind == .static ? self.capacity : min(self.capacity, max(0, Int((deviceFraction * Double(self.capacity)).rounded(.down))))
        deviceRows = device
        kernels = try context.kernels()
        stream = try context.makeStream()
        let what = "the \(kind.rawValue) table of \(label)"
        let slots = powerOfTwo(atLeast: max(16, 2 * self.capacity))
        guard slots.value <= 1 << 31 else { throw CUDAError(.invalidArgument, what: "capacity \(capacity) of \(label)", detail: "index too large") }
        indexMask = UInt32(slots.value - 1)
        index = try context.allocate(bytes: slots.value * 16, what: "index of \(what) (\(slots.value) entries)")
        rowKeys = try context.allocate(bytes: self.capacity * 8, what: "row keys of \(what)")
        deviceValues = try context.allocate(bytes: max(1, device) * dimension * 4, what: "vectors of \(what) (\(device) rows × dim \(dimension) on the device)")
        if device < self.capacity {
            guard context.canMapHostMemory else {
                throw CUDAError(.invalidArgument, what: "uvm table of \(label)", detail: "device \(context.device) cannot map host memory")
            }
            hostValues = try context.allocatePinned(bytes: (self.capacity - device) * dimension * 4, what: "host part of \(what) (\(self.capacity - device) rows × dim \(dimension))")
        } else {
            hostValues = nil
        }
        staging = try CUDAStaging(context: context, chunk: CUDAStaging.chunkSize(maxBatch: maxBatch, dimension: dimension), dimension: dimension, what: what)
        queryWidth = kernels.stQuery.width(for: dimension)
        writeWidth = kernels.stWriteRows.width(for: dimension)
        try context.fill32(index.pointer, value: 0, count: slots.value * 4, stream: stream)
        try stream.synchronize()
    }

    /// Device and pinned host bytes a table of `capacity` rows takes (what ``deviceBytes`` / ``hostBytes``
    /// report once made): the index (16-byte entries, a power of two ≥ 2 × rows), row keys, the rows on the
    /// device (all for static, `deviceFraction` for uvm, the rest pinned on the host) and the staging buffers.
    public static func estimatedBytes(kind: Kind, capacity: Int, dimension: Int, deviceFraction: Double, maxBatch: Int) -> (device: Int, pinnedHost: Int) {
        let rows = max(1, capacity)
        let onDevice = kind == .static ? rows : min(rows, max(0, Int((deviceFraction * Double(rows)).rounded(.down))))
        let index = powerOfTwo(atLeast: max(16, 2 * rows)).value
        let chunk = CUDAStaging.chunkSize(maxBatch: maxBatch, dimension: dimension)
        let device = index * 16 + rows * 8 + max(1, onDevice) * dimension * 4 + CUDAStaging.deviceBytes(chunk: chunk, dimension: dimension)
        return (device, (rows - onDevice) * dimension * 4)
    }

    public var deviceBytes: Int {
        [index, rowKeys, deviceValues, staging.deviceKeys, staging.deviceValues, staging.deviceFlags, staging.deviceRows, staging.deviceRows2, staging.deviceCount]
            .reduce(0) { $0 + $1.byteCount }
    }

    /// Bytes of pinned host memory (the uvm table's host part).
    public var hostBytes: Int { hostValues?.byteCount ?? 0 }

    public var failure: CUDAError? { nil }

    public var rowSource: (base: DeviceAddress, high: DeviceAddress, split: Int64) {
        (deviceValues.pointer, hostValues?.device ?? deviceValues.pointer, Int64(deviceRows))
    }

    /// The error a failed device call turns into: the call fails (its misses are final, so answering them
    /// with defaults would be silently wrong).
    private func failure(_ error: any Error, _ operation: String) -> CUDAError {
        var failure = error as? CUDAError ?? CUDAError(.driverCall, what: "\(error)")
        failure.what = "\(operation) of the CUDA \(kind.rawValue) table of \(label): \(failure.what)"
        return failure
    }

    // MARK: EmbeddingCache

    public var unitCount: Int { lock.withLock { max(1, (rowCount + 63) / 64) } }
    public var count: Int { lock.withLock { rowCount } }

    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func query(keys input: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, missing: UnsafeMutablePointer<Int32>) throws -> Int {
        let n = input.count
        guard n > 0, let base = input.baseAddress else { return 0 }
        return try lock.withLock {
            do {
                try context.makeCurrent()
                return try staging.query(keys: base, count: n, into: output, missing: missing, context: context, stream: stream) { keys, m in
                    try launchQuery(
                        keys: keys, count: m, countPointer: 0, output: staging.deviceValues.pointer, missing: 0, missingKeys: 0,
                        missCount: staging.deviceCount.pointer, hitFlags: staging.deviceFlags.pointer, slots: 0, stream: stream)
                }
            } catch {
                throw failure(error, "query")
            }
        }
    }

    /// Adds rows for new keys (in input order, while capacity lasts) and overwrites the rows of known keys;
    /// with duplicates the last vector wins. As the CPU StaticCache.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func replace(keys input: UnsafeBufferPointer<Int64>, values source: UnsafePointer<Float>) throws {
        try write(keys: input, values: source, addNew: true)
    }

    /// Overwrites the rows of known keys; others are ignored.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func update(keys input: UnsafeBufferPointer<Int64>, values source: UnsafePointer<Float>) throws {
        try write(keys: input, values: source, addNew: false)
    }

    private func write(keys input: UnsafeBufferPointer<Int64>, values source: UnsafePointer<Float>, addNew: Bool) throws {
        let n = input.count
        guard n > 0, let base = input.baseAddress else { return }
        try lock.withLock {
            do {
                try context.makeCurrent()
                let dim = dimension
                try forEachChunk(n, chunk: staging.chunk) { start, m in
                    // Which rows the keys have now.
                    staging.hostKeys.host.copyMemory(from: base + start, byteCount: m * 8)
                    try context.copy(toDevice: staging.deviceKeys.pointer, from: staging.hostKeys.host, bytes: m * 8, stream: stream)
                    try kernels.launch(
                        kernels.stFind, threads: m, stream: stream,
                        [.pointer(index.pointer), .u32(indexMask), .pointer(staging.deviceKeys.pointer), .count(m), .pointer(staging.deviceRows.pointer)])
                    try context.copy(toHost: staging.hostRows.host, from: staging.deviceRows.pointer, bytes: m * 4, stream: stream)
                    try stream.synchronize()
                    // Plan in input order: new rows for new keys, the last writer of each row.
                    let found = staging.hostRows.typed(Int32.self)
                    var newRows: [Int64: Int32] = [:]
                    var newKeys: [Int64] = []
                    var lastWriter: [Int32: Int32] = [:]
                    var order: [Int32] = []
                    for i in 0..<m {
                        let key = base[start + i]
                        var row = found[i]
                        if row < 0 {
                            if let assigned = newRows[key] {
                                row = assigned
                            } else if addNew && rowCount + newKeys.count < capacity {
                                row = Int32(rowCount + newKeys.count)
                                newRows[key] = row
                                newKeys.append(key)
                            } else {
                                continue
                            }
                        }
                        if lastWriter.updateValue(Int32(i), forKey: row) == nil { order.append(row) }
                    }
                    guard !order.isEmpty else { return }
                    // Index entries of the new keys (keys in hostKeys, rows in hostRows).
                    if !newKeys.isEmpty {
                        let keysOut = staging.hostKeys.typed(Int64.self)
                        let rowsOut = staging.hostRows.typed(Int32.self)
                        for (j, key) in newKeys.enumerated() {
                            keysOut[j] = key
                            rowsOut[j] = Int32(rowCount + j)
                        }
                        try context.copy(toDevice: staging.deviceKeys.pointer, from: staging.hostKeys.host, bytes: newKeys.count * 8, stream: stream)
                        try context.copy(toDevice: staging.deviceRows.pointer, from: staging.hostRows.host, bytes: newKeys.count * 4, stream: stream)
                        try kernels.launch(
                            kernels.stInsert, threads: newKeys.count, stream: stream,
                            [.pointer(index.pointer), .u32(indexMask), .pointer(staging.deviceKeys.pointer), .pointer(staging.deviceRows.pointer),
                             .count(newKeys.count), .pointer(rowKeys.pointer)])
                    }
                    // Rows to write and the input vector each takes (rows in hostRows2, sources in hostFlags' place: rows2 holds
                    // the rows, the source indices go to deviceRows after the insert has consumed it).
                    let writeRows = staging.hostRows2.typed(Int32.self)
                    for (j, row) in order.enumerated() { writeRows[j] = row }
                    staging.hostValues.host.copyMemory(from: source + start * dim, byteCount: m * dim * 4)
                    try context.copy(toDevice: staging.deviceValues.pointer, from: staging.hostValues.host, bytes: m * dim * 4, stream: stream)
                    try context.copy(toDevice: staging.deviceRows2.pointer, from: staging.hostRows2.host, bytes: order.count * 4, stream: stream)
                    try stream.synchronize()  // hostRows is reused for the source indices below
                    let sources = staging.hostRows.typed(Int32.self)
                    for (j, row) in order.enumerated() { sources[j] = lastWriter[row, default: 0] }
                    try context.copy(toDevice: staging.deviceRows.pointer, from: staging.hostRows.host, bytes: order.count * 4, stream: stream)
                    let width = writeWidth
                    try kernels.launch(
                        width.function, threads: order.count, stream: stream,
                        [
                            .pointer(deviceValues.pointer), .pointer(hostValues?.device ?? 0), .i64(Int64(deviceRows)), .pointer(staging.deviceRows2.pointer),
                            .pointer(staging.deviceRows.pointer), .pointer(staging.deviceValues.pointer), .count(order.count), .count(dim),
                            .u32(CUDAKernels.log2Lanes(units: dim / width.width)),
                        ])
                    try stream.synchronize()
                    rowCount += newKeys.count
                }
            } catch {
                throw failure(error, addNew ? "replace" : "update")
            }
        }
    }

    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func keys(inUnits range: Range<Int>) throws -> [Int64] {
        try lock.withLock {
            let lower = min(rowCount, max(0, range.lowerBound) * 64)
            let upper = min(rowCount, max(0, range.upperBound) * 64)
            guard upper > lower else { return [] }
            var result = [Int64](repeating: 0, count: upper - lower)
            do {
                try context.makeCurrent()
                try result.withUnsafeMutableBytes { raw in
                    try context.copy(toHost: raw.baseAddress!, from: rowKeys.pointer + DeviceAddress(lower * 8), bytes: raw.count, stream: stream)
                }
                try stream.synchronize()
            } catch {
                throw failure(error, "key dump")
            }
            return result
        }
    }

    // MARK: Device-pointer API

    /// Writes the row of each of `keys[0 ..< count]` to `rows` (device Int32, -1 for an absent key): the first
    /// half of a find-then-gather lookup (rows are read through ``rowSource``).
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func enqueueFind(keys: DeviceAddress, count: Int, rows: DeviceAddress, stream: CUDAStream? = nil) throws {
        try context.makeCurrent()
        try kernels.launch(kernels.stFind, threads: count, stream: stream ?? self.stream, [.pointer(index.pointer), .u32(indexMask), .pointer(keys), .count(count), .pointer(rows)])
    }

    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func enqueueQuery(
        keys: DeviceAddress, count: Int, countPointer: DeviceAddress = 0, output: DeviceAddress = 0, missing: DeviceAddress = 0,
        missingKeys: DeviceAddress = 0, missCount: DeviceAddress, hitFlags: DeviceAddress = 0, slots: DeviceAddress = 0, stream: CUDAStream? = nil
    ) throws {
        try context.makeCurrent()
        try launchQuery(
            keys: keys, count: count, countPointer: countPointer, output: output, missing: missing, missingKeys: missingKeys, missCount: missCount,
            hitFlags: hitFlags, slots: slots, stream: stream ?? self.stream)
    }

    /// Device-pointer replace: copies the batch to the host and applies it as ``replace(keys:values:)``
    /// (row numbering is planned on the host). Synchronises `stream`.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func enqueueReplace(keys: DeviceAddress, values source: DeviceAddress, count: Int, stream: CUDAStream? = nil) throws {
        try context.makeCurrent()
        let s = stream ?? self.stream
        var hostKeys = [Int64](repeating: 0, count: count)
        var hostValues = [Float](repeating: 0, count: count * dimension)
        try hostKeys.withUnsafeMutableBytes { try context.copy(toHost: $0.baseAddress!, from: keys, bytes: $0.count, stream: s) }
        try hostValues.withUnsafeMutableBytes { try context.copy(toHost: $0.baseAddress!, from: source, bytes: $0.count, stream: s) }
        try s.synchronize()
        try hostKeys.withUnsafeBufferPointer { k in try hostValues.withUnsafeBufferPointer { try replace(keys: k, values: $0.baseAddress!) } }
    }

    private func launchQuery(
        keys: DeviceAddress, count: Int, countPointer: DeviceAddress, output: DeviceAddress, missing: DeviceAddress, missingKeys: DeviceAddress,
        missCount: DeviceAddress, hitFlags: DeviceAddress, slots: DeviceAddress, stream: CUDAStream
    ) throws {
        try context.fill32(missCount, value: 0, count: 1, stream: stream)
        let width = output % 16 == 0 ? queryWidth : kernels.stQuery.width(for: dimension, alignment: Int(output % 16))
        try kernels.launch(
            width.function, threads: count, stream: stream,
            [
                .pointer(index.pointer), .u32(indexMask), .pointer(deviceValues.pointer), .pointer(hostValues?.device ?? 0), .i64(Int64(deviceRows)),
                .pointer(keys), .count(count), .pointer(countPointer), .pointer(output), .count(dimension),
                .u32(CUDAKernels.log2Lanes(units: dimension / width.width)), .pointer(missing), .pointer(missingKeys), .pointer(missCount),
                .pointer(hitFlags), .pointer(slots),
            ])
    }
}
