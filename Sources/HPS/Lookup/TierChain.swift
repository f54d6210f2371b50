import Dispatch

/// The tiers below the device cache — volatile database → persistent database → default value — and what
/// every lookup of one parameter server shares: its configuration, key width, statistics and the cache
/// provider.
///
/// Lookup sessions hold this, not the ``ParameterServer``: a session keeps alive what it uses, so it stays
/// valid after the server that made it is released, and the server's table of sessions makes no cycle.
///
/// Thread safety: every stored property is immutable; the databases are `Sendable` and synchronize
/// themselves; background inserts are serialized on one queue.
final class TierChain: Sendable {
    let config: ParameterServerConfig
    let volatileDatabase: (any Database)?
    let persistentDatabase: (any Database)?
    let statistics: TierStatistics
    let keyWidth: KeyWidth
    let cacheProvider: (any CacheProvider)?
    let logger: HPSLogger
    private let errorLog: RateLimitedLog
    private let volatileInserter = DispatchQueue(label: "hps.vdb-inserter")
    /// Tables a volatile-database node did not take at load, written again once it is back.
    let volatileRefill = VolatileRefill()

    init(
        config: ParameterServerConfig, volatileDatabase: (any Database)?, persistentDatabase: (any Database)?,
        cacheProvider: (any CacheProvider)?, statistics: TierStatistics, logger: HPSLogger
    ) {
        self.config = config
        self.volatileDatabase = volatileDatabase
        self.persistentDatabase = persistentDatabase
        self.cacheProvider = cacheProvider
        self.statistics = statistics
        self.logger = logger
        keyWidth = KeyWidth(supportLongLong: config.supportLongLong)
        errorLog = RateLimitedLog(logger: logger)
    }

    /// Rows of a table of `rows` rows that go into the volatile database at startup:
    /// `ceil(initial_cache_rate × rows)`.
    func volatileRowLimit(rows: Int) -> Int {
        let rate = config.volatileDatabase.initialCacheRate
        guard rate < 1 else { return rows }
        return min(rows, max(0, Int((rate * Double(rows)).rounded(.up))))
    }

    /// VDB → PDB → default for `keys`, writing `keys.count × dim` floats. `missScratch` holds `keys.count`
    /// indices. Never fails: a database error turns its keys into misses (counted and logged).
    func fetch(table: TableConfig, keys: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, missScratch: UnsafeMutablePointer<Int>) {
        var tally = LookupTally()
        fetch(table: table, keys: keys, into: output, missScratch: missScratch, tally: &tally)
    }

    /// ``fetch(table:keys:into:missScratch:)``, adding what each tier answered, and its time, to `tally`.
    func fetch(
        table: TableConfig, keys: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, missScratch: UnsafeMutablePointer<Int>,
        tally: inout LookupTally
    ) {
        let dim = table.dimension
        let valueSize = table.valueSize
        let out = UnsafeMutableRawBufferPointer(start: output, count: keys.count * valueSize)
        let tag = table.tag
        let fill = { (i: Int) in (output + i * dim).update(repeating: table.defaultValue, count: dim) }
        var misses = 0
        if let vdb = volatileDatabase {
            let started = LookupTally.now()
            defer { tally.volatileNanos = (tally.volatileNanos ?? 0) + (LookupTally.now() &- started) }
            do {
                _ = try vdb.fetch(table: tag, keys: keys, values: out, valueSize: valueSize) { i in
                    missScratch[misses] = i
                    misses += 1
                }
            } catch {
                statistics.add(statistics.volatileErrors, keys.count)
                tally.volatileErrors += 1
                errorLog.error("volatile database \(vdb.name) failed for \(tag); \(keys.count) keys go on to the next tier: \(error)")
                misses = 0
                for i in 0..<keys.count { missScratch[i] = i }
                misses = keys.count
            }
            statistics.add(statistics.volatileHits, keys.count - misses)
            tally.volatileHits += keys.count - misses
            statistics.add(statistics.volatileMisses, misses)
        } else {
            for i in 0..<keys.count { missScratch[i] = i }
            misses = keys.count
        }
        guard misses > 0 else { return }
        let missed = UnsafeBufferPointer(start: missScratch, count: misses)
        guard let pdb = persistentDatabase else {
            for i in missed { fill(i) }
            statistics.add(statistics.defaults, misses)
            tally.defaults += misses
            return
        }
        var defaults = 0
        let copyHits = config.volatileDatabase.cacheMissedEmbeddings && volatileDatabase != nil
        var notFound: [Int] = []  // only filled when hits are copied into the volatile database
        let started = LookupTally.now()
        do {
            _ = try pdb.fetch(table: tag, indices: missed, keys: keys, values: out, valueSize: valueSize) { i in
                fill(i)
                defaults += 1
                if copyHits { notFound.append(i) }
            }
        } catch {
            statistics.add(statistics.persistentErrors, misses)
            tally.persistentErrors += 1
            errorLog.error("persistent database \(pdb.name) failed for \(tag); \(misses) keys get the default value: \(error)")
            for i in missed { fill(i) }
            defaults = misses
            notFound = Array(missed)
        }
        statistics.add(statistics.persistentHits, misses - defaults)
        statistics.add(statistics.persistentMisses, defaults)
        statistics.add(statistics.defaults, defaults)
        tally.persistentNanos = (tally.persistentNanos ?? 0) + (LookupTally.now() &- started)
        tally.persistentHits += misses - defaults
        tally.defaults += defaults
        if copyHits, let vdb = volatileDatabase, misses > defaults {
            copyPersistentHitsToVolatile(vdb, tag: tag, valueSize: valueSize, keys: keys, missed: missed, notFound: Set(notFound), output: output, dim: dim)
        }
    }

    /// Inserts the keys the persistent database answered into the volatile database, in the background.
    private func copyPersistentHitsToVolatile(
        _ vdb: any Database, tag: String, valueSize: Int, keys: UnsafeBufferPointer<Int64>, missed: UnsafeBufferPointer<Int>,
        notFound: Set<Int>, output: UnsafeMutablePointer<Float>, dim: Int
    ) {
        var hitKeys: [Int64] = []
        var hitValues: [Float] = []
        hitKeys.reserveCapacity(missed.count - notFound.count)
        hitValues.reserveCapacity((missed.count - notFound.count) * dim)
        for i in missed where !notFound.contains(i) {
            hitKeys.append(keys[i])
            hitValues.append(contentsOf: UnsafeBufferPointer(start: output + i * dim, count: dim))
        }
        guard !hitKeys.isEmpty else { return }
        let log = errorLog
        volatileInserter.async { [hitKeys, hitValues] in
            do {
                try hitKeys.withUnsafeBufferPointer { k in
                    try hitValues.withUnsafeBytes { v in
                        _ = try vdb.insert(table: tag, keys: k, values: v, valueSize: valueSize)
                    }
                }
            } catch {
                log.error("copying \(hitKeys.count) persistent-database hits of \(tag) into \(vdb.name) failed: \(error)")
            }
        }
    }

    /// Waits until the background inserts into the volatile database submitted so far are done.
    func waitForVolatileInserts() { volatileInserter.sync {} }
}
