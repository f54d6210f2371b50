import HPS

/// Supplies GPU caches to lookup sessions when a CUDA device is usable: ``CUDADynamicCache`` for dynamic
/// (and stochastic) caches, ``CUDAStaticCache`` for static and uvm tables, on the device whose ordinal is the
/// session's device id.
///
/// ``makeIfUsable(logger:)`` checks once that the driver loads, a device is present, NVRTC loads and is not
/// newer than the driver; otherwise it returns nil and logs why (the sessions then use the CPU caches, with
/// the same answers). Per cache, it falls back to the CPU cache (and says so) when the session's device id
/// has no CUDA device, when the kernels cannot be compiled or loaded, or when device memory is short: the CPU
/// caches give the same results, so that is safe. Set `HPS_DISABLE_CUDA=1` to keep caches on the CPU.
public final class CUDACacheProvider: CacheProvider, Sendable {
    public let deviceCount: Int
    public let driverVersion: Int32
    public let nvrtc: NVRTC

    private init(deviceCount: Int, driverVersion: Int32, nvrtc: NVRTC) {
        self.deviceCount = deviceCount
        self.driverVersion = driverVersion
        self.nvrtc = nvrtc
    }

    /// Why CUDA caches cannot be used here, or nil when they can (with the provider).
    public static func probe() -> Result<CUDACacheProvider, CUDAError> {
        if let value = FileSystem.environment("HPS_DISABLE_CUDA"), value != "0" {
            return .failure(CUDAError(.noDevice, what: "CUDA caches disabled by HPS_DISABLE_CUDA=\(value)"))
        }
        do {
            let count = try CUDAContext.deviceCount()
            guard count > 0 else { return .failure(CUDAError(.noDevice, what: "the NVIDIA driver reports no CUDA device")) }
            let version = try CUDAContext.driverVersion()
            let nvrtc = try NVRTC.shared()
            let driverMajor = Int(version / 1000)
            if nvrtc.major > driverMajor {
                return .failure(
                    CUDAError(
                        .driverTooOld, what: "the NVIDIA driver supports CUDA \(CUDADriverAPI.formatVersion(version)), NVRTC is \(nvrtc.versionString) (\(nvrtc.path))",
                        detail: "code from a newer NVRTC does not load on an older driver: update the driver, or set HPS_NVRTC_LIBRARY to an NVRTC of CUDA \(driverMajor)"))
            }
            return .success(CUDACacheProvider(deviceCount: count, driverVersion: version, nvrtc: nvrtc))
        } catch let error as CUDAError {
            return .failure(error)
        } catch {
            return .failure(CUDAError(.driverCall, what: "probing CUDA", detail: "\(error)"))
        }
    }

    nonisolated(unsafe) private static var reported = false
    private static let reportLock = Lock()

    /// A provider when CUDA caches can be used; else nil, after logging why (caches then run on the CPU).
    public static func makeIfUsable(logger: HPSLogger) -> CUDACacheProvider? {
        switch probe() {
        case .success(let provider):
            logger.info(
                "CUDA: \(provider.deviceCount) device(s), driver CUDA \(CUDADriverAPI.formatVersion(provider.driverVersion)), NVRTC \(provider.nvrtc.versionString) (\(provider.nvrtc.path)); device caches run on the GPU")
            return provider
        case .failure(let error):
            // Said once per process at info level (servers are made often in tests and tools).
            let first = reportLock.withLock { () -> Bool in
                defer { reported = true }
                return !reported
            }
            logger.log(first ? .info : .debug, "CUDA caches unavailable (\(error)); device caches run on the CPU")
            return nil
        }
    }

    /// - Throws: never in practice: a cache that cannot be made on the device (no such device, kernels or memory
    ///   missing) is logged and left to the CPU (nil).
    public func makeCache(_ request: CacheRequest, logger: HPSLogger) throws -> (any EmbeddingCache)? {
        let tag = request.table.tag
        guard request.device >= 0 && request.device < deviceCount else {
            logger.warning("CUDA: \(tag) is deployed on device \(request.device), but only \(deviceCount) CUDA device(s) exist; its cache runs on the CPU")
            return nil
        }
        do {
            let context = try CUDAContext.context(device: request.device)
            let dim = request.table.dimension
            let maxBatch = request.model.maxQueryLength(table: request.table.index)
            switch request.type {
            case .dynamic, .stochastic:
                let cache = try CUDADynamicCache(
                    context: context, capacity: request.dynamicCapacity, dimension: dim, maxBatch: maxBatch, admission: request.model.cacheAdmission, label: tag,
                    logger: logger)
                logger.info(
                    "CUDA device \(context.device) (\(context.name)): dynamic cache of \(tag): \(cache.capacity) slots × dim \(dim), admission \(cache.admission.rawValue), \(formatBytes(cache.deviceBytes)) of device memory")
                return cache
            case .static, .uvm:
                let kind: CUDAStaticCache.Kind = request.type == .static ? .static : .uvm
                let cache = try CUDAStaticCache(
                    context: context, kind: kind, capacity: max(1, request.tableRows), dimension: dim, deviceFraction: request.model.deviceCachePercentage,
                    maxBatch: maxBatch, label: tag, logger: logger)
                logger.info(
                    "CUDA device \(context.device) (\(context.name)): \(kind.rawValue) table of \(tag): \(cache.capacity) rows × dim \(dim), \(cache.deviceRows) rows on the device (\(formatBytes(cache.deviceBytes))), \(formatBytes(cache.hostBytes)) pinned host memory")
                return cache
            }
        } catch let error as CUDAError {
            switch error.code {
            case .outOfMemory:
                logger.warning("CUDA: not enough memory for the \(request.type.rawValue) cache of \(tag) (\(error)); its cache runs on the CPU (same results)")
            default:
                logger.error("CUDA: cannot make the \(request.type.rawValue) cache of \(tag) on device \(request.device) (\(error)); its cache runs on the CPU (same results)")
            }
            return nil
        }
    }

    /// The device-resident lookup of a table on this provider's devices: ``CUDATableLookup`` over a CUDA cache,
    /// ``CUDAStagedLookup`` (keys and vectors cross to the host) for a table whose cache is on the CPU; nil when
    /// the session's device id has no CUDA device. Buffers are allocated on first use.
    /// - Throws: ``CUDAError`` when the device lookup's buffers cannot be made for a table this provider serves (the
    ///   session then fails to build).
    public func makeDeviceLookup(_ request: CacheRequest, cache: (any EmbeddingCache)?, logger: HPSLogger) throws -> (any DeviceTableLookup)? {
        guard request.device >= 0 && request.device < deviceCount else { return nil }
        let maxKeys = request.model.maxQueryLength(table: request.table.index)
        let tag = request.table.tag
        do {
            if let cache = cache as? any CUDADeviceCache {
                return try CUDATableLookup(cache: cache, maxKeys: maxKeys, workers: max(2, request.model.workerBuffers), label: tag)
            }
            let context = try CUDAContext.context(device: request.device)
            return try CUDAStagedLookup(context: context, maxKeys: maxKeys, dimension: request.table.dimension, label: tag)
        } catch let error as CUDAError {
            logger.error("CUDA: no device-memory lookups for \(tag) on device \(request.device): \(error)")
            return nil
        }
    }
}
