import CCUDADriver
import HPS

/// One kernel of a loaded module, with what the launch helper needs to size a grid.
public struct CUDAFunction: @unchecked Sendable {
    // @unchecked Sendable: `CUfunction` is an opaque driver handle, immutable, and may be launched from any thread.
    public let name: String
    let handle: CUfunction
    /// Resident 256-thread blocks per multiprocessor (from the occupancy calculator).
    public let blocksPerMultiprocessor: Int
    public let registers: Int
    public let localBytes: Int
}

/// A kernel instantiated for float4, float2 and float moves (`name_v4`, `_v2`, `_v1`).
public struct CUDAVectorFunction: Sendable {
    let v4: CUDAFunction, v2: CUDAFunction, v1: CUDAFunction

    /// The instance for rows of `dimension` floats at addresses aligned to `alignment` bytes.
    func width(for dimension: Int, alignment: Int = 16) -> (function: CUDAFunction, width: Int) {
        if dimension % 4 == 0 && alignment % 16 == 0 { return (v4, 4) }
        if dimension % 2 == 0 && alignment % 8 == 0 { return (v2, 2) }
        return (v1, 1)
    }
}

/// An argument of a kernel launch (every HPS kernel parameter is at most 8 bytes).
public enum KernelArgument {
    case pointer(DeviceAddress)
    case u32(UInt32)
    case i64(Int64)
    case u64(UInt64)
    case f32(Float)

    static func count(_ n: Int) -> KernelArgument { .u32(UInt32(truncatingIfNeeded: n)) }

    var bits: UInt64 {
        switch self {
        case .pointer(let p): p
        case .u32(let v): UInt64(v)
        case .i64(let v): UInt64(bitPattern: v)
        case .u64(let v): v
        case .f32(let v): UInt64(v.bitPattern)
        }
    }
}

/// The HPS kernels loaded into one context.
public final class CUDAKernels: Sendable {
    public let context: CUDAContext
    /// The NVRTC target they were compiled for (e.g. `sm_90`).
    public let target: String
    public let nvrtcVersion: String

    let copyRows: CUDAVectorFunction
    let countMissedAccesses: CUDAFunction
    let widenKeys: CUDAFunction
    /// Tags the keys of a table of a fused group (`fuse_keys`, Kernels/rows.cu).
    let fuseKeys: CUDAFunction
    let dedupInsert: CUDAFunction
    let dedupResolve: CUDAFunction
    let dedupClear: CUDAFunction
    let dynQuery: CUDAVectorFunction
    /// The pipelined queries (`dyn_query_d{dim}[_cs][_n]`, Kernels/dynamic_cache.cu), by kernel name.
    let dynQueryRows: [String: CUDAFunction]
    /// The pipelined query's copy alone (`dyn_gather_d{dim}[_cs]`, for benchmarks), by kernel name.
    let dynGatherRows: [String: CUDAFunction]
    let dynGroup: CUDAFunction
    let dynApply: CUDAVectorFunction
    let dynDump: CUDAFunction
    let dynSketchAdd: CUDAFunction
    let dynSketchHalve: CUDAFunction
    let stFind: CUDAFunction
    let stInsert: CUDAFunction
    let stWriteRows: CUDAVectorFunction
    let stQuery: CUDAVectorFunction
    let benchZipfKeys: CUDAFunction
    let benchFillValues: CUDAFunction
    let benchSequenceKeys: CUDAFunction
    let benchPickKeys: CUDAFunction
    let benchKeyValues: CUDAFunction

    /// Threads per block of every HPS kernel (HPS_BLOCK in hps_common.cuh).
    public static let blockSize = 256

    init(context: CUDAContext, modules: [String: CUmodule], target: String, nvrtc: NVRTC) throws {
        self.context = context
        self.target = target
        nvrtcVersion = nvrtc.versionString
        func function(_ file: String, _ name: String) throws -> CUDAFunction {
            guard let module = modules[file] else { throw CUDAError(.kernelSourceMissing, what: "module \(file) is not loaded") }
            let api = context.api
            var handle: CUfunction?
            try api.check(api.cuModuleGetFunction(&handle, module, name), "cuModuleGetFunction(\(name)) in \(file)")
            var blocks: Int32 = 0
            if api.cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, handle, Int32(Self.blockSize), 0) != 0 || blocks < 1 { blocks = 1 }
            var registers: Int32 = 0, local: Int32 = 0
            _ = api.cuFuncGetAttribute(&registers, Int32(HPS_CU_FUNC_ATTRIBUTE_NUM_REGS), handle)
            _ = api.cuFuncGetAttribute(&local, Int32(HPS_CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES), handle)
            return CUDAFunction(name: name, handle: handle!, blocksPerMultiprocessor: Int(blocks), registers: Int(registers), localBytes: Int(local))
        }
        func vector(_ file: String, _ name: String) throws -> CUDAVectorFunction {
            CUDAVectorFunction(v4: try function(file, name + "_v4"), v2: try function(file, name + "_v2"), v1: try function(file, name + "_v1"))
        }
        copyRows = try vector("rows.cu", "copy_rows")
        countMissedAccesses = try function("rows.cu", "count_missed_accesses")
        widenKeys = try function("rows.cu", "widen_keys_u32")
        fuseKeys = try function("rows.cu", "fuse_keys")
        dedupInsert = try function("dedup.cu", "dedup_insert")
        dedupResolve = try function("dedup.cu", "dedup_resolve")
        dedupClear = try function("dedup.cu", "dedup_clear")
        dynQuery = try vector("dynamic_cache.cu", "dyn_query")
        var rows: [String: CUDAFunction] = [:]
        for dim in CUDAKernels.pipelinedQueryDimensions {
            for name in ["dyn_query_d\(dim)", "dyn_query_d\(dim)_cs"] { rows[name] = try function("dynamic_cache.cu", name) }
        }
        rows["dyn_query_d128_cs_n"] = try function("dynamic_cache.cu", "dyn_query_d128_cs_n")
        dynQueryRows = rows
        var gathers: [String: CUDAFunction] = [:]
        for dim in CUDAKernels.pipelinedGatherDimensions {
            for name in ["dyn_gather_d\(dim)", "dyn_gather_d\(dim)_cs"] { gathers[name] = try function("dynamic_cache.cu", name) }
        }
        dynGatherRows = gathers
        dynGroup = try function("dynamic_cache.cu", "dyn_group")
        dynApply = try vector("dynamic_cache.cu", "dyn_apply")
        dynDump = try function("dynamic_cache.cu", "dyn_dump")
        dynSketchAdd = try function("dynamic_cache.cu", "dyn_sketch_add")
        dynSketchHalve = try function("dynamic_cache.cu", "dyn_sketch_halve")
        stFind = try function("static_table.cu", "st_find")
        stInsert = try function("static_table.cu", "st_insert")
        stWriteRows = try vector("static_table.cu", "st_write_rows")
        stQuery = try vector("static_table.cu", "st_query")
        benchZipfKeys = try function("bench.cu", "bench_zipf_keys")
        benchFillValues = try function("bench.cu", "bench_fill_values")
        benchSequenceKeys = try function("bench.cu", "bench_sequence_keys")
        benchPickKeys = try function("bench.cu", "bench_pick_keys")
        benchKeyValues = try function("bench.cu", "bench_key_values")
    }

    /// Every loaded kernel (for reports).
    public var all: [CUDAFunction] {
        let vectors = [copyRows, dynQuery, dynApply, stWriteRows, stQuery].flatMap { [$0.v4, $0.v2, $0.v1] }
        let rows = dynQueryRows.keys.sorted().compactMap { dynQueryRows[$0] } + dynGatherRows.keys.sorted().compactMap { dynGatherRows[$0] }
        return vectors + rows + [countMissedAccesses, widenKeys, fuseKeys, dedupInsert, dedupResolve, dedupClear, dynGroup, dynDump, dynSketchAdd, dynSketchHalve, stFind, stInsert,
                                 benchZipfKeys, benchFillValues, benchSequenceKeys, benchPickKeys, benchKeyValues]
    }

    /// Row widths (floats) that have a pipelined dynamic-cache query (`dyn_query_d{dim}`).
    public static let pipelinedQueryDimensions = [16, 32, 64, 128]
    /// Row widths that have the pipelined query's copy as a stand-alone gather (`dyn_gather_d{dim}`).
    public static let pipelinedGatherDimensions = [32, 128]

    /// Launches `function` with enough 256-thread blocks for `threads` threads (grid-stride kernels loop over
    /// the rest), capped at what the device holds at once. Does nothing when `threads` is 0.
    func launch(_ function: CUDAFunction, threads: Int, stream: CUDAStream, _ arguments: [KernelArgument]) throws {
        guard threads > 0 else { return }
        let wanted = (threads + Self.blockSize - 1) / Self.blockSize
        let resident = max(1, context.multiprocessors * function.blocksPerMultiprocessor)
        let grid = UInt32(min(wanted, resident))
        let api = context.api
        let status = withUnsafeTemporaryAllocation(of: UInt64.self, capacity: arguments.count) { slots in
            withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer?.self, capacity: arguments.count) { pointers in
                for (i, argument) in arguments.enumerated() {
                    slots[i] = argument.bits
                    pointers[i] = UnsafeMutableRawPointer(slots.baseAddress! + i)
                }
                return api.cuLaunchKernel(
                    function.handle, grid, 1, 1, UInt32(Self.blockSize), 1, 1, 0, stream.handle, pointers.baseAddress, nil)
            }
        }
        try api.check(status, "launching \(function.name) (\(grid) blocks)")
    }

    /// `log2(L)` for rows of `units` vectors: L = min(32, next power of two ≥ units) lanes per row.
    static func log2Lanes(units: Int) -> UInt32 {
        var log: UInt32 = 0
        while log < 5 && (1 << log) < units { log += 1 }
        return log
    }
}

extension CUDAKernels {
    /// Enqueues the tagging of `count` keys at `keys` (int64, or int32 read as uint32) of a table of a fused
    /// group into `output` (`count` int64 keys).
    func enqueueFuseKeys(_ transform: FusedKeyTransform, keys: DeviceAddress, int32Keys: Bool, count: Int, output: DeviceAddress, stream: CUDAStream) throws {
        try launch(
            fuseKeys, threads: count, stream: stream,
            [.pointer(keys), .u32(int32Keys ? 1 : 0), .count(count), .u64(transform.tag), .u32(UInt32(transform.keyBits)), .u64(transform.absentKey), .pointer(output)])
    }
}
