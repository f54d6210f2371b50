import Foundation
import HPS
import HPSCUDA
import HPSRuntime
import HPSTestSupport
import Testing

/// What can be checked of the CUDA caches without a GPU: NVRTC compiles every kernel, errors say what
/// failed, the provider declines cleanly, the kernels' logic runs in the CPU emulator.
@Suite struct CUDATests {
    /// NVRTC, or why it is absent (then the compile tests are skipped with that reason).
    static let nvrtc: Result<NVRTC, CUDAError> = {
        do { return .success(try NVRTC.shared()) } catch let error as CUDAError { return .failure(error) } catch {
            return .failure(CUDAError(.nvrtcMissing, what: "\(error)"))
        }
    }()
    static var nvrtcAvailable: Bool { (try? nvrtc.get()) != nil }
    static var gpuPresent: Bool { (try? CUDAContext.deviceCount()).map { $0 > 0 } ?? false }
    /// Whether NVRTC is found and compiles for sm_90 (or does not list its architectures).
    static var nvrtcCompilesSM90: Bool {
        guard let nvrtc = try? nvrtc.get() else { return false }
        return nvrtc.supportedArchitectures.isEmpty || nvrtc.supportedArchitectures.contains(90)
    }

    static let repositoryRoot: String = {
        var path = #filePath
        for _ in 0..<3 { path = (path as NSString).deletingLastPathComponent }
        return path
    }()

    @Test(.enabled(if: nvrtcAvailable, "NVRTC not found (install nvidia-cuda-nvrtc into the active Python or set HPS_NVRTC_LIBRARY)"))
    func nvrtcCompilesEveryKernel() throws {
        let nvrtc = try Self.nvrtc.get()
        var compiled: [String] = []
        for arch in [70, 80, 90] where nvrtc.supportedArchitectures.isEmpty || nvrtc.supportedArchitectures.contains(arch) {
            let outputs = try CUDAKernelSources.compileAll(nvrtc: nvrtc, target: "sm_\(arch)", fresh: true)
            #expect(Set(outputs.keys) == Set(CUDAKernelSources.fileNames))
            for (file, output) in outputs {
                #expect(output.isCubin && output.image.count > 1000, "\(file) for sm_\(arch): \(output.image.count) bytes")
            }
            compiled.append("sm_\(arch)")
        }
        #expect(compiled.contains("sm_90"), "NVRTC \(nvrtc.versionString) should compile for sm_90")
        // PTX for a virtual architecture too (what a device newer than NVRTC gets).
        let ptx = try CUDAKernelSources.compileAll(nvrtc: nvrtc, target: "compute_80", fresh: true)
        #expect(ptx.values.allSatisfy { !$0.isCubin && String(decoding: $0.image, as: UTF8.self).contains(".target sm_80") })
        #expect(ptx["dynamic_cache.cu"].map { String(decoding: $0.image, as: UTF8.self).contains(".entry dyn_query_v4") } == true)
        let dynamicPTX = ptx["dynamic_cache.cu"].map { String(decoding: $0.image, as: UTF8.self) } ?? ""
        for dim in CUDAKernels.pipelinedQueryDimensions {
            #expect(dynamicPTX.contains(".entry dyn_query_d\(dim)(") && dynamicPTX.contains(".entry dyn_query_d\(dim)_cs("), "pipelined query for dim \(dim)")
        }
        #expect(dynamicPTX.contains(".entry dyn_query_d128_cs_n("))
        // The streaming variants' row moves carry the evict-first hints.
        #expect(dynamicPTX.contains("ld.global.cs.v4.f32") && dynamicPTX.contains("st.global.cs.v4.f32"))
    }

    /// The pipelined queries keep their rows in registers: compiled for sm_90 with ptxas' report, each stays
    /// within its launch bound (3 or 4 blocks of 256 threads per multiprocessor) with at most a few bytes of
    /// spills (hundreds would mean the rows in flight went to local memory).
    @Test(.enabled(if: nvrtcCompilesSM90, "NVRTC not found, or it does not compile for sm_90"))
    func pipelinedQueriesFitTheirRegisterBudget() throws {
        let nvrtc = try Self.nvrtc.get()
        let (header, files) = try CUDAKernelSources.load()
        let file = try #require(files.first { $0.name == "dynamic_cache.cu" })
        let output = try nvrtc.compile(
            source: file.text, name: file.name, headers: [(header.name, header.text)], target: "sm_90", extraOptions: ["-DHPS_NVRTC=1", "-Xptxas", "-v"])
        // ptxas reports, per entry: "Compiling entry function 'NAME'", "N bytes stack frame, S bytes spill
        // stores, L bytes spill loads", "Used R registers".
        var current = ""
        var report: [String: (registers: Int, spillStores: Int)] = [:]
        // The number `offset` words before the first word starting with `word` followed by one starting with `next`.
        func number(_ offset: Int, before word: String, then next: String, in line: Substring) -> Int? {
            let parts = line.split(separator: " ")
            guard let index = parts.indices.first(where: { $0 + 1 < parts.count && parts[$0].hasPrefix(word) && parts[$0 + 1].hasPrefix(next) }),
                index >= offset
            else { return nil }
            return Int(parts[index - offset])
        }
        for line in output.log.split(separator: "\n") {
            if let start = line.range(of: "entry function '") {
                current = String(line[start.upperBound...].prefix { $0 != "'" })
            } else if line.contains("spill stores"), let stores = number(2, before: "spill", then: "stores", in: line) {
                report[current, default: (0, 0)].spillStores = stores
            } else if line.contains("Used"), let registers = number(1, before: "registers", then: "", in: line) {
                report[current, default: (0, 0)].registers = registers
            }
        }
        let names = CUDAKernels.pipelinedQueryDimensions.flatMap { ["dyn_query_d\($0)", "dyn_query_d\($0)_cs"] } + ["dyn_query_d128_cs_n"]
        for name in names {
            let entry = try #require(report[name], "no ptxas report for \(name) in: \(output.log.prefix(2000))")
            #expect(entry.registers > 0 && entry.registers <= 80, "\(name): \(entry.registers) registers")
            #expect(entry.spillStores <= 64, "\(name): \(entry.spillStores) bytes of spill stores")
        }
    }

    @Test(.enabled(if: nvrtcAvailable, "NVRTC not found"))
    func aBrokenKernelIsACompileErrorWithTheLog() throws {
        let nvrtc = try Self.nvrtc.get()
        let error = #expect(throws: CUDAError.self) {
            try nvrtc.compile(source: "extern \"C\" __global__ void k() { not_a_function(1); }", name: "broken.cu", headers: [], target: "sm_90")
        }
        #expect(error?.code == .compileFailed)
        #expect(error?.detail?.contains("not_a_function") == true)
        #expect(error?.description.contains("broken.cu") == true)
    }

    @Test(.enabled(if: nvrtcAvailable, "NVRTC not found"))
    func targetsFollowTheDevice() throws {
        let nvrtc = try Self.nvrtc.get()
        #expect(try nvrtc.target(for: 90).name == "sm_90")
        #expect(try nvrtc.target(for: 90).cubin)
        // A device newer than anything NVRTC knows gets PTX of the newest older architecture.
        let future = try nvrtc.target(for: 990)
        #expect(future.name.hasPrefix("compute_") && !future.cubin)
        if !nvrtc.supportedArchitectures.contains(70) && !nvrtc.supportedArchitectures.contains(60) && !nvrtc.supportedArchitectures.isEmpty {
            let error = #expect(throws: CUDAError.self) { try nvrtc.target(for: 60) }
            #expect(error?.detail?.contains("supports") == true)
        }
    }

    @Test(.enabled(if: !gpuPresent, "this test is about machines without a GPU"))
    func providerDeclinesWithoutAGPUAndSaysWhy() throws {
        let lines = LogLines()
        let logger = HPSLogger(level: .debug, sink: { lines.add($0) })
        #expect(CUDACacheProvider.makeIfUsable(logger: logger) == nil)
        let text = lines.all.joined(separator: "\n")
        #expect(text.contains("CUDA caches unavailable"))
        #expect(text.contains("device caches run on the CPU"))
        if case .failure(let error) = CUDACacheProvider.probe() {
            #expect([CUDAError.Code.driverMissing, .noDevice, .driverTooOld, .nvrtcMissing].contains(error.code))
            if error.code == .driverMissing { #expect(error.description.contains("libcuda.so.1")) }
        } else {
            Issue.record("probe succeeded without a GPU")
        }
    }

    @Test(.enabled(if: !gpuPresent, "this test is about machines without a GPU"))
    func serversWithoutAGPUUseCPUCaches() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try TableWriter.write(directory: dir.path + "/t", keys: [1, 2, 3], vectors: [1, 1, 2, 2, 3, 3], dimension: 2)
        var config = ParameterServerConfig()
        var model = ModelConfig()
        model.name = "m"
        model.sparseFiles = [dir.path + "/t"]
        model.deployedDevices = [0]
        model.maxKeysPerSample = [4]
        model.embeddingVectorSizes = [2]
        model.defaultValues = [0]
        config.models = [model]
        let server = try HPSRuntime.makeParameterServer(config: config, logger: .silent)
        #expect(server.cacheProvider == nil)
        let session = try server.session(model: "m", device: 0)
        #expect(session.caches.allSatisfy { $0 == nil || $0 is DynamicCache })
        #expect(try session.lookup(table: 0, keys: [3, 9, 1]) == [3, 3, 0, 0, 1, 1])
    }

    @Test func errorsNameWhatFailedAndTheDriversWords() {
        let error = CUDAError(
            .outOfMemory, what: "cuMemAlloc of 2 GiB for vectors of the dynamic cache of hps_et.m.t", result: 2, resultName: "CUDA_ERROR_OUT_OF_MEMORY",
            detail: "device 0 has 1 GiB free of 80 GiB")
        #expect(error.description == "out of device memory: cuMemAlloc of 2 GiB for vectors of the dynamic cache of hps_et.m.t → CUDA_ERROR_OUT_OF_MEMORY (2): device 0 has 1 GiB free of 80 GiB")
        let missing = CUDAError(.nvrtcMissing, what: "finding NVRTC (libnvrtc.so)", detail: "tried libnvrtc.so")
        #expect(missing.description.hasPrefix("NVRTC missing: finding NVRTC"))
        #expect(CUDAError(.driverTooOld, what: "cuInit").description == "CUDA driver too old: cuInit")
    }

    @Test func embeddedKernelsMatchTheSourceFiles() throws {
        let (header, files) = try CUDAKernelSources.load()
        let directory = Self.repositoryRoot + "/Sources/HPSCUDA/Kernels/"
        for file in [header] + files {
            let onDisk = try String(contentsOfFile: directory + file.name, encoding: .utf8)
            #expect(file.text == onDisk, "\(file.name): the embedded copy differs from the file (rebuild)")
        }
        #expect(files.map(\.name) == CUDAKernelSources.fileNames)
    }

    @Test func workloadTwinsAreDeterministic() {
        let cdf = CUDAWorkload.zipfCDF(rows: 1000, alpha: 1.05)
        #expect(cdf.last == 1)
        #expect(zip(cdf, cdf.dropFirst()).allSatisfy { $0 <= $1 })
        let keys = cdf.withUnsafeBufferPointer { c in (0..<10000).map { CUDAWorkload.zipfKey(cdf: c, seed: 7, index: UInt64($0)) } }
        #expect(keys.allSatisfy { $0 >= 0 && $0 < 1000 })
        // Zipf: rank 0 is drawn far more often than rank 999.
        #expect(keys.filter { $0 == 0 }.count > 50 * max(1, keys.filter { $0 == 999 }.count))
        let v = (0..<64).map { CUDAWorkload.value(key: 12345, element: $0, dimension: 64, seed: 1) }
        #expect(v.allSatisfy { $0 > -1 && $0 < 1 })
        #expect(v == (0..<64).map { CUDAWorkload.value(key: 12345, element: $0, dimension: 64, seed: 1) })
        #expect(Set(v).count > 60)
    }

    /// The kernels' logic, compiled as C++ against the CPU emulator (Tests/CUDAEmulator) and compared with
    /// sequential references. Needs a C++ compiler (clang++ ships with Swift).
    @Test(.enabled(if: ["/usr/bin/clang++", "/usr/bin/g++"].contains { FileManager.default.isExecutableFile(atPath: $0) } || CUDATests.whichCompiler != nil, "no C++ compiler"))
    func kernelsPassTheCPUEmulator() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [Self.repositoryRoot + "/scripts/cuda-emulator-test.sh"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(output.suffix(3000))")
        #expect(output.contains(" passed, 0 failed"))
    }

    static var whichCompiler: String? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            for name in ["clang++", "g++"] where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") { return "\(directory)/\(name)" }
        }
        return nil
    }
}

final class LogLines: @unchecked Sendable {
    private let lock = Lock()
    private var lines: [String] = []
    func add(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}
