import CCUDADriver
import HPS

/// The CUDA driver API entry points HPSCUDA uses, resolved from `libcuda.so.1` with `dlsym`. Every driver
/// call of the module goes through this one table (so it is the single place to fault-inject or trace).
final class CUDADriverAPI: @unchecked Sendable {
    // @unchecked Sendable: immutable after init: the library handle and function pointers resolved once; the driver
    // API itself is thread-safe.
    let library: DynamicLibrary
    let cuInit: hps_cuInit_t
    let cuDriverGetVersion: hps_cuDriverGetVersion_t
    let cuGetErrorName: hps_cuGetErrorName_t
    let cuGetErrorString: hps_cuGetErrorString_t
    let cuDeviceGetCount: hps_cuDeviceGetCount_t
    let cuDeviceGet: hps_cuDeviceGet_t
    let cuDeviceGetName: hps_cuDeviceGetName_t
    let cuDeviceGetAttribute: hps_cuDeviceGetAttribute_t
    let cuDeviceTotalMem: hps_cuDeviceTotalMem_t
    let cuDevicePrimaryCtxRetain: hps_cuDevicePrimaryCtxRetain_t
    let cuDevicePrimaryCtxRelease: hps_cuDevicePrimaryCtxRelease_t
    let cuCtxSetCurrent: hps_cuCtxSetCurrent_t
    let cuCtxSynchronize: hps_cuCtxSynchronize_t
    let cuMemGetInfo: hps_cuMemGetInfo_t
    let cuMemAlloc: hps_cuMemAlloc_t
    let cuMemFree: hps_cuMemFree_t
    let cuMemHostAlloc: hps_cuMemHostAlloc_t
    let cuMemFreeHost: hps_cuMemFreeHost_t
    let cuMemHostGetDevicePointer: hps_cuMemHostGetDevicePointer_t
    let cuMemcpyHtoDAsync: hps_cuMemcpyHtoDAsync_t
    let cuMemcpyDtoHAsync: hps_cuMemcpyDtoHAsync_t
    let cuMemcpyDtoDAsync: hps_cuMemcpyDtoDAsync_t
    let cuMemsetD32Async: hps_cuMemsetD32Async_t
    let cuMemsetD8Async: hps_cuMemsetD8Async_t
    let cuStreamCreate: hps_cuStreamCreate_t
    let cuStreamDestroy: hps_cuStreamDestroy_t
    let cuStreamSynchronize: hps_cuStreamSynchronize_t
    let cuEventCreate: hps_cuEventCreate_t
    let cuEventDestroy: hps_cuEventDestroy_t
    let cuEventRecord: hps_cuEventRecord_t
    let cuEventSynchronize: hps_cuEventSynchronize_t
    let cuEventElapsedTime: hps_cuEventElapsedTime_t
    let cuStreamWaitEvent: hps_cuStreamWaitEvent_t
    let cuModuleLoadData: hps_cuModuleLoadData_t
    let cuModuleUnload: hps_cuModuleUnload_t
    let cuModuleGetFunction: hps_cuModuleGetFunction_t
    let cuFuncGetAttribute: hps_cuFuncGetAttribute_t
    let cuOccupancyMaxActiveBlocksPerMultiprocessor: hps_cuOccupancyMaxActiveBlocksPerMultiprocessor_t
    let cuLaunchKernel: hps_cuLaunchKernel_t

    /// The driver's CUDA version as `major * 1000 + minor * 10` (e.g. 13000 for CUDA 13.0).
    let version: Int32

    /// The oldest driver HPSCUDA accepts: CUDA 11.0 (the entry points and sm_80 support it relies on).
    static let minimumVersion: Int32 = 11000

    private init(library: DynamicLibrary) throws {
        self.library = library
        cuInit = try library.function("cuInit", as: hps_cuInit_t.self)
        cuDriverGetVersion = try library.function("cuDriverGetVersion", as: hps_cuDriverGetVersion_t.self)
        cuGetErrorName = try library.function("cuGetErrorName", as: hps_cuGetErrorName_t.self)
        cuGetErrorString = try library.function("cuGetErrorString", as: hps_cuGetErrorString_t.self)
        cuDeviceGetCount = try library.function("cuDeviceGetCount", as: hps_cuDeviceGetCount_t.self)
        cuDeviceGet = try library.function("cuDeviceGet", as: hps_cuDeviceGet_t.self)
        cuDeviceGetName = try library.function("cuDeviceGetName", as: hps_cuDeviceGetName_t.self)
        cuDeviceGetAttribute = try library.function("cuDeviceGetAttribute", as: hps_cuDeviceGetAttribute_t.self)
        cuDeviceTotalMem = try library.function("cuDeviceTotalMem_v2", as: hps_cuDeviceTotalMem_t.self)
        cuDevicePrimaryCtxRetain = try library.function("cuDevicePrimaryCtxRetain", as: hps_cuDevicePrimaryCtxRetain_t.self)
        cuDevicePrimaryCtxRelease = try library.function(anyOf: ["cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"], as: hps_cuDevicePrimaryCtxRelease_t.self)
        cuCtxSetCurrent = try library.function("cuCtxSetCurrent", as: hps_cuCtxSetCurrent_t.self)
        cuCtxSynchronize = try library.function("cuCtxSynchronize", as: hps_cuCtxSynchronize_t.self)
        cuMemGetInfo = try library.function("cuMemGetInfo_v2", as: hps_cuMemGetInfo_t.self)
        cuMemAlloc = try library.function("cuMemAlloc_v2", as: hps_cuMemAlloc_t.self)
        cuMemFree = try library.function("cuMemFree_v2", as: hps_cuMemFree_t.self)
        cuMemHostAlloc = try library.function("cuMemHostAlloc", as: hps_cuMemHostAlloc_t.self)
        cuMemFreeHost = try library.function("cuMemFreeHost", as: hps_cuMemFreeHost_t.self)
        cuMemHostGetDevicePointer = try library.function("cuMemHostGetDevicePointer_v2", as: hps_cuMemHostGetDevicePointer_t.self)
        cuMemcpyHtoDAsync = try library.function("cuMemcpyHtoDAsync_v2", as: hps_cuMemcpyHtoDAsync_t.self)
        cuMemcpyDtoHAsync = try library.function("cuMemcpyDtoHAsync_v2", as: hps_cuMemcpyDtoHAsync_t.self)
        cuMemcpyDtoDAsync = try library.function("cuMemcpyDtoDAsync_v2", as: hps_cuMemcpyDtoDAsync_t.self)
        cuMemsetD32Async = try library.function("cuMemsetD32Async", as: hps_cuMemsetD32Async_t.self)
        cuMemsetD8Async = try library.function("cuMemsetD8Async", as: hps_cuMemsetD8Async_t.self)
        cuStreamCreate = try library.function("cuStreamCreate", as: hps_cuStreamCreate_t.self)
        cuStreamDestroy = try library.function(anyOf: ["cuStreamDestroy_v2", "cuStreamDestroy"], as: hps_cuStreamDestroy_t.self)
        cuStreamSynchronize = try library.function("cuStreamSynchronize", as: hps_cuStreamSynchronize_t.self)
        cuEventCreate = try library.function("cuEventCreate", as: hps_cuEventCreate_t.self)
        cuEventDestroy = try library.function(anyOf: ["cuEventDestroy_v2", "cuEventDestroy"], as: hps_cuEventDestroy_t.self)
        cuEventRecord = try library.function("cuEventRecord", as: hps_cuEventRecord_t.self)
        cuEventSynchronize = try library.function("cuEventSynchronize", as: hps_cuEventSynchronize_t.self)
        cuEventElapsedTime = try library.function(anyOf: ["cuEventElapsedTime_v2", "cuEventElapsedTime"], as: hps_cuEventElapsedTime_t.self)
        cuStreamWaitEvent = try library.function("cuStreamWaitEvent", as: hps_cuStreamWaitEvent_t.self)
        cuModuleLoadData = try library.function("cuModuleLoadData", as: hps_cuModuleLoadData_t.self)
        cuModuleUnload = try library.function("cuModuleUnload", as: hps_cuModuleUnload_t.self)
        cuModuleGetFunction = try library.function("cuModuleGetFunction", as: hps_cuModuleGetFunction_t.self)
        cuFuncGetAttribute = try library.function("cuFuncGetAttribute", as: hps_cuFuncGetAttribute_t.self)
        cuOccupancyMaxActiveBlocksPerMultiprocessor = try library.function(
            "cuOccupancyMaxActiveBlocksPerMultiprocessor", as: hps_cuOccupancyMaxActiveBlocksPerMultiprocessor_t.self)
        cuLaunchKernel = try library.function("cuLaunchKernel", as: hps_cuLaunchKernel_t.self)
        var v: Int32 = 0
        _ = cuDriverGetVersion(&v)
        version = v
    }

    /// The library names tried, in order (`HPS_CUDA_DRIVER_LIBRARY` first when set).
    static var candidateNames: [String] {
        var names: [String] = []
        if let custom = FileSystem.environment("HPS_CUDA_DRIVER_LIBRARY") { names.append(custom) }
        names += ["libcuda.so.1", "libcuda.so"]
        return names
    }

    nonisolated(unsafe) private static var loaded: Result<CUDADriverAPI, CUDAError>?
    private static let loadLock = Lock()

    /// Loads the driver once per process and calls `cuInit(0)`.
    static func shared() throws -> CUDADriverAPI {
        try loadLock.withLock {
            if let loaded { return try loaded.get() }
            let result: Result<CUDADriverAPI, CUDAError>
            do {
                result = .success(try load())
            } catch let error as CUDAError {
                result = .failure(error)
            } catch {
                result = .failure(CUDAError(.driverCall, what: "loading the CUDA driver", detail: "\(error)"))
            }
            loaded = result
            return try result.get()
        }
    }

    private static func load() throws -> CUDADriverAPI {
        var failures: [String] = []
        for name in candidateNames {
            switch DynamicLibrary.open(name) {
            case .success(let library):
                let api = try CUDADriverAPI(library: library)
                if api.version > 0 && api.version < minimumVersion {
                    throw CUDAError(
                        .driverTooOld, what: "the NVIDIA driver supports CUDA \(formatVersion(api.version))",
                        detail: "HPS needs a driver for CUDA \(formatVersion(minimumVersion)) or newer")
                }
                let status = api.cuInit(0)
                if status == HPS_CUDA_ERROR_NO_DEVICE {
                    throw CUDAError(.noDevice, what: "cuInit", result: status, resultName: api.name(status), detail: api.message(status))
                }
                if status == HPS_CUDA_ERROR_INSUFFICIENT_DRIVER {
                    throw CUDAError(.driverTooOld, what: "cuInit", result: status, resultName: api.name(status), detail: api.message(status))
                }
                try api.check(status, "cuInit")
                return api
            case .failure(let failure):
                failures.append(failure.message)
            }
        }
        throw CUDAError(
            .driverMissing, what: "loading the NVIDIA driver library (\(candidateNames.joined(separator: ", ")))",
            detail: failures.joined(separator: "; "))
    }

    static func formatVersion(_ v: Int32) -> String { "\(v / 1000).\((v % 1000) / 10)" }

    // MARK: Results

    func name(_ result: CUresult) -> String {
        var pointer: UnsafePointer<CChar>?
        if cuGetErrorName(result, &pointer) == 0, let pointer { return String(cString: pointer) }
        return CUDAResultNames.fallbackName(result)
    }

    func message(_ result: CUresult) -> String {
        var pointer: UnsafePointer<CChar>?
        if cuGetErrorString(result, &pointer) == 0, let pointer { return String(cString: pointer) }
        return ""
    }

    /// Throws a `CUDAError` naming `what` unless `result` is `CUDA_SUCCESS`.
    @inline(__always)
    func check(_ result: CUresult, _ what: @autoclosure () -> String) throws {
        guard result != 0 else { return }
        throw error(result, what())
    }

    func error(_ result: CUresult, _ what: String) -> CUDAError {
        let code: CUDAError.Code =
            switch result {
            case HPS_CUDA_ERROR_OUT_OF_MEMORY: .outOfMemory
            case HPS_CUDA_ERROR_NO_DEVICE, HPS_CUDA_ERROR_INVALID_DEVICE: .noDevice
            case HPS_CUDA_ERROR_INSUFFICIENT_DRIVER, HPS_CUDA_ERROR_UNSUPPORTED_PTX_VERSION: .driverTooOld
            default: .driverCall
            }
        return CUDAError(code, what: what, result: result, resultName: name(result), detail: message(result))
    }
}
