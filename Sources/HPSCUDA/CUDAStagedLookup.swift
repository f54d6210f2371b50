import CCUDADriver
import Dispatch
import HPS
import Synchronization

/// Device-memory lookups for a table whose cache is not on the device (`gpucache: false`, or a cache that
/// fell back to the CPU): the keys cross to the host, the session's host lookup answers them, and the vectors
/// cross back on the caller's stream. Correct, not fast: it exists so that device-memory clients never need a
/// second code path.
public final class CUDAStagedLookup: DeviceTableLookup, Sendable {
    public let maxKeys: Int
    public let dimension: Int
    let context: CUDAContext
    let kernels: CUDAKernels
    private let label: String
    private let free = Mutex<[Buffers]>([])

    public var device: Int { context.device }

    /// - Throws: ``CUDAError`` `.invalidArgument` for a dimension below 1 or a size beyond what the kernels index;
    ///   `.outOfMemory` naming the buffer when device memory is short; the driver's or NVRTC's error when the kernels
    ///   cannot be loaded.
    public init(context: CUDAContext, maxKeys: Int, dimension: Int, label: String) throws {
        guard maxKeys > 0, maxKeys < 1 << 30, dimension > 0 else {
            throw CUDAError(.invalidArgument, what: "max keys \(maxKeys) × dim \(dimension) of the staged device lookup of \(label)")
        }
        self.context = context
        self.maxKeys = maxKeys
        self.dimension = dimension
        self.label = label
        kernels = try context.kernels()
    }

    /// - Throws: ``HPSError`` `.invalidArgument` when `request.count` exceeds ``maxKeys``; ``CUDAError`` when a copy
    ///   fails; the host lookup's error.
    public func lookup(_ request: DeviceLookupRequest, host: DeviceLookupHost) throws {
        let n = request.count
        guard n > 0 else { return }
        guard n <= maxKeys else {
            throw HPSError(.invalidArgument, subject: label, "\(n) keys in one device lookup exceed the \(maxKeys) it was sized for")
        }
        let buffers = try free.withLock { $0.popLast() } ?? Buffers(context: context, maxKeys: maxKeys, dimension: dimension, label: label)
        defer { free.withLock { $0.append(buffers) } }
        do {
            try context.makeCurrent()
            let stream = request.stream.map { context.borrowStream($0) } ?? buffers.stream
            if request.int32Keys {
                try kernels.launch(kernels.widenKeys, threads: n, stream: stream, [.pointer(request.keys), .count(n), .pointer(buffers.keys.pointer)])
                try context.copy(toHost: buffers.hostKeys.host, from: buffers.keys.pointer, bytes: n * 8, stream: stream)
            } else {
                try context.copy(toHost: buffers.hostKeys.host, from: request.keys, bytes: n * 8, stream: stream)
            }
            try stream.synchronize()
            if let transform = request.fusedKeys {
                // A table of a fused group: the host lookup takes the group's tagged keys.
                let keys = buffers.hostKeys.typed(Int64.self)
                for i in 0..<n { keys[i] = transform.apply(keys[i]) }
            }
            try host.lookupHost(UnsafeBufferPointer(start: buffers.hostKeys.typed(Int64.self), count: n), buffers.hostValues.typed(Float.self))
            try context.copy(toDevice: request.output, from: buffers.hostValues.host, bytes: n * dimension * 4, stream: stream)
            // The pinned buffers are reused by the next call: wait for the copy.
            try stream.synchronize()
        } catch let error as CUDAError {
            throw HPSError(.device, subject: label, "staged device lookup of \(n) keys on CUDA device \(context.device) failed", cause: error)
        }
    }

    /// Held by one call at a time.
    final class Buffers: Sendable {
        let keys: CUDADeviceBuffer
        let hostKeys: CUDAPinnedBuffer
        let hostValues: CUDAPinnedBuffer
        let stream: CUDAStream

        init(context: CUDAContext, maxKeys: Int, dimension: Int, label: String) throws {
            keys = try context.allocate(bytes: maxKeys * 8, what: "widened keys of the staged lookup of \(label)")
            hostKeys = try context.allocatePinned(bytes: maxKeys * 8, what: "keys of the staged lookup of \(label)")
            hostValues = try context.allocatePinned(bytes: maxKeys * dimension * 4, what: "vectors of the staged lookup of \(label)")
            stream = try context.makeStream()
        }
    }
}
