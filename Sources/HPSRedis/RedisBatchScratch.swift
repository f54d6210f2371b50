import HPS

/// Reusable buffers for one bulk call: input positions grouped by partition, and per-partition results.
/// A call takes one from ``RedisScratchPool`` and returns it, so steady-state calls do not allocate.
final class RedisBatchScratch: @unchecked Sendable {
    // @unchecked Sendable: held by one bulk call at a time (taken from and returned to ``RedisScratchPool``); within
    // a call each worker writes only the slots of its own partitions.
    /// Input positions grouped by partition.
    private(set) var order: UnsafeMutablePointer<Int32>
    /// Partition of each input position.
    private(set) var partitionOf: UnsafeMutablePointer<Int32>
    /// Misses (input positions), compacted at the start of each partition's range of `order`.
    private(set) var misses: UnsafeMutablePointer<Int32>
    /// Start of each partition's range in `order` (`partitions + 1` entries).
    let starts: UnsafeMutablePointer<Int>
    /// Per-partition results, written only by the thread that handles the partition.
    let counts: UnsafeMutablePointer<Int>
    let failed: UnsafeMutablePointer<Int>
    let extra: UnsafeMutablePointer<Int>
    /// The failure that made keys of a partition fail, if any.
    let failures: UnsafeMutablePointer<RedisFailure?>
    let partitions: Int
    private(set) var capacity: Int

    init(capacity: Int, partitions: Int) {
        self.capacity = max(1, capacity)
        self.partitions = partitions
        order = .allocate(capacity: self.capacity)
        partitionOf = .allocate(capacity: self.capacity)
        misses = .allocate(capacity: self.capacity)
        starts = .allocate(capacity: partitions + 1)
        starts.initialize(repeating: 0, count: partitions + 1)
        counts = .allocate(capacity: partitions)
        counts.initialize(repeating: 0, count: partitions)
        failed = .allocate(capacity: partitions)
        failed.initialize(repeating: 0, count: partitions)
        extra = .allocate(capacity: partitions)
        extra.initialize(repeating: 0, count: partitions)
        failures = .allocate(capacity: partitions)
        failures.initialize(repeating: nil, count: partitions)
    }

    deinit {
        order.deallocate()
        partitionOf.deallocate()
        misses.deallocate()
        starts.deallocate()
        counts.deallocate()
        failed.deallocate()
        extra.deallocate()
        failures.deinitialize(count: partitions)
        failures.deallocate()
    }

    func reserve(_ n: Int) {
        guard n > capacity else { return }
        order.deallocate()
        partitionOf.deallocate()
        misses.deallocate()
        capacity = max(n, capacity * 2)
        order = .allocate(capacity: capacity)
        partitionOf = .allocate(capacity: capacity)
        misses = .allocate(capacity: capacity)
    }

    /// Groups the positions of `keys` by HPS partition (`hpsKeyMix(key) % partitions`, a counting sort)
    /// and clears the per-partition results.
    func group(_ keys: UnsafeBufferPointer<Int64>) {
        reserve(keys.count)
        let parts = UInt64(partitions)
        starts.update(repeating: 0, count: partitions + 1)
        for i in 0..<keys.count {
            let p = Int(truncatingIfNeeded: hpsKeyMix(keys[i]) % parts)
            partitionOf[i] = Int32(truncatingIfNeeded: p)
            starts[p + 1] += 1
        }
        for p in 0..<partitions { starts[p + 1] += starts[p] }
        counts.update(from: starts, count: partitions)  // cursors
        for i in 0..<keys.count {
            let p = Int(partitionOf[i])
            order[counts[p]] = Int32(truncatingIfNeeded: i)
            counts[p] += 1
        }
        clearResults()
    }

    func clearResults() {
        counts.update(repeating: 0, count: partitions)
        failed.update(repeating: 0, count: partitions)
        extra.update(repeating: 0, count: partitions)
        for p in 0..<partitions { failures[p] = nil }
    }

    /// Keys of partition `p`: `order[starts[p] ..< starts[p + 1]]`.
    @inline(__always) func range(_ p: Int) -> Range<Int> { starts[p]..<starts[p + 1] }
}

/// A free list of ``RedisBatchScratch``.
final class RedisScratchPool: Sendable {
    private let free = FreeList<RedisBatchScratch>()
    private let partitions: Int

    init(partitions: Int) { self.partitions = partitions }

    func with<T>(capacity: Int, _ body: (RedisBatchScratch) throws -> T) rethrows -> T {
        try free.with(orMake: { RedisBatchScratch(capacity: capacity, partitions: partitions) }) { scratch in
            scratch.reserve(capacity)
            return try body(scratch)
        }
    }
}
