#if canImport(Glibc)
import Glibc
#endif

/// Online updates: rows of a table written into the databases, then into every device cache that holds
/// their keys, so a served value is never older than the last applied update.
extension ParameterServer {
    /// The table whose tag (`hps_et.<model>.<table>`) is `tag`, or nil when no model of the configuration
    /// has it.
    public func table(tag: String) -> TableConfig? {
        for model in config.models {
            if let table = model.tables.first(where: { $0.tag == tag }) { return table }
        }
        return nil
    }

    /// Applies `keys.count` rows of `table`: `values` holds `keys.count × table.valueSize` bytes (float32
    /// rows, row-major). The databases named by `targets` take every row first (volatile, then persistent;
    /// not for static and uvm tables, which live in their caches only);
    /// then every device cache of this process holding one of the keys gets its new row in place. A key
    /// that appears twice takes its last row.
    /// A table of a fused group (`fuse_embedding_table`) is written into the group's database table and cache
    /// with its keys tagged, as its lookups read it.
    /// - Throws: ``HPSError`` `.invalidArgument` when `values` does not hold `keys.count × valueSize` bytes; the
    ///   database's error when a database does not take the rows (the caches are then left alone, and applying
    ///   the same rows again later is harmless).
    public func applyUpdate(table: TableConfig, keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer, targets: UpdateTargets) throws {
        guard values.count == keys.count * table.valueSize else {
            throw HPSError(.invalidArgument, subject: table.tag, "\(values.count) bytes of values for \(keys.count) keys of \(table.valueSize) bytes each")
        }
        guard !keys.isEmpty else { return }
        // A table of a fused group lives in the group's database table and cache, its keys tagged.
        if let model = config.model(named: table.model) {
            let fusion = config.fusion(of: model)
            let group = fusion.groups[fusion.groupOfTable[table.index]]
            if let space = group.keySpace {
                let member = fusion.memberOfTable[table.index]
                let tagged = keys.map { space.encode(keyWidth.normalize($0), member: member) }
                var fused = group.table
                fused.index = table.index  // the session maps table indices onto the group's cache
                try tagged.withUnsafeBufferPointer { try applyRows(table: fused, keys: $0, values: values, targets: targets) }
                return
            }
        }
        try applyRows(table: table, keys: keys, values: values, targets: targets)
    }

    /// ``applyUpdate(table:keys:values:targets:)`` once keys and table are those the databases and caches hold.
    private func applyRows(table: TableConfig, keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer, targets: UpdateTargets) throws {
        // Static and uvm tables live in their caches only (as in HPS: never written to a database).
        let type = config.model(named: table.model).map { $0.useStaticTable ? .static : $0.embeddingCacheType }
        let inDatabases = type == .dynamic || type == .stochastic
        if inDatabases, targets.volatileDatabase, let vdb = volatileDatabase {
            try vdb.insert(table: table.tag, keys: keys, values: values, valueSize: table.valueSize)
        }
        if inDatabases, targets.persistentDatabase, let pdb = persistentDatabase, !config.persistentDatabase.readOnly {
            try pdb.insert(table: table.tag, keys: keys, values: values, valueSize: table.valueSize)
        }
        guard targets.deviceCaches else { return }
        if inDatabases, targets.awaitSharedVolatile, let vdb = volatileDatabase {
            waitUntilHeld(vdb, table: table, keys: keys, values: values)
        }
        let rows = values.baseAddress!.assumingMemoryBound(to: Float.self)
        for session in allSessions() where session.model.name == table.model {
            try session.updateCachedRows(table: table.index, keys: keys, values: rows)
        }
    }
}

extension ParameterServer {
    /// Reads `keys` back from `vdb` until every row equals `values` or ``UpdateTargets/sharedVolatileWaitMs``
    /// passed (a row that still differs then was most likely overwritten by a newer update already).
    func waitUntilHeld(_ vdb: any Database, table: TableConfig, keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer) {
        let size = table.valueSize
        var pending = Array(0..<keys.count)
        var probeKeys = [Int64](), rows = [UInt8]()
        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(UpdateTargets.sharedVolatileWaitMs)
        while !pending.isEmpty {
            probeKeys = pending.map { keys[$0] }
            rows = [UInt8](repeating: 0, count: pending.count * size)
            let read: Bool = probeKeys.withUnsafeBufferPointer { k in
                rows.withUnsafeMutableBytes { r in (try? vdb.fetch(table: table.tag, keys: k, values: r, valueSize: size) { _ in }) != nil }
            }
            if read {
                pending = pending.enumerated().filter { j, i in
                    rows.withUnsafeBytes { r in memcmp(r.baseAddress! + j * size, values.baseAddress! + i * size, size) != 0 }
                }.map(\.element)
            }
            guard !pending.isEmpty, clock.now < deadline else { break }
            usleep(5000)
        }
    }
}

extension LookupSession {
    /// Overwrites the rows of `keys` that this session's cache of table `index` holds (`values`: one row of
    /// `dimension` floats per key). Called after the databases took the rows; it advances ``updateEpoch`` first,
    /// so a lookup that fetched a row before the databases took it and inserts it after this call fetches it
    /// again (``refetchIfUpdated(since:table:cache:keys:)``): no cached row stays older than an applied update.
    /// - Throws: a device error of the cache.
    func updateCachedRows(table index: Int, keys: UnsafeBufferPointer<Int64>, values: UnsafePointer<Float>) throws {
        guard index < caches.count, let cache = caches[index] else { return }
        updateEpoch.add(1, ordering: .sequentiallyConsistent)
        if cache.queriesScaleAcrossThreads {
            // Host caches write key by key in order: a repeated key ends with its last row.
            try cache.update(keys: keys, values: values)
            return
        }
        // A device cache writes in parallel: keep only the last row of a repeated key.
        var last: [Int64: Int] = [:]
        last.reserveCapacity(keys.count)
        for (i, key) in keys.enumerated() { last[key] = i }
        if last.count == keys.count {
            try cache.update(keys: keys, values: values)
            return
        }
        let dim = cache.dimension
        let order = last.values.sorted()
        var uniqueKeys = [Int64](), rows = [Float]()
        uniqueKeys.reserveCapacity(order.count)
        rows.reserveCapacity(order.count * dim)
        for i in order {
            uniqueKeys.append(keys[i])
            rows.append(contentsOf: UnsafeBufferPointer(start: values + i * dim, count: dim))
        }
        try uniqueKeys.withUnsafeBufferPointer { k in try rows.withUnsafeBufferPointer { try cache.update(keys: k, values: $0.baseAddress!) } }
    }
}
