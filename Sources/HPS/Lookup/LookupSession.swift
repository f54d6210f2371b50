import Dispatch
import Synchronization
import CHPSSupport

/// Looks up embeddings of one model on one device: deduplicate → device cache → (misses) databases →
/// scatter back to input order.
///
/// With `hit_rate_threshold` h, a batch whose cache hit rate is at least h answers its misses with the
/// default value at once and inserts them into the cache in the background; below h the misses are
/// fetched from the databases now, inserted, and answered exactly. `gpucache: false` sends every lookup
/// to the databases. On the CPU, a table the in-process hash map holds whole is looked up there directly
/// (one pass, exact) unless the model sets `cpu_cache: true` (see ``direct``).
///
/// Many threads may call ``lookup(table:keys:into:)`` at once. Buffers come from a pool sized by
/// `num_of_worker_buffer_in_pool`; a lookup allocates nothing once the pool is warm.
public final class LookupSession: @unchecked Sendable {
    // @unchecked Sendable: immutable after init: the caches, device lookups, tiers and workspace pool are thread-safe
    // themselves, and cache inserts are serialised on `inserter`.
    public let model: ModelConfig
    public let device: Int
    /// How the model's tables map onto caches and database tables (`fuse_embedding_table`); without fusion
    /// group `t` is table `t`.
    public let fusion: TableFusion
    /// The cache of each table (the tables of a fused group share one), or nil per table when `gpucache` is
    /// false.
    public let caches: [(any EmbeddingCache)?]
    /// The device-resident lookup of each table (shared within a fused group), or nil per table when this
    /// session's device serves no device memory (no accelerator).
    public let deviceLookups: [(any DeviceTableLookup)?]
    // The databases and settings of the server that made this session, held strongly: a session stays
    // valid after its server is released (the server's table of sessions does not hold it back).
    private let tiers: TierChain
    private let tables: [TableConfig]
    /// What each group is served as (``TableFusion/Group/table``): the unit the lookup path below works on.
    /// Without fusion, `units[t]` is table `t`.
    private let units: [TableConfig]
    private let unitCaches: [(any EmbeddingCache)?]
    private let unitDeviceLookups: [(any DeviceTableLookup)?]
    private let unitDirect: [Bool]
    private let pool: WorkspacePool
    private let inserter: DispatchQueue
    /// Counts online updates that reached this session's caches (see ParameterServer+Updates.swift): a row
    /// fetched from the databases before an update and inserted after it is fetched again.
    let updateEpoch = Atomic<UInt64>(0)
    private let cacheType: EmbeddingCacheType
    /// Each unit's swift-metrics handles (``TableLookupMetrics``): a table's, or a fused group's (labelled with
    /// the group's table name, e.g. `fused_embedding0`).
    private let metrics: [TableLookupMetrics]

    init(tiers: TierChain, model: ModelConfig, device: Int) throws {
        self.tiers = tiers
        self.model = model
        self.device = device
        tables = model.tables
        let fusion = tiers.config.fusion(of: model)
        self.fusion = fusion
        let served = fusion.servedModel
        units = fusion.groups.map(\.table)
        cacheType = model.useStaticTable ? .static : model.embeddingCacheType
        let maxKeys = (0..<served.tableCount).map { served.maxQueryLength(table: $0) }.max() ?? 1
        let maxDim = model.embeddingVectorSizes.max() ?? 1
        pool = WorkspacePool(count: model.workerBuffers, maxKeys: maxKeys, maxDimension: maxDim)
        inserter = DispatchQueue(label: "hps.inserter.\(model.name).\(device)")
        var caches: [(any EmbeddingCache)?] = []
        var deviceLookups: [(any DeviceTableLookup)?] = []
        var direct: [Bool] = []
        let wholeTable = cacheType == .static || cacheType == .uvm
        for group in fusion.groups {
            let source = try LoadSource(group: group, tables: tables)
            let table = group.table
            // Cache providers see the served model: a fused group is one table of the summed keys per sample.
            let request = CacheRequest(model: served, table: table, device: device, type: cacheType, tableRows: source.rowCount)
            guard model.deviceCache || wholeTable else {
                caches.append(nil)
                deviceLookups.append(try tiers.cacheProvider?.makeDeviceLookup(request, cache: nil, logger: tiers.logger))
                direct.append(false)
                continue
            }
            let deviceCache = try tiers.cacheProvider?.makeCache(request, logger: tiers.logger)
            if deviceCache == nil, !wholeTable, !model.cpuCache, Self.hashMapHoldsEveryRow(tiers: tiers, table: table, rows: source.rowCount) {
                // A CPU "device cache" would copy rows out of the same memory the hash map holds them in: look
                // the hash map up directly (exact, one pass; `cpu_cache: true` keeps the cache).
                caches.append(nil)
                deviceLookups.append(nil)
                direct.append(true)
                continue
            }
            let cache = deviceCache ?? CPUCacheProvider().cache(for: request)
            if wholeTable {
                try Self.fill(cache, from: source, rows: source.rowCount, keyWidth: tiers.keyWidth)
                tiers.logger.info("Model \(model.name) device \(device): \(cacheType.rawValue) table \(table.tag) holds \(cache.count) rows")
            } else if model.initializeCache && model.cacheRefreshPercentagePerIteration > 0 {
                let rows = min(source.rowCount, cache.capacity)
                try Self.fill(cache, from: source, rows: rows, keyWidth: tiers.keyWidth)
                tiers.logger.info("Model \(model.name) device \(device): warmed cache of \(table.tag) with \(cache.count) / \(cache.capacity) rows")
            }
            caches.append(cache)
            deviceLookups.append(try tiers.cacheProvider?.makeDeviceLookup(request, cache: cache, logger: tiers.logger))
            direct.append(false)
        }
        unitCaches = caches
        unitDeviceLookups = deviceLookups
        unitDirect = direct
        self.caches = tables.map { caches[fusion.groupOfTable[$0.index]] }
        self.deviceLookups = tables.map { deviceLookups[fusion.groupOfTable[$0.index]] }
        self.direct = tables.map { direct[fusion.groupOfTable[$0.index]] }
        metrics = units.map { TableLookupMetrics(model: model.name, table: $0.name, cached: caches[$0.index] != nil) }
        for (g, cache) in caches.enumerated() {
            if let cache { metrics[g].cache(capacity: cache.capacity, occupancy: cache.count) }
        }
        deviceHosts = makeDeviceHosts()
        let fused = fusion.groups.filter(\.isFused)
        tiers.logger.info(
            "Lookup session: model \(model.name), device \(device) (caches on \(Set(caches.compactMap { $0?.location }).sorted().joined(separator: ", ").nonEmpty ?? "no device"), \(tables.count) table(s), cache \(model.deviceCache ? cacheType.rawValue : "off"), "
                + (fused.isEmpty ? "" : "\(fused.map(\.members.count).reduce(0, +)) table(s) fused into \(fused.count) group(s) (\(fused.map(\.table.name).joined(separator: ", "))), ")
                + "\(direct.filter { $0 }.count) cache(s) looked up in the hash map directly, "
                + "gpucacheper \(model.deviceCachePercentage), hit_rate_threshold \(model.hitRateThreshold), max keys per lookup \(maxKeys), "
                + "i64 keys \(tiers.config.supportLongLong), worker buffers \(model.workerBuffers)")
    }

    /// Whether each table's host lookups go straight to the volatile hash map (no CPU cache in front of it).
    public let direct: [Bool]

    /// Whether the volatile database is the in-process hash map and holds every row of `table`: it took every
    /// row at startup (`initialize_after_startup`, `initial_cache_rate` 1), no partition can overflow (its
    /// `overflow_margin` is at least the table's rows), and the table has been loaded.
    static func hashMapHoldsEveryRow(tiers: TierChain, table: TableConfig, rows: Int) -> Bool {
        guard let vdb = tiers.volatileDatabase as? HashMapDatabase else { return false }
        let config = tiers.config.volatileDatabase
        guard config.initializeAfterStartup, tiers.volatileRowLimit(rows: rows) == rows, config.overflowMargin >= rows else { return false }
        return rows == 0 || ((try? vdb.size(table: table.tag)) ?? 0) > 0
    }

    /// Inserts the first `rows` rows of the table files into `cache` (keys of a fused group tagged).
    private static func fill(_ cache: any EmbeddingCache, from source: LoadSource, rows: Int, keyWidth: KeyWidth) throws {
        var remaining = rows
        try source.forEachChunk(maxRows: 65536, keyWidth: keyWidth, progress: nil) { keys, vectors in
            guard remaining > 0 else { return }
            let n = min(remaining, keys.count)
            try cache.replace(keys: UnsafeBufferPointer(rebasing: keys[0..<n]), values: vectors.baseAddress!)
            remaining -= n
        }
    }

    // MARK: Lookup

    /// Looks up `keys` of table `table` and writes `keys.count × dim` floats to `output`, in input order.
    /// - Throws: ``HPSError`` `.unknownTable` naming the model and table when `table` is out of range;
    ///   `.invalidArgument` naming the table when `keys.count` exceeds `max_batch_size ×
    ///   maxnum_catfeature_query_per_table_per_sample` or `output` holds fewer than `keys.count × dim` floats; a
    ///   device cache's error when it fails; the persistent database's error when it cannot answer (a failing
    ///   volatile database never fails a lookup).
    public func lookup(table: Int, keys: UnsafeBufferPointer<Int64>, into output: UnsafeMutableBufferPointer<Float>) throws {
        _ = try check(table: table, count: keys.count, output: output)
        let ws = acquire()
        let width = tiers.keyWidth
        let g = fusion.groupOfTable[table]
        let unit = units[g]
        if let space = fusion.groups[g].keySpace {
            let member = fusion.memberOfTable[table]
            for i in 0..<keys.count { ws.keys[i] = space.encode(width.normalize(keys[i]), member: member) }
        } else if width == .int64 && unitDirect[g] && unitDeviceLookups[g] == nil {
            defer {
                report(unit, ws: ws, count: keys.count)
                pool.release(ws)
            }
            lookupDirect(unit, keys: keys, ws: ws, output: output.baseAddress!)
            return
        } else if width == .int64 {
            if let base = keys.baseAddress { ws.keys.update(from: base, count: keys.count) }
        } else {
            for i in 0..<keys.count { ws.keys[i] = width.normalize(keys[i]) }
        }
        try run(unit, ws: ws, count: keys.count, output: output.baseAddress!)
    }

    /// Looks up int32 keys (models with `supportlonglong: false`; the values are read as uint32).
    /// - Throws: what ``lookup(table:keys:into:)-(_,UnsafeBufferPointer<Int64>,_)`` throws.
    public func lookup(table: Int, keys: UnsafeBufferPointer<Int32>, into output: UnsafeMutableBufferPointer<Float>) throws {
        _ = try check(table: table, count: keys.count, output: output)
        let ws = acquire()
        let g = fusion.groupOfTable[table]
        if let space = fusion.groups[g].keySpace {
            let member = fusion.memberOfTable[table]
            for i in 0..<keys.count { ws.keys[i] = space.encode(Int64(UInt32(bitPattern: keys[i])), member: member) }
        } else {
            for i in 0..<keys.count { ws.keys[i] = Int64(UInt32(bitPattern: keys[i])) }
        }
        try run(units[g], ws: ws, count: keys.count, output: output.baseAddress!)
    }

    /// Looks up the keys of several tables at once: `counts[j]` keys of table `tables[j]`, the tables' keys one
    /// after another in `keys` (table `tables[0]`'s first), and writes their vectors one table after another to
    /// `output` (`counts[j] × dim(tables[j])` floats each, in input order), as that many
    /// ``lookup(table:keys:into:)`` calls would.
    ///
    /// The tables of a fused group (``TableFusion``) are answered in one pass through their shared cache and
    /// database table; other tables one after another. A table may appear more than once.
    /// - Throws: ``HPSError`` — `.invalidArgument` when `tables` and `counts` differ in length, a count is negative
    ///   or above the table's `max_batch_size × maxnum_catfeature_query_per_table_per_sample`, the counts do not
    ///   add up to `keys.count`, or `output` is too small; `.unknownTable`; a device error of a cache.
    public func lookup(tables: [Int], keys: UnsafeBufferPointer<Int64>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try lookupMany(tables: tables, keys: keys, counts: counts, output: output)
    }

    /// ``lookup(tables:keys:counts:into:)`` for int32 keys (models with `supportlonglong: false`; read as uint32).
    /// - Throws: as ``lookup(tables:keys:counts:into:)``.
    public func lookup(tables: [Int], keys: UnsafeBufferPointer<Int32>, counts: [Int], into output: UnsafeMutableBufferPointer<Float>) throws {
        try lookupMany(tables: tables, keys: keys, counts: counts, output: output)
    }

    private func lookupMany<Key: HostKey>(
        tables requested: [Int], keys: UnsafeBufferPointer<Key>, counts: [Int], output: UnsafeMutableBufferPointer<Float>
    ) throws {
        let keyCount = keys.count
        let width = tiers.keyWidth
        @inline(__always) func key(_ i: Int) -> Int64 { Key.widened(keys[i], width: width) }
        guard requested.count == counts.count else {
            throw HPSError(.invalidArgument, subject: model.name, "\(requested.count) table(s) but \(counts.count) key count(s); give one count per table")
        }
        // Where each table's keys and vectors start.
        var keyStart = [Int](repeating: 0, count: requested.count + 1)
        var outStart = [Int](repeating: 0, count: requested.count + 1)
        for (j, table) in requested.enumerated() {
            let t = try check(table: table, count: counts[j])
            guard counts[j] >= 0 else { throw HPSError(.invalidArgument, subject: t.tag, "key count \(counts[j]) is negative") }
            keyStart[j + 1] = keyStart[j] + counts[j]
            outStart[j + 1] = outStart[j] + counts[j] * t.dimension
        }
        guard keyStart[requested.count] == keyCount else {
            throw HPSError(.invalidArgument, subject: model.name, "the key counts add up to \(keyStart[requested.count]) but \(keyCount) keys were given")
        }
        guard output.count >= outStart[requested.count] else {
            throw HPSError(.invalidArgument, subject: model.name, "output holds \(output.count) floats; the tables' keys × dims need \(outStart[requested.count])")
        }
        let out = output.baseAddress
        // A table asked for no keys is not looked up (nothing to write; no call is counted in the metrics).
        var done = counts.map { $0 == 0 }
        var batch: [Int] = []
        for j in requested.indices where !done[j] {
            let g = fusion.groupOfTable[requested[j]]
            let unit = units[g]
            let ws = acquire()
            guard let space = fusion.groups[g].keySpace else {
                done[j] = true
                for i in 0..<counts[j] { ws.keys[i] = key(keyStart[j] + i) }
                try run(unit, ws: ws, count: counts[j], output: out! + outStart[j])
                continue
            }
            // Every requested table of the group, up to the group's keys per lookup (a table asked twice may
            // need a second pass): tagged keys one after another in one workspace.
            let limit = fusion.servedModel.maxQueryLength(table: g)
            var n = 0
            var contiguous = true
            batch.removeAll(keepingCapacity: true)
            for q in j..<requested.count where !done[q] && fusion.groupOfTable[requested[q]] == g {
                guard n + counts[q] <= limit else { break }
                let member = fusion.memberOfTable[requested[q]]
                for i in 0..<counts[q] { ws.keys[n + i] = space.encode(key(keyStart[q] + i), member: member) }
                if outStart[q] != outStart[j] + n * unit.dimension { contiguous = false }
                n += counts[q]
                done[q] = true
                batch.append(q)
            }
            if contiguous {
                try run(unit, ws: ws, count: n, output: out! + outStart[j])
            } else {
                // The group's tables are not next to each other in the output: answer into a buffer, then copy.
                var vectors = [Float](repeating: 0, count: n * unit.dimension)
                try vectors.withUnsafeMutableBufferPointer { try run(unit, ws: ws, count: n, output: $0.baseAddress!) }
                var offset = 0
                vectors.withUnsafeBufferPointer { v in
                    for q in batch {
                        let floats = counts[q] * unit.dimension
                        (out! + outStart[q]).update(from: v.baseAddress! + offset, count: floats)
                        offset += floats
                    }
                }
            }
        }
    }

    /// Convenience for tools and tests: looks up the keys of several tables at once (see
    /// ``lookup(tables:keys:counts:into:)``); one array of vectors per table.
    /// - Throws: as ``lookup(tables:keys:counts:into:)``.
    public func lookup(tables: [Int], keys: [[Int64]]) throws -> [[Float]] {
        guard tables.count == keys.count else {
            throw HPSError(.invalidArgument, subject: model.name, "\(tables.count) table(s) but \(keys.count) key list(s)")
        }
        let dims = try tables.map { try tableConfig($0).dimension }
        let flat = keys.flatMap { $0 }
        var output = [Float](repeating: 0, count: zip(keys, dims).reduce(0) { $0 + $1.0.count * $1.1 })
        try flat.withUnsafeBufferPointer { k in
            try output.withUnsafeMutableBufferPointer { o in try lookup(tables: tables, keys: k, counts: keys.map(\.count), into: o) }
        }
        var result: [[Float]] = []
        var start = 0
        for (k, dim) in zip(keys, dims) {
            result.append(Array(output[start..<(start + k.count * dim)]))
            start += k.count * dim
        }
        return result
    }

    /// Looks up keys that live in device memory and writes the vectors to device memory, enqueued on
    /// `stream` (see ``DeviceLookupRequest``): the device-resident path of ``DeviceTableLookup``. Keys of a
    /// table of a fused group are tagged on the device.
    ///
    /// - Parameters:
    ///   - keys: device address of `count` keys (Int64, or Int32 read as uint32 when `int32Keys`).
    ///   - output: device address of `count × dim` floats.
    ///   - stream: the caller's `CUstream`, or nil to run on a stream of the lookup's own and return when done.
    /// - Throws: ``HPSError`` — `.unknownTable` for a table index out of range, `.invalidArgument` for more
    ///   keys than `max_batch_size × maxnum_catfeature_query_per_table_per_sample`, `.device` when this
    ///   session's device serves no device memory or a device call fails.
    public func lookupDevice(table: Int, keys: UInt64, int32Keys: Bool, count: Int, output: UInt64, stream: UnsafeMutableRawPointer?) throws {
        guard count >= 0 else { throw HPSError(.invalidArgument, subject: "\(model.name) table \(table)", "key count \(count) is negative") }
        _ = try check(table: table, count: count)
        let g = fusion.groupOfTable[table]
        guard let engine = unitDeviceLookups[g] else {
            throw HPSError(
                .device, subject: "\(model.name) device \(device)",
                "device-memory lookup, but no CUDA device serves model \(model.name) on device \(device) here (no usable GPU, HPS_DISABLE_CUDA set, or fewer devices than deployed_device_list); use host memory")
        }
        guard count > 0 else { return }
        var request = DeviceLookupRequest(keys: keys, int32Keys: int32Keys, count: count, output: output, stream: stream)
        request.fusedKeys = fusion.groups[g].keySpace?.transform(member: fusion.memberOfTable[table])
        try engine.lookup(request, host: deviceHosts[g])
    }

    /// What the device lookups of each group need from this session (made once at the end of init, never
    /// written again, so calls read it without a lock and allocate nothing).
    private var deviceHosts: [DeviceLookupHost] = []

    /// Whether host-memory lookups of a table with a device cache take the device path (keys to the device once,
    /// vectors back once) rather than staging every cache call. `HPS_HOST_LOOKUPS_ON_DEVICE=0` (read when the
    /// session is made) keeps the staged host path, for comparison.
    private let hostLookupsOnDevice = SystemInfo.environment("HPS_HOST_LOOKUPS_ON_DEVICE") != "0"

    private func makeDeviceHosts() -> [DeviceLookupHost] {
      units.map { table in
        let tiers = self.tiers, inserter = self.inserter
        let stats = tiers.statistics
        let metrics = self.metrics[table.index]
        return DeviceLookupHost(
            hitRateThreshold: model.hitRateThreshold, defaultValue: table.defaultValue,
            fetch: { [tiers] keys, output, missScratch in
                var tally = LookupTally()
                tiers.fetch(table: table, keys: keys, into: output, missScratch: missScratch, tally: &tally)
                metrics.reportDatabases(tally)
            },
            lookupHost: { [unowned self] keys, output in
                // The keys are the group's own (tagged when fused): look them up as they are.
                let ws = acquire()
                if let base = keys.baseAddress { ws.keys.update(from: base, count: keys.count) }
                try self.run(table, ws: ws, count: keys.count, output: output)
            },
            background: { work in inserter.async(execute: work) },
            record: { keys, unique, misses, defaults in
                stats.add(stats.lookups, 1)
                stats.add(stats.keys, keys)
                stats.add(stats.uniqueKeys, unique)
                stats.add(stats.cacheHits, unique - misses)
                stats.add(stats.cacheMisses, misses)
                stats.add(stats.defaults, defaults)
                var tally = LookupTally()
                tally.distinctKeys = unique
                tally.cacheHits = unique - misses
                tally.defaults = defaults
                metrics.report(tally, keys: keys)
            },
            updateCount: { [unowned self] in updateEpoch.load(ordering: .sequentiallyConsistent) },
            refreshIfUpdated: { [unowned self] keys, since in
                guard let cache = unitCaches[table.index] else { return }
                do {
                    try refetchIfUpdated(since: since, table: table, cache: cache, keys: keys)
                } catch {
                    tiers.logger.error("refreshing \(keys.count) updated rows in the device cache of \(table.tag) failed: \(error)")
                }
            })
      }
    }

    /// Convenience for tools and tests: looks up an array of keys.
    /// - Throws: what ``lookup(table:keys:into:)-(_,UnsafeBufferPointer<Int64>,_)`` throws (the keys are looked up in
    ///   batches of the largest size allowed, so only their count per batch is checked).
    public func lookup(table: Int, keys: [Int64]) throws -> [Float] {
        let dim = try tableConfig(table).dimension
        var output = [Float](repeating: 0, count: keys.count * dim)
        let maxKeys = model.maxQueryLength(table: table)
        var start = 0
        while start < keys.count {
            let n = min(maxKeys, keys.count - start)
            try keys.withUnsafeBufferPointer { k in
                try output.withUnsafeMutableBufferPointer { o in
                    try lookup(
                        table: table, keys: UnsafeBufferPointer(rebasing: k[start..<(start + n)]),
                        into: UnsafeMutableBufferPointer(rebasing: o[(start * dim)..<((start + n) * dim)]))
                }
            }
            start += n
        }
        return output
    }

    private func tableConfig(_ table: Int) throws -> TableConfig {
        guard table >= 0 && table < tables.count else {
            throw HPSError(.unknownTable, subject: "\(model.name) table \(table)", "table id out of range: model \(model.name) has \(tables.count) table(s) (0..<\(tables.count))")
        }
        return tables[table]
    }

    /// The table of a lookup of `count` keys, after checking the count against the model's limit.
    private func check(table: Int, count: Int) throws -> TableConfig {
        let t = try tableConfig(table)
        let limit = model.maxQueryLength(table: table)
        guard count <= limit else {
            throw HPSError(
                .invalidArgument, subject: "\(t.tag)",
                "\(count) keys in one lookup exceed max_batch_size × maxnum_catfeature_query_per_table_per_sample = \(model.maxBatchSize) × \(t.maxKeysPerSample) = \(limit)")
        }
        return t
    }

    private func check(table: Int, count: Int, output: UnsafeMutableBufferPointer<Float>) throws -> TableConfig {
        let t = try check(table: table, count: count)
        guard output.count >= count * t.dimension else {
            throw HPSError(.invalidArgument, subject: "\(t.tag)", "output holds \(output.count) floats; \(count) keys × dim \(t.dimension) = \(count * t.dimension) needed")
        }
        return t
    }

    /// Looks up `n` keys of `ws.keys` (the unit's own keys: tagged for a fused group) through the unit's cache and
    /// the databases into `output`; releases `ws` (or hands it to a background insert).
    /// - Throws: a device error of the table's cache (the lookup then fails; the workspace goes back to the pool).
    private func run(_ table: TableConfig, ws: LookupWorkspace, count n: Int, output: UnsafeMutablePointer<Float>) throws {
        var handedOff = false
        var reportedByDevice = false  // the device path reports through its host's `record`
        defer {
            if !reportedByDevice { report(table, ws: ws, count: n) }
            if !handedOff { pool.release(ws) }
        }
        if hostLookupsOnDevice, let engine = unitDeviceLookups[table.index], n > 0 {
            // A device cache: the keys cross to the device once and the vectors come back once (the device path);
            // should the device fail, the host path below still answers (the cache then reports misses).
            do {
                if try engine.lookupHostMemory(keys: UnsafeBufferPointer(start: ws.keys, count: n), into: output, host: deviceHosts[table.index]) {
                    reportedByDevice = true
                    return
                }
            } catch {
                tiers.logger.error("device lookup of \(table.tag) failed, answering on the host path: \(error)")
            }
        }
        if unitDirect[table.index] {
            lookupDirect(table, keys: UnsafeBufferPointer(start: ws.keys, count: n), ws: ws, output: output)
            return
        }
        if let cache = unitCaches[table.index] as? DynamicCache {
            handedOff = try runInInputOrder(table, cache: cache, ws: ws, count: n, output: output)
            return
        }
        let stats = tiers.statistics
        let dim = table.dimension
        let unique = ws.deduplicate(ws.keys, count: n)
        ws.tally.distinctKeys = unique
        let uniqueKeys = UnsafeBufferPointer(start: ws.unique, count: unique)
        if let cache = unitCaches[table.index] {
            let queried = LookupTally.now()
            let missing = try query(cache, keys: uniqueKeys, dim: dim, ws: ws)
            ws.tally.cacheNanos = LookupTally.now() &- queried
            ws.tally.cacheHits = unique - missing
            stats.add(stats.cacheHits, unique - missing)
            stats.add(stats.cacheMisses, missing)
            if missing > 0 {
                let hitRate = unique == 0 ? 1.0 : 1.0 - Double(missing) / Double(unique)
                for j in 0..<missing { ws.missingKeys[j] = ws.unique[Int(ws.missing[j])] }
                let missingKeys = UnsafeBufferPointer(start: ws.missingKeys, count: missing)
                if cache.holdsWholeTable {
                    fillDefault(table, ws: ws, missing: missing)
                    stats.add(stats.defaults, missing)
                    ws.tally.defaults += missing
                } else if hitRate >= model.hitRateThreshold {
                    // Answer with the default now; fetch and insert in the background, keeping the workspace.
                    fillDefault(table, ws: ws, missing: missing)
                    stats.add(stats.defaults, missing)
                    ws.tally.defaults += missing
                    handedOff = true
                    let job = UnsafeTransfer((ws, cache, table))
                    inserter.async { [self, tiers, pool] in
                        let (ws, cache, table) = job.value
                        let epoch = updateEpoch.load(ordering: .sequentiallyConsistent)
                        tiers.fetch(table: table, keys: UnsafeBufferPointer(start: ws.missingKeys, count: missing), into: ws.fetched, missScratch: ws.databaseMisses)
                        do {
                            try cache.replace(keys: UnsafeBufferPointer(start: ws.missingKeys, count: missing), values: ws.fetched)
                            try refetchIfUpdated(since: epoch, table: table, cache: cache, keys: UnsafeBufferPointer(start: ws.missingKeys, count: missing))
                        } catch {
                            tiers.logger.error("background insert of \(missing) keys into the cache of \(table.tag) failed: \(error)")
                        }
                        pool.release(ws)
                    }
                } else {
                    let epoch = updateEpoch.load(ordering: .sequentiallyConsistent)
                    defer { try? refetchIfUpdated(since: epoch, table: table, cache: cache, keys: missingKeys) }
                    tiers.fetch(table: table, keys: missingKeys, into: ws.fetched, missScratch: ws.databaseMisses, tally: &ws.tally)
                    let fetched = ws.fetched, positions = ws.missing, vectors = ws.uniqueVectors
                    if cache.queriesScaleAcrossThreads {
                        // Insert and merge in parallel chunks (the cache locks per set).
                        let failure = Mutex<(any Error)?>(nil)
                        Self.inChunks(missing, threshold: Self.parallelInsertThreshold) { lo, hi in
                            do {
                                try cache.replace(keys: UnsafeBufferPointer(rebasing: missingKeys[lo..<hi]), values: fetched + lo * dim)
                            } catch {
                                failure.withLock { $0 = $0 ?? error }
                            }
                            for j in lo..<hi { hps_copy(vectors + Int(positions[j]) * dim, fetched + j * dim, dim * 4) }
                        }
                        if let error = failure.withLock({ $0 }) { throw error }
                    } else {
                        try cache.replace(keys: missingKeys, values: fetched)
                        for j in 0..<missing { hps_copy(vectors + Int(positions[j]) * dim, fetched + j * dim, dim * 4) }
                    }
                }
            }
        } else {
            tiers.fetch(table: table, keys: uniqueKeys, into: ws.uniqueVectors, missScratch: ws.databaseMisses, tally: &ws.tally)
        }
        // Scatter back to input order.
        let vectors = ws.uniqueVectors, inverse = ws.inverse
        Self.inChunks(n) { lo, hi in
            for i in lo..<hi { hps_copy(output + i * dim, vectors + Int(inverse[i]) * dim, dim * 4) }
        }
        stats.add(stats.lookups, 1)
        stats.add(stats.keys, n)
        stats.add(stats.uniqueKeys, unique)
    }

    /// The CPU dynamic cache: one query of every key in input order copies each hit straight from its cache
    /// row into `output` (under the set's lock: no torn vectors, no unique-vector buffer, no scatter pass);
    /// only the missed keys are deduplicated. The distinct hits come from the query itself (a hit whose slot
    /// already carries this batch's stamp repeats a key), so hit rate, statistics, threshold decision and
    /// insert order are those of HPS's dedup-first flow.
    /// - Returns: whether the workspace went to a background insert (which releases it).
    private func runInInputOrder(_ table: TableConfig, cache: DynamicCache, ws: LookupWorkspace, count n: Int, output: UnsafeMutablePointer<Float>) throws -> Bool {
        let stats = tiers.statistics
        let dim = table.dimension
        let keys = ws.keys, missing = ws.missing
        let queried = LookupTally.now()
        let stamp = cache.beginQuery()
        var misses = 0
        var distinctHits = 0
        let workers = min(SystemInfo.processorCount, 8)
        if n >= Self.parallelThreshold && workers > 1 {
            // Each chunk writes its misses (chunk-relative positions) at the start of its own region of `missing`.
            var counts = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            withUnsafeMutableBytes(of: &counts) { raw in
                let perChunk = raw.bindMemory(to: Int.self).baseAddress!
                let job = UnsafeTransfer((cache, keys, missing, output, perChunk))
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    let (cache, keys, missing, output, perChunk) = job.value
                    let lo = n * w / workers, hi = n * (w + 1) / workers
                    let r = cache.query(
                        keys: UnsafeBufferPointer(start: keys + lo, count: hi - lo), into: output + lo * dim, missing: missing + lo, stamp: stamp)
                    perChunk[2 * w] = r.misses
                    perChunk[2 * w + 1] = r.distinctHits
                }
                for w in 0..<workers {
                    let lo = n * w / workers
                    for j in 0..<perChunk[2 * w] { missing[misses + j] = Int32(truncatingIfNeeded: lo) + missing[lo + j] }
                    misses += perChunk[2 * w]
                    distinctHits += perChunk[2 * w + 1]
                }
            }
        } else {
            (misses, distinctHits) = cache.query(keys: UnsafeBufferPointer(start: keys, count: n), into: output, missing: missing, stamp: stamp)
        }
        ws.tally.cacheNanos = LookupTally.now() &- queried
        // The missed keys, deduplicated in first-seen order (`ws.unique`; `ws.inverse[j]` for the j-th miss).
        for j in 0..<misses { ws.missingKeys[j] = keys[Int(missing[j])] }
        let missed = misses == 0 ? 0 : ws.deduplicate(ws.missingKeys, count: misses)
        let unique = distinctHits + missed
        ws.tally.distinctKeys = unique
        ws.tally.cacheHits = distinctHits
        stats.add(stats.cacheHits, distinctHits)
        stats.add(stats.cacheMisses, missed)
        stats.add(stats.lookups, 1)
        stats.add(stats.keys, n)
        stats.add(stats.uniqueKeys, unique)
        guard missed > 0 else { return false }
        let missedKeys = UnsafeBufferPointer(start: UnsafePointer(ws.unique), count: missed)
        let inverse = ws.inverse
        let hitRate = 1.0 - Double(missed) / Double(unique)
        if hitRate >= model.hitRateThreshold {
            // Answer with the default now; fetch and insert in the background, keeping the workspace.
            for j in 0..<misses { (output + Int(missing[j]) * dim).update(repeating: table.defaultValue, count: dim) }
            stats.add(stats.defaults, missed)
            ws.tally.defaults += missed
            let job = UnsafeTransfer((ws, cache, table))
            inserter.async { [self, tiers, pool] in
                let (ws, cache, table) = job.value
                let keys = UnsafeBufferPointer(start: UnsafePointer(ws.unique), count: missed)
                let epoch = updateEpoch.load(ordering: .sequentiallyConsistent)
                tiers.fetch(table: table, keys: keys, into: ws.fetched, missScratch: ws.databaseMisses)
                cache.replace(keys: keys, values: ws.fetched)
                try? refetchIfUpdated(since: epoch, table: table, cache: cache, keys: keys)
                pool.release(ws)
            }
            return true
        }
        let epoch = updateEpoch.load(ordering: .sequentiallyConsistent)
        tiers.fetch(table: table, keys: missedKeys, into: ws.fetched, missScratch: ws.databaseMisses, tally: &ws.tally)
        let fetched = ws.fetched
        defer { try? refetchIfUpdated(since: epoch, table: table, cache: cache, keys: missedKeys) }
        // Insert in parallel chunks (the cache locks per set), then answer every missed position.
        Self.inChunks(missed, threshold: Self.parallelInsertThreshold) { lo, hi in
            cache.replace(keys: UnsafeBufferPointer(rebasing: missedKeys[lo..<hi]), values: fetched + lo * dim)
        }
        Self.inChunks(misses, threshold: Self.parallelInsertThreshold) { lo, hi in
            for j in lo..<hi { hps_copy(output + Int(missing[j]) * dim, fetched + Int(inverse[j]) * dim, dim * 4) }
        }
        return false
    }

    /// The hash map holds every row: one fetch writes the rows in input order (duplicates included) straight
    /// into `output`; keys it lacks go on to the persistent database, then get the default value.
    private func lookupDirect(_ table: TableConfig, keys: UnsafeBufferPointer<Int64>, ws: LookupWorkspace, output: UnsafeMutablePointer<Float>) {
        if keys.count > 0 { tiers.fetch(table: table, keys: keys, into: output, missScratch: ws.databaseMisses, tally: &ws.tally) }
        ws.tally.distinctKeys = keys.count
        let stats = tiers.statistics
        stats.add(stats.lookups, 1)
        stats.add(stats.keys, keys.count)
        stats.add(stats.uniqueKeys, keys.count)  // not deduplicated: every key goes to the hash map
    }

    /// A workspace from the pool with a fresh tally for the call's metrics.
    private func acquire() -> LookupWorkspace {
        let ws = pool.acquire()
        ws.tally = LookupTally(start: LookupTally.now())
        return ws
    }

    /// Reports the call that holds `ws` to the unit's metrics; measures the cache's occupancy, at most once a
    /// second, on the inserter queue (counting a dynamic cache's rows walks it).
    private func report(_ table: TableConfig, ws: LookupWorkspace, count: Int) {
        let metrics = self.metrics[table.index]
        metrics.report(ws.tally, keys: count)
        if let cache = unitCaches[table.index], metrics.occupancyDue() {
            inserter.async { metrics.occupancy(cache.count) }
        }
    }

    /// Batches at least this large are queried and scattered on several threads.
    public static let parallelThreshold = 16384

    /// Missed keys at least this many are inserted into a host cache on several threads.
    static let parallelInsertThreshold = 2048

    /// Runs `body(lo, hi)` over `0..<n`: inline for small `n`, else in one chunk per core.
    private static func inChunks(_ n: Int, threshold: Int = parallelThreshold, _ body: (Int, Int) -> Void) {
        let workers = min(SystemInfo.processorCount, 8)
        guard n >= threshold && workers > 1 else {
            body(0, n)
            return
        }
        withoutActuallyEscaping(body) { body in
            let task = UnsafeTransfer(body)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                task.value(n * w / workers, n * (w + 1) / workers)
            }
        }
    }

    /// Queries the cache, in parallel chunks for large batches; the missing positions end up compacted
    /// in `ws.missing` in ascending order.
    private func query(_ cache: any EmbeddingCache, keys: UnsafeBufferPointer<Int64>, dim: Int, ws: LookupWorkspace) throws -> Int {
        let n = keys.count
        let workers = min(SystemInfo.processorCount, 8)
        guard n >= Self.parallelThreshold && workers > 1 && cache.queriesScaleAcrossThreads else {
            return try cache.query(keys: keys, into: ws.uniqueVectors, missing: ws.missing)
        }
        let failure = Mutex<(any Error)?>(nil)
        // Each chunk writes its misses (as chunk-relative positions) at the start of its own region.
        var counts = (0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &counts) { raw in
            let missCounts = raw.bindMemory(to: Int.self).baseAddress!
            let job = UnsafeTransfer((cache, keys, ws, missCounts))
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let (cache, keys, ws, missCounts) = job.value
                let lo = n * w / workers, hi = n * (w + 1) / workers
                do {
                    missCounts[w] = try cache.query(
                        keys: UnsafeBufferPointer(rebasing: keys[lo..<hi]), into: ws.uniqueVectors + lo * dim, missing: ws.missing + lo)
                } catch {
                    failure.withLock { $0 = $0 ?? error }
                }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        var total = 0
        withUnsafeBytes(of: &counts) { raw in
            let missCounts = raw.bindMemory(to: Int.self)
            for w in 0..<workers {
                let lo = n * w / workers
                for j in 0..<missCounts[w] { ws.missing[total + j] = Int32(truncatingIfNeeded: lo) + ws.missing[lo + j] }
                total += missCounts[w]
            }
        }
        return total
    }

    private func fillDefault(_ table: TableConfig, ws: LookupWorkspace, missing: Int) {
        let dim = table.dimension
        for j in 0..<missing {
            (ws.uniqueVectors + Int(ws.missing[j]) * dim).update(repeating: table.defaultValue, count: dim)
        }
    }

    /// Waits until every background insert submitted so far is done.
    public func waitForBackgroundInserts() { inserter.sync {} }

    // MARK: Refresh

    /// Re-reads every cached key of every table from the databases and updates the cache, in steps of
    /// `cache_refresh_percentage_per_iteration` of the sets (all at once when it is 0). Tables a volatile
    /// database node did not take at load are written into it first when every node answers again.
    /// - Returns: the number of keys refreshed.
    /// - Throws: ``HPSError`` when a cache cannot be read or updated.
    @discardableResult
    public func refresh() throws -> Int {
        if !tiers.volatileRefill.pendingTags.isEmpty { _ = tiers.volatileRefill.attempt(tiers: tiers) }
        var refreshed = 0
        for table in units {
            guard let cache = unitCaches[table.index], !cache.holdsWholeTable else { continue }
            let pct = model.cacheRefreshPercentagePerIteration
            let step = pct > 0 ? max(1, Int(Double(cache.unitCount) * pct)) : cache.unitCount
            var unit = 0
            while unit < cache.unitCount {
                let keys = try cache.keys(inUnits: unit..<min(cache.unitCount, unit + step))
                unit += step
                guard !keys.isEmpty else { continue }
                var values = [Float](repeating: 0, count: keys.count * table.dimension)
                var scratch = [Int](repeating: 0, count: keys.count)
                try keys.withUnsafeBufferPointer { k in
                    values.withUnsafeMutableBufferPointer { v in
                        scratch.withUnsafeMutableBufferPointer { s in
                            tiers.fetch(table: table, keys: k, into: v.baseAddress!, missScratch: s.baseAddress!)
                        }
                    }
                    try values.withUnsafeBufferPointer { v in try cache.update(keys: k, values: v.baseAddress!) }
                }
                refreshed += keys.count
            }
        }
        return refreshed
    }
}

extension String {
    fileprivate var nonEmpty: String? { isEmpty ? nil : self }
}

/// The key types of host lookups, widened to the server's Int64 keys (generic, so that the multi-table loop
/// is specialised per type instead of calling a closure per key).
protocol HostKey {
    static func widened(_ key: Self, width: KeyWidth) -> Int64
}

extension Int64: HostKey {
    @inline(__always) static func widened(_ key: Int64, width: KeyWidth) -> Int64 { width.normalize(key) }
}

extension Int32: HostKey {
    /// Int32 keys are read as uint32 (`supportlonglong: false`).
    @inline(__always) static func widened(_ key: Int32, width: KeyWidth) -> Int64 { Int64(UInt32(bitPattern: key)) }
}

extension LookupSession {
    /// After rows fetched from the databases were inserted into `cache`: when an online update reached this
    /// session since `epoch` (read before the fetch), the inserted rows may predate it, so they are fetched
    /// again and overwritten in place, until no update came in between (the databases hold the newest rows).
    /// - Throws: a device error of the cache.
    func refetchIfUpdated(since epoch: UInt64, table: TableConfig, cache: any EmbeddingCache, keys: UnsafeBufferPointer<Int64>) throws {
        var seen = epoch
        while true {
            let now = updateEpoch.load(ordering: .sequentiallyConsistent)
            guard now != seen, !keys.isEmpty else { return }
            seen = now
            var rows = [Float](repeating: 0, count: keys.count * table.dimension)
            var scratch = [Int](repeating: 0, count: keys.count)
            rows.withUnsafeMutableBufferPointer { r in
                scratch.withUnsafeMutableBufferPointer { tiers.fetch(table: table, keys: keys, into: r.baseAddress!, missScratch: $0.baseAddress!) }
            }
            try rows.withUnsafeBufferPointer { try cache.update(keys: keys, values: $0.baseAddress!) }
        }
    }
}
