import CCUDADriver
import Dispatch
import HPS
import Synchronization

/// The device-resident lookup of one table on one CUDA device (``DeviceTableLookup``).
///
/// Dynamic cache (``CUDADynamicCache``), on the cache's stream after the caller's stream:
/// 1. dedup the keys on the device (int32 keys are widened first);
/// 2. query the cache with the distinct keys: hits are copied into the worker's distinct-vector buffer, the
///    misses' keys and positions are compacted on the device;
/// 3. the two counts cross to the host; when there are misses, only the distinct missed keys cross;
/// 4. below `hit_rate_threshold` they are fetched from the host tiers, their rows cross back once, are merged
///    into the distinct vectors and inserted into the cache; at or above it they get the default value now and
///    are fetched and inserted in the background;
/// 5. the distinct vectors are scattered into the output in input order.
///
/// Static and uvm tables (``CUDAStaticCache``) never leave the device: dedup → query (row of each distinct
/// key) → one scatter from the table's rows into the output (default for absent keys), all on the caller's
/// stream with no host synchronisation.
///
/// Every call of a dynamic cache runs on the cache's own stream, so the cache's kernels never overlap one
/// another (queries, inserts and the host-pointer API stay ordered); the caller's stream waits for the call
/// through an event. Buffers belong to workers, made on first use and reused (no allocation per call once
/// warm); at most ``maxWorkers`` calls run at once, later ones wait for a worker.
public final class CUDATableLookup: DeviceTableLookup, @unchecked Sendable {
    // @unchecked Sendable: immutable after init except the worker pool, which a Mutex guards; device buffers
    // are owned by one call at a time (a worker is held by exactly one caller).

    public let cache: any CUDADeviceCache
    /// Most keys one call takes.
    public let maxKeys: Int
    public let dimension: Int
    /// Most calls in flight at once (workers).
    public let maxWorkers: Int
    let context: CUDAContext
    let kernels: CUDAKernels
    private let label: String
    private let free = Mutex<[Worker]>([])
    private let slots: DispatchSemaphore

    public var device: Int { context.device }

    /// A lookup for `cache` taking up to `maxKeys` keys per call, with up to `workers` calls in flight.
    /// - Throws: ``CUDAError`` when the kernels cannot be loaded or `maxKeys` is out of range.
    public init(cache: any CUDADeviceCache, maxKeys: Int, workers: Int, label: String) throws {
        guard maxKeys > 0, maxKeys < 1 << 30 else {
            throw CUDAError(.invalidArgument, what: "max keys \(maxKeys) of the device lookup of \(label)", detail: "must be in 1..<2^30")
        }
        self.cache = cache
        self.maxKeys = maxKeys
        self.dimension = cache.dimension
        self.maxWorkers = max(1, workers)
        self.context = cache.context
        self.label = label
        kernels = try cache.context.kernels()
        slots = DispatchSemaphore(value: maxWorkers)
    }

    /// Device bytes one worker holds (for reports): the pipeline plus the widened keys and the fetched rows.
    public var bytesPerWorker: Int { Self.estimatedBytesPerWorker(maxKeys: maxKeys, dimension: dimension, wholeTable: cache.holdsWholeTable) }

    /// Device bytes of one worker (one call in flight) of a lookup taking `maxKeys` keys, made on first use:
    /// the dedup table and per-key arrays of ``CUDALookupPipeline``, its distinct vectors, the widened keys and,
    /// for a dynamic cache, the rows fetched from the host tiers.
    public static func estimatedBytesPerWorker(maxKeys n: Int, dimension dim: Int, wholeTable: Bool) -> Int {
        let dedup = powerOfTwo(atLeast: max(64, 2 * n)).value * 12
        return dedup + n * (8 + 4 + 4 + 4 + 8 + 1 + 4) + n * dim * 4 + n * 8 + (wholeTable ? 0 : n * dim * 4)
    }

    // MARK: Lookup

    /// - Throws: ``HPSError`` `.invalidArgument` naming the table when `request.count` exceeds ``maxKeys`` or a
    ///   pointer is null; ``CUDAError`` when a CUDA call fails; the host lookup's error for keys it fetches.
    public func lookup(_ request: DeviceLookupRequest, host: DeviceLookupHost) throws {
        let n = request.count
        guard n > 0 else { return }
        guard n <= maxKeys else {
            throw HPSError(.invalidArgument, subject: label, "\(n) keys in one device lookup exceed the \(maxKeys) it was sized for")
        }
        guard request.keys != 0, request.output != 0 else {
            throw HPSError(.invalidArgument, subject: label, "device lookup with a null \(request.keys == 0 ? "key" : "output") pointer")
        }
        let worker = try acquire()
        defer { release(worker) }
        do {
            try context.makeCurrent()
            if cache.holdsWholeTable {
                try lookupWholeTable(request, worker: worker, host: host)
            } else {
                try lookupThroughCache(request, worker: worker, host: host)
            }
        } catch let error as CUDAError {
            throw HPSError(.device, subject: label, "device lookup of \(n) keys on CUDA device \(context.device) failed", cause: error)
        }
    }

    /// - Throws: ``CUDAError`` when a CUDA call fails; the host lookup's error for keys it fetches.
    public func lookupHostMemory(keys: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, host: DeviceLookupHost) throws -> Bool {
        let n = keys.count
        guard n > 0, let base = keys.baseAddress else { return true }
        guard n <= maxKeys else {
            throw HPSError(.invalidArgument, subject: label, "\(n) keys in one lookup exceed the \(maxKeys) it was sized for")
        }
        let worker = try acquire()
        defer { release(worker) }
        do {
            try context.makeCurrent()
            let deviceOutput = try worker.output(context: context, bytes: maxKeys * dimension * 4, label: label)
            // The work stream of the path below: the cache's (dynamic) or the worker's own (static, uvm).
            let stream = cache.holdsWholeTable ? worker.stream : cache.stream
            try context.copy(toDevice: worker.keys.pointer, from: UnsafeRawPointer(base), bytes: n * 8, stream: stream)
            let request = DeviceLookupRequest(keys: worker.keys.pointer, int32Keys: false, count: n, output: deviceOutput.pointer, stream: nil)
            if cache.holdsWholeTable {
                try lookupWholeTable(request, worker: worker, host: host)
            } else {
                try lookupThroughCache(request, worker: worker, host: host)
            }
            try context.copy(toHost: UnsafeMutableRawPointer(output), from: deviceOutput.pointer, bytes: n * dimension * 4, stream: stream)
            try stream.synchronize()
            return true
        } catch let error as CUDAError {
            throw HPSError(.device, subject: label, "host-memory lookup of \(n) keys through CUDA device \(context.device) failed", cause: error)
        }
    }

    /// Static and uvm tables: everything on the caller's stream, no host synchronisation. The table is
    /// read-only here, so the keys need no dedup: one kernel finds each key's row and copies it straight into
    /// the output (hot rows come from L2), a second writes the default into the rows of absent keys.
    private func lookupWholeTable(_ request: DeviceLookupRequest, worker: Worker, host: DeviceLookupHost) throws {
        let n = request.count
        let stream = request.stream.map { worker.borrowed($0, context: context) } ?? worker.stream
        try worker.claim(for: stream)
        let keys = try widenedKeys(request, worker: worker, stream: stream)
        let p = worker.pipeline
        if let table = cache as? CUDAStaticCache, Self.staticFindThenGather {
            // One thread per key finds its row, then the row mover copies rows (or the default) into the output
            // with evict-first stores, so hot rows and the index stay in L2.
            let source = table.rowSource
            try table.enqueueFind(keys: keys, count: n, rows: p.slots.pointer, stream: stream)
            try p.copyRows(
                dst: request.output, dstIndex: 0, src: source.base, srcHigh: source.high, split: source.split, srcIndex: p.slots.pointer, srcIndex2: 0,
                count: n, countPointer: 0, fill: host.defaultValue, streaming: true, stream: stream)
        } else {
            try cache.enqueueQuery(
                keys: keys, count: n, countPointer: 0, output: request.output, missing: p.missing.pointer, missingKeys: 0,
                missCount: p.missCount.pointer, hitFlags: 0, slots: 0, stream: stream)
            try p.copyRows(
                dst: request.output, dstIndex: p.missing.pointer, src: 0, srcHigh: 0, split: .max, srcIndex: 0, srcIndex2: 0, count: n,
                countPointer: p.missCount.pointer, fill: host.defaultValue, streaming: true, stream: stream)
        }
        try worker.done.record(on: stream)
        if request.stream == nil { try stream.synchronize() }
        host.record(n, 0, 0, 0)
    }

    /// Dynamic cache: on the cache's stream; the distinct misses go to the host tiers.
    private func lookupThroughCache(_ request: DeviceLookupRequest, worker: Worker, host: DeviceLookupHost) throws {
        let n = request.count, dim = dimension
        let clock = ContinuousClock()
        var marks = (start: clock.now, counted: clock.now, keys: clock.now, fetched: clock.now)
        let stream = cache.stream
        let caller = request.stream.map { worker.borrowed($0, context: context) }
        if let caller {
            // The keys were written on the caller's stream: start after its work so far.
            try worker.entered.record(on: caller)
            try stream.wait(for: worker.entered)
        }
        try worker.claim(for: stream)
        let keys = try widenedKeys(request, worker: worker, stream: stream)
        let p = worker.pipeline
        try p.enqueueDedup(keys: keys, count: n, stream: stream)
        try cache.enqueueQuery(
            keys: p.uniqueKeys.pointer, count: n, countPointer: p.uniqueCount.pointer, output: p.uniqueVectors.pointer, missing: p.missing.pointer,
            missingKeys: p.missingKeys.pointer, missCount: p.missCount.pointer, hitFlags: 0, slots: 0, stream: stream)
        let counts = worker.hostCounts.typed(UInt32.self)
        try context.copy(toHost: worker.hostCounts.host, from: p.uniqueCount.pointer, bytes: 4, stream: stream)
        try context.copy(toHost: worker.hostCounts.host + 4, from: p.missCount.pointer, bytes: 4, stream: stream)
        try stream.synchronize()
        if profile != nil { marks.counted = clock.now; marks.keys = marks.counted; marks.fetched = marks.counted }
        let unique = Int(counts[0]), missing = Int(counts[1])
        var defaults = 0
        if missing > 0 {
            try context.copy(toHost: worker.hostKeys.host, from: p.missingKeys.pointer, bytes: missing * 8, stream: stream)
            try stream.synchronize()
            if profile != nil { marks.keys = clock.now; marks.fetched = marks.keys }
            let missedKeys = UnsafeBufferPointer(start: worker.hostKeys.typed(Int64.self), count: missing)
            let hitRate = unique == 0 ? 1.0 : 1.0 - Double(missing) / Double(unique)
            if hitRate >= host.hitRateThreshold {
                // Default now; fetch and insert in the background (the keys are copied off the worker first).
                try p.copyRows(
                    dst: p.uniqueVectors.pointer, dstIndex: p.missing.pointer, src: 0, srcHigh: 0, split: .max, srcIndex: 0, srcIndex2: 0,
                    count: missing, countPointer: 0, fill: host.defaultValue, streaming: false, stream: stream)
                defaults = missing
                let keysCopy = Array(missedKeys)
                let cache = self.cache, label = self.label
                host.background {
                    var values = [Float](repeating: 0, count: keysCopy.count * dim)
                    keysCopy.withUnsafeBufferPointer { k in
                        var scratch = [Int](repeating: 0, count: k.count)
                        let updates = host.updateCount()
                        values.withUnsafeMutableBufferPointer { v in scratch.withUnsafeMutableBufferPointer { host.fetch(k, v.baseAddress!, $0.baseAddress!) } }
                        do {
                            try values.withUnsafeBufferPointer { v in try cache.replace(keys: k, values: v.baseAddress!) }
                            host.refreshIfUpdated(k, updates)
                        } catch {
                            HPSLogger.standard.error("background insert of \(k.count) keys into the GPU cache of \(label) failed: \(error)")
                        }
                    }
                }
            } else {
                let updates = host.updateCount()
                try fetchAndUpload(missedKeys, worker: worker, host: host, stream: stream)
                if profile != nil { marks.fetched = clock.now }
                try p.copyRows(
                    dst: p.uniqueVectors.pointer, dstIndex: p.missing.pointer, src: worker.fetched.pointer, srcHigh: 0, split: .max, srcIndex: 0,
                    srcIndex2: 0, count: missing, countPointer: 0, fill: host.defaultValue, streaming: false, stream: stream)
                try cache.enqueueReplace(keys: p.missingKeys.pointer, values: worker.fetched.pointer, count: missing, stream: stream)
                // An online update that raced the fetch: its rows go into the cache after the insert (same stream).
                host.refreshIfUpdated(missedKeys, updates)
            }
        }
        try p.copyRows(
            dst: request.output, dstIndex: 0, src: p.uniqueVectors.pointer, srcHigh: 0, split: .max, srcIndex: p.inverse.pointer, srcIndex2: 0,
            count: n, countPointer: 0, fill: host.defaultValue, streaming: true, stream: stream)
        try p.enqueueClear(maxCount: n, stream: stream)
        try worker.done.record(on: stream)
        if let caller {
            try caller.wait(for: worker.done)
        } else {
            try stream.synchronize()
        }
        host.record(n, unique, missing, defaults)
        if let profile {
            try stream.synchronize()
            let end = clock.now
            profile.add(
                [marks.counted - marks.start, marks.keys - marks.counted, marks.fetched - marks.keys, end - marks.fetched], misses: missing, unique: unique)
        }
    }

    /// Phase times of dynamic-cache lookups, logged every 256 calls when `HPS_DEVICE_LOOKUP_PROFILE=1` (each
    /// call then also waits for its stream, so the phases add up to the call's time).
    private let profile: Profile? = FileSystem.environment("HPS_DEVICE_LOOKUP_PROFILE").map { _ in Profile() }

    final class Profile: Sendable {
        private let state = Mutex<(calls: Int, phases: [Duration], misses: Int, unique: Int)>((0, Array(repeating: .zero, count: 4), 0, 0))

        func add(_ phases: [Duration], misses: Int, unique: Int) {
            let line: String? = state.withLock { s in
                s.calls += 1
                for i in 0..<4 { s.phases[i] += phases[i] }
                s.misses += misses
                s.unique += unique
                guard s.calls == 256 else { return nil }
                let us = s.phases.map { d -> Int in let c = (d / s.calls).components; return Int(c.seconds) * 1_000_000 + Int(c.attoseconds / 1_000_000_000_000) }
                let text = "device lookup profile (mean of 256 calls): dedup+query+counts \(us[0]) µs, missed keys to host \(us[1]) µs, "
                    + "fetch+upload \(us[2]) µs, merge+insert+scatter \(us[3]) µs; \(s.unique / s.calls) distinct, \(s.misses / s.calls) missed per call"
                s = (0, Array(repeating: .zero, count: 4), 0, 0)
                return text
            }
            if let line { HPSLogger.standard.info(line) }
        }
    }

    /// Fetches the rows of the distinct missed keys from the host tiers into the worker's pinned buffer and
    /// copies them to the device. Large batches go in chunks on several threads, each chunk's copy enqueued as
    /// soon as its rows are in, so the PCIe transfer overlaps the fetches of the other chunks.
    private func fetchAndUpload(_ keys: UnsafeBufferPointer<Int64>, worker: Worker, host: DeviceLookupHost, stream: CUDAStream) throws {
        let n = keys.count, dim = dimension
        let values = worker.hostValues.typed(Float.self)
        let chunks = n >= 2 * Self.fetchChunk ? min(SystemInfo.processorCount, (n + Self.fetchChunk - 1) / Self.fetchChunk) : 1
        guard chunks > 1 else {
            host.fetch(keys, values, worker.hostMisses)
            try context.copy(toDevice: worker.fetched.pointer, from: worker.hostValues.host, bytes: n * dim * 4, stream: stream)
            return
        }
        let failure = Mutex<CUDAError?>(nil)
        let job = UnsafeTransfer((keys, values))  // each chunk writes only its own rows and scratch range
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let (keys, values) = job.value
            let lo = n * c / chunks, hi = n * (c + 1) / chunks
            host.fetch(UnsafeBufferPointer(rebasing: keys[lo..<hi]), values + lo * dim, worker.hostMisses + lo)
            do {
                try context.makeCurrent()
                try context.copy(
                    toDevice: worker.fetched.pointer + DeviceAddress(lo * dim * 4), from: UnsafeRawPointer(values + lo * dim), bytes: (hi - lo) * dim * 4,
                    stream: stream)
            } catch {
                failure.withLock { $0 = $0 ?? (error as? CUDAError ?? CUDAError(.driverCall, what: "\(error)")) }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
    }

    /// Static and uvm tables: query and copy in one kernel, then fill the misses (the default), or find every
    /// key's row, then gather (`HPS_STATIC_LOOKUP=find-gather`). Same answers; on an H200 both reach about 2x
    /// torch's in-HBM embedding (docs/benchmarks.md).
    static let staticFindThenGather = SystemInfo.environment("HPS_STATIC_LOOKUP") == "find-gather"

    /// Fewest distinct missed keys per fetch chunk (below the hash map's own parallel threshold, so each chunk
    /// is one thread's work); one chunk per core at most.
    static let fetchChunk = 2048

    /// The int64 keys of `request` on the device: the request's own, or its int32 keys widened into the worker;
    /// for a table of a fused group, its keys tagged into the worker.
    private func widenedKeys(_ request: DeviceLookupRequest, worker: Worker, stream: CUDAStream) throws -> DeviceAddress {
        if let transform = request.fusedKeys {
            try kernels.enqueueFuseKeys(transform, keys: request.keys, int32Keys: request.int32Keys, count: request.count, output: worker.keys.pointer, stream: stream)
            return worker.keys.pointer
        }
        guard request.int32Keys else { return request.keys }
        try kernels.launch(kernels.widenKeys, threads: request.count, stream: stream, [.pointer(request.keys), .count(request.count), .pointer(worker.keys.pointer)])
        return worker.keys.pointer
    }

    // MARK: Workers

    private func acquire() throws -> Worker {
        slots.wait()
        if let worker = free.withLock({ $0.popLast() }) { return worker }
        do {
            return try Worker(context: context, maxKeys: maxKeys, dimension: dimension, fetches: !cache.holdsWholeTable, label: label)
        } catch {
            slots.signal()
            throw error
        }
    }

    private func release(_ worker: Worker) {
        free.withLock { $0.append(worker) }
        slots.signal()
    }

    /// The buffers of one call in flight.
    final class Worker: @unchecked Sendable {
        // @unchecked Sendable: used by one caller at a time (handed out by the pool).
        let pipeline: CUDALookupPipeline
        /// Widened int32 keys.
        let keys: CUDADeviceBuffer
        /// Rows fetched from the host tiers (dynamic caches).
        let fetched: CUDADeviceBuffer
        let hostCounts: CUDAPinnedBuffer
        let hostKeys: CUDAPinnedBuffer
        let hostValues: CUDAPinnedBuffer
        /// Index scratch of the host-tier fetch of missed keys (one per key; dynamic caches).
        let hostMisses: UnsafeMutablePointer<Int>
        /// The worker's own stream, for calls without a stream.
        let stream: CUDAStream
        /// Recorded after the worker's last enqueued work.
        let done: CUDAEvent
        /// Recorded on a caller's stream when a call starts.
        let entered: CUDAEvent
        private var lastStream: CUstream?
        private var used = false
        /// The wrapper of the caller's stream of the last call (calls on one stream allocate nothing).
        private var callerStream: CUDAStream?

        func borrowed(_ handle: UnsafeMutableRawPointer, context: CUDAContext) -> CUDAStream {
            if let callerStream, callerStream.handle == OpaquePointer(handle) { return callerStream }
            let made = context.borrowStream(handle)
            callerStream = made
            return made
        }

        /// Device vectors of host-memory lookups, made on the first one.
        private var deviceOutput: CUDADeviceBuffer?

        func output(context: CUDAContext, bytes: Int, label: String) throws -> CUDADeviceBuffer {
            if let deviceOutput { return deviceOutput }
            let made = try context.allocate(bytes: bytes, what: "vectors of host-memory lookups of \(label)")
            deviceOutput = made
            return made
        }

        init(context: CUDAContext, maxKeys: Int, dimension: Int, fetches: Bool, label: String) throws {
            pipeline = try CUDALookupPipeline(context: context, maxKeys: maxKeys, dimension: dimension)
            let what = "the device lookup of \(label)"
            keys = try context.allocate(bytes: maxKeys * 8, what: "widened keys of \(what)")
            fetched = try context.allocate(bytes: fetches ? maxKeys * dimension * 4 : 16, what: "fetched rows of \(what)")
            hostCounts = try context.allocatePinned(bytes: 16, what: "counters of \(what)")
            hostKeys = try context.allocatePinned(bytes: fetches ? maxKeys * 8 : 16, what: "missed keys of \(what)")
            hostValues = try context.allocatePinned(bytes: fetches ? maxKeys * dimension * 4 : 16, what: "fetched rows of \(what)")
            stream = try context.makeStream()
            done = try context.makeEvent(timing: false)
            entered = try context.makeEvent(timing: false)
            hostMisses = .allocate(capacity: fetches ? maxKeys : 1)  // last: nothing after it can throw and leak it
        }

        deinit { hostMisses.deallocate() }

        /// Orders this call after the worker's previous one when that ran on another stream.
        func claim(for stream: CUDAStream) throws {
            if used && lastStream != stream.handle { try stream.wait(for: done) }
            used = true
            lastStream = stream.handle
        }
    }
}
