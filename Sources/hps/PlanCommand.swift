import ArgumentParser
import Foundation
import HPS
import HPSCUDA

/// `hps plan`: memory per model, table, tier and device before anything is loaded, and the hit rate a cache size
/// would give on a trace.
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Memory per table, tier and device before deploying; predicted cache hit rates for a trace.",
        discussion: """
            Reads the config and the sizes of its table files (nothing is loaded) and prints, per model and table: \
            rows, the device cache's bytes on each deployed device (CUDA caches when this machine has a usable GPU, \
            else the CPU caches, in host memory), the volatile database's bytes (the hash map's own layout: \
            index, pages, counters, overflow_margin and initial_cache_rate applied), the persistent database's \
            (estimated as the raw bytes) and the sessions' lookup buffers; then totals per device and for the \
            host, and whether they fit the GPUs and the memory of this machine. Every byte count comes from the \
            allocation rules of the structure it sizes.

            With --model and --table and either --trace (a file of raw little-endian int64 keys of that table) \
            or --zipf ALPHA (keys drawn Zipf(ALPHA) over the table's rows, hot keys scattered), the trace is \
            replayed through the dynamic cache itself — batch by batch: dedup, query, insert the misses, as a \
            lookup session does — for the configured gpucacheper and other sizes, and the smallest size whose \
            hit rate per key reaches --target is suggested.
            """
    )

    @Argument(help: "The HPS JSON config file.")
    var config: String

    @Flag(help: "Print JSON instead of tables.")
    var json = false

    @Option(help: "Model of the hit-rate prediction.")
    var model: String?

    @Option(help: "Table of the hit-rate prediction: index, or name from embedding_table_names.")
    var table: String?

    @Option(help: "Raw int64 keys (little-endian) of that table, in lookup order.")
    var trace: String?

    @Option(help: "Predict on keys drawn Zipf(ALPHA) over the table's rows instead of a trace.")
    var zipf: Double?

    @Option(help: "Keys of the --zipf trace (default: 20 batches, at least 4 × the table's rows, at most 50M).")
    var keys: Int?

    @Option(help: "Keys per lookup of the replay (default: max_batch_size × maxnum_catfeature_query_per_table_per_sample).")
    var batch: Int?

    @Option(help: "Batches replayed before hits are counted.")
    var warmupBatches = 0

    @Option(help: "Hit rate per key to reach for the suggestion.")
    var target = 0.9

    @Option(parsing: .upToNextOption, help: "Cache sizes to predict, as fractions of the table's rows (the configured gpucacheper is added).")
    var fractions: [Double] = [0.01, 0.05, 0.1, 0.2, 0.5]

    func validate() throws {
        if (model == nil) != (table == nil) { throw ValidationError("give --model and --table together") }
        if trace != nil && zipf != nil { throw ValidationError("give --trace or --zipf, not both") }
        if (trace != nil || zipf != nil) && model == nil { throw ValidationError("--trace and --zipf need --model and --table") }
        if let zipf, !(zipf > 0 && zipf.isFinite) { throw ValidationError("--zipf must be a positive number, got \(zipf)") }
        if let keys, keys < 1 || keys > 500_000_000 { throw ValidationError("--keys must be in 1 ... 500000000, got \(keys)") }
        if let batch, batch < 1 || batch > 1 << 28 { throw ValidationError("--batch must be in 1 ... 268435456, got \(batch)") }
        guard target > 0 && target <= 1 else { throw ValidationError("--target must be in (0, 1], got \(target)") }
        guard !fractions.isEmpty, fractions.allSatisfy({ $0 > 0 && $0 <= 1 }) else { throw ValidationError("--fractions must be in (0, 1]") }
    }

    func run() throws {
        let parsed = try ParameterServerConfig.load(path: config)
        for warning in parsed.warnings { printError("warning: \(warning)") }
        let gpus = Self.gpus()
        var plan = MemoryPlanReport(config: config, gpus: gpus.map { .init(device: $0.device, name: $0.name, bytes: $0.bytes) }, hostMemory: SystemInfo.physicalMemory)
        for model in parsed.models {
            for t in model.tables {
                let directory = try TableDirectory(path: t.path, dimension: t.dimension)
                plan.tables.append(Self.tableRow(config: parsed, model: model, table: t, rows: directory.rowCount, gpus: gpus))
            }
            plan.sessions.append(.init(model: model.name, devices: model.deployedDevices, bytesPerDevice: model.estimatedSessionBytes))
        }
        plan.finish()
        if let model, let table {
            plan.prediction = try predict(parsed, modelName: model, table: table)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(plan), as: UTF8.self))
        } else {
            plan.printText()
        }
    }

    /// CUDA devices of this machine: (ordinal, name, bytes), none without a usable GPU.
    static func gpus() -> [(device: Int, name: String, bytes: Int)] {
        guard case .success(let provider) = CUDACacheProvider.probe() else { return [] }
        return (0..<provider.deviceCount).compactMap { d in
            guard let context = try? CUDAContext.context(device: d) else { return nil }
            return (d, context.name, context.totalMemory)
        }
    }

    static func tableRow(config: ParameterServerConfig, model: ModelConfig, table: TableConfig, rows: Int, gpus: [(device: Int, name: String, bytes: Int)]) -> MemoryPlanReport.Table {
        let type: EmbeddingCacheType = model.useStaticTable ? .static : model.embeddingCacheType
        let wholeTable = type == .static || type == .uvm
        let request = CacheRequest(model: model, table: table, device: 0, type: type, tableRows: rows)
        let maxKeys = model.maxQueryLength(table: table.index)
        var row = MemoryPlanReport.Table(model: model.name, table: table.name, tag: table.tag, rows: rows, dimension: table.dimension)
        row.rawBytes = rows * (8 + table.dimension * 4)
        row.cache = !(model.deviceCache || wholeTable) ? "off" : wholeTable ? type.rawValue : "dynamic (\(request.dynamicCapacity) slots)"
        for device in model.deployedDevices {
            guard model.deviceCache || wholeTable else { continue }
            let onGPU = gpus.contains { $0.device == device }
            var entry = MemoryPlanReport.DeviceBytes(device: device, onGPU: onGPU)
            if onGPU {
                if wholeTable {
                    let bytes = CUDAStaticCache.estimatedBytes(
                        kind: type == .static ? .static : .uvm, capacity: rows, dimension: table.dimension, deviceFraction: model.deviceCachePercentage, maxBatch: maxKeys)
                    entry.cacheBytes = bytes.device
                    entry.pinnedHostBytes = bytes.pinnedHost
                } else {
                    entry.cacheBytes = CUDADynamicCache.estimatedDeviceBytes(
                        capacity: request.dynamicCapacity, dimension: table.dimension, maxBatch: maxKeys, admission: model.cacheAdmission)
                }
                entry.deviceLookupBytesPerWorker = CUDATableLookup.estimatedBytesPerWorker(maxKeys: maxKeys, dimension: table.dimension, wholeTable: wholeTable)
            } else {
                entry.cacheBytes = wholeTable
                    ? StaticCache.estimatedBytes(capacity: rows, dimension: table.dimension)
                    : DynamicCache.estimatedBytes(capacity: request.dynamicCapacity, dimension: table.dimension, admission: model.cacheAdmission)
            }
            row.devices.append(entry)
        }
        switch config.volatileDatabase.type {
        case .hashMap, .parallelHashMap:
            row.volatileBytes = HashMapDatabase.estimatedBytes(rows: rows, valueSize: table.valueSize, config: config.volatileDatabase)
            row.volatileDatabase = config.volatileDatabase.type.rawValue
        case .redisCluster:
            row.volatileDatabase = "redis_cluster (remote; the raw \(row.rawBytes) bytes plus Redis's overhead)"
        default:
            row.volatileDatabase = config.volatileDatabase.type.rawValue
        }
        if config.persistentDatabase.type == .rocksDB {
            row.persistentBytes = row.rawBytes
            row.persistentDatabase = "rocks_db (on disk, estimated as the raw bytes)"
        } else {
            row.persistentDatabase = "disabled"
        }
        return row
    }

    func predict(_ config: ParameterServerConfig, modelName: String, table tableArgument: String) throws -> MemoryPlanReport.Prediction {
        guard let model = config.model(named: modelName) else {
            throw HPSError(.unknownModel, subject: "--model \(modelName)", "no such model in \(self.config); models: \(config.models.map(\.name).joined(separator: ", "))")
        }
        let index = try resolveTable(tableArgument, in: model)
        let table = model.tables[index]
        let directory = try TableDirectory(path: table.path, dimension: table.dimension)
        let batchSize = batch ?? model.maxQueryLength(table: index)
        var traceKeys: [Int64]
        var source: String
        if let trace {
            traceKeys = try Self.readTrace(trace)
            source = "\(trace) (\(traceKeys.count) keys)"
        } else {
            var tableKeys: [Int64] = []
            tableKeys.reserveCapacity(directory.rowCount)
            try directory.forEachChunk(maxRows: 1 << 16, keyWidth: KeyWidth(supportLongLong: config.supportLongLong)) { k, _ in tableKeys.append(contentsOf: k) }
            let alpha = zipf ?? 1.05
            let count = keys ?? min(50_000_000, max(20 * batchSize, 4 * directory.rowCount))
            traceKeys = HitRateSimulation.zipfTrace(keys: tableKeys, alpha: alpha, count: count)
            source = "Zipf(\(alpha)) over \(directory.rowCount) rows, \(count) keys"
        }
        let simulation = HitRateSimulation(batchSize: batchSize, warmupBatches: warmupBatches, admission: model.cacheAdmission)
        var sizes = Set(fractions)
        sizes.insert(model.deviceCachePercentage)
        var results: [MemoryPlanReport.Prediction.Size] = []
        try traceKeys.withUnsafeBufferPointer { keys in
            for fraction in sizes.sorted() {
                let slots = max(DynamicCache.slotsPerSet, Int((fraction * Double(directory.rowCount)).rounded(.down)))
                let r = simulation.run(trace: keys, slots: slots)
                guard r.batches > 0 else {
                    throw HPSError(.invalidArgument, subject: "--warmup-batches \(warmupBatches)", "the trace has no batch left to count after the warm-up")
                }
                results.append(.init(fraction: fraction, slots: r.slots, configured: fraction == model.deviceCachePercentage, hitRatePerKey: r.accessHitRate, hitRatePerDistinctKey: r.distinctHitRate))
            }
        }
        let suggestion = results.first { $0.hitRatePerKey >= target }
        return .init(model: model.name, table: table.name, source: source, batch: batchSize, target: target, sizes: results, suggestedFraction: suggestion?.fraction)
    }

    static func readTrace(_ path: String) throws -> [Int64] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw HPSError(.io, subject: path, "cannot read the trace: \((error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription)")
        }
        guard data.count % 8 == 0, !data.isEmpty else {
            throw HPSError(.invalidArgument, subject: path, "a trace holds raw int64 keys: \(data.count) bytes is not a positive multiple of 8")
        }
        return data.withUnsafeBytes { raw in (0..<(data.count / 8)).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) } }
    }
}
