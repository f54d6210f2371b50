import Dispatch
import Foundation
import HPS
import HPSCUDA
import HPSRuntime
import Synchronization

/// The checks `hps gpu-check` runs with a device: randomized workloads through the GPU caches and the CPU
/// caches side by side, concurrent lookups against a reference model, the device lookup pipeline and whole
/// parameter servers. Prints one PASS/FAIL line per check.
public struct GPUChecker {
    var rng: SplitMix64
    let seed: UInt64
    let rounds: Int
    /// Checks that passed so far.
    public internal(set) var passed = 0
    /// Checks that failed so far.
    public internal(set) var failed = 0
    static let valueSeed: UInt64 = 0x5EED

    public init(seed: UInt64, rounds: Int) {
        self.seed = seed
        self.rounds = rounds
        rng = SplitMix64(seed: seed)
    }

    mutating func record(_ name: String, _ problems: [String], _ detail: String) {
        if problems.isEmpty {
            passed += 1
            print("PASS \(name): \(detail)")
        } else {
            failed += 1
            print("FAIL \(name): \(problems.count) problem(s); first: \(problems.prefix(5).joined(separator: " | "))")
        }
    }

    mutating func guarded(_ name: String, _ body: (inout GPUChecker) throws -> (problems: [String], detail: String)) {
        do {
            let (problems, detail) = try body(&self)
            record(name, problems, detail)
        } catch {
            failed += 1
            print("FAIL \(name): threw \(error)")
        }
    }

    /// Runs every check on CUDA device `device`.
    /// - Throws: ``CUDAError`` when the device cannot be opened or a CUDA call fails; ``HPSError`` when a reference
    ///   lookup fails. Checks that disagree are recorded as problems, not thrown.
    public mutating func run(device: Int) throws {
        print("seed \(seed) (rerun with --seed \(seed))")
        let context = try CUDAContext.context(device: device)
        print(context.summary)
        let start = Date()
        let kernels = try context.kernels()
        print(String(format: "kernels: compiled for %@ by NVRTC %@ and loaded in %.2f s", kernels.target, kernels.nvrtcVersion, Date().timeIntervalSince(start)))
        for f in kernels.all where f.localBytes > 0 {
            print("  note: \(f.name) uses \(f.registers) registers and \(f.localBytes) bytes of local memory per thread")
        }
        let dims = [1, 3, 4, 7, 16, 32, 33, 64, 128, 130]
        for round in 0..<rounds {
            let dim = round == 0 ? 128 : dims[Int(rng.next() % UInt64(dims.count))]
            let sets = [1, 3, 17, 600][Int(rng.next() % 4)] + (round == 0 ? 0 : Int(rng.next() % 8))
            for admission in round < 2 ? [CacheAdmission.none, .tinyLFU] : [.tinyLFU] {
                guarded("dynamic cache vs CPU, admission \(admission.rawValue), round \(round) (dim \(dim), \(sets) sets)") {
                    try $0.checkDynamic(context: context, dim: dim, sets: sets, admission: admission)
                }
            }
        }
        for kind in [CUDAStaticCache.Kind.static, .uvm] {
            for round in 0..<max(1, rounds / 2) {
                let dim = [1, 8, 31, 128][Int(rng.next() % 4)]
                let capacity = [50, 3000, 70000][Int(rng.next() % 3)]
                guarded("\(kind.rawValue) table vs CPU, round \(round) (dim \(dim), capacity \(capacity))") {
                    try $0.checkStatic(context: context, kind: kind, dim: dim, capacity: capacity)
                }
            }
        }
        guarded("dynamic cache, 6 threads at once vs reference model") { try $0.checkConcurrentDynamic(context: context, dim: 32) }
        guarded("uvm table, 6 threads at once vs reference model") { try $0.checkConcurrentStatic(context: context, kind: .uvm, dim: 24) }
        for mode in CUDALookupPipeline.Mode.allCases {
            guarded("device pipeline (dedup, query, default, scatter; \(mode.rawValue) mode) on a dynamic cache") {
                try $0.checkPipeline(context: context, dim: 64, mode: mode, staticKind: nil)
            }
            guarded("device pipeline (\(mode.rawValue) mode) on a uvm table") { try $0.checkPipeline(context: context, dim: 20, mode: mode, staticKind: .uvm) }
        }
        for type in [EmbeddingCacheType.dynamic, .static, .uvm] {
            guarded("parameter server with \(type.rawValue) GPU cache vs table files") { try $0.checkServer(type: type) }
        }
        for type in [EmbeddingCacheType.dynamic, .static] {
            for longKeys in [true, false] {
                guarded("fused tables (\(type.rawValue) GPU cache, \(longKeys ? "int64" : "int32") keys) vs unfused, host and device memory") {
                    try $0.checkFusedServer(type: type, longKeys: longKeys, context: context)
                }
            }
        }
    }

    // MARK: Helpers

    mutating func random(_ n: Int) -> Int { Int(rng.next() % UInt64(max(1, n))) }

    /// Keys with awkward values mixed in.
    mutating func universe(_ n: Int) -> [Int64] {
        var keys = Set<Int64>([0, -1, .min, .max, 0x7FFF_FFFF_7FFF_FFFF, 1])
        while keys.count < n { keys.insert(Int64(bitPattern: rng.next()) >> Int64(random(40))) }
        return Array(keys).sorted().shuffled(using: &rng)
    }

    static func vector(_ key: Int64, version: Int, dim: Int) -> [Float] {
        (0..<dim).map { CUDAWorkload.value(key: key &+ Int64(version) &* 1_000_003, element: $0, dimension: dim, seed: valueSeed) }
    }

    static func vectors(_ keys: [Int64], version: Int, dim: Int) -> [Float] { keys.flatMap { vector($0, version: version, dim: dim) } }

    static func query(_ cache: any EmbeddingCache, _ keys: [Int64]) -> (values: [Float], missing: [Int32]) {
        var values = [Float](repeating: .nan, count: keys.count * cache.dimension)
        var missing = [Int32](repeating: -1, count: keys.count)
        let n = keys.withUnsafeBufferPointer { k in
            values.withUnsafeMutableBufferPointer { v in
                missing.withUnsafeMutableBufferPointer { m in try? cache.query(keys: k, into: v.baseAddress!, missing: m.baseAddress!) }
            }
        }
        // A failed query (a device error) reports an impossible miss list, so every comparison flags it.
        guard let n else { return (values, [-1]) }
        return (values, Array(missing[0..<n]))
    }

    static func write(_ cache: any EmbeddingCache, _ keys: [Int64], _ values: [Float], update: Bool) {
        keys.withUnsafeBufferPointer { k in
            values.withUnsafeBufferPointer { v in
                // A failed write (a device error) shows up in the comparisons that follow.
                if update { try? cache.update(keys: k, values: v.baseAddress!) } else { try? cache.replace(keys: k, values: v.baseAddress!) }
            }
        }
    }

    /// The keys of `cache` in units `range` (none when the device failed: the comparison then flags it).
    static func dump(_ cache: any EmbeddingCache, _ range: Range<Int>) -> [Int64] { (try? cache.keys(inUnits: range)) ?? [] }

    /// Compares two query results: same misses, bit-identical vectors of hits.
    static func compare(_ what: String, keys: [Int64], dim: Int, cpu: (values: [Float], missing: [Int32]), gpu: (values: [Float], missing: [Int32]), into problems: inout [String]) {
        if cpu.missing != gpu.missing {
            let c = Set(cpu.missing), g = Set(gpu.missing)
            let onlyCPU = c.subtracting(g).prefix(3).map { "key \(keys[Int($0)])" }
            let onlyGPU = g.subtracting(c).prefix(3).map { "key \(keys[Int($0)])" }
            problems.append("\(what): misses differ (CPU \(cpu.missing.count), GPU \(gpu.missing.count); missed only on CPU: \(onlyCPU), only on GPU: \(onlyGPU))")
            return
        }
        let missed = Set(cpu.missing)
        for i in 0..<keys.count where !missed.contains(Int32(i)) {
            for e in 0..<dim where cpu.values[i * dim + e].bitPattern != gpu.values[i * dim + e].bitPattern {
                problems.append("\(what): key \(keys[i]) element \(e): CPU \(cpu.values[i * dim + e]) GPU \(gpu.values[i * dim + e])")
                break
            }
            if problems.count > 10 { return }
        }
    }

    // MARK: Dynamic cache vs CPU

    mutating func checkDynamic(context: CUDAContext, dim: Int, sets: Int, admission: CacheAdmission = .none) throws -> ([String], String) {
        let capacity = sets * 64
        let cpu = DynamicCache(capacity: capacity, dimension: dim, admission: admission)
        let gpu = try CUDADynamicCache(context: context, capacity: capacity, dimension: dim, maxBatch: 1000, admission: admission, label: "check", logger: .silent)
        guard cpu.capacity == gpu.capacity else { return (["capacity CPU \(cpu.capacity) GPU \(gpu.capacity)"], "") }
        let keys = universe(max(200, capacity * 3))
        var problems: [String] = []
        var version = 0
        var ops = (replace: 0, query: 0, update: 0, dump: 0, hits: 0, misses: 0)
        // With admission, replaces draw skewed keys (some far more often), so that estimates differ.
        func draw(_ checker: inout GPUChecker) -> Int64 {
            if admission == .none { return keys[checker.random(keys.count)] }
            let u = Double(checker.random(1 << 20)) / Double(1 << 20)
            return keys[min(keys.count - 1, Int(Double(keys.count) * u * u * u))]
        }
        for step in 0..<40 {
            version += 1
            switch step == 0 ? 0 : random(10) {
            case 0...3:
                // Replace with duplicates; sometimes one batch of many staging chunks (1024 keys each here).
                let n = step == 3 ? 70000 : 1 + random(min(3 * capacity, 5000))
                let batch = (0..<n).map { _ in draw(&self) }
                let values = Self.vectors(batch, version: version, dim: dim)
                Self.write(cpu, batch, values, update: false)
                Self.write(gpu, batch, values, update: false)
                ops.replace += 1
            case 4...6:
                var seen = Set<Int64>()
                let batch = (0..<(1 + random(min(keys.count, 4000)))).map { _ in keys[random(keys.count)] }.filter { seen.insert($0).inserted }
                let c = Self.query(cpu, batch), g = Self.query(gpu, batch)
                Self.compare("step \(step) query of \(batch.count) keys", keys: batch, dim: dim, cpu: c, gpu: g, into: &problems)
                ops.query += 1
                ops.misses += c.missing.count
                ops.hits += batch.count - c.missing.count
            case 7, 8:
                let batch = (0..<(1 + random(3000))).map { _ in keys[random(keys.count)] }
                let values = Self.vectors(batch, version: version, dim: dim)
                Self.write(cpu, batch, values, update: true)
                Self.write(gpu, batch, values, update: true)
                ops.update += 1
            default:
                let lo = random(cpu.unitCount)
                let range = lo..<min(cpu.unitCount, lo + 1 + random(cpu.unitCount))
                let c = Self.dump(cpu, range), g = Self.dump(gpu, range)
                if c != g { problems.append("step \(step) keys(inUnits: \(range)): CPU \(c.count) keys, GPU \(g.count) keys, or a different order") }
                if cpu.count != gpu.count { problems.append("step \(step) count: CPU \(cpu.count) GPU \(gpu.count)") }
                ops.dump += 1
            }
            if problems.count > 10 { break }
        }
        // Final full comparison.
        let all = Self.query(cpu, keys), allGPU = Self.query(gpu, keys)
        Self.compare("final query of every key", keys: keys, dim: dim, cpu: all, gpu: allGPU, into: &problems)
        if Self.dump(cpu, 0..<cpu.unitCount) != Self.dump(gpu, 0..<gpu.unitCount) { problems.append("final dump differs") }
        var sketchNote = ""
        if let sketch = cpu.sketch {
            if let g = try gpu.sketchSnapshot() {
                let c = sketch.counterWords
                let differing = zip(c, g.words).filter { $0 != $1 }.count
                if c.count != g.words.count || differing > 0 { problems.append("frequency sketch differs: \(differing) of \(c.count) words") }
                if sketch.additions != g.additions { problems.append("sketch counted keys: CPU \(sketch.additions) GPU \(g.additions)") }
                sketchNote = "; sketches identical (\(c.count) words, \(sketch.additions) counted keys since the last halving)"
            } else {
                problems.append("the CUDA cache has no frequency sketch")
            }
        }
        if let failure = gpu.failure { problems.append("cache failed: \(failure)") }
        return (problems, "\(ops.replace) replaces, \(ops.query) queries (\(ops.hits) hits, \(ops.misses) misses), \(ops.update) updates, \(ops.dump) dumps; \(cpu.count) / \(cpu.capacity) slots used" + sketchNote)
    }

    // MARK: Static / uvm vs CPU

    mutating func checkStatic(context: CUDAContext, kind: CUDAStaticCache.Kind, dim: Int, capacity: Int) throws -> ([String], String) {
        let cpu = StaticCache(capacity: capacity, dimension: dim)
        let gpu = try CUDAStaticCache(context: context, kind: kind, capacity: capacity, dimension: dim, deviceFraction: 0.3, maxBatch: 1000, label: "check", logger: .silent)
        let keys = universe(capacity + capacity / 2 + 10)
        var problems: [String] = []
        // Load in chunks with duplicates, past capacity.
        var loaded = 0
        var version = 0
        while loaded < keys.count {
            version += 1
            let n = min(keys.count - loaded, 1 + random(capacity / 2 + 100))
            var batch = Array(keys[loaded..<(loaded + n)])
            for _ in 0..<random(n / 4 + 1) { batch.insert(batch[random(batch.count)], at: random(batch.count)) }
            let values = Self.vectors(batch, version: version, dim: dim)
            Self.write(cpu, batch, values, update: false)
            Self.write(gpu, batch, values, update: false)
            loaded += n
        }
        if cpu.count != gpu.count { problems.append("count CPU \(cpu.count) GPU \(gpu.count)") }
        for step in 0..<12 {
            version += 1
            if step % 3 == 2 {
                let batch = (0..<(1 + random(2000))).map { _ in keys[random(keys.count)] }
                let values = Self.vectors(batch, version: version, dim: dim)
                Self.write(cpu, batch, values, update: true)
                Self.write(gpu, batch, values, update: true)
            }
            var seen = Set<Int64>()
            let batch = (0..<(1 + random(keys.count))).map { _ in keys[random(keys.count)] }.filter { seen.insert($0).inserted }
            Self.compare("step \(step) query of \(batch.count) keys", keys: batch, dim: dim, cpu: Self.query(cpu, batch), gpu: Self.query(gpu, batch), into: &problems)
        }
        for range in [0..<cpu.unitCount, 1..<3, 0..<1] where Self.dump(cpu, range) != Self.dump(gpu, range) {
            problems.append("keys(inUnits: \(range)) differ")
        }
        if cpu.unitCount != gpu.unitCount { problems.append("unitCount CPU \(cpu.unitCount) GPU \(gpu.unitCount)") }
        return (problems, "\(gpu.count) rows (\(gpu.deviceRows) on the device), \(keys.count) distinct keys offered")
    }

    // MARK: Concurrency vs a reference model

    mutating func checkConcurrentDynamic(context: CUDAContext, dim: Int) throws -> ([String], String) {
        let gpu = try CUDADynamicCache(context: context, capacity: 64 * 40, dimension: dim, maxBatch: 4096, label: "check", logger: .silent)
        let keys = universe(20000)
        let threads = 6
        let problems = ProblemList()
        let counts = ProblemList()
        let seeds = (0..<threads).map { _ in rng.next() }
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            var rng = SplitMix64(seed: seeds[t])
            var hits = 0, misses = 0
            for _ in 0..<60 {
                var seen = Set<Int64>()
                let batch = (0..<(1 + Int(rng.next() % 3000))).map { _ in keys[Int(rng.next() % UInt64(keys.count))] }.filter { seen.insert($0).inserted }
                let (values, missing) = Self.query(gpu, batch)
                let missed = Set(missing)
                for i in 0..<batch.count where !missed.contains(Int32(i)) {
                    if Array(values[(i * dim)..<((i + 1) * dim)]) != Self.vector(batch[i], version: 0, dim: dim) {
                        problems.add("thread \(t): hit of key \(batch[i]) does not match the table")
                    }
                }
                hits += batch.count - missing.count
                misses += missing.count
                let insert = missing.map { batch[Int($0)] }
                Self.write(gpu, insert, Self.vectors(insert, version: 0, dim: dim), update: false)
                if rng.next() % 4 == 0 {
                    let refresh = Array(batch.prefix(100))
                    Self.write(gpu, refresh, Self.vectors(refresh, version: 0, dim: dim), update: true)
                }
            }
            counts.add("\(hits)/\(misses)")
        }
        var list = problems.items
        if gpu.count > gpu.capacity { list.append("count \(gpu.count) exceeds capacity") }
        if let failure = gpu.failure { list.append("cache failed: \(failure)") }
        return (list, "\(threads) threads × 60 rounds of query + insert misses + update; hits/misses per thread: \(counts.items.joined(separator: ", ")); every hit equals the table row")
    }

    mutating func checkConcurrentStatic(context: CUDAContext, kind: CUDAStaticCache.Kind, dim: Int) throws -> ([String], String) {
        let rows = 50000
        let gpu = try CUDAStaticCache(context: context, kind: kind, capacity: rows, dimension: dim, deviceFraction: 0.25, maxBatch: 8192, label: "check", logger: .silent)
        let keys = universe(rows * 2)
        let tableKeys = Array(keys[0..<rows])
        Self.write(gpu, tableKeys, Self.vectors(tableKeys, version: 0, dim: dim), update: false)
        let known = Set(tableKeys)
        let problems = ProblemList()
        let seeds = (0..<6).map { _ in rng.next() }
        DispatchQueue.concurrentPerform(iterations: 6) { t in
            var rng = SplitMix64(seed: seeds[t])
            for _ in 0..<40 {
                var seen = Set<Int64>()
                let batch = (0..<(1 + Int(rng.next() % 10000))).map { _ in keys[Int(rng.next() % UInt64(keys.count))] }.filter { seen.insert($0).inserted }
                let (values, missing) = Self.query(gpu, batch)
                let missed = Set(missing)
                for i in 0..<batch.count {
                    if known.contains(batch[i]) == missed.contains(Int32(i)) {
                        problems.add("thread \(t): key \(batch[i]) \(known.contains(batch[i]) ? "missed" : "hit") but is \(known.contains(batch[i]) ? "" : "not ")in the table")
                    } else if !missed.contains(Int32(i)) && Array(values[(i * dim)..<((i + 1) * dim)]) != Self.vector(batch[i], version: 0, dim: dim) {
                        problems.add("thread \(t): key \(batch[i]) vector differs from the table")
                    }
                }
            }
        }
        return (problems.items, "6 threads × 40 queries of up to 10000 keys over \(rows) rows (\(gpu.deviceRows) on the device), half unknown keys")
    }

    // MARK: Device pipeline

    mutating func checkPipeline(context: CUDAContext, dim: Int, mode: CUDALookupPipeline.Mode, staticKind: CUDAStaticCache.Kind?) throws -> ([String], String) {
        let kernels = try context.kernels()
        let stream = try context.makeStream()
        let maxKeys = 100_000
        let pipeline = try CUDALookupPipeline(context: context, maxKeys: maxKeys, dimension: dim)
        let keys = universe(30000)
        let cpu: any EmbeddingCache
        let gpu: any CUDADeviceCache
        if let staticKind {
            cpu = StaticCache(capacity: 20000, dimension: dim)
            gpu = try CUDAStaticCache(context: context, kind: staticKind, capacity: 20000, dimension: dim, deviceFraction: 0.4, label: "check", logger: .silent)
        } else {
            cpu = DynamicCache(capacity: 64 * 100, dimension: dim)
            gpu = try CUDADynamicCache(context: context, capacity: 64 * 100, dimension: dim, label: "check", logger: .silent)
        }
        let initial = Array(keys[0..<20000])
        let initialValues = Self.vectors(initial, version: 0, dim: dim)
        Self.write(cpu, initial, initialValues, update: false)
        Self.write(gpu, initial, initialValues, update: false)
        let dKeys = try context.allocate(bytes: maxKeys * 8, what: "check keys")
        let dOut = try context.allocate(bytes: maxKeys * dim * 4, what: "check output")
        var problems: [String] = []
        var stats: [String] = []
        let defaultValue: Float = -2.5
        for batchIndex in 0..<4 {
            let n = [1, 777, 50000, maxKeys][batchIndex]
            // Duplicates (a hot subset) and unknown keys.
            let hot = (0..<max(1, n / 10)).map { _ in keys[random(keys.count)] }
            var batch = (0..<n).map { _ in random(3) == 0 ? keys[random(keys.count)] : hot[random(hot.count)] }
            if n > 10 { batch[5] = 0x7FFF_FFFF_7FFF_FFFF; batch[7] = 0x7FFF_FFFF_7FFF_FFFF }
            try batch.withUnsafeBytes { try context.copy(toDevice: dKeys.pointer, from: $0.baseAddress!, bytes: $0.count, stream: stream) }
            try context.fill32(dOut.pointer, value: 0x7FC0_0001, count: n * dim, stream: stream)  // poison (a NaN)
            try pipeline.enqueueLookup(cache: gpu, keys: dKeys.pointer, count: n, output: dOut.pointer, defaultValue: defaultValue, mode: mode, stream: stream)
            var out = [Float](repeating: 0, count: n * dim)
            var uniqueCount: UInt32 = 0, missCount: UInt32 = 0
            try out.withUnsafeMutableBytes { try context.copy(toHost: $0.baseAddress!, from: dOut.pointer, bytes: $0.count, stream: stream) }
            try withUnsafeMutableBytes(of: &uniqueCount) { try context.copy(toHost: $0.baseAddress!, from: pipeline.uniqueCount.pointer, bytes: 4, stream: stream) }
            try withUnsafeMutableBytes(of: &missCount) { try context.copy(toHost: $0.baseAddress!, from: pipeline.missCount.pointer, bytes: 4, stream: stream) }
            try stream.synchronize()
            var unique = [Int64](repeating: 0, count: Int(uniqueCount))
            var inverse = [Int32](repeating: 0, count: n)
            var missingKeys = [Int64](repeating: 0, count: Int(missCount))
            try unique.withUnsafeMutableBytes { try context.copy(toHost: $0.baseAddress!, from: pipeline.uniqueKeys.pointer, bytes: $0.count, stream: stream) }
            try inverse.withUnsafeMutableBytes { try context.copy(toHost: $0.baseAddress!, from: pipeline.inverse.pointer, bytes: $0.count, stream: stream) }
            try missingKeys.withUnsafeMutableBytes { try context.copy(toHost: $0.baseAddress!, from: pipeline.missingKeys.pointer, bytes: $0.count, stream: stream) }
            try stream.synchronize()
            // Dedup: the distinct keys, and each input's position among them.
            let distinct = Set(batch)
            if unique.count != distinct.count || Set(unique) != distinct { problems.append("batch \(batchIndex): \(unique.count) distinct keys from the GPU, \(distinct.count) expected (or different keys)") }
            for i in 0..<n where inverse[i] < 0 || Int(inverse[i]) >= unique.count || unique[Int(inverse[i])] != batch[i] {
                problems.append("batch \(batchIndex): inverse[\(i)] = \(inverse[i]) does not name key \(batch[i])")
                break
            }
            // The CPU mirror answers the same distinct keys (one query, as the GPU did).
            let mirror = Self.query(cpu, unique)
            let mirrorMissed = Set(mirror.missing.map { unique[Int($0)] })
            if Set(missingKeys) != mirrorMissed { problems.append("batch \(batchIndex): GPU missed \(missingKeys.count) keys, the CPU cache \(mirrorMissed.count)") }
            var position: [Int64: Int] = [:]
            for (u, key) in unique.enumerated() { position[key] = u }
            outer: for i in 0..<n {
                let key = batch[i]
                let expected: [Float] = mirrorMissed.contains(key) ? [Float](repeating: defaultValue, count: dim) : Array(mirror.values[(position[key]! * dim)..<((position[key]! + 1) * dim)])
                for e in 0..<dim where out[i * dim + e].bitPattern != expected[e].bitPattern {
                    problems.append("batch \(batchIndex): output row \(i) (key \(key)) element \(e) = \(out[i * dim + e]), expected \(expected[e])")
                    break outer
                }
            }
            // Insert the misses into both, in the same order.
            let insert = missingKeys.sorted()
            let insertValues = Self.vectors(insert, version: 0, dim: dim)
            Self.write(cpu, insert, insertValues, update: false)
            Self.write(gpu, insert, insertValues, update: false)
            stats.append("\(n) keys → \(uniqueCount) distinct, \(missCount) missed")
        }
        _ = kernels
        return (problems, stats.joined(separator: "; "))
    }

    // MARK: Whole servers

    mutating func checkServer(type: EmbeddingCacheType) throws -> ([String], String) {
        let root = NSTemporaryDirectory() + "hps-gpu-check-\(getpid())-\(type.rawValue)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dims = [16, 37]
        let rows = 20000
        var tables: [(keys: [Int64], vectors: [Float])] = []
        for (t, dim) in dims.enumerated() {
            let keys = universe(rows)
            let vectors = Self.vectors(keys, version: t, dim: dim)
            try TableWriter.write(directory: root + "/t\(t)", keys: keys, vectors: vectors, dimension: dim)
            tables.append((keys, vectors))
        }
        var config = ParameterServerConfig()
        var model = ModelConfig()
        model.name = "check"
        model.sparseFiles = dims.indices.map { root + "/t\($0)" }
        model.deployedDevices = [0]
        model.maxBatchSize = 4096
        model.maxKeysPerSample = [2, 2]
        model.embeddingVectorSizes = dims
        model.defaultValues = [0.5, -1]
        model.deviceCachePercentage = 0.3
        model.hitRateThreshold = 1.0
        model.embeddingCacheType = type
        config.models = [model]
        let server = try HPSRuntime.makeParameterServer(config: config, logger: HPSLogger(level: .warning))
        let session = try server.session(model: "check", device: 0)
        var problems: [String] = []
        for (t, cache) in session.caches.enumerated() where !(cache is any CUDADeviceCache) {
            problems.append("table \(t): the session's cache is \(cache.map { "\(Swift.type(of: $0))" } ?? "none"), not a CUDA cache")
        }
        var lookups = 0
        for round in 0..<30 {
            let t = round % dims.count
            let dim = dims[t]
            var index: [Int64: Int] = [:]
            for (i, key) in tables[t].keys.enumerated() { index[key] = i }
            let n = 1 + random(8192)
            let batch: [Int64] = (0..<n).map { _ in random(10) == 0 ? Int64(bitPattern: rng.next()) : tables[t].keys[random(rows / (1 + random(20)))] }
            let values = try session.lookup(table: t, keys: batch)
            lookups += 1
            for i in 0..<n {
                let expected: [Float] = index[batch[i]].map { Array(tables[t].vectors[($0 * dim)..<(($0 + 1) * dim)]) } ?? [Float](repeating: model.defaultValues[t], count: dim)
                if Array(values[(i * dim)..<((i + 1) * dim)]).map(\.bitPattern) != expected.map(\.bitPattern) {
                    problems.append("round \(round) table \(t): key \(batch[i]) (row \(index[batch[i]].map(String.init) ?? "unknown")) answered wrongly")
                    break
                }
            }
            if problems.count > 5 { break }
        }
        session.waitForBackgroundInserts()
        let stats = server.statistics.snapshot
        return (problems, "\(lookups) lookups of up to 8192 keys, hit_rate_threshold 1.0, cache hits \(stats.cacheHits), misses \(stats.cacheMisses); every answer equals the table files")
    }
}

extension GPUChecker {
    /// `fuse_embedding_table`: a model of three tables of dim 16 (keys shared across them) and one of dim 8 on the
    /// GPU caches, fused and unfused side by side. Every table's answers must be bit-identical: multi-table and
    /// single-table host lookups, and device-memory lookups (the keys of a fused table tagged by `fuse_keys`).
    mutating func checkFusedServer(type: EmbeddingCacheType, longKeys: Bool, context: CUDAContext) throws -> ([String], String) {
        let root = NSTemporaryDirectory() + "hps-gpu-check-\(getpid())-fused-\(type.rawValue)-\(longKeys)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dims = [16, 16, 8, 16]
        let rows = 6000
        // Keys within the fused key space (int64: the top 2 bits tag the table) or uint32; shared by the tables.
        var keySet = Set<Int64>()
        while keySet.count < rows { keySet.insert(longKeys ? Int64(bitPattern: rng.next()) >> Int64(2 + random(50)) : Int64(rng.next() & 0xFFFF_FFFF)) }
        let keys = Array(keySet)
        for (t, dim) in dims.enumerated() {
            try TableWriter.write(directory: root + "/t\(t)", keys: keys, vectors: Self.vectors(keys, version: t, dim: dim), dimension: dim)
        }
        var config = ParameterServerConfig()
        config.supportLongLong = longKeys
        var model = ModelConfig()
        model.name = "fusion"
        model.sparseFiles = dims.indices.map { root + "/t\($0)" }
        model.deployedDevices = [0]
        model.maxBatchSize = 1024
        model.maxKeysPerSample = [1, 2, 1, 1]
        model.embeddingVectorSizes = dims
        model.defaultValues = [0.25, 0.25, -1, 0.25]
        model.deviceCachePercentage = 0.3
        model.hitRateThreshold = 1.0
        model.embeddingCacheType = type
        config.models = [model]
        let plain = try HPSRuntime.makeParameterServer(config: config, logger: HPSLogger(level: .warning))
        config.fuseEmbeddingTable = true
        let fused = try HPSRuntime.makeParameterServer(config: config, logger: HPSLogger(level: .warning))
        let plainSession = try plain.session(model: "fusion", device: 0)
        let fusedSession = try fused.session(model: "fusion", device: 0)
        var problems: [String] = []
        if fusedSession.fusion.groups.map(\.members) != [[0, 1, 3], [2]] { problems.append("fusion groups \(fusedSession.fusion.groups.map(\.members))") }
        if !(fusedSession.caches[0] is any CUDADeviceCache) || fusedSession.caches[0] !== fusedSession.caches[3] {
            problems.append("the fused tables do not share one CUDA cache (\(fusedSession.caches.map { $0.map { "\(Swift.type(of: $0))" } ?? "none" }))")
        }
        let stream = try context.makeStream()
        let maxKeys = 2048
        let dKeys = try context.allocate(bytes: maxKeys * 8, what: "fusion check keys")
        let dOut = try context.allocate(bytes: maxKeys * 16 * 4, what: "fusion check output")
        var compared = 0
        for round in 0..<12 {
            let order = round % 3 == 0 ? [0, 1, 2, 3] : [3, 0, 2, 1, 0]
            let batches: [[Int64]] = order.map { t in
                (0..<(1 + random(model.maxQueryLength(table: t)))).map { _ in
                    switch random(10) {
                    case 0: return longKeys ? Int64(bitPattern: rng.next()) : Int64(rng.next() & 0xFFFF_FFFF)  // absent, or beyond the fused key space
                    default: return keys[random(rows / (1 + random(10)))]
                    }
                }
            }
            let plainMany = try plainSession.lookup(tables: order, keys: batches)
            let fusedMany = try fusedSession.lookup(tables: order, keys: batches)
            for (j, t) in order.enumerated() {
                let plainOne = try plainSession.lookup(table: t, keys: batches[j])
                let fusedOne = try fusedSession.lookup(table: t, keys: batches[j])
                // Device memory: the keys as the caller has them (int64, or int32 read as uint32).
                let n = batches[j].count, dim = dims[t]
                var device = [Float](repeating: .nan, count: n * dim)
                if longKeys {
                    try batches[j].withUnsafeBytes { try context.copy(toDevice: dKeys.pointer, from: $0.baseAddress!, bytes: $0.count, stream: stream) }
                } else {
                    let narrow = batches[j].map { Int32(truncatingIfNeeded: $0) }
                    try narrow.withUnsafeBytes { try context.copy(toDevice: dKeys.pointer, from: $0.baseAddress!, bytes: $0.count, stream: stream) }
                }
                try stream.synchronize()
                try fusedSession.lookupDevice(table: t, keys: dKeys.pointer, int32Keys: !longKeys, count: n, output: dOut.pointer, stream: nil)
                try device.withUnsafeMutableBytes { try context.copy(toHost: $0.baseAddress!, from: dOut.pointer, bytes: $0.count, stream: stream) }
                try stream.synchronize()
                for (name, answer) in [("fused multi-table", fusedMany[j]), ("fused single-table", fusedOne), ("fused device-memory", device), ("unfused multi-table", plainMany[j])] {
                    if let i = (0..<n).first(where: { i in (0..<dim).contains { answer[i * dim + $0].bitPattern != plainOne[i * dim + $0].bitPattern } }) {
                        problems.append("round \(round) table \(t): \(name) lookup of key \(batches[j][i]) differs from the unfused server's answer")
                    }
                }
                compared += n
            }
            if problems.count > 5 { break }
        }
        let stats = fused.statistics.snapshot
        return (problems, "\(compared) keys of 4 tables (3 fused) compared, fused cache hits \(stats.cacheHits), misses \(stats.cacheMisses); fused answers equal unfused")
    }
}

/// A thread-safe list of strings.
final class ProblemList: Sendable {
    private let list = Mutex<[String]>([])
    func add(_ item: String) { list.withLock { if $0.count < 100 { $0.append(item) } } }
    var items: [String] { list.withLock { $0 } }
}
