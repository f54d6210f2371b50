import CCUDADriver
import HPS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// NVRTC, CUDA's run-time compiler, loaded with `dlopen`.
///
/// Where it is looked for, in order (the first that loads wins):
/// 1. `HPS_NVRTC_LIBRARY` — a path or a library name; when set, only it is tried.
/// 2. The names `libnvrtc.so`, `libnvrtc.so.13`, `.12`, `.11.2` through the dynamic linker's search
///    (`LD_LIBRARY_PATH`, the ldconfig cache).
/// 3. CUDA installs: `$CUDA_HOME/lib64`, `$CUDA_PATH/lib64`, `/usr/local/cuda/lib64`,
///    `/usr/local/cuda/targets/x86_64-linux/lib`, `/usr/local/cuda-*/lib64`.
/// 4. The PyPI package `nvidia-cuda-nvrtc` (CUDA 13: `site-packages/nvidia/cu13/lib`; `-cu12`/`-cu11`:
///    `site-packages/nvidia/cuda_nvrtc/lib`) in `$VIRTUAL_ENV`, `$CONDA_PREFIX`, a `.venv` in the working
///    directory or above the executable, `~/.local`, `/usr/local`, `/usr`, and finally wherever
///    `python3 -c 'import nvidia'` finds the `nvidia` namespace package.
///
/// NVRTC needs its builtins library (`libnvrtc-builtins.so.*`) beside it; the wheels and CUDA installs ship
/// both in one directory.
public final class NVRTC: @unchecked Sendable {
    // @unchecked Sendable: immutable after init (the library handle, version and function pointers); NVRTC's calls on
    // distinct programs are thread-safe, and each compile makes its own program.
    let library: DynamicLibrary
    /// The file NVRTC was loaded from (when the dynamic linker can tell).
    public let path: String
    /// NVRTC's version (CUDA toolkit version it belongs to).
    public let major: Int
    public let minor: Int
    /// Compute capabilities NVRTC can compile for, as 10 × major + minor (e.g. 90).
    public let supportedArchitectures: [Int]
    /// The builtins library found beside `path`, if any.
    public let builtinsPath: String?

    private let getErrorString: hps_nvrtcGetErrorString_t
    private let createProgram: hps_nvrtcCreateProgram_t
    private let destroyProgram: hps_nvrtcDestroyProgram_t
    private let compileProgram: hps_nvrtcCompileProgram_t
    private let getLogSize: hps_nvrtcGetSize_t
    private let getLog: hps_nvrtcGetBytes_t
    private let getPTXSize: hps_nvrtcGetSize_t
    private let getPTX: hps_nvrtcGetBytes_t
    private let getCUBINSize: hps_nvrtcGetSize_t?
    private let getCUBIN: hps_nvrtcGetBytes_t?

    private init(library: DynamicLibrary) throws {
        self.library = library
        getErrorString = try library.function("nvrtcGetErrorString", as: hps_nvrtcGetErrorString_t.self)
        let version = try library.function("nvrtcVersion", as: hps_nvrtcVersion_t.self)
        createProgram = try library.function("nvrtcCreateProgram", as: hps_nvrtcCreateProgram_t.self)
        destroyProgram = try library.function("nvrtcDestroyProgram", as: hps_nvrtcDestroyProgram_t.self)
        compileProgram = try library.function("nvrtcCompileProgram", as: hps_nvrtcCompileProgram_t.self)
        getLogSize = try library.function("nvrtcGetProgramLogSize", as: hps_nvrtcGetSize_t.self)
        getLog = try library.function("nvrtcGetProgramLog", as: hps_nvrtcGetBytes_t.self)
        getPTXSize = try library.function("nvrtcGetPTXSize", as: hps_nvrtcGetSize_t.self)
        getPTX = try library.function("nvrtcGetPTX", as: hps_nvrtcGetBytes_t.self)
        getCUBINSize = try? library.function("nvrtcGetCUBINSize", as: hps_nvrtcGetSize_t.self)
        getCUBIN = try? library.function("nvrtcGetCUBIN", as: hps_nvrtcGetBytes_t.self)
        var major: Int32 = 0, minor: Int32 = 0
        _ = version(&major, &minor)
        self.major = Int(major)
        self.minor = Int(minor)
        var archs: [Int] = []
        if let count = try? library.function("nvrtcGetNumSupportedArchs", as: hps_nvrtcGetNumSupportedArchs_t.self),
            let list = try? library.function("nvrtcGetSupportedArchs", as: hps_nvrtcGetSupportedArchs_t.self)
        {
            var n: Int32 = 0
            if count(&n) == 0 && n > 0 {
                var values = [Int32](repeating: 0, count: Int(n))
                if list(&values) == 0 { archs = values.map(Int.init) }
            }
        }
        supportedArchitectures = archs
        path = library.loadedPath(probeSymbol: "nvrtcVersion") ?? library.name
        let directory = FileSystem.directoryName(path)
        builtinsPath = FileSystem.list(directory).first { $0.hasPrefix("libnvrtc-builtins.so") }.map { directory + "/" + $0 }
    }

    public var versionString: String { "\(major).\(minor)" }

    // MARK: Finding NVRTC

    nonisolated(unsafe) private static var loaded: Result<NVRTC, CUDAError>?
    private static let loadLock = Lock()

    /// NVRTC, loaded once per process.
    /// - Throws: ``CUDAError`` `.nvrtcMissing` listing what was tried when NVRTC (or its builtins) cannot be loaded.
    public static func shared() throws -> NVRTC {
        try loadLock.withLock {
            if let loaded { return try loaded.get() }
            let result: Result<NVRTC, CUDAError>
            do {
                result = .success(try locate())
            } catch let error as CUDAError {
                result = .failure(error)
            } catch {
                result = .failure(CUDAError(.nvrtcMissing, what: "loading NVRTC", detail: "\(error)"))
            }
            loaded = result
            return try result.get()
        }
    }

    /// Every place NVRTC is looked for, in order (see the type's documentation).
    public static func candidates(askPython: Bool = false) -> [String] {
        if let custom = FileSystem.environment("HPS_NVRTC_LIBRARY") { return [custom] }
        var list = ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"]
        var directories: [String] = []
        for variable in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"] {
            if let root = FileSystem.environment(variable) { directories.append(root + "/lib64") }
        }
        directories += ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
        directories += FileSystem.list("/usr/local").filter { $0.hasPrefix("cuda-") }.reversed().map { "/usr/local/\($0)/lib64" }
        directories += pythonPackageDirectories(askPython: askPython)
        for directory in directories {
            let names = FileSystem.list(directory).filter { $0.hasPrefix("libnvrtc.so") }
            // Prefer the most specific versioned name the directory has (libnvrtc.so.13 over libnvrtc.so).
            for name in names.sorted(by: { $0.count > $1.count }) { list.append(directory + "/" + name) }
        }
        var seen = Set<String>()
        return list.filter { seen.insert($0).inserted }
    }

    /// `lib` directories of the `nvidia-cuda-nvrtc` wheels in the Python environments HPS can see.
    static func pythonPackageDirectories(askPython: Bool) -> [String] {
        var roots: [String] = []
        for variable in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
            if let root = FileSystem.environment(variable) { roots.append(root) }
        }
        var cwd = [CChar](repeating: 0, count: 4096)
        if getcwd(&cwd, cwd.count) != nil { roots.append(string(fromCBuffer: cwd) + "/.venv") }
        if var directory = FileSystem.executableDirectory {
            for _ in 0..<5 {
                roots.append(directory + "/.venv")
                directory = FileSystem.directoryName(directory)
            }
        }
        if let home = FileSystem.environment("HOME") { roots.append(home + "/.local") }
        roots += ["/usr/local", "/usr", "/opt/conda"]
        var packageRoots: [String] = []
        for root in roots {
            for libName in ["lib", "lib64"] {
                let lib = root + "/" + libName
                for python in FileSystem.list(lib) where python.hasPrefix("python3") {
                    for packages in ["site-packages", "dist-packages"] {
                        packageRoots.append("\(lib)/\(python)/\(packages)/nvidia")
                    }
                }
            }
        }
        if askPython { packageRoots += pythonNvidiaPaths() }
        var directories: [String] = []
        for nvidia in packageRoots where FileSystem.isDirectory(nvidia) {
            for sub in ["cu13/lib", "cuda_nvrtc/lib", "cu12/lib"] where FileSystem.isDirectory(nvidia + "/" + sub) {
                directories.append(nvidia + "/" + sub)
            }
        }
        return directories
    }

    /// Where `python3` finds the `nvidia` namespace package (asked only when nothing else was found).
    private static func pythonNvidiaPaths() -> [String] {
        guard FileSystem.environment("HPS_NVRTC_NO_PYTHON") == nil else { return [] }
        let command = "python3 -c 'import nvidia, os; print(os.pathsep.join(nvidia.__path__))' 2>/dev/null"
        guard let pipe = popen(command, "r") else { return [] }
        var output = ""
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), pipe) != nil { output += string(fromCBuffer: buffer) }
        pclose(pipe)
        return output.split(whereSeparator: { $0 == ":" || $0 == "\n" }).map(String.init).filter { !$0.isEmpty }
    }

    private static func locate() throws -> NVRTC {
        var tried: [String] = []
        let explicit = FileSystem.environment("HPS_NVRTC_LIBRARY") != nil
        var seen = Set<String>()
        for askPython in explicit ? [false] : [false, true] {
            for candidate in candidates(askPython: askPython) where seen.insert(candidate).inserted {
                switch DynamicLibrary.open(candidate) {
                case .success(let library):
                    return try NVRTC(library: library)
                case .failure(let failure):
                    if explicit || candidate.contains("/") { tried.append("\(candidate): \(failure.message)") } else { tried.append(candidate) }
                }
            }
        }
        throw CUDAError(
            .nvrtcMissing,
            what: explicit ? "loading NVRTC from HPS_NVRTC_LIBRARY" : "finding NVRTC (libnvrtc.so)",
            detail: "tried \(tried.joined(separator: "; ")). Install CUDA's NVRTC (e.g. `pip install nvidia-cuda-nvrtc` into the active Python, "
                + "or the CUDA toolkit) or set HPS_NVRTC_LIBRARY to the path of libnvrtc.so")
    }

    // MARK: Compiling

    /// What NVRTC produced for one source.
    public struct Output: Sendable {
        /// A cubin (`sm_XX`) or NUL-terminated PTX (`compute_XX`).
        public var image: [UInt8]
        public var isCubin: Bool
        /// The target, e.g. `sm_90`.
        public var target: String
        /// The compile log (warnings).
        public var log: String
    }

    /// The target for a device of compute capability `architecture` (10 × major + minor): machine code for it
    /// when NVRTC supports it, else PTX of the highest older architecture NVRTC supports (the driver compiles
    /// that at load time).
    /// - Throws: ``CUDAError`` `.compileFailed` saying which architectures NVRTC supports when none is at or
    ///   below the device's.
    public func target(for architecture: Int) throws -> (name: String, cubin: Bool) {
        if supportedArchitectures.isEmpty || supportedArchitectures.contains(architecture) {
            return getCUBIN != nil ? ("sm_\(architecture)", true) : ("compute_\(architecture)", false)
        }
        if let older = supportedArchitectures.filter({ $0 <= architecture }).max() {
            return ("compute_\(older)", false)
        }
        throw CUDAError(
            .compileFailed, what: "choosing a target for sm_\(architecture)",
            detail: "NVRTC \(versionString) supports \(architectureList) only (CUDA 13 dropped sm_70/sm_72: use an NVRTC from CUDA 12, e.g. nvidia-cuda-nvrtc-cu12, via HPS_NVRTC_LIBRARY)")
    }

    public var architectureList: String { supportedArchitectures.map { "sm_\($0)" }.joined(separator: ", ") }

    /// Compiles `source` (named `name`, including `headers` by their names) for `target` (`sm_XX` gives a
    /// cubin, `compute_XX` PTX).
    /// - Throws: ``CUDAError`` `.compileFailed` naming the file, with NVRTC's log in `detail`.
    public func compile(source: String, name: String, headers: [(name: String, source: String)], target: String, extraOptions: [String] = []) throws -> Output {
        let options = ["--gpu-architecture=\(target)", "-std=c++17"] + extraOptions
        var handle: nvrtcProgram?
        let created = withCStrings(headers.map(\.source)) { headerSources in
            withCStrings(headers.map(\.name)) { headerNames in
                createProgram(&handle, source, name, Int32(headers.count), headerSources, headerNames)
            }
        }
        try check(created, "nvrtcCreateProgram for \(name)")
        guard let program = handle else { throw CUDAError(.compileFailed, what: "nvrtcCreateProgram for \(name) returned no program") }
        defer { _ = destroyProgram(&handle) }
        let compiled = withCStrings(options) { compileProgram(program, Int32(options.count), $0) }
        let log = programLog(program)
        guard compiled == 0 else {
            throw CUDAError(
                .compileFailed, what: "NVRTC \(versionString) compiling \(name) for \(target)", result: compiled,
                resultName: errorName(compiled), detail: log)
        }
        let cubin = target.hasPrefix("sm_")
        let image: [UInt8]
        if cubin, let getCUBINSize, let getCUBIN {
            image = try bytes(program, size: getCUBINSize, get: getCUBIN, what: "nvrtcGetCUBIN for \(name)")
        } else {
            image = try bytes(program, size: getPTXSize, get: getPTX, what: "nvrtcGetPTX for \(name)")
        }
        return Output(image: image, isCubin: cubin, target: target, log: log)
    }

    private func bytes(_ program: nvrtcProgram, size: hps_nvrtcGetSize_t, get: hps_nvrtcGetBytes_t, what: String) throws -> [UInt8] {
        var n = 0
        try check(size(program, &n), what)
        var buffer = [UInt8](repeating: 0, count: max(n, 1))
        try buffer.withUnsafeMutableBytes { raw in
            try check(get(program, raw.baseAddress!.assumingMemoryBound(to: CChar.self)), what)
        }
        return buffer
    }

    private func programLog(_ program: nvrtcProgram) -> String {
        var n = 0
        guard getLogSize(program, &n) == 0, n > 1 else { return "" }
        var buffer = [CChar](repeating: 0, count: n)
        guard getLog(program, &buffer) == 0 else { return "" }
        return string(fromCBuffer: buffer).trimmingTrailingWhitespace()
    }

    private func errorName(_ result: nvrtcResult) -> String {
        getErrorString(result).map { String(cString: $0) } ?? "nvrtcResult \(result)"
    }

    private func check(_ result: nvrtcResult, _ what: String) throws {
        guard result != 0 else { return }
        throw CUDAError(.compileFailed, what: what, result: result, resultName: errorName(result))
    }
}

extension String {
    func trimmingTrailingWhitespace() -> String {
        var s = Substring(self)
        while let last = s.last, last.isWhitespace || last == "\0" { s = s.dropLast() }
        return String(s)
    }
}

/// Calls `body` with a C array of NUL-terminated copies of `strings` (valid during the call).
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let constants = copies.map { UnsafePointer($0) }
    return constants.withUnsafeBufferPointer { body($0.baseAddress) }
}
