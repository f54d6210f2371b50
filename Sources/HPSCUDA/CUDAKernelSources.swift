import HPS

/// The CUDA C++ sources of the HPS kernels and their compilation with NVRTC.
///
/// The sources are the files under `Sources/HPSCUDA/Kernels/`; SwiftPM embeds them into the binary
/// (`.embedInCode` resources), so a copied `hps` executable needs no resource bundle. Setting
/// `HPS_CUDA_KERNEL_DIR` to a directory holding the same file names makes HPS compile those instead (to try a
/// kernel change on a GPU machine without rebuilding the Swift code).
///
/// Compiled images are kept in memory per target and, unless `HPS_KERNEL_CACHE=0`, on disk under
/// `$HPS_KERNEL_CACHE_DIR`, else `$XDG_CACHE_HOME/hps/kernels`, else `~/.cache/hps/kernels`, named by a
/// hash of the NVRTC version, the target, the options and the sources.
public enum CUDAKernelSources {
    /// The shared header every kernel file includes.
    public static let headerName = "hps_common.cuh"
    /// The kernel files, in compile order.
    public static let fileNames = ["rows.cu", "dedup.cu", "dynamic_cache.cu", "static_table.cu", "bench.cu"]

    /// One source file.
    public struct File: Sendable {
        public var name: String
        public var text: String
    }

    /// The header and the kernel files: embedded, or from `HPS_CUDA_KERNEL_DIR`.
    /// - Throws: ``CUDAError`` `.kernelSourceMissing` naming the file when `HPS_CUDA_KERNEL_DIR` lacks one.
    public static func load() throws -> (header: File, files: [File]) {
        if let directory = FileSystem.environment("HPS_CUDA_KERNEL_DIR") {
            func read(_ name: String) throws -> File {
                guard let bytes = FileSystem.contents(of: directory + "/" + name) else {
                    throw CUDAError(.kernelSourceMissing, what: "reading \(directory)/\(name) (HPS_CUDA_KERNEL_DIR)")
                }
                return File(name: name, text: String(decoding: bytes, as: UTF8.self))
            }
            return (try read(headerName), try fileNames.map(read))
        }
        return (File(name: headerName, text: embedded(headerName)), fileNames.map { File(name: $0, text: embedded($0)) })
    }

    static func embedded(_ name: String) -> String {
        let bytes: [UInt8] =
            switch name {
            case "hps_common.cuh": PackageResources.hps_common_cuh
            case "rows.cu": PackageResources.rows_cu
            case "dedup.cu": PackageResources.dedup_cu
            case "dynamic_cache.cu": PackageResources.dynamic_cache_cu
            case "static_table.cu": PackageResources.static_table_cu
            case "bench.cu": PackageResources.bench_cu
            default: []
            }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Options every kernel is compiled with (beside the target).
    static let options = ["-DHPS_NVRTC=1"]

    nonisolated(unsafe) private static var compiled: [String: [String: NVRTC.Output]] = [:]
    private static let compileLock = Lock()

    /// Every kernel file compiled for `target` (e.g. `sm_90`, `compute_80`), keyed by file name; cached in
    /// memory and on disk.
    /// `fresh` compiles even when a cached image exists (and does not store the result in memory).
    /// - Throws: what ``load()`` and ``NVRTC/compile(source:name:headers:target:)`` throw.
    public static func compileAll(nvrtc: NVRTC, target: String, fresh: Bool = false) throws -> [String: NVRTC.Output] {
        try compileLock.withLock {
            if !fresh, let outputs = compiled[target] { return outputs }
            let (header, files) = try load()
            var outputs: [String: NVRTC.Output] = [:]
            for file in files {
                outputs[file.name] = try compileCached(nvrtc: nvrtc, header: header, file: file, target: target, fresh: fresh)
            }
            if !fresh { compiled[target] = outputs }
            return outputs
        }
    }

    private static func compileCached(nvrtc: NVRTC, header: File, file: File, target: String, fresh: Bool) throws -> NVRTC.Output {
        let cubin = target.hasPrefix("sm_")
        let cachePath = diskCacheDirectory().map { directory in
            var hash = FNV64()
            hash.add("hps-kernels-1|\(nvrtc.versionString)|\(target)|\(options.joined(separator: " "))|")
            hash.add(header.text)
            hash.add("|")
            hash.add(file.text)
            return "\(directory)/\(file.name).\(target).\(String(hash.value, radix: 16)).\(cubin ? "cubin" : "ptx")"
        }
        if !fresh, let cachePath, let bytes = FileSystem.contents(of: cachePath), !bytes.isEmpty {
            return NVRTC.Output(image: bytes, isCubin: cubin, target: target, log: "")
        }
        let output = try nvrtc.compile(source: file.text, name: file.name, headers: [(header.name, header.text)], target: target, extraOptions: options)
        if let cachePath { FileSystem.writeAtomically(output.image, to: cachePath) }
        return output
    }

    static func diskCacheDirectory() -> String? {
        if FileSystem.environment("HPS_KERNEL_CACHE") == "0" { return nil }
        if let directory = FileSystem.environment("HPS_KERNEL_CACHE_DIR") { return directory }
        if let xdg = FileSystem.environment("XDG_CACHE_HOME") { return xdg + "/hps/kernels" }
        if let home = FileSystem.environment("HOME") { return home + "/.cache/hps/kernels" }
        return nil
    }
}

/// FNV-1a, 64 bit (cache file names only).
struct FNV64 {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add(_ text: String) {
        for byte in text.utf8 {
            value ^= UInt64(byte)
            value &*= 0x100_0000_01b3
        }
    }
}
