import CCUDADriver
import HPS

/// One CUDA device and its primary context: the driver, the device's properties, memory, streams and the
/// HPS kernels compiled for it.
///
/// Contexts are shared per device ordinal (``context(device:)``). Every method makes the context current on
/// the calling thread first, so any thread may use it.
public final class CUDAContext: @unchecked Sendable {
    // @unchecked Sendable: the device's properties and the driver handles are immutable after init, and every method
    // makes the context current on the calling thread first; `kernelLock` guards `loadedKernels`.
    /// The device ordinal.
    public let device: Int
    public let name: String
    /// Compute capability as 10 × major + minor (90 for an H100/H200).
    public let architecture: Int
    public let multiprocessors: Int
    public let totalMemory: Int
    public let l2CacheBytes: Int
    public let canMapHostMemory: Bool
    /// The driver's CUDA version (e.g. 13000).
    public var driverVersion: Int32 { api.version }

    let api: CUDADriverAPI
    let handle: CUcontext
    let cuDevice: CUdevice
    private let kernelLock = Lock()
    private var loadedKernels: CUDAKernels?

    private init(api: CUDADriverAPI, device: Int) throws {
        self.api = api
        self.device = device
        var d: CUdevice = 0
        try api.check(api.cuDeviceGet(&d, Int32(device)), "cuDeviceGet(\(device))")
        cuDevice = d
        var nameBuffer = [CChar](repeating: 0, count: 256)
        try api.check(api.cuDeviceGetName(&nameBuffer, Int32(nameBuffer.count), d), "cuDeviceGetName(\(device))")
        name = string(fromCBuffer: nameBuffer)
        func attribute(_ a: Int32) throws -> Int {
            var value: Int32 = 0
            try api.check(api.cuDeviceGetAttribute(&value, a, d), "cuDeviceGetAttribute(\(a)) of device \(device)")
            return Int(value)
        }
        architecture = try attribute(Int32(HPS_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)) * 10
            + attribute(Int32(HPS_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR))
        multiprocessors = try attribute(Int32(HPS_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT))
        l2CacheBytes = try attribute(Int32(HPS_CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE))
        canMapHostMemory = try attribute(Int32(HPS_CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY)) != 0
        var bytes = 0
        try api.check(api.cuDeviceTotalMem(&bytes, d), "cuDeviceTotalMem(\(device))")
        totalMemory = bytes
        var context: CUcontext?
        try api.check(api.cuDevicePrimaryCtxRetain(&context, d), "cuDevicePrimaryCtxRetain(\(device))")
        guard let context else { throw CUDAError(.driverCall, what: "cuDevicePrimaryCtxRetain(\(device)) returned no context") }
        handle = context
    }

    // The primary context is retained for the life of the process (contexts are shared and never dropped).

    nonisolated(unsafe) private static var contexts: [Int: CUDAContext] = [:]
    private static let contextsLock = Lock()

    /// The number of CUDA devices (throws when there is no driver).
    /// - Throws: ``CUDAError`` `.driverMissing` when `libcuda.so.1` cannot be loaded; the driver's error when
    ///   `cuInit` or the count fails.
    public static func deviceCount() throws -> Int {
        let api = try CUDADriverAPI.shared()
        var n: Int32 = 0
        let status = api.cuDeviceGetCount(&n)
        if status == HPS_CUDA_ERROR_NO_DEVICE { return 0 }
        try api.check(status, "cuDeviceGetCount")
        return Int(n)
    }

    /// The driver's CUDA version (throws when there is no driver).
    /// - Throws: ``CUDAError`` `.driverMissing` when `libcuda.so.1` cannot be loaded.
    public static func driverVersion() throws -> Int32 { try CUDADriverAPI.shared().version }

    /// The shared context of device `device`.
    /// - Throws: ``CUDAError`` `.driverMissing` when the driver cannot be loaded; `.noDevice` naming `device` when it
    ///   does not exist; the driver's error when its primary context cannot be retained.
    public static func context(device: Int) throws -> CUDAContext {
        let api = try CUDADriverAPI.shared()
        return try contextsLock.withLock {
            if let existing = contexts[device] { return existing }
            let count = try deviceCount()
            guard device >= 0 && device < count else {
                throw CUDAError(.noDevice, what: "CUDA device \(device)", detail: "\(count) CUDA device(s) present")
            }
            let context = try CUDAContext(api: api, device: device)
            contexts[device] = context
            return context
        }
    }

    /// `sm_90`-style name of the device's architecture.
    public var architectureName: String { "sm_\(architecture)" }

    public var summary: String {
        "CUDA device \(device): \(name), \(architectureName), \(multiprocessors) SMs, \(formatBytes(totalMemory)), driver CUDA \(CUDADriverAPI.formatVersion(api.version))"
    }

    /// Makes this context current on the calling thread.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    @inline(__always)
    public func makeCurrent() throws { try api.check(api.cuCtxSetCurrent(handle), "cuCtxSetCurrent(device \(device))") }

    /// Free and total device memory, in bytes.
    public func memoryInfo() -> (free: Int, total: Int) {
        var free = 0, total = 0
        if (try? makeCurrent()) == nil || api.cuMemGetInfo(&free, &total) != 0 { return (0, totalMemory) }
        return (free, total)
    }

    // MARK: Kernels

    /// The HPS kernels, compiled with NVRTC for this device on first use and loaded into the context.
    /// - Throws: ``CUDAError`` `.nvrtcMissing`, `.compileFailed` (with NVRTC's log) or the driver's error when the
    ///   kernels cannot be compiled or loaded.
    public func kernels() throws -> CUDAKernels {
        try kernelLock.withLock {
            if let loadedKernels { return loadedKernels }
            try makeCurrent()
            let nvrtc = try NVRTC.shared()
            let driverMajor = Int(api.version / 1000)
            let target = try nvrtc.target(for: architecture)
            let outputs = try CUDAKernelSources.compileAll(nvrtc: nvrtc, target: target.name)
            var modules: [String: CUmodule] = [:]
            for (file, output) in outputs {
                var module: CUmodule?
                let status = output.image.withUnsafeBytes { api.cuModuleLoadData(&module, $0.baseAddress) }
                if status != 0 {
                    var error = api.error(status, "cuModuleLoadData of \(file) (\(output.target), NVRTC \(nvrtc.versionString))")
                    if status == HPS_CUDA_ERROR_UNSUPPORTED_PTX_VERSION || status == HPS_CUDA_ERROR_NO_BINARY_FOR_GPU
                        || status == HPS_CUDA_ERROR_INVALID_PTX || nvrtc.major > driverMajor
                    {
                        error.code = .driverTooOld
                        error.detail = (error.detail ?? "")
                            + " — the driver (CUDA \(CUDADriverAPI.formatVersion(api.version))) cannot load code from NVRTC \(nvrtc.versionString) (\(nvrtc.path)); "
                            + "update the driver or point HPS_NVRTC_LIBRARY at an NVRTC no newer than the driver"
                    }
                    throw error
                }
                guard let module else { throw CUDAError(.driverCall, what: "cuModuleLoadData of \(file) returned no module") }
                modules[file] = module
            }
            let kernels = try CUDAKernels(context: self, modules: modules, target: target.name, nvrtc: nvrtc)
            loadedKernels = kernels
            return kernels
        }
    }

    // MARK: Memory

    /// `bytes` of device memory (cuMemAlloc), never managed memory.
    /// - Throws: ``CUDAError`` `.outOfMemory` naming `what`, the size and the free memory when device memory is
    ///   short; the driver's error otherwise.
    public func allocate(bytes: Int, what: @autoclosure () -> String) throws -> CUDADeviceBuffer {
        try makeCurrent()
        var pointer: DeviceAddress = 0
        let status = api.cuMemAlloc(&pointer, max(bytes, 16))
        if status != 0 {
            let (free, total) = memoryInfo()
            var error = api.error(status, "cuMemAlloc of \(formatBytes(bytes)) for \(what())")
            if status == HPS_CUDA_ERROR_OUT_OF_MEMORY {
                error.detail = "device \(device) has \(formatBytes(free)) free of \(formatBytes(total))"
            }
            throw error
        }
        return CUDADeviceBuffer(context: self, pointer: pointer, byteCount: bytes)
    }

    /// `bytes` of pinned host memory (cuMemHostAlloc, portable and mapped into the device's address space).
    /// - Throws: ``CUDAError`` `.outOfMemory` naming `what` and the size when pinned host memory cannot be had; the
    ///   driver's error otherwise.
    public func allocatePinned(bytes: Int, what: @autoclosure () -> String) throws -> CUDAPinnedBuffer {
        try makeCurrent()
        var host: UnsafeMutableRawPointer?
        let status = api.cuMemHostAlloc(&host, max(bytes, 16), UInt32(HPS_CU_MEMHOSTALLOC_PORTABLE | HPS_CU_MEMHOSTALLOC_DEVICEMAP))
        if status != 0 {
            var error = api.error(status, "cuMemHostAlloc of \(formatBytes(bytes)) pinned host memory for \(what())")
            if status == HPS_CUDA_ERROR_OUT_OF_MEMORY { error.detail = "not enough host memory can be pinned" }
            throw error
        }
        guard let host else { throw CUDAError(.outOfMemory, what: "cuMemHostAlloc of \(formatBytes(bytes)) returned nothing") }
        var device: DeviceAddress = 0
        if canMapHostMemory {
            let mapped = api.cuMemHostGetDevicePointer(&device, host, 0)
            if mapped != 0 {
                _ = api.cuMemFreeHost(host)
                throw api.error(mapped, "cuMemHostGetDevicePointer for \(what())")
            }
        }
        return CUDAPinnedBuffer(context: self, host: host, device: device, byteCount: bytes)
    }

    /// A new non-blocking stream.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func makeStream() throws -> CUDAStream {
        try makeCurrent()
        var stream: CUstream?
        try api.check(api.cuStreamCreate(&stream, UInt32(HPS_CU_STREAM_NON_BLOCKING)), "cuStreamCreate")
        guard let stream else { throw CUDAError(.driverCall, what: "cuStreamCreate returned no stream") }
        return CUDAStream(context: self, handle: stream, owned: true)
    }

    /// A new event (timing enabled, or only for ordering streams when `timing` is false, which is cheaper).
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func makeEvent(timing: Bool = true) throws -> CUDAEvent {
        try makeCurrent()
        var event: CUevent?
        try api.check(api.cuEventCreate(&event, UInt32(timing ? HPS_CU_EVENT_DEFAULT : HPS_CU_EVENT_DISABLE_TIMING)), "cuEventCreate")
        guard let event else { throw CUDAError(.driverCall, what: "cuEventCreate returned no event") }
        return CUDAEvent(context: self, handle: event)
    }

    /// A stream the caller owns (a `CUstream` / `cudaStream_t` of this device's primary context, e.g. from
    /// PyTorch), wrapped without taking ownership: it is never destroyed here. A null handle is CUDA's legacy
    /// default stream.
    public func borrowStream(_ handle: UnsafeMutableRawPointer?) -> CUDAStream {
        CUDAStream(context: self, handle: OpaquePointer(handle), owned: false)
    }

    // MARK: Copies

    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func copy(toDevice dst: DeviceAddress, from src: UnsafeRawPointer, bytes: Int, stream: CUDAStream) throws {
        guard bytes > 0 else { return }
        try api.check(api.cuMemcpyHtoDAsync(dst, src, bytes, stream.handle), "cuMemcpyHtoDAsync of \(bytes) bytes")
    }

    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func copy(toHost dst: UnsafeMutableRawPointer, from src: DeviceAddress, bytes: Int, stream: CUDAStream) throws {
        guard bytes > 0 else { return }
        try api.check(api.cuMemcpyDtoHAsync(dst, src, bytes, stream.handle), "cuMemcpyDtoHAsync of \(bytes) bytes")
    }

    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func copy(device dst: DeviceAddress, from src: DeviceAddress, bytes: Int, stream: CUDAStream) throws {
        guard bytes > 0 else { return }
        try api.check(api.cuMemcpyDtoDAsync(dst, src, bytes, stream.handle), "cuMemcpyDtoDAsync of \(bytes) bytes")
    }

    /// Sets `count` 32-bit words at `dst` to `value`.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func fill32(_ dst: DeviceAddress, value: UInt32, count: Int, stream: CUDAStream) throws {
        guard count > 0 else { return }
        try api.check(api.cuMemsetD32Async(dst, value, count, stream.handle), "cuMemsetD32Async of \(count) words")
    }

    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func fill8(_ dst: DeviceAddress, value: UInt8, count: Int, stream: CUDAStream) throws {
        guard count > 0 else { return }
        try api.check(api.cuMemsetD8Async(dst, value, count, stream.handle), "cuMemsetD8Async of \(count) bytes")
    }

    /// Waits for all work of the context.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func synchronize() throws {
        try makeCurrent()
        try api.check(api.cuCtxSynchronize(), "cuCtxSynchronize")
    }
}

/// Device memory from `cuMemAlloc`, freed when released.
public final class CUDADeviceBuffer: @unchecked Sendable {
    // @unchecked Sendable: the address and size are immutable; who writes the device memory, and when, is up to the
    // owner (a cache under its lock, a worker held by one call).
    public let context: CUDAContext
    public let pointer: DeviceAddress
    public let byteCount: Int

    init(context: CUDAContext, pointer: DeviceAddress, byteCount: Int) {
        self.context = context
        self.pointer = pointer
        self.byteCount = byteCount
    }

    deinit {
        _ = context.api.cuCtxSetCurrent(context.handle)
        _ = context.api.cuMemFree(pointer)
    }

    /// The address `offset` bytes in.
    public func address(byteOffset offset: Int) -> DeviceAddress { pointer + DeviceAddress(offset) }
}

/// Pinned host memory from `cuMemHostAlloc`, mapped into the device's address space (`device`).
public final class CUDAPinnedBuffer: @unchecked Sendable {
    // @unchecked Sendable: the host and device addresses and the size are immutable; who writes the memory, and when,
    // is up to the owner (a cache under its lock, a worker held by one call).
    public let context: CUDAContext
    public let host: UnsafeMutableRawPointer
    /// The device address of the same memory (0 when the device cannot map host memory).
    public let device: DeviceAddress
    public let byteCount: Int

    init(context: CUDAContext, host: UnsafeMutableRawPointer, device: DeviceAddress, byteCount: Int) {
        self.context = context
        self.host = host
        self.device = device
        self.byteCount = byteCount
    }

    deinit {
        _ = context.api.cuCtxSetCurrent(context.handle)
        _ = context.api.cuMemFreeHost(host)
    }

    public func typed<T>(_ type: T.Type) -> UnsafeMutablePointer<T> { host.assumingMemoryBound(to: type) }
}

/// A CUDA stream; work on one stream runs in order.
// @unchecked Sendable: the handle is immutable and CUDA streams may be used from any thread.
public final class CUDAStream: @unchecked Sendable {
    public let context: CUDAContext
    /// The driver's handle (nil: the legacy default stream of a borrowed null stream).
    package let handle: CUstream?
    /// Whether this object created the stream and destroys it (false for streams borrowed from a caller).
    public let owned: Bool

    init(context: CUDAContext, handle: CUstream?, owned: Bool) {
        self.context = context
        self.handle = handle
        self.owned = owned
    }

    deinit {
        guard owned, let handle else { return }
        _ = context.api.cuCtxSetCurrent(context.handle)
        _ = context.api.cuStreamDestroy(handle)
    }

    /// Makes later work on this stream wait until `event` (recorded on any stream) has completed, without
    /// blocking the host.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func wait(for event: CUDAEvent) throws {
        try context.api.check(context.api.cuStreamWaitEvent(handle, event.handle, 0), "cuStreamWaitEvent")
    }

    /// Waits until all work on the stream is done.
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func synchronize() throws {
        try context.api.check(context.api.cuStreamSynchronize(handle), "cuStreamSynchronize")
    }
}

/// A CUDA event, for timing with the device's clock.
public final class CUDAEvent: @unchecked Sendable {
    // @unchecked Sendable: the handle is immutable, and CUDA events may be recorded and waited on from any thread.
    public let context: CUDAContext
    package let handle: CUevent

    init(context: CUDAContext, handle: CUevent) {
        self.context = context
        self.handle = handle
    }

    deinit {
        _ = context.api.cuCtxSetCurrent(context.handle)
        _ = context.api.cuEventDestroy(handle)
    }

    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func record(on stream: CUDAStream) throws {
        try context.api.check(context.api.cuEventRecord(handle, stream.handle), "cuEventRecord")
    }

    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func synchronize() throws {
        try context.api.check(context.api.cuEventSynchronize(handle), "cuEventSynchronize")
    }

    /// Milliseconds from `start` to this event (both recorded and complete).
    /// - Throws: ``CUDAError`` naming the driver call, its result and what it was for, when a CUDA call fails.
    public func milliseconds(since start: CUDAEvent) throws -> Double {
        var ms: Float = 0
        try context.api.check(context.api.cuEventElapsedTime(&ms, start.handle, handle), "cuEventElapsedTime")
        return Double(ms)
    }
}

func formatBytes(_ bytes: Int) -> String {
    let b = Double(bytes)
    if b >= Double(1 << 30) { return "\((b / Double(1 << 30) * 100).rounded() / 100) GiB" }
    if b >= Double(1 << 20) { return "\((b / Double(1 << 20) * 10).rounded() / 10) MiB" }
    if b >= Double(1 << 10) { return "\((b / Double(1 << 10) * 10).rounded() / 10) KiB" }
    return "\(bytes) B"
}
