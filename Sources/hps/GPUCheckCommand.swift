import ArgumentParser
import Dispatch
import Foundation
import HPS
import HPSCUDA
import HPSRuntime
import HPSTestSupport

/// `hps gpu-check`: verifies the CUDA caches against the CPU caches and a reference model of the table.
struct GPUCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gpu-check",
        abstract: "Check the CUDA caches against the CPU caches (or, without a GPU, compile every kernel).",
        discussion: """
            With a CUDA device: compiles the kernels for it with NVRTC, then runs randomized workloads (random \
            dimensions, batch sizes, duplicate and unknown keys, evictions, chunked batches) through the GPU \
            dynamic, static and uvm caches and the CPU caches side by side and requires identical results: \
            bit-exact vectors for hits, the same misses, the same cached keys. Concurrent lookups from several \
            threads are checked against a plain reference model of the table instead (eviction order under \
            concurrency legitimately differs), as are the device lookup pipeline (GPU dedup + scatter) and \
            whole parameter servers built from configs.

            Without a CUDA device: compiles every kernel with NVRTC for sm_70, sm_80 and sm_90 (those the \
            NVRTC supports), reports that, and exits 0. Fails when NVRTC cannot be found.

            NVRTC is found through HPS_NVRTC_LIBRARY, the usual library names, CUDA installs, or the \
            nvidia-cuda-nvrtc Python package (see NVRTC in HPSCUDA).
            """
    )

    @Option(help: "Random seed (default: from the clock; printed).")
    var seed: UInt64?

    @Option(help: "Randomized rounds per cache kind.")
    var rounds = 4

    @Option(help: "CUDA device ordinal.")
    var device = 0

    @Option(parsing: .upToNextOption, help: "Architectures to compile for when no device is present.")
    var architectures: [Int] = [70, 80, 90]

    func run() throws {
        print("hps gpu-check \(HPSVersion.string), \(Date())")
        let nvrtc: NVRTC
        do {
            nvrtc = try NVRTC.shared()
        } catch {
            print("FAIL: NVRTC not found: \(error)")
            throw ExitCode(1)
        }
        print("NVRTC \(nvrtc.versionString) at \(nvrtc.path); builtins: \(nvrtc.builtinsPath ?? "NOT FOUND beside it"); supports \(nvrtc.architectureList)")

        let count: Int
        do {
            count = try CUDAContext.deviceCount()
        } catch let error as CUDAError where error.code == .driverMissing || error.code == .noDevice {
            print("No CUDA device present: \(error)")
            try compileOnly(nvrtc)
            return
        }
        guard count > 0 else {
            print("No CUDA device present: the NVIDIA driver reports no device")
            try compileOnly(nvrtc)
            return
        }
        guard device < count else {
            print("FAIL: device \(device) requested, \(count) present")
            throw ExitCode(1)
        }
        var checker = GPUChecker(seed: seed ?? UInt64(Date().timeIntervalSince1970 * 1000), rounds: rounds)
        try checker.run(device: device)
        print("")
        print("\(checker.passed) passed, \(checker.failed) failed")
        if checker.failed > 0 { throw ExitCode(1) }
    }

    /// Compiles every kernel for each requested architecture NVRTC supports.
    private func compileOnly(_ nvrtc: NVRTC) throws {
        var failures = 0
        for arch in architectures {
            guard nvrtc.supportedArchitectures.isEmpty || nvrtc.supportedArchitectures.contains(arch) else {
                print("sm_\(arch): skipped, NVRTC \(nvrtc.versionString) does not support it (supports \(nvrtc.architectureList))")
                continue
            }
            let start = Date()
            do {
                let outputs = try CUDAKernelSources.compileAll(nvrtc: nvrtc, target: "sm_\(arch)", fresh: true)
                let bytes = outputs.values.reduce(0) { $0 + $1.image.count }
                let files = CUDAKernelSources.fileNames.joined(separator: ", ")
                print(String(format: "sm_%d: compiled %d kernel files (%@) to %d bytes of cubin in %.2f s", arch, outputs.count, files, bytes, Date().timeIntervalSince(start)))
                for (file, output) in outputs.sorted(by: { $0.key < $1.key }) where !output.log.isEmpty {
                    print("  \(file) log: \(output.log)")
                }
            } catch {
                failures += 1
                print("sm_\(arch): FAIL \(error)")
            }
        }
        print("No CUDA device present: compiled the kernels only; no cache was run.")
        if failures > 0 { throw ExitCode(1) }
    }
}
