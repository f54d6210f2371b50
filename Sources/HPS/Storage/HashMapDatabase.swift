import CHPSSupport
import Dispatch

/// The in-memory volatile database (`hash_map` / `parallel_hash_map`): each table is split into
/// `num_partitions` partitions chosen by HPS's key mixer, each with its own lock, index and value pages.
///
/// Fetches take every partition's lock shared and walk the keys in input order, prefetching index entries
/// and rows a few dozen keys ahead, so output rows are written sequentially (``HashMapFetchPipeline``); large
/// batches are split into contiguous chunks, several per core, that the calling thread and the pool's
/// threads claim as they come. Inserts group keys by partition and take each partition's lock
/// exclusively.
/// Overflow: a partition that reaches `overflow_margin` evicts down to `overflow_margin ×
/// overflow_resolution_target` by its `overflow_policy` before taking a new key.
public final class HashMapDatabase: Database, @unchecked Sendable {
    // @unchecked Sendable: `tablesLock` guards `tables`; `randomLock` guards `random`; each partition has its own
    // lock (``HashMapPartition``); `parallelThreshold` is a tuning knob set before the database is shared.
    /// One table: its partitions and value size.
    final class Table: Sendable {
        let partitions: [HashMapPartition]
        let valueSize: Int
        init(valueSize: Int, partitions: Int, allocationRate: Int, counters: Bool) {
            self.valueSize = valueSize
            self.partitions = (0..<partitions).map { _ in
                HashMapPartition(valueSize: valueSize, allocationRate: allocationRate, counters: counters)
            }
        }
    }

    public let name: String
    public let config: VolatileDatabaseConfig
    private let tablesLock = ReadWriteLock()
    private var tables: [String: Table] = [:]
    private let scratch: ScratchPool
    private let randomLock = Lock()
    private var random = SplitMix64(seed: 0x4850_5321)
    private let logger: HPSLogger
    /// Keys per batch above which partitions are processed on several threads.
    public var parallelThreshold = 4096

    public init(config: VolatileDatabaseConfig = VolatileDatabaseConfig(), logger: HPSLogger = .standard) {
        self.config = config
        self.name = config.type == .hashMap ? "hash_map" : "parallel_hash_map"
        self.logger = logger
        scratch = ScratchPool(partitions: max(1, config.numPartitions))
    }

    private var partitionCount: Int { max(1, config.numPartitions) }

    private func table(_ tag: String) -> Table? { tablesLock.withReadLock { tables[tag] } }

    private func table(_ tag: String, creatingWith valueSize: Int) throws -> Table {
        if let t = table(tag) {
            guard t.valueSize == valueSize else {
                throw HPSError(.database, subject: tag, "value size \(valueSize) bytes does not match the table's \(t.valueSize) bytes")
            }
            return t
        }
        guard valueSize > 0, valueSize <= config.allocationRate else {
            throw HPSError(.database, subject: tag, "value size \(valueSize) bytes must be between 1 and allocation_rate (\(config.allocationRate))")
        }
        return try tablesLock.withWriteLock {
            if let t = tables[tag] {
                guard t.valueSize == valueSize else {
                    throw HPSError(.database, subject: tag, "value size \(valueSize) bytes does not match the table's \(t.valueSize) bytes")
                }
                return t
            }
            let t = Table(
                valueSize: valueSize, partitions: partitionCount, allocationRate: config.allocationRate,
                counters: config.overflowPolicy != .evictRandom)
            tables[tag] = t
            return t
        }
    }

    // MARK: Database

    public func capacity(table: String) -> Int { config.tableCapacity }

    /// - Throws: never: the hash map answers from memory.
    public func size(table tag: String) throws -> Int {
        guard let t = table(tag) else { return 0 }
        return t.partitions.reduce(0) { sum, p in sum + p.lock.withReadLock { p.count } }
    }

    /// - Throws: never: the hash map answers from memory.
    public func contains(table tag: String, keys: UnsafeBufferPointer<Int64>) throws -> Int {
        guard let t = table(tag) else { return 0 }
        var found = 0
        for key in keys {
            let mixed = hpsKeyMix(key)
            let p = t.partitions[Int(mixed % UInt64(t.partitions.count))]
            if p.lock.withReadLock({ p.find(key: key, mixed: mixed) }) >= 0 { found += 1 }
        }
        return found
    }

    /// - Throws: ``HPSError`` `.invalidArgument` naming the table when `values` holds fewer than `keys.count ×
    ///   valueSize` bytes; `.database` when `valueSize` differs from the table's or exceeds `allocation_rate`.
    @discardableResult
    public func insert(table tag: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer, valueSize: Int) throws -> Int {
        guard values.count >= keys.count * valueSize else {
            throw HPSError(.invalidArgument, subject: tag, "values hold \(values.count) bytes, \(keys.count) keys × \(valueSize) bytes needed")
        }
        if keys.isEmpty { return 0 }
        let t = try table(tag, creatingWith: valueSize)
        let policy = config.overflowPolicy
        let margin = config.overflowMargin
        let target = Int((Double(margin == .max ? 0 : margin) * config.overflowResolutionTarget).rounded())
        let base = values.baseAddress!
        // New keys a partition refused because it holds the most entries its index can address.
        let refused = UnsafeMutableBufferPointer<Int>.allocate(capacity: t.partitions.count)
        refused.initialize(repeating: 0)
        defer { refused.deallocate() }
        return try scratch.withScratch(capacity: keys.count) { s in
            group(keys, partitions: t.partitions.count, into: s)
            forEachPartition(count: keys.count, partitions: t.partitions.count) { pi in
                let p = t.partitions[pi]
                var local = SplitMix64(seed: randomLock.withLock { random.next() })
                p.lock.lockExclusive()
                let now = p.advanceClock()
                var n = 0
                var gone = 0
                let end = s.starts[pi + 1]
                let ahead = 12
                if let inserted = p.upsertBatch(
                    keys: keys.baseAddress!, mixed: s.mixed, order: s.order, range: s.starts[pi]..<end, values: base,
                    policy: policy, now: now, margin: margin, ahead: ahead)
                {
                    p.lock.unlock()
                    s.missCounts[pi] = inserted
                    s.extraCounts[pi] = 0
                    return
                }
                for j in s.starts[pi]..<min(end, s.starts[pi] + ahead) { p.prefetchIndex(mixed: s.mixed[Int(s.order[j])]) }
                for j in s.starts[pi]..<end {
                    // The index entries of keys `ahead` places on are random lines: start fetching them now.
                    if j + ahead < end { p.prefetchIndex(mixed: s.mixed[Int(s.order[j + ahead])]) }
                    let i = Int(s.order[j])
                    if margin != .max && p.count >= margin && p.find(key: keys[i], mixed: s.mixed[i]) < 0 {
                        gone += p.resolveOverflow(target: min(target, margin - 1), policy: policy, random: &local)
                    }
                    if p.count >= HashMapPartition.maxEntries && p.find(key: keys[i], mixed: s.mixed[i]) < 0 {
                        refused[pi] += 1
                        continue
                    }
                    if p.upsert(key: keys[i], mixed: s.mixed[i], value: base + i * valueSize, policy: policy, now: now) { n += 1 }
                }
                p.lock.unlock()
                s.missCounts[pi] = n
                s.extraCounts[pi] = gone
            }
            var totalInserted = 0
            var totalEvicted = 0
            for pi in 0..<t.partitions.count {
                totalInserted += s.missCounts[pi]
                totalEvicted += s.extraCounts[pi]
            }
            if totalEvicted > 0 {
                logger.debug("\(name): table \(tag): evicted \(totalEvicted) entries (\(policy.rawValue)) to stay within overflow_margin \(margin)")
            }
            let totalRefused = refused.reduce(0, +)
            if totalRefused > 0 {
                throw HPSError(
                    .database, subject: tag,
                    "\(totalRefused) keys were not inserted: a partition holds \(HashMapPartition.maxEntries) entries, the most one partition can index; raise volatile_db.num_partitions (now \(t.partitions.count))")
            }
            return totalInserted
        }
    }

    /// Sizes the index of `tag`'s partitions for `rows` more keys (spread evenly by the key mixer, with
    /// headroom), so a bulk load does not rehash at every doubling. Creates the table when needed.
    /// - Throws: ``HPSError`` `.database` when `valueSize` differs from the table's or exceeds `allocation_rate`.
    public func reserve(table tag: String, rows: Int, valueSize: Int) throws {
        guard rows > 0 else { return }
        let t = try table(tag, creatingWith: valueSize)
        let perPartition = rows / t.partitions.count
        // Binomial spread: a few standard deviations above the mean.
        let expected = perPartition + 4 * Int(Double(perPartition).squareRoot()) + 16
        let cap = config.overflowMargin == .max ? expected : min(expected, config.overflowMargin)
        for p in t.partitions {
            p.lock.lockExclusive()
            p.reserve(entries: min(p.count + cap, HashMapPartition.maxEntries))
            p.lock.unlock()
        }
    }

    /// - Throws: ``HPSError`` `.database` naming the table when `valueSize` differs from the table's;
    ///   `.invalidArgument` when `values` is smaller than `keys.count × valueSize` bytes.
    @discardableResult
    public func fetch(
        table tag: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeMutableRawBufferPointer, valueSize: Int,
        onMiss: (Int) -> Void
    ) throws -> Int {
        guard let t = table(tag) else {
            for i in 0..<keys.count { onMiss(i) }
            return 0
        }
        guard t.valueSize == valueSize else {
            throw HPSError(.database, subject: tag, "fetch with value size \(valueSize) bytes, but the table holds \(t.valueSize)-byte values")
        }
        guard values.count >= keys.count * valueSize else {
            throw HPSError(.invalidArgument, subject: tag, "values hold \(values.count) bytes, \(keys.count) keys × \(valueSize) bytes needed")
        }
        if keys.isEmpty { return 0 }
        let out = values.baseAddress!
        let policy = config.overflowPolicy
        let n = keys.count
        let partitions = t.partitions
        let count = partitions.count
        let chunks = Self.fetchChunks(keys: n, threshold: parallelThreshold)
        return scratch.withScratch(capacity: n, views: chunks * count) { s in
            let missList = s.misses, missCounts = s.missCounts
            let viewTable = s.views
            let parts = UInt64(count)
            let mask: UInt64? = count & (count - 1) == 0 ? parts - 1 : nil
            let mixed = s.mixed, partitionOf = s.partitionOf, candidates = s.candidates
            let base = keys.baseAddress!
            let now = policy == .evictRandom ? 0 : partitions[0].advanceClock()
            inChunks(n, chunks: chunks) { c, lo, hi in
                // Every partition's lock shared, then plain views of each for the loop.
                let views = viewTable + c * count
                for (pi, p) in partitions.enumerated() {
                    p.lock.lockShared()
                    (views + pi).initialize(to: p.view)
                }
                let pipeline = HashMapFetchPipeline(
                    keys: base, output: out, valueSize: valueSize, views: views, partitionCount: parts, partitionMask: mask,
                    mixed: mixed, partitionOf: partitionOf, candidates: candidates, policy: policy, now: now)
                missCounts[c] = pipeline.run(lo, hi, misses: missList + lo)
                for p in partitions { p.lock.unlock() }
            }
            var total = 0
            for c in 0..<chunks {
                let lo = n * c / chunks
                for j in lo..<(lo + missCounts[c]) { onMiss(Int(missList[j])) }
                total += missCounts[c]
            }
            return n - total
        }
    }

    /// Keys per chunk of a parallel fetch, at least: smaller chunks cost more in lock taking than they gain.
    static let minimumChunkKeys = 2048

    /// How many contiguous chunks a fetch of `n` keys is split into: one below `threshold` (or on one core),
    /// else several per core — idle threads claim chunks as they come, so a thread the scheduler holds back
    /// delays the fetch by one small chunk, not half the batch. At most ``BulkScratch/maxChunks``.
    static func fetchChunks(keys n: Int, threshold: Int) -> Int {
        let cores = min(SystemInfo.processorCount, 8)
        guard n >= threshold, cores > 1 else { return 1 }
        return max(2, min(n / minimumChunkKeys, 4 * cores, BulkScratch.maxChunks))
    }

    /// - Throws: never: the hash map removes from memory.
    @discardableResult
    public func evict(table tag: String) throws -> Int {
        let removed = tablesLock.withWriteLock { tables.removeValue(forKey: tag) }
        guard let removed else { return 0 }
        return removed.partitions.reduce(0) { sum, p in sum + p.lock.withReadLock { p.count } }
    }

    /// - Throws: never: the hash map removes from memory.
    @discardableResult
    public func evict(table tag: String, keys: UnsafeBufferPointer<Int64>) throws -> Int {
        guard let t = table(tag) else { return 0 }
        var removed = 0
        for key in keys {
            let mixed = hpsKeyMix(key)
            let p = t.partitions[Int(mixed % UInt64(t.partitions.count))]
            if p.lock.withWriteLock({ p.remove(key: key, mixed: mixed) }) { removed += 1 }
        }
        return removed
    }

    /// - Throws: never: the hash map answers from memory.
    public func findTables(model: String) throws -> [String] {
        let prefix = TableTag.modelPrefix(model)
        return tablesLock.withReadLock { tables.keys.filter { $0.hasPrefix(prefix) }.sorted() }
    }

    /// - Throws: whatever `body` throws (iteration stops there); a `maxChunk` below 1 counts as 1.
    public func forEachChunk(
        table tag: String, maxChunk: Int,
        _ body: (UnsafeBufferPointer<Int64>, UnsafeRawBufferPointer, Int) throws -> Void
    ) throws {
        guard let t = table(tag) else { return }
        let chunk = max(1, maxChunk)
        var keys = [Int64](repeating: 0, count: chunk)
        var values = [UInt8](repeating: 0, count: chunk * t.valueSize)
        for p in t.partitions {
            var position = 0
            while true {
                var n = 0
                let done: Bool = keys.withUnsafeMutableBufferPointer { k in
                    values.withUnsafeMutableBytes { v in
                        p.lock.withReadLock {
                            guard position < p.indexCapacity else { return true }
                            position = p.forEachSlot(from: position, limit: chunk) { key, slot in
                                k[n] = key
                                (v.baseAddress! + n * t.valueSize).copyMemory(from: p.value(slot), byteCount: t.valueSize)
                                n += 1
                            }
                            return false
                        }
                    }
                }
                if n > 0 {
                    try keys.withUnsafeBufferPointer { k in
                        try values.withUnsafeBytes { v in
                            try body(UnsafeBufferPointer(rebasing: k[0..<n]), UnsafeRawBufferPointer(rebasing: v[0..<(n * t.valueSize)]), t.valueSize)
                        }
                    }
                }
                if done || n == 0 { break }
            }
        }
    }

    // MARK: Memory

    /// Entries and bytes held by `table` (index, rows and free lists of every partition).
    public func memoryUsage(table tag: String) -> (entries: Int, bytes: Int) {
        guard let t = table(tag) else { return (0, 0) }
        var entries = 0
        var bytes = 0
        for p in t.partitions {
            p.lock.withReadLock {
                entries += p.count
                bytes += p.allocatedBytes
            }
        }
        return (entries, bytes)
    }

    // MARK: Helpers

    /// Groups input positions by partition (counting sort) and caches each key's mixed hash.
    private func group(_ keys: UnsafeBufferPointer<Int64>, partitions: Int, into s: BulkScratch) {
        let parts = UInt64(partitions)
        let mask: UInt64? = partitions & (partitions - 1) == 0 ? parts - 1 : nil
        let starts = s.starts, cursors = s.missCounts, mixed = s.mixed, partitionOf = s.partitionOf, order = s.order
        starts.update(repeating: 0, count: partitions + 1)
        for i in 0..<keys.count {
            let m = hpsKeyMix(keys[i])
            mixed[i] = m
            let pi = Int(truncatingIfNeeded: mask.map { m & $0 } ?? m % parts)
            partitionOf[i] = Int32(truncatingIfNeeded: pi)
            starts[pi + 1] += 1
        }
        for pi in 0..<partitions { starts[pi + 1] += starts[pi] }
        // Fill using the per-partition counters as cursors.
        cursors.update(from: starts, count: partitions)
        for i in 0..<keys.count {
            let pi = Int(partitionOf[i])
            order[cursors[pi]] = Int32(truncatingIfNeeded: i)
            cursors[pi] += 1
        }
    }

    /// Runs `body(chunk, lo, hi)` over `chunks` contiguous chunks of `0..<n` (inline when there is one; else
    /// the calling thread and the pool's threads claim chunks until none is left).
    private func inChunks(_ n: Int, chunks: Int, _ body: (Int, Int, Int) -> Void) {
        if chunks <= 1 {
            body(0, 0, n)
            return
        }
        withoutActuallyEscaping(body) { body in
            let task = UnsafeTransfer(body)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                task.value(c, n * c / chunks, n * (c + 1) / chunks)
            }
        }
    }

    /// Runs `body(partition)` for every partition: inline for small batches, else spread over cores.
    private func forEachPartition(count: Int, partitions: Int, _ body: (Int) -> Void) {
        let workers = min(partitions, SystemInfo.processorCount)
        if count < parallelThreshold || workers <= 1 {
            for pi in 0..<partitions { body(pi) }
            return
        }
        withoutActuallyEscaping(body) { body in
            let task = UnsafeTransfer(body)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                var pi = w
                while pi < partitions {
                    task.value(pi)
                    pi += workers
                }
            }
        }
    }
}
