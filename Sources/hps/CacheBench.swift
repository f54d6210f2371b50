import ArgumentParser
import Dispatch
import Foundation
import HPS
import HPSCUDA
import HPSTestSupport

/// `hps bench cache`: the device cache beside a raw gather of the same rows, and HugeCTR's cache workload.
struct CacheBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache",
        abstract: "Device cache: all-hit lookups beside a raw gather, and HugeCTR's Zipf cache workload.",
        discussion: """
            (a) The limit: a raw random-row gather kernel over the same rows (the cache's own vectors, at the \
            slots the keys occupy). (b) All-hit lookups of --hit-keys distinct keys (dims --hit-dims) in a cache \
            holding them (2× the slots), as a fraction of (a). (c) HugeCTR's embedding-cache workload \
            (ec_perf_test): --workload-keys keys drawn Zipf(--alpha), a dynamic cache of --slots slots, dim \
            --dim, batches of B samples × --keys-per-sample keys; each batch is deduplicated, queried, missing \
            keys get the default value, and vectors are scattered back to input order (all timed, CUDA events); \
            then the missing keys are inserted (timed apart). Reported: keys/s, distinct keys/s of the cache \
            query alone, HugeCTR's metric (B × keys-per-sample × dim × 4 bytes × 2 / time, GiB/s), and the \
            steady-state hit rate per access. Two output paths are measured on alternating batches: copy (as \
            HPS: the query copies vectors, the scatter copies them again) and direct (the query returns where \
            each hit lives and the scatter reads the cache rows).

            --device cpu runs the same measures through the CPU caches on the host (smaller defaults). \
            (c) runs once per --admission policy (none: LRU; tinylfu: LRU + TinyLFU admission), on the same keys.

            --policies instead compares replacement policies by hit rate per access on the host (d): the \
            dynamic cache with and without admission, an exact fully associative LRU and the oracle holding the \
            --slots hottest keys, on Zipf(--policy-alphas) and a drifting hot set (--drift keys per batch), \
            batches of the first --batches size.
            """
    )

    @Option(help: "cuda or cpu.")
    var device = "cuda"

    @Option(help: "CUDA device ordinal.")
    var gpu = 0

    @Option(help: "Distinct keys of the all-hit lookups.")
    var hitKeys = 1_000_000

    @Option(parsing: .upToNextOption, help: "Dimensions of the all-hit lookups.")
    var hitDims: [Int] = [128, 32]

    @Option(help: "Keys of the Zipf workload (ranks 0 ..< n).")
    var workloadKeys = 10_000_000

    @Option(help: "Zipf exponent.")
    var alpha = 1.05

    @Option(help: "Slots of the workload's dynamic cache.")
    var slots = 1_000_000

    @Option(help: "Dimension of the workload.")
    var dim = 128

    @Option(parsing: .upToNextOption, help: "Samples per batch (each --keys-per-sample keys).")
    var batches: [Int] = [65536, 32768, 16384, 8192, 4096, 2048, 1024]

    @Option(help: "Keys per sample.")
    var keysPerSample = 64

    @Option(help: "Key accesses before measuring each batch size (default: 48M on cuda, 6M on cpu).")
    var warmupKeys: Int?

    @Option(help: "Measured batches per batch size (default: 24 on cuda, 2 on cpu).")
    var measureBatches: Int?

    @Option(help: "Repetitions of each all-hit measure (median reported).")
    var repetitions = 20

    @Option(help: "Default value given to missing keys.")
    var defaultValue: Float = -1

    @Option(help: "Random seed of the workload.")
    var seed: UInt64 = 42

    @Option(help: "Also write the results as JSON to this file.")
    var json: String?

    @Option(parsing: .upToNextOption, help: "Admission policies of the workload's cache (c): none, tinylfu.")
    var admission: [String] = ["none", "tinylfu"]

    @Flag(help: "Compare replacement policies by hit rate (d) instead of the other measures.")
    var policies = false

    @Option(parsing: .upToNextOption, help: "Zipf exponents of the policy comparison.")
    var policyAlphas: [Double] = [0.9, 1.05, 1.2]

    @Option(help: "Keys the hot set of the drifting trace moves per batch (0: no drifting trace).")
    var drift = 25000

    @Option(help: "Warm-up batches per trace of the policy comparison.")
    var policyWarmup = 12

    @Option(help: "Measured batches per trace of the policy comparison.")
    var policyBatches = 12

    var admissions: [CacheAdmission] { admission.compactMap { CacheAdmission(rawValue: $0) } }

    func validate() throws {
        guard device == "cuda" || device == "cpu" else { throw ValidationError("--device must be cuda or cpu") }
        guard hitKeys >= 1024, workloadKeys >= 1000, slots >= 64, dim >= 1, keysPerSample >= 1 else { throw ValidationError("sizes too small") }
        guard batches.allSatisfy({ $0 >= 1 }), hitDims.allSatisfy({ $0 >= 1 }) else { throw ValidationError("batches and dims must be positive") }
        for name in admission where CacheAdmission(rawValue: name) == nil {
            throw ValidationError("--admission \(name): expected one of \(CacheAdmission.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard drift >= 0, policyWarmup >= 0, policyBatches >= 1 else { throw ValidationError("--drift, --policy-warmup must be ≥ 0, --policy-batches ≥ 1") }
    }

    /// One result line.
    struct Result: Codable {
        var measure: String
        var dim: Int
        var batch: Int?
        var keysPerSecond: Double?
        var uniqueKeysPerSecond: Double?
        var ratioToGather: Double?
        var hugeCTRGiBps: Double?
        var hitRatePerAccess: Double?
        var hitRatePerUniqueKey: Double?
        var milliseconds: Double?
        var note: String
    }

    func run() throws {
        print("hps bench cache --device \(device): \(Date())")
        let results: [Result]
        if policies {
            results = CachePolicyBench(options: self).run()
        } else if device == "cuda" {
            results = try CUDACacheBench(options: self).run()
        } else {
            results = try CPUCacheBench(options: self).run()
        }
        print("")
        print("| measure | dim | batch | keys/s | distinct keys/s (query) | vs gather | HugeCTR GiB/s | hit rate / access | ms | notes |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in results {
            func f(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "—" }
            print(
                "| \(r.measure) | \(r.dim) | \(r.batch.map { "\($0)×\(keysPerSample)" } ?? "—") | \(r.keysPerSecond.map(formatRate) ?? "—") | \(r.uniqueKeysPerSecond.map(formatRate) ?? "—") | \(f(r.ratioToGather.map { $0 * 100 }, "%.0f%%")) | \(f(r.hugeCTRGiBps, "%.0f")) | \(f(r.hitRatePerAccess, "%.4f")) | \(f(r.milliseconds, "%.3f")) | \(r.note) |"
            )
        }
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(results).write(to: URL(fileURLWithPath: json))
            print("results written to \(json)")
        }
    }
}

func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

// MARK: CUDA

struct CUDACacheBench {
    let options: CacheBench
    var o: CacheBench { options }

    func run() throws -> [CacheBench.Result] {
        let context = try CUDAContext.context(device: o.gpu)
        print(context.summary)
        let start = Date()
        let kernels = try context.kernels()
        print(String(format: "kernels compiled for %@ (NVRTC %@) and loaded in %.2f s", kernels.target, kernels.nvrtcVersion, Date().timeIntervalSince(start)))
        var results: [CacheBench.Result] = []
        for dim in o.hitDims { results += try allHit(context: context, kernels: kernels, dim: dim) }
        results += try workload(context: context, kernels: kernels)
        return results
    }

    /// Times `body` `repetitions` times with events; the median in milliseconds.
    func time(_ stream: CUDAStream, _ context: CUDAContext, repetitions: Int, _ body: (Int) throws -> Void) throws -> Double {
        let e0 = try context.makeEvent(), e1 = try context.makeEvent()
        for r in 0..<2 { try body(r) }  // warm up
        var ms: [Double] = []
        for r in 0..<repetitions {
            try e0.record(on: stream)
            try body(r)
            try e1.record(on: stream)
            try e1.synchronize()
            ms.append(try e1.milliseconds(since: e0))
        }
        return median(ms)
    }

    // (a) + (b)
    func allHit(context: CUDAContext, kernels: CUDAKernels, dim: Int) throws -> [CacheBench.Result] {
        let n = o.hitKeys
        let stream = try context.makeStream()
        let cache = try CUDADynamicCache(context: context, capacity: 2 * n, dimension: dim, maxBatch: n, label: "bench", logger: .silent)
        let tableKeys = try context.allocate(bytes: n * 8, what: "bench keys")
        let tableValues = try context.allocate(bytes: n * dim * 4, what: "bench vectors")
        try CUDAPrimitives.sequenceKeys(kernels: kernels, keys: tableKeys.pointer, count: n, first: 0, multiplier: 0x9E37_79B9_7F4A_7C15, offset: 12345, stream: stream)
        try CUDAPrimitives.keyValues(kernels: kernels, keys: tableKeys.pointer, count: n, countPointer: 0, dimension: dim, seed: o.seed, output: tableValues.pointer, stream: stream)
        try stream.synchronize()
        try cache.enqueueReplace(keys: tableKeys.pointer, values: tableValues.pointer, count: n, stream: stream)
        try stream.synchronize()
        // Query sets: 4 random orders of the keys, and where each key lives in the cache.
        let sets = 4
        var queryKeys: [CUDADeviceBuffer] = []
        var querySlots: [CUDADeviceBuffer] = []
        let rows = try context.allocate(bytes: n * 4, what: "bench rows")
        let output = try context.allocate(bytes: n * dim * 4, what: "bench output")
        let counter = try context.allocate(bytes: 16, what: "bench counter")
        var rng = SplitMix64(seed: o.seed &+ UInt64(dim))
        var problems: [String] = []
        /// Problems in the output of the query (or gather) just run for `keys`: misses, wrong vectors. Checks 8
        /// runs of 256 rows spread over the batch (rows of every grid-stride pass, not only the first).
        func checkOutput(keys: CUDADeviceBuffer, countMisses: Bool) throws -> [String] {
            var misses: UInt32 = 0
            let run = min(n, 256)
            let starts = (0..<8).map { ($0 * (n - run)) / 7 }
            var got = [Float](repeating: 0, count: starts.count * run * dim)
            var sampleKeys = [Int64](repeating: 0, count: starts.count * run)
            try withUnsafeMutableBytes(of: &misses) { try context.copy(toHost: $0.baseAddress!, from: counter.pointer, bytes: 4, stream: stream) }
            for (k, start) in starts.enumerated() {
                try got.withUnsafeMutableBytes {
                    try context.copy(
                        toHost: $0.baseAddress! + k * run * dim * 4, from: output.pointer + DeviceAddress(start * dim * 4), bytes: run * dim * 4, stream: stream)
                }
                try sampleKeys.withUnsafeMutableBytes {
                    try context.copy(toHost: $0.baseAddress! + k * run * 8, from: keys.pointer + DeviceAddress(start * 8), bytes: run * 8, stream: stream)
                }
            }
            try stream.synchronize()
            var found: [String] = []
            if countMisses && misses != 0 { found.append("\(misses) misses in an all-hit query") }
            for i in 0..<sampleKeys.count {
                for e in 0..<dim where got[i * dim + e] != CUDAWorkload.value(key: sampleKeys[i], element: e, dimension: dim, seed: o.seed) {
                    found.append("key \(sampleKeys[i]) element \(e) wrong")
                    break
                }
                if !found.isEmpty { break }
            }
            return found
        }
        for _ in 0..<sets {
            var order = (0..<Int32(n)).map { $0 }
            order.shuffle(using: &rng)
            try order.withUnsafeBytes { try context.copy(toDevice: rows.pointer, from: $0.baseAddress!, bytes: $0.count, stream: stream) }
            let keys = try context.allocate(bytes: n * 8, what: "bench query keys")
            try CUDAPrimitives.pickKeys(kernels: kernels, table: tableKeys.pointer, rows: rows.pointer, count: n, keys: keys.pointer, stream: stream)
            let slots = try context.allocate(bytes: n * 4, what: "bench slots")
            try cache.enqueueQuery(keys: keys.pointer, count: n, output: output.pointer, missCount: counter.pointer, slots: slots.pointer, stream: stream)
            problems += try checkOutput(keys: keys, countMisses: true)
            queryKeys.append(keys)
            querySlots.append(slots)
        }
        let base = cache.rowSource.base
        func gatherOnce(_ r: Int) throws {
            try CUDAPrimitives.copyRows(
                kernels: kernels, dimension: dim, dst: output.pointer, dstIndex: 0, src: base, srcHigh: 0, split: .max, srcIndex: querySlots[r % sets].pointer,
                srcIndex2: 0, count: n, countPointer: 0, fill: 0, streaming: false, stream: stream)
        }
        let gather = try time(stream, context, repetitions: o.repetitions, gatherOnce)
        problems += try checkOutput(keys: queryKeys[(o.repetitions - 1) % sets], countMisses: false).map { "gather: \($0)" }
        // (b) The query with each kernel (the cache's default last, so that it is the one left selected).
        let standard = cache.queryKernel
        var kernelsToRun: [CUDADynamicCache.QueryKernel] = [.classic]
        if CUDAKernels.pipelinedQueryDimensions.contains(dim) { kernelsToRun += [.pipelined, .streaming] }
        if dim == 128 { kernelsToRun.append(.narrow) }
        if !kernelsToRun.contains(standard) { kernelsToRun.append(standard) }
        kernelsToRun = kernelsToRun.filter { $0 != standard } + [standard]
        var queries: [(kernel: CUDADynamicCache.QueryKernel, name: String, ms: Double, problems: [String], info: String)] = []
        func describe(_ f: CUDAFunction) -> String { "\(f.registers) registers, \(f.localBytes) B local, \(f.blocksPerMultiprocessor) blocks/SM" }
        for kernel in kernelsToRun {
            cache.queryKernel = kernel
            let ms = try time(stream, context, repetitions: o.repetitions) { r in
                try cache.enqueueQuery(keys: queryKeys[r % sets].pointer, count: n, output: output.pointer, missCount: counter.pointer, stream: stream)
            }
            let checked = try checkOutput(keys: queryKeys[(o.repetitions - 1) % sets], countMisses: true)
            let function = cache.queryKernelFunction()
            queries.append((kernel, function.name, ms, checked, describe(function)))
        }
        cache.queryKernel = standard
        let query = queries.last!.ms
        problems += queries.last!.problems
        // (a′) The pipelined query's copy alone, as a gather (does the query beat the generic gather because
        // its copy is better?), and the reference gather once more (drift).
        var gathers: [(name: String, ms: Double, problems: [String])] = []
        if CUDAKernels.pipelinedGatherDimensions.contains(dim) {
            for streaming in [false, true] {
                let ms = try time(stream, context, repetitions: o.repetitions) { r in
                    try CUDAPrimitives.gatherRowsPipelined(
                        kernels: kernels, dimension: dim, values: base, rows: querySlots[r % sets].pointer, count: n, output: output.pointer, streaming: streaming,
                        stream: stream)
                }
                let checked = try checkOutput(keys: queryKeys[(o.repetitions - 1) % sets], countMisses: false)
                gathers.append(("dyn_gather_d\(dim)\(streaming ? "_cs" : "")", ms, checked))
            }
        }
        let gatherAgain = try time(stream, context, repetitions: o.repetitions, gatherOnce)
        let pipeline = try CUDALookupPipeline(context: context, maxKeys: n, dimension: dim)
        let full = try time(stream, context, repetitions: o.repetitions) { r in
            try pipeline.enqueueLookup(cache: cache, keys: queryKeys[r % sets].pointer, count: n, output: output.pointer, defaultValue: o.defaultValue, mode: .direct, stream: stream)
        }
        // The same all-hit query on a cache with TinyLFU admission (each query counts its hits in the sketch).
        let admitted = try CUDADynamicCache(context: context, capacity: 2 * n, dimension: dim, maxBatch: n, admission: .tinyLFU, label: "bench", logger: .silent)
        try admitted.enqueueReplace(keys: tableKeys.pointer, values: tableValues.pointer, count: n, stream: stream)
        let queryAdmission = try time(stream, context, repetitions: o.repetitions) { r in
            try admitted.enqueueQuery(keys: queryKeys[r % sets].pointer, count: n, output: output.pointer, missCount: counter.pointer, stream: stream)
        }
        let admissionProblems = try checkOutput(keys: queryKeys[(o.repetitions - 1) % sets], countMisses: true)
        print(String(format: "  with TinyLFU admission: query %.3f ms (%.1f%% of the plain query's rate)", queryAdmission, query / queryAdmission * 100))
        let bytes = Double(n * dim * 4 * 2)
        let note = problems.isEmpty ? "all hits, vectors checked" : "PROBLEM: \(problems[0])"
        print(String(format: "all-hit dim %d: gather %.3f ms (%.2f TB/s read+write), query %.3f ms (%@, default), full lookup %.3f ms", dim, gather, bytes / gather / 1e9, query, queries.last!.name, full))
        for q in queries {
            print(String(format: "  query kernel %@ (%@; %@): %.3f ms = %.1f%% of the gather%@", q.kernel.rawValue, q.name, q.info, q.ms, gather / q.ms * 100,
                         q.problems.isEmpty ? "" : " PROBLEM: \(q.problems[0])"))
        }
        print("  gathers: copy_rows \(String(format: "%.3f", gather)) ms, again after the queries \(String(format: "%.3f", gatherAgain)) ms" + gathers.map { g in
            String(format: "; %@ %.3f ms (%.1f%% of copy_rows' time)%@", g.name, g.ms, g.ms / gather * 100, g.problems.isEmpty ? "" : " PROBLEM: \(g.problems[0])")
        }.joined())
        var results: [CacheBench.Result] = [
            .init(measure: "(a) raw gather of the same rows (limit)", dim: dim, batch: nil, keysPerSecond: Double(n) / (gather / 1e3), milliseconds: gather,
                  note: String(format: "%d random rows, %.2f TB/s read+write (copy_rows; %.3f ms again after the queries)", n, bytes / gather / 1e9, gatherAgain)),
        ]
        for g in gathers {
            results.append(
                .init(measure: "(a′) gather with the pipelined query's copy", dim: dim, batch: nil, keysPerSecond: Double(n) / (g.ms / 1e3), ratioToGather: gather / g.ms,
                      milliseconds: g.ms, note: "\(g.name); for reference: vs gather = (a)'s time / this time" + (g.problems.isEmpty ? "" : "; PROBLEM: \(g.problems[0])")))
        }
        results.append(
            .init(measure: "(b) all-hit cache query", dim: dim, batch: nil, keysPerSecond: Double(n) / (query / 1e3), uniqueKeysPerSecond: Double(n) / (query / 1e3),
                  ratioToGather: gather / query, milliseconds: query, note: "\(note); default kernel: \(queries.last!.kernel.rawValue) (\(queries.last!.name); \(queries.last!.info))"))
        for q in queries.dropLast() {
            results.append(
                .init(measure: "(b) all-hit cache query, \(q.kernel.rawValue) kernel", dim: dim, batch: nil, keysPerSecond: Double(n) / (q.ms / 1e3),
                      uniqueKeysPerSecond: Double(n) / (q.ms / 1e3), ratioToGather: gather / q.ms, milliseconds: q.ms,
                      note: (q.problems.isEmpty ? "all hits, vectors checked" : "PROBLEM: \(q.problems[0])") + "; \(q.name)" + (q.kernel == .classic ? " (the old kernel)" : "") + "; \(q.info)"))
        }
        results.append(
            .init(measure: "(b) all-hit cache query, TinyLFU admission", dim: dim, batch: nil, keysPerSecond: Double(n) / (queryAdmission / 1e3),
                  uniqueKeysPerSecond: Double(n) / (queryAdmission / 1e3), ratioToGather: gather / queryAdmission, milliseconds: queryAdmission,
                  note: (admissionProblems.isEmpty ? "all hits, vectors checked" : "PROBLEM: \(admissionProblems[0])")
                      + String(format: "; %.1f%% of the plain query's rate (the keys' counts saturate after 15 queries: a lower bound of the cost)", query / queryAdmission * 100)))
        results.append(
            .init(measure: "(b) all-hit lookup: dedup + query + scatter", dim: dim, batch: nil, keysPerSecond: Double(n) / (full / 1e3), ratioToGather: gather / full,
                  milliseconds: full, note: "direct mode, distinct keys"))
        return results
    }

    // (c)
    func workload(context: CUDAContext, kernels: CUDAKernels) throws -> [CacheBench.Result] {
        let dim = o.dim
        let stream = try context.makeStream()
        let cdfStart = Date()
        let cdf = CUDAWorkload.zipfCDF(rows: o.workloadKeys, alpha: o.alpha)
        let dCDF = try context.allocate(bytes: cdf.count * 8, what: "Zipf CDF")
        try cdf.withUnsafeBytes { try context.copy(toDevice: dCDF.pointer, from: $0.baseAddress!, bytes: $0.count, stream: stream) }
        try stream.synchronize()
        print(String(format: "workload: Zipf(%.2f) over %d keys (CDF %.1f s), %d slots, dim %d", o.alpha, o.workloadKeys, Date().timeIntervalSince(cdfStart), o.slots, dim))
        let maxKeys = (o.batches.max() ?? 1) * o.keysPerSample
        let pipeline = try CUDALookupPipeline(context: context, maxKeys: maxKeys, dimension: dim)
        let keys = try context.allocate(bytes: maxKeys * 8, what: "workload keys")
        let output = try context.allocate(bytes: maxKeys * dim * 4, what: "workload output")
        let insertValues = try context.allocate(bytes: maxKeys * dim * 4, what: "workload insert vectors")
        let accessMisses = try context.allocate(bytes: 16, what: "workload counter")
        let events = try (0..<6).map { _ in try context.makeEvent() }
        var results: [CacheBench.Result] = []
        var drawn: UInt64 = 0
        for (admission, batch) in o.admissions.flatMap({ a in o.batches.map { (a, $0) } }) {
            let n = batch * o.keysPerSample
            let cache = try CUDADynamicCache(context: context, capacity: o.slots, dimension: dim, maxBatch: n, admission: admission, label: "workload", logger: .silent)
            struct Step {
                var total = 0.0, dedup = 0.0, query = 0.0, scatter = 0.0, insert = 0.0
                var unique = 0, misses = 0, missedAccesses = 0
            }
            func step(mode: CUDALookupPipeline.Mode, check: Bool) throws -> Step {
                try CUDAPrimitives.zipfKeys(kernels: kernels, cdf: dCDF.pointer, rows: o.workloadKeys, seed: o.seed, first: drawn, count: n, keys: keys.pointer, stream: stream)
                drawn += UInt64(n)
                try events[0].record(on: stream)
                try pipeline.enqueueDedup(keys: keys.pointer, count: n, stream: stream)
                try events[1].record(on: stream)
                try pipeline.enqueueQuery(cache: cache, count: n, mode: mode, stream: stream)
                try events[2].record(on: stream)
                try pipeline.enqueueScatter(cache: cache, count: n, output: output.pointer, defaultValue: o.defaultValue, mode: mode, stream: stream)
                try pipeline.enqueueClear(maxCount: n, stream: stream)
                try events[3].record(on: stream)
                try context.fill32(accessMisses.pointer, value: 0, count: 1, stream: stream)
                try CUDAPrimitives.countMissedAccesses(
                    kernels: kernels, inverse: pipeline.inverse.pointer, count: n, hitFlags: pipeline.hitFlags.pointer, counter: accessMisses.pointer, stream: stream)
                var counts = (UInt32(0), UInt32(0), UInt32(0))
                try withUnsafeMutableBytes(of: &counts.0) { try context.copy(toHost: $0.baseAddress!, from: pipeline.uniqueCount.pointer, bytes: 4, stream: stream) }
                try withUnsafeMutableBytes(of: &counts.1) { try context.copy(toHost: $0.baseAddress!, from: pipeline.missCount.pointer, bytes: 4, stream: stream) }
                try withUnsafeMutableBytes(of: &counts.2) { try context.copy(toHost: $0.baseAddress!, from: accessMisses.pointer, bytes: 4, stream: stream) }
                try stream.synchronize()
                if check { try verify(n: n) }
                let misses = Int(counts.1)
                try events[4].record(on: stream)
                try CUDAPrimitives.keyValues(
                    kernels: kernels, keys: pipeline.missingKeys.pointer, count: misses, countPointer: 0, dimension: dim, seed: o.seed, output: insertValues.pointer,
                    stream: stream)
                try cache.enqueueReplace(keys: pipeline.missingKeys.pointer, values: insertValues.pointer, count: misses, stream: stream)
                try events[5].record(on: stream)
                try events[5].synchronize()
                if let failure = cache.failure { throw failure }
                return Step(
                    total: try events[3].milliseconds(since: events[0]), dedup: try events[1].milliseconds(since: events[0]),
                    query: try events[2].milliseconds(since: events[1]), scatter: try events[3].milliseconds(since: events[2]),
                    insert: try events[5].milliseconds(since: events[4]), unique: Int(counts.0), misses: misses, missedAccesses: Int(counts.2))
            }
            /// Spot-checks the output: every row is the key's vector or the default.
            func verify(n: Int) throws {
                let sample = min(n, 4096)
                var got = [Float](repeating: 0, count: sample * dim)
                var sampleKeys = [Int64](repeating: 0, count: sample)
                try got.withUnsafeMutableBytes { try context.copy(toHost: $0.baseAddress!, from: output.pointer, bytes: $0.count, stream: stream) }
                try sampleKeys.withUnsafeMutableBytes { try context.copy(toHost: $0.baseAddress!, from: keys.pointer, bytes: $0.count, stream: stream) }
                try stream.synchronize()
                for i in 0..<sample {
                    let row = got[(i * dim)..<((i + 1) * dim)]
                    let isDefault = row.allSatisfy { $0 == o.defaultValue }
                    let isVector = row.enumerated().allSatisfy { CUDAWorkload.value(key: sampleKeys[i], element: $0.offset, dimension: dim, seed: o.seed) == $0.element }
                    if !isDefault && !isVector { throw CUDAError(.invalidArgument, what: "workload output row \(i) (key \(sampleKeys[i])) is neither its vector nor the default") }
                }
            }
            var warmed = 0
            var warmBatches = 0
            let warmup = o.warmupKeys ?? 48_000_000
            while warmed < warmup || warmBatches < 3 {
                _ = try step(mode: .direct, check: warmBatches == 0)
                warmed += n
                warmBatches += 1
            }
            var steps: [CUDALookupPipeline.Mode: [Step]] = [:]
            let measured = max(2, o.measureBatches ?? 24)
            for m in 0..<measured {
                let mode: CUDALookupPipeline.Mode = m % 2 == 0 ? .copy : .direct
                steps[mode, default: []].append(try step(mode: mode, check: m < 2))
            }
            for mode in CUDALookupPipeline.Mode.allCases {
                let s = steps[mode] ?? []
                guard !s.isEmpty else { continue }
                let total = median(s.map(\.total)), query = median(s.map(\.query))
                let uniqueMean = Double(s.reduce(0) { $0 + $1.unique }) / Double(s.count)
                let hitAccess = 1 - Double(s.reduce(0) { $0 + $1.missedAccesses }) / Double(n * s.count)
                let hitUnique = 1 - Double(s.reduce(0) { $0 + $1.misses }) / Double(max(1, s.reduce(0) { $0 + $1.unique }))
                let hitHugeCTR = 1 - Double(s.reduce(0) { $0 + $1.misses }) / Double(n * s.count)
                let metric = Double(n * dim * 4 * 2) / (total / 1e3) / Double(1 << 30)
                let note = String(
                    format: "%@: dedup %.3f, query %.3f, scatter+clear %.3f, insert %.3f ms; %.0f%% distinct; hit rate per distinct key %.4f, ec_perf_test's (1 − missed distinct / keys) %.4f; %d warm-up batches",
                    mode == .copy ? "copy (query kernel \(cache.queryKernelFunction().name))" : mode.rawValue, median(s.map(\.dedup)), query, median(s.map(\.scatter)), median(s.map(\.insert)), uniqueMean / Double(n) * 100, hitUnique, hitHugeCTR,
                    warmBatches)
                print("workload \(batch)×\(o.keysPerSample), admission \(admission.rawValue), \(note); total \(String(format: "%.3f", total)) ms, \(String(format: "%.0f", metric)) GiB/s, hit rate per access \(String(format: "%.4f", hitAccess))")
                results.append(
                    .init(
                        measure: "(c) HugeCTR workload, \(mode.rawValue), admission \(admission.rawValue)", dim: dim, batch: batch, keysPerSecond: Double(n) / (total / 1e3),
                        uniqueKeysPerSecond: uniqueMean / (query / 1e3), hugeCTRGiBps: metric, hitRatePerAccess: hitAccess, hitRatePerUniqueKey: hitUnique, milliseconds: total,
                        note: note))
            }
        }
        return results
    }
}

// MARK: CPU

/// The same measures through the CPU caches, single-threaded on the host (wall-clock timing).
struct CPUCacheBench {
    let options: CacheBench
    var o: CacheBench { options }

    func time(repetitions: Int, _ body: (Int) -> Void) -> Double {
        for r in 0..<1 { body(r) }
        var ms: [Double] = []
        for r in 0..<repetitions {
            let w = Stopwatch()
            body(r)
            ms.append(w.seconds * 1e3)
        }
        return median(ms)
    }

    func run() throws -> [CacheBench.Result] {
        var results: [CacheBench.Result] = []
        for dim in o.hitDims { results += allHit(dim: dim) }
        results += workload()
        return results
    }

    func allHit(dim: Int) -> [CacheBench.Result] {
        let n = o.hitKeys
        let cache = DynamicCache(capacity: 2 * n, dimension: dim)
        let keys = (0..<n).map { Int64(bitPattern: UInt64($0) &* 0x9E37_79B9_7F4A_7C15 &+ 12345) }
        var table = [Float](repeating: 0, count: n * dim)
        table.withUnsafeMutableBufferPointer { t in
            for i in 0..<n { CUDAWorkload.vector(key: keys[i], dimension: dim, seed: o.seed, into: t.baseAddress! + i * dim) }
        }
        keys.withUnsafeBufferPointer { k in table.withUnsafeBufferPointer { cache.replace(keys: k, values: $0.baseAddress!) } }
        var rng = SplitMix64(seed: o.seed)
        let orders = (0..<2).map { _ in (0..<n).shuffled(using: &rng) }
        let queryKeys = orders.map { $0.map { keys[$0] } }
        var output = [Float](repeating: 0, count: n * dim)
        var missing = [Int32](repeating: 0, count: n)
        let reps = min(o.repetitions, 3)
        let gather = output.withUnsafeMutableBufferPointer { out in
            table.withUnsafeBufferPointer { t in
                time(repetitions: reps) { r in
                    let order = orders[r % orders.count]
                    for i in 0..<n { (out.baseAddress! + i * dim).update(from: t.baseAddress! + order[i] * dim, count: dim) }
                }
            }
        }
        var misses = 0
        let query = output.withUnsafeMutableBufferPointer { out in
            missing.withUnsafeMutableBufferPointer { m in
                time(repetitions: reps) { r in
                    misses += queryKeys[r % queryKeys.count].withUnsafeBufferPointer { cache.query(keys: $0, into: out.baseAddress!, missing: m.baseAddress!) }
                }
            }
        }
        let admitted = DynamicCache(capacity: 2 * n, dimension: dim, admission: .tinyLFU)
        keys.withUnsafeBufferPointer { k in table.withUnsafeBufferPointer { admitted.replace(keys: k, values: $0.baseAddress!) } }
        var admittedMisses = 0
        let queryAdmission = output.withUnsafeMutableBufferPointer { out in
            missing.withUnsafeMutableBufferPointer { m in
                time(repetitions: reps) { r in
                    admittedMisses += queryKeys[r % queryKeys.count].withUnsafeBufferPointer { admitted.query(keys: $0, into: out.baseAddress!, missing: m.baseAddress!) }
                }
            }
        }
        return [
            .init(measure: "(b) all-hit CPU cache query, TinyLFU admission (1 thread)", dim: dim, batch: nil, keysPerSecond: Double(n) / (queryAdmission / 1e3),
                  uniqueKeysPerSecond: Double(n) / (queryAdmission / 1e3), ratioToGather: gather / queryAdmission, milliseconds: queryAdmission,
                  note: (admittedMisses == 0 ? "all hits" : "PROBLEM: \(admittedMisses) misses") + String(format: "; %.1f%% of the plain query's rate", query / queryAdmission * 100)),
            .init(measure: "(a) raw gather (host, 1 thread)", dim: dim, batch: nil, keysPerSecond: Double(n) / (gather / 1e3), milliseconds: gather, note: "\(n) random rows"),
            .init(measure: "(b) all-hit CPU cache query (1 thread)", dim: dim, batch: nil, keysPerSecond: Double(n) / (query / 1e3), uniqueKeysPerSecond: Double(n) / (query / 1e3),
                  ratioToGather: gather / query, milliseconds: query, note: misses == 0 ? "all hits" : "PROBLEM: \(misses) misses"),
        ]
    }

    func workload() -> [CacheBench.Result] {
        let dim = o.dim
        let cdf = CUDAWorkload.zipfCDF(rows: o.workloadKeys, alpha: o.alpha)
        var results: [CacheBench.Result] = []
        var drawn: UInt64 = 0
        for (admission, batch) in o.admissions.flatMap({ a in o.batches.map { (a, $0) } }) {
            let n = batch * o.keysPerSample
            let cache = DynamicCache(capacity: o.slots, dimension: dim, admission: admission)
            var keys = [Int64](repeating: 0, count: n)
            var unique = [Int64](repeating: 0, count: n)
            var inverse = [Int32](repeating: 0, count: n)
            var uniqueVectors = [Float](repeating: 0, count: n * dim)
            var missing = [Int32](repeating: 0, count: n)
            var output = [Float](repeating: 0, count: n * dim)
            var tableSize = 16
            while tableSize < 2 * n { tableSize *= 2 }
            var slotsTable = [Int32](repeating: -1, count: tableSize)
            struct Step { var total = 0.0, query = 0.0, insert = 0.0, unique = 0, misses = 0, missedAccesses = 0 }
            func step() -> Step {
                cdf.withUnsafeBufferPointer { c in
                    for i in 0..<n { keys[i] = CUDAWorkload.zipfKey(cdf: c, seed: o.seed, index: drawn + UInt64(i)) }
                }
                drawn += UInt64(n)
                let start = Stopwatch()
                // Dedup (open addressing, first-seen order).
                var u = 0
                let mask = tableSize - 1
                for i in 0..<n {
                    let key = keys[i]
                    var pos = Int(truncatingIfNeeded: (UInt64(bitPattern: key) &* 0x9E37_79B9_7F4A_7C15) >> 20) & mask
                    while true {
                        let s = Int(slotsTable[pos])
                        if s < 0 {
                            slotsTable[pos] = Int32(u)
                            unique[u] = key
                            inverse[i] = Int32(u)
                            u += 1
                            break
                        }
                        if unique[s] == key {
                            inverse[i] = Int32(s)
                            break
                        }
                        pos = (pos + 1) & mask
                    }
                }
                let queryStart = Stopwatch()
                let misses = unique.withUnsafeBufferPointer { k in
                    uniqueVectors.withUnsafeMutableBufferPointer { v in
                        missing.withUnsafeMutableBufferPointer { m in cache.query(keys: UnsafeBufferPointer(rebasing: k[0..<u]), into: v.baseAddress!, missing: m.baseAddress!) }
                    }
                }
                let query = queryStart.seconds * 1e3
                for j in 0..<misses {
                    for e in 0..<dim { uniqueVectors[Int(missing[j]) * dim + e] = o.defaultValue }
                }
                output.withUnsafeMutableBufferPointer { out in
                    uniqueVectors.withUnsafeBufferPointer { v in
                        for i in 0..<n { (out.baseAddress! + i * dim).update(from: v.baseAddress! + Int(inverse[i]) * dim, count: dim) }
                    }
                }
                let total = start.seconds * 1e3
                // Reset the dedup table; count per-access misses; insert the misses.
                for i in 0..<tableSize { slotsTable[i] = -1 }
                var missedFlag = [Bool](repeating: false, count: u)
                for j in 0..<misses { missedFlag[Int(missing[j])] = true }
                var missedAccesses = 0
                for i in 0..<n where missedFlag[Int(inverse[i])] { missedAccesses += 1 }
                let insertKeys = (0..<misses).map { unique[Int(missing[$0])] }
                var values = [Float](repeating: 0, count: misses * dim)
                values.withUnsafeMutableBufferPointer { v in
                    for j in 0..<misses { CUDAWorkload.vector(key: insertKeys[j], dimension: dim, seed: o.seed, into: v.baseAddress! + j * dim) }
                }
                let insertStart = Stopwatch()
                insertKeys.withUnsafeBufferPointer { k in values.withUnsafeBufferPointer { cache.replace(keys: k, values: $0.baseAddress!) } }
                let insert = insertStart.seconds * 1e3
                return Step(total: total, query: query, insert: insert, unique: u, misses: misses, missedAccesses: missedAccesses)
            }
            let warmup = o.warmupKeys ?? 6_000_000
            var warmed = 0, warmBatches = 0
            while warmed < warmup || warmBatches < 2 {
                _ = step()
                warmed += n
                warmBatches += 1
            }
            let steps = (0..<max(1, o.measureBatches ?? 2)).map { _ in step() }
            let total = median(steps.map(\.total)), query = median(steps.map(\.query)), insert = median(steps.map(\.insert))
            let uniqueMean = Double(steps.reduce(0) { $0 + $1.unique }) / Double(steps.count)
            let hitAccess = 1 - Double(steps.reduce(0) { $0 + $1.missedAccesses }) / Double(n * steps.count)
            let hitUnique = 1 - Double(steps.reduce(0) { $0 + $1.misses }) / Double(max(1, steps.reduce(0) { $0 + $1.unique }))
            let hitHugeCTR = 1 - Double(steps.reduce(0) { $0 + $1.misses }) / Double(n * steps.count)
            let metric = Double(n * dim * 4 * 2) / (total / 1e3) / Double(1 << 30)
            print("workload \(batch)×\(o.keysPerSample), admission \(admission.rawValue): total \(String(format: "%.1f", total)) ms, query \(String(format: "%.1f", query)) ms, insert \(String(format: "%.1f", insert)) ms, hit rate per access \(String(format: "%.4f", hitAccess))")
            results.append(
                .init(
                    measure: "(c) HugeCTR workload (CPU, 1 thread), admission \(admission.rawValue)", dim: dim, batch: batch, keysPerSecond: Double(n) / (total / 1e3), uniqueKeysPerSecond: uniqueMean / (query / 1e3),
                    hugeCTRGiBps: metric, hitRatePerAccess: hitAccess, hitRatePerUniqueKey: hitUnique, milliseconds: total,
                    note: String(
                        format: "query %.3f, insert %.3f ms; %.0f%% distinct; hit rate per distinct key %.4f, ec_perf_test's (1 − missed distinct / keys) %.4f; %d warm-up batches",
                        query, insert, uniqueMean / Double(n) * 100, hitUnique, hitHugeCTR, warmBatches)))
        }
        return results
    }
}
