import CCUDADriver

/// An error from the CUDA side of HPS: what failed, and the driver's or NVRTC's own code and words for it.
///
/// `code` says what kind of failure it is (no driver, no device, driver too old, NVRTC missing, a kernel that
/// does not compile, out of device memory, or any other failed driver call); `what` names the operation
/// (e.g. "cuMemAlloc of 512 MiB for the dynamic cache of hps_et.m.t"); `result`/`resultName`/`resultText`
/// carry the `CUresult` (or `nvrtcResult`) with its name and message as the library spells them.
public struct CUDAError: Error, CustomStringConvertible, Sendable, Equatable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// `libcuda.so.1` could not be loaded (no NVIDIA driver on this machine).
        public static let driverMissing = Code("CUDA driver missing")
        /// The driver loaded but sees no CUDA device (or the requested one does not exist).
        public static let noDevice = Code("no CUDA device")
        /// The driver is older than what the kernels or NVRTC need.
        public static let driverTooOld = Code("CUDA driver too old")
        /// No NVRTC library could be found or loaded.
        public static let nvrtcMissing = Code("NVRTC missing")
        /// NVRTC rejected a kernel source; the message holds the compile log.
        public static let compileFailed = Code("kernel compile failed")
        /// A kernel source file could not be read.
        public static let kernelSourceMissing = Code("kernel source missing")
        /// Device (or pinned host) memory ran out.
        public static let outOfMemory = Code("out of device memory")
        /// A driver call failed.
        public static let driverCall = Code("CUDA driver call failed")
        /// An argument does not fit what the CUDA caches support.
        public static let invalidArgument = Code("invalid argument")
    }

    public var code: Code
    /// The operation that failed, in words.
    public var what: String
    /// The `CUresult` or `nvrtcResult` value, when a library call failed.
    public var result: Int32?
    /// The library's name for `result` (e.g. `CUDA_ERROR_OUT_OF_MEMORY`).
    public var resultName: String?
    /// The library's message for `result`, or other detail (a compile log, the paths searched).
    public var detail: String?

    public init(_ code: Code, what: String, result: Int32? = nil, resultName: String? = nil, detail: String? = nil) {
        self.code = code
        self.what = what
        self.result = result
        self.resultName = resultName
        self.detail = detail
    }

    public var description: String {
        var text = "\(code): \(what)"
        if let resultName {
            text += " → \(resultName)"
            if let result { text += " (\(result))" }
        } else if let result {
            text += " → error \(result)"
        }
        if let detail, !detail.isEmpty { text += ": \(detail)" }
        return text
    }
}

/// Names of the `CUresult` values HPSCUDA checks for, used when the driver cannot name them itself.
enum CUDAResultNames {
    static func fallbackName(_ result: CUresult) -> String {
        switch result {
        case 0: "CUDA_SUCCESS"
        case 1: "CUDA_ERROR_INVALID_VALUE"
        case 2: "CUDA_ERROR_OUT_OF_MEMORY"
        case 3: "CUDA_ERROR_NOT_INITIALIZED"
        case 35: "CUDA_ERROR_INSUFFICIENT_DRIVER"
        case 100: "CUDA_ERROR_NO_DEVICE"
        case 101: "CUDA_ERROR_INVALID_DEVICE"
        case 209: "CUDA_ERROR_NO_BINARY_FOR_GPU"
        case 218: "CUDA_ERROR_INVALID_PTX"
        case 222: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"
        case 600: "CUDA_ERROR_NOT_READY"
        case 700: "CUDA_ERROR_ILLEGAL_ADDRESS"
        default: "CUresult \(result)"
        }
    }
}
