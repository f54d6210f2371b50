import CCUDADriver
import HPS

/// The dynamic embedding cache on a CUDA device: set-associative with 64 slots per set and LRU replacement,
/// the same placement and algorithm as the CPU ``DynamicCache`` (Kernels/dynamic_cache.cu says how), so for
/// the same sequence of operations both hold the same keys and answer the same hits.
///
/// With ``CacheAdmission/tinyLFU`` the cache keeps the ``FrequencySketch`` of the CPU cache in device memory and
/// makes the same admission decisions (Kernels/dynamic_cache.cu).
///
/// Operations are serialised by a lock per cache and run on the cache's stream. A query refreshes the
/// recency of every hit. If a CUDA call fails, the cache logs the error once and from then on answers every
/// key as a miss (lookups then go to the databases), which keeps answers correct.
public final class CUDADynamicCache: CUDADeviceCache, @unchecked Sendable {
    // @unchecked Sendable: the device buffers, kernels and stream are fixed at init; `lock` serialises every
    // operation and guards `clock`, `selectedQueryKernel` and `failed`, so one call at a time uses the staging
    // buffers and the stream.
    public static let slotsPerSet = 64

    /// Which kernel a query that copies vectors out runs. All give the same answers and leave the same state
    /// (stamps included); they differ in speed. Queries without an output, and rows whose width has no
    /// pipelined kernel (``CUDAKernels/pipelinedQueryDimensions``: 16, 32, 64, 128 floats) or whose output is
    /// not 16-byte aligned, always run ``classic``.
    public enum QueryKernel: String, CaseIterable, Sendable {
        /// `dyn_query_v4/_v2/_v1`: a warp probes 32 keys, then copies their rows.
        case classic
        /// `dyn_query_d{dim}`: the probe of a warp's next 32 keys runs interleaved with the copy of its
        /// current rows (float4 moves, fully unrolled, several rows in flight per lane).
        case pipelined
        /// `dyn_query_d{dim}_cs`: ``pipelined`` with evict-first cache hints on the rows and keys, so that the
        /// tag lines and slots stay in L2. The default.
        case streaming
        /// `dyn_query_d128_cs_n`: ``streaming`` with fewer rows in flight per warp and more warps (dim 128;
        /// other widths run ``streaming``).
        case narrow

        /// `HPS_DYN_QUERY_KERNEL` (one of the names) when set, else ``streaming``.
        public static var standard: QueryKernel {
            if let name = FileSystem.environment("HPS_DYN_QUERY_KERNEL"), let kernel = QueryKernel(rawValue: name) { return kernel }
            return .streaming
        }
    }

    public let dimension: Int
    public let setCount: Int
    public var capacity: Int { setCount * Self.slotsPerSet }
    public var holdsWholeTable: Bool { false }
    public let context: CUDAContext
    public let stream: CUDAStream
    /// What the cache is for (a table tag), for messages.
    public let label: String
    /// The admission policy of inserted keys.
    public let admission: CacheAdmission

    let kernels: CUDAKernels
    let tags: CUDADeviceBuffer
    let slots: CUDADeviceBuffer
    let values: CUDADeviceBuffer
    let occupied: CUDADeviceBuffer
    // Grouping scratch of replace/update.
    let groupCapacity: Int
    let groupShift: UInt32
    let groupSet: CUDADeviceBuffer
    let groupHead: CUDADeviceBuffer
    let next: CUDADeviceBuffer
    let keySet: CUDADeviceBuffer
    // TinyLFU: the sketch's words, its counted keys (u64) and aging flag (u32), nil without admission.
    let sketch: CUDADeviceBuffer?
    let sketchState: CUDADeviceBuffer?
    let sketchLog2: UInt32
    let sketchSample: UInt64
    let staging: CUDAStaging
    private let queryWidth: (function: CUDAFunction, width: Int)
    private let applyWidth: (function: CUDAFunction, width: Int)
    private let lock = Lock()
    private var clock: UInt64 = 1
    private var selectedQueryKernel = QueryKernel.standard
    private var failed: CUDAError?
    private let logger: HPSLogger

    /// A cache of at least `capacity` slots (rounded up to whole sets of 64, as the CPU cache) for vectors of
    /// `dimension` floats with the admission policy `admission`. `maxBatch` sizes the staging buffers (larger
    /// batches are processed in chunks).
    /// - Throws: ``CUDAError`` `.invalidArgument` for a dimension below 1 or a size beyond what the kernels index;
    ///   `.outOfMemory` naming the buffer when device memory is short; the driver's or NVRTC's error when the kernels
    ///   cannot be loaded.
    public init(
        context: CUDAContext, capacity: Int, dimension: Int, maxBatch: Int = 65536, admission: CacheAdmission = .none, label: String = "cache",
        logger: HPSLogger = .standard
    ) throws {
        guard dimension > 0 else { throw CUDAError(.invalidArgument, what: "dimension \(dimension) of \(label)") }
        self.context = context
        self.dimension = dimension
        self.label = label
        self.admission = admission
        self.logger = logger
        setCount = max(1, (max(capacity, Self.slotsPerSet) + Self.slotsPerSet - 1) / Self.slotsPerSet)
        let slotCount = setCount * Self.slotsPerSet
        guard slotCount <= Int(Int32.max) else {
            throw CUDAError(.invalidArgument, what: "capacity \(capacity) of \(label)", detail: "at most \(Int32.max) slots")
        }
        kernels = try context.kernels()
        stream = try context.makeStream()
        let what = "the dynamic cache of \(label)"
        tags = try context.allocate(bytes: slotCount, what: "tags of \(what)")
        slots = try context.allocate(bytes: slotCount * 16, what: "keys of \(what)")
        values = try context.allocate(bytes: slotCount * dimension * 4, what: "vectors of \(what) (\(slotCount) slots × dim \(dimension))")
        occupied = try context.allocate(bytes: 8, what: "counter of \(what)")
        staging = try CUDAStaging(context: context, chunk: CUDAStaging.chunkSize(maxBatch: maxBatch, dimension: dimension), dimension: dimension, what: what)
        let group = powerOfTwo(atLeast: max(64, 2 * staging.chunk))
        groupCapacity = group.value
        groupShift = UInt32(32 - group.log2)
        groupSet = try context.allocate(bytes: group.value * 4, what: "set groups of \(what)")
        groupHead = try context.allocate(bytes: group.value * 4, what: "set groups of \(what)")
        next = try context.allocate(bytes: staging.chunk * 4, what: "set groups of \(what)")
        keySet = try context.allocate(bytes: staging.chunk * 4, what: "set groups of \(what)")
        let blocks = FrequencySketch.blocks(slots: slotCount)
        sketchLog2 = UInt32(blocks.log2)
        sketchSample = UInt64(FrequencySketch.samplesPerSlot * slotCount)
        if admission == .tinyLFU {
            sketch = try context.allocate(bytes: blocks.count * 64, what: "frequency sketch of \(what)")
            sketchState = try context.allocate(bytes: 16, what: "frequency sketch of \(what)")
        } else {
            sketch = nil
            sketchState = nil
        }
        queryWidth = kernels.dynQuery.width(for: dimension)
        applyWidth = kernels.dynApply.width(for: dimension)
        try context.fill8(tags.pointer, value: 0, count: slotCount, stream: stream)
        try context.fill32(slots.pointer, value: 0, count: slotCount * 4, stream: stream)
        try context.fill32(values.pointer, value: 0, count: slotCount * dimension, stream: stream)
        try context.fill32(occupied.pointer, value: 0, count: 2, stream: stream)
        try context.fill32(groupSet.pointer, value: 0xFFFF_FFFF, count: group.value, stream: stream)
        try context.fill32(groupHead.pointer, value: 0xFFFF_FFFF, count: group.value, stream: stream)
        if let sketch, let sketchState {
            try context.fill32(sketch.pointer, value: 0, count: sketch.byteCount / 4, stream: stream)
            try context.fill32(sketchState.pointer, value: 0, count: 4, stream: stream)
        }
        try stream.synchronize()
    }

    /// Device bytes a cache of `capacity` slots takes (what ``deviceBytes`` reports once made): tags, slot keys
    /// and stamps, vectors, the grouping scratch of inserts and the staging buffers of host-pointer calls.
    public static func estimatedDeviceBytes(capacity: Int, dimension: Int, maxBatch: Int, admission: CacheAdmission = .none) -> Int {
        let sets = max(1, (max(capacity, slotsPerSet) + slotsPerSet - 1) / slotsPerSet)
        let slots = sets * slotsPerSet
        let chunk = CUDAStaging.chunkSize(maxBatch: maxBatch, dimension: dimension)
        let group = powerOfTwo(atLeast: max(64, 2 * chunk)).value
        let sketch = admission == .tinyLFU ? FrequencySketch.blocks(slots: slots).count * 64 + 16 : 0
        return slots * (1 + 16 + dimension * 4) + 8 + group * 8 + chunk * 8 + CUDAStaging.deviceBytes(chunk: chunk, dimension: dimension) + sketch
    }

    /// Bytes of device memory the cache holds.
    public var deviceBytes: Int {
        [tags, slots, values, occupied, groupSet, groupHead, next, keySet, staging.deviceKeys, staging.deviceValues,
         staging.deviceFlags, staging.deviceRows, staging.deviceRows2, staging.deviceCount].reduce(0) { $0 + $1.byteCount }
            + (sketch?.byteCount ?? 0) + (sketchState?.byteCount ?? 0)
    }

    public var failure: CUDAError? { lock.withLock { failed } }

    /// The kernel queries that copy vectors out run (see ``QueryKernel``); ``QueryKernel/standard`` at first.
    public var queryKernel: QueryKernel {
        get { lock.withLock { selectedQueryKernel } }
        set { lock.withLock { selectedQueryKernel = newValue } }
    }

    /// The kernel a query runs with ``queryKernel`` (copying to a 16-byte aligned output or not): its name,
    /// registers, local memory and resident blocks per multiprocessor.
    public func queryKernelFunction(copying: Bool = true) -> CUDAFunction {
        queryLaunch(output: copying ? 16 : 0, kernel: queryKernel).function
    }

    public var rowSource: (base: DeviceAddress, high: DeviceAddress, split: Int64) { (values.pointer, values.pointer, Int64.max) }

    private func fail(_ error: any Error) {
        let cudaError = error as? CUDAError ?? CUDAError(.driverCall, what: "\(error)")
        if failed == nil {
            logger.error("CUDA dynamic cache of \(label) failed: \(cudaError). From now on it answers every key as a miss; lookups go to the databases.")
        }
        failed = cudaError
    }

    // MARK: EmbeddingCache

    public var unitCount: Int { setCount }

    public var count: Int {
        lock.withLock {
            guard failed == nil else { return 0 }
            do {
                try context.makeCurrent()
                try context.copy(toHost: staging.hostCount.host, from: occupied.pointer, bytes: 8, stream: stream)
                try stream.synchronize()
                return Int(staging.hostCount.typed(UInt64.self).pointee)
            } catch {
                fail(error)
                return 0
            }
        }
    }

    public func query(keys input: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, missing: UnsafeMutablePointer<Int32>) -> Int {
        let n = input.count
        guard n > 0, let base = input.baseAddress else { return 0 }
        return lock.withLock {
            func allMissing() -> Int {
                for i in 0..<n { missing[i] = Int32(truncatingIfNeeded: i) }
                return n
            }
            guard failed == nil else { return allMissing() }
            do {
                try context.makeCurrent()
                clock += 1
                let now = clock
                let kernel = selectedQueryKernel
                return try staging.query(keys: base, count: n, into: output, missing: missing, context: context, stream: stream) { keys, m in
                    try launchQuery(
                        keys: keys, count: m, countPointer: 0, output: staging.deviceValues.pointer, missing: 0, missingKeys: 0,
                        missCount: staging.deviceCount.pointer, hitFlags: staging.deviceFlags.pointer, slots: 0, now: now, kernel: kernel, stream: stream)
                }
            } catch {
                fail(error)
                return allMissing()
            }
        }
    }

    public func replace(keys input: UnsafeBufferPointer<Int64>, values source: UnsafePointer<Float>) {
        apply(keys: input, values: source, updateOnly: false)
    }

    public func update(keys input: UnsafeBufferPointer<Int64>, values source: UnsafePointer<Float>) {
        apply(keys: input, values: source, updateOnly: true)
    }

    private func apply(keys input: UnsafeBufferPointer<Int64>, values source: UnsafePointer<Float>, updateOnly: Bool) {
        let n = input.count
        guard n > 0, let base = input.baseAddress else { return }
        lock.withLock {
            guard failed == nil else { return }
            do {
                try context.makeCurrent()
                // Replace advances the clock (as the CPU cache's replace does); update does not.
                if !updateOnly { clock += 1 }
                let now = clock
                let dim = dimension
                if !updateOnly, sketch != nil {
                    // Age, then count every key of the call before any is placed (the sketch's rules).
                    try launchAge(stream: stream)
                    try forEachChunk(n, chunk: staging.chunk) { start, m in
                        staging.hostKeys.host.copyMemory(from: base + start, byteCount: m * 8)
                        try context.copy(toDevice: staging.deviceKeys.pointer, from: staging.hostKeys.host, bytes: m * 8, stream: stream)
                        try launchCount(keys: staging.deviceKeys.pointer, count: m, first: start == 0, stream: stream)
                        try stream.synchronize()
                    }
                }
                try forEachChunk(n, chunk: staging.chunk) { start, m in
                    staging.hostKeys.host.copyMemory(from: base + start, byteCount: m * 8)
                    staging.hostValues.host.copyMemory(from: source + start * dim, byteCount: m * dim * 4)
                    try context.copy(toDevice: staging.deviceKeys.pointer, from: staging.hostKeys.host, bytes: m * 8, stream: stream)
                    try context.copy(toDevice: staging.deviceValues.pointer, from: staging.hostValues.host, bytes: m * dim * 4, stream: stream)
                    try launchApply(keys: staging.deviceKeys.pointer, values: staging.deviceValues.pointer, count: m, now: now, updateOnly: updateOnly, stream: stream)
                    try stream.synchronize()
                }
            } catch {
                fail(error)
            }
        }
    }

    public func keys(inUnits range: Range<Int>) -> [Int64] {
        let sets = range.clamped(to: 0..<setCount)
        guard !sets.isEmpty else { return [] }
        return lock.withLock {
            guard failed == nil else { return [] }
            var result: [Int64] = []
            do {
                try context.makeCurrent()
                let step = 16384
                var first = sets.lowerBound
                while first < sets.upperBound {
                    let count = min(step, sets.upperBound - first)
                    var tagBytes = [UInt8](repeating: 0, count: count * Self.slotsPerSet)
                    var slotWords = [Int64](repeating: 0, count: count * Self.slotsPerSet * 2)
                    try tagBytes.withUnsafeMutableBytes { raw in
                        try context.copy(toHost: raw.baseAddress!, from: tags.pointer + DeviceAddress(first * Self.slotsPerSet), bytes: raw.count, stream: stream)
                    }
                    try slotWords.withUnsafeMutableBytes { raw in
                        try context.copy(toHost: raw.baseAddress!, from: slots.pointer + DeviceAddress(first * Self.slotsPerSet * 16), bytes: raw.count, stream: stream)
                    }
                    try stream.synchronize()
                    for j in 0..<(count * Self.slotsPerSet) where tagBytes[j] != 0 { result.append(slotWords[2 * j]) }
                    first += count
                }
            } catch {
                fail(error)
                return []
            }
            return result
        }
    }

    // MARK: Device-pointer API

    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func enqueueQuery(
        keys: DeviceAddress, count: Int, countPointer: DeviceAddress = 0, output: DeviceAddress = 0, missing: DeviceAddress = 0,
        missingKeys: DeviceAddress = 0, missCount: DeviceAddress, hitFlags: DeviceAddress = 0, slots: DeviceAddress = 0, stream: CUDAStream? = nil
    ) throws {
        let (now, kernel) = lock.withLock { () -> (UInt64, QueryKernel) in
            clock += 1
            return (clock, selectedQueryKernel)
        }
        try context.makeCurrent()
        try launchQuery(
            keys: keys, count: count, countPointer: countPointer, output: output, missing: missing, missingKeys: missingKeys, missCount: missCount,
            hitFlags: hitFlags, slots: slots, now: now, kernel: kernel, stream: stream ?? self.stream)
    }

    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func enqueueReplace(keys: DeviceAddress, values source: DeviceAddress, count: Int, stream: CUDAStream? = nil) throws {
        try enqueueApply(keys: keys, values: source, count: count, updateOnly: false, stream: stream)
    }

    /// Overwrites the vectors of those keys that are cached (device pointers), as ``update(keys:values:)``.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func enqueueUpdate(keys: DeviceAddress, values source: DeviceAddress, count: Int, stream: CUDAStream? = nil) throws {
        try enqueueApply(keys: keys, values: source, count: count, updateOnly: true, stream: stream)
    }

    private func enqueueApply(keys: DeviceAddress, values source: DeviceAddress, count: Int, updateOnly: Bool, stream: CUDAStream?) throws {
        let now = lock.withLock { () -> UInt64 in
            if !updateOnly { clock += 1 }
            return clock
        }
        try context.makeCurrent()
        if !updateOnly, sketch != nil {
            try launchAge(stream: stream ?? self.stream)
            try launchCount(keys: keys, count: count, first: true, stream: stream ?? self.stream)
        }
        try forEachChunk(count, chunk: staging.chunk) { start, m in
            try launchApply(
                keys: keys + DeviceAddress(start * 8), values: source + DeviceAddress(start * dimension * 4), count: m, now: now, updateOnly: updateOnly,
                stream: stream ?? self.stream)
        }
    }

    /// Appends the keys cached in sets `range` to `keysOut` (device; order across sets unspecified) and their
    /// number to the device UInt32 `countOut` (zeroed first).
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func enqueueDump(sets range: Range<Int>, keysOut: DeviceAddress, countOut: DeviceAddress, stream: CUDAStream? = nil) throws {
        let sets = range.clamped(to: 0..<setCount)
        let s = stream ?? self.stream
        try context.makeCurrent()
        try context.fill32(countOut, value: 0, count: 1, stream: s)
        try kernels.launch(
            kernels.dynDump, threads: sets.count * 32, stream: s,
            [.pointer(tags.pointer), .pointer(self.slots.pointer), .count(sets.lowerBound), .count(sets.count), .pointer(keysOut), .pointer(countOut)])
    }

    // MARK: Launches

    /// The function a query with output at `output` (0: none) runs for `kernel`, and how to launch it.
    func queryLaunch(output: DeviceAddress, kernel: QueryKernel) -> (function: CUDAFunction, width: Int, pipelined: Bool) {
        if output != 0, output % 16 == 0, kernel != .classic, CUDAKernels.pipelinedQueryDimensions.contains(dimension) {
            let name: String
            switch kernel {
            case .classic, .pipelined: name = "dyn_query_d\(dimension)"
            case .streaming: name = "dyn_query_d\(dimension)_cs"
            case .narrow: name = dimension == 128 ? "dyn_query_d128_cs_n" : "dyn_query_d\(dimension)_cs"
            }
            if let function = kernels.dynQueryRows[name] { return (function, 4, true) }
        }
        let width = output % 16 == 0 ? queryWidth : kernels.dynQuery.width(for: dimension, alignment: Int(output % 16))
        return (width.function, width.width, false)
    }

    private func launchQuery(
        keys: DeviceAddress, count: Int, countPointer: DeviceAddress, output: DeviceAddress, missing: DeviceAddress, missingKeys: DeviceAddress,
        missCount: DeviceAddress, hitFlags: DeviceAddress, slots slotOut: DeviceAddress, now: UInt64, kernel: QueryKernel, stream: CUDAStream
    ) throws {
        try context.fill32(missCount, value: 0, count: 1, stream: stream)
        let launch = queryLaunch(output: output, kernel: kernel)
        if launch.pipelined {
            try kernels.launch(
                launch.function, threads: count, stream: stream,
                [
                    .pointer(tags.pointer), .pointer(slots.pointer), .pointer(values.pointer), .count(setCount), .pointer(keys), .count(count),
                    .pointer(countPointer), .u64(now), .pointer(output), .pointer(missing), .pointer(missingKeys), .pointer(missCount),
                    .pointer(hitFlags), .pointer(slotOut), .pointer(sketch?.pointer ?? 0), .u32(sketchLog2), .pointer(additionsPointer),
                ])
            return
        }
        try kernels.launch(
            launch.function, threads: count, stream: stream,
            [
                .pointer(tags.pointer), .pointer(slots.pointer), .pointer(values.pointer), .count(setCount), .pointer(keys), .count(count),
                .pointer(countPointer), .u64(now), .pointer(output), .count(dimension), .u32(CUDAKernels.log2Lanes(units: dimension / launch.width)),
                .pointer(missing), .pointer(missingKeys), .pointer(missCount), .pointer(hitFlags), .pointer(slotOut),
                .pointer(sketch?.pointer ?? 0), .u32(sketchLog2), .pointer(additionsPointer),
            ])
    }

    private func launchApply(keys: DeviceAddress, values source: DeviceAddress, count: Int, now: UInt64, updateOnly: Bool, stream: CUDAStream) throws {
        precondition(count <= staging.chunk)
        try kernels.launch(
            kernels.dynGroup, threads: count, stream: stream,
            [.pointer(keys), .count(count), .count(setCount), .pointer(groupSet.pointer), .pointer(groupHead.pointer), .u32(groupShift),
             .pointer(next.pointer), .pointer(keySet.pointer)])
        let width = source % 16 == 0 ? applyWidth : kernels.dynApply.width(for: dimension, alignment: Int(source % 16))
        try kernels.launch(
            width.function, threads: groupCapacity, stream: stream,
            [
                .pointer(tags.pointer), .pointer(slots.pointer), .pointer(values.pointer), .count(setCount), .pointer(keys), .pointer(source),
                .count(count), .count(dimension), .u64(now), .u32(updateOnly ? 1 : 0), .pointer(groupSet.pointer), .pointer(groupHead.pointer),
                .count(groupCapacity), .pointer(next.pointer), .pointer(keySet.pointer), .pointer(occupied.pointer),
                .pointer(updateOnly ? 0 : sketch?.pointer ?? 0), .u32(sketchLog2),
            ])
    }

    /// The sketch's counted keys (device u64; 0 without admission).
    private var additionsPointer: DeviceAddress { sketchState?.pointer ?? 0 }

    /// Halves the sketch when its counted keys reached the sample size (decided on the device; the call's first
    /// ``launchCount(keys:count:first:stream:)`` halves the count).
    private func launchAge(stream: CUDAStream) throws {
        guard let sketch, let sketchState else { return }
        try kernels.launch(
            kernels.dynSketchHalve, threads: sketch.byteCount / 4, stream: stream,
            [.pointer(sketch.pointer), .u64(UInt64(sketch.byteCount / 4)), .pointer(sketchState.pointer), .u64(sketchSample)])
    }

    /// Counts `count` keys (device) of an insert call in the sketch; `first`: the call's first, right after
    /// ``launchAge(stream:)``.
    private func launchCount(keys: DeviceAddress, count: Int, first: Bool, stream: CUDAStream) throws {
        guard let sketch, let sketchState, count > 0 else { return }
        try kernels.launch(
            kernels.dynSketchAdd, threads: count, stream: stream,
            [.pointer(keys), .count(count), .pointer(sketch.pointer), .u32(sketchLog2), .pointer(sketchState.pointer), .u64(sketchSample), .u32(first ? 1 : 0)])
    }

    /// The sketch's counters and counted keys (for checks; nil without admission).
    /// - Throws: ``CUDAError`` when a device call fails.
    public func sketchSnapshot() throws -> (words: [UInt32], additions: UInt64)? {
        guard let sketch, let sketchState else { return nil }
        return try lock.withLock {
            try context.makeCurrent()
            var words = [UInt32](repeating: 0, count: sketch.byteCount / 4)
            var additions: UInt64 = 0
            try words.withUnsafeMutableBytes { try context.copy(toHost: $0.baseAddress!, from: sketch.pointer, bytes: $0.count, stream: stream) }
            try withUnsafeMutableBytes(of: &additions) { try context.copy(toHost: $0.baseAddress!, from: sketchState.pointer, bytes: 8, stream: stream) }
            try stream.synchronize()
            return (words, additions)
        }
    }
}
