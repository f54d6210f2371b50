import Dispatch
import Synchronization

/// Tables whose rows a volatile-database node did not take at load time (the node was down), written
/// again once every node answers.
///
/// A table gets here only while the persistent database holds every row, so lookups stay exact in the
/// meantime (their volatile misses are answered by the persistent database). A timer on a queue of its
/// own checks every ``interval`` whether the failed nodes answer (``Database/unreachableNodes()``, a
/// `PING` per node for Redis) and then writes the table's rows again; ``LookupSession/refresh()`` tries at
/// once. The timer holds the tiers weakly and stops when no table is pending.
final class VolatileRefill: Sendable {
    /// How often a pending refill is tried: `HPS_VOLATILE_REFILL_INTERVAL_MS` milliseconds (default 5000).
    static let interval: Duration = .milliseconds(
        max(10, Int(SystemInfo.environment("HPS_VOLATILE_REFILL_INTERVAL_MS") ?? "") ?? 5000))

    private struct State {
        var pending: [String: LoadSource] = [:]
        var timer: (any DispatchSourceTimer)?
    }
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "hps.volatile-refill")

    /// Tables waiting for a refill, by tag.
    var pendingTags: [String] { state.withLock { $0.pending.keys.sorted() } }

    /// Adds the table of `source` (one table, or a fused group's) and starts the timer if it is not running.
    func schedule(_ source: LoadSource, tiers: TierChain) {
        state.withLock { s in
            s.pending[source.table.tag] = source
            guard s.timer == nil else { return }
            let timer = DispatchSource.makeTimerSource(queue: queue)
            let ms = Int(Self.interval.components.seconds * 1000 + Self.interval.components.attoseconds / 1_000_000_000_000_000)
            timer.schedule(deadline: .now() + .milliseconds(ms), repeating: .milliseconds(ms))
            timer.setEventHandler { [weak tiers, weak self] in
                guard let tiers, let self else { return }
                _ = self.run(tiers: tiers)  // already on the refill queue
            }
            s.timer = timer
            timer.resume()
        }
    }

    /// Tries every pending table now (on the refill queue, so timer and callers never write at once).
    /// - Returns: the rows written into the volatile database.
    func attempt(tiers: TierChain) -> Int {
        queue.sync { run(tiers: tiers) }
    }

    private func run(tiers: TierChain) -> Int {
        let tables = state.withLock { Array($0.pending.values) }
        guard !tables.isEmpty, let vdb = tiers.volatileDatabase else { return 0 }
        let down = vdb.unreachableNodes()
        guard down.isEmpty else {
            tiers.logger.debug("\(vdb.name): node(s) \(down.joined(separator: ", ")) still down; \(tables.count) table(s) wait for a refill")
            return 0
        }
        var written = 0
        for source in tables.sorted(by: { $0.table.tag < $1.table.tag }) {
            let table = source.table
            do {
                let rows = try tiers.rewriteVolatile(source)
                written += rows
                state.withLock { s in
                    s.pending[table.tag] = nil
                    if s.pending.isEmpty {
                        s.timer?.cancel()
                        s.timer = nil
                    }
                }
                tiers.logger.info("Table \(table.tag): \(vdb.name) answers on every node again; wrote its \(rows) rows back")
            } catch {
                tiers.logger.warning("Table \(table.tag): writing its rows back into \(vdb.name) failed; trying again in \(Self.interval): \(error)")
            }
        }
        return written
    }

    deinit {
        state.withLock { $0.timer?.cancel() }
    }
}

extension TierChain {
    /// Writes the first `ceil(initial_cache_rate × rows)` rows of `source` (keys tagged for a fused group)
    /// into the volatile database again, and records the load when the database is shared.
    /// - Returns: the rows written.
    /// - Throws: ``HPSError`` when the table files cannot be read or a node does not take its keys.
    func rewriteVolatile(_ source: LoadSource) throws -> Int {
        guard let vdb = volatileDatabase else { return 0 }
        let table = source.table
        var left = volatileRowLimit(rows: source.rowCount)
        let total = left
        let chunkRows = max(1, min(config.volatileDatabase.maxBatchSize, 65536))
        try source.forEachChunk(maxRows: chunkRows, keyWidth: keyWidth, progress: nil) { keys, vectors in
            let n = min(keys.count, left)
            guard n > 0 else { return }
            left -= n
            try vdb.insert(
                table: table.tag, keys: UnsafeBufferPointer(rebasing: keys[0..<n]),
                values: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(vectors)[0..<(n * table.valueSize)]), valueSize: table.valueSize)
        }
        if vdb.isShared { recordSharedVolatileLoad(vdb, source: source, tag: table.tag, contentFingerprint: nil) }
        return total
    }
}
