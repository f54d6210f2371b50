/// Reusable scratch buffers for bulk database calls, so the hot path allocates only when more calls run
/// at once than ever before (then the pool keeps the extra buffers).
final class BulkScratch: @unchecked Sendable {
    // @unchecked Sendable: held by one bulk call at a time (taken from and returned to ``ScratchPool``); within a
    // call each worker writes only the slots of its own partitions.
    /// Partition of each key (by input position).
    var partitionOf: UnsafeMutablePointer<Int32>
    /// Mixed hash of each key (by input position).
    var mixed: UnsafeMutablePointer<UInt64>
    /// Input positions grouped by partition.
    var order: UnsafeMutablePointer<Int32>
    /// Misses, compacted within each partition's range of `order`.
    var misses: UnsafeMutablePointer<Int32>
    /// Per key, what the fetch pipeline learnt ahead of the lookup (an index entry address, then a row).
    var candidates: UnsafeMutablePointer<UInt>
    /// Start of each partition's range in `order` (partitions + 1 entries).
    let starts: UnsafeMutablePointer<Int>
    /// Per-partition results (inserts) or per-chunk results (misses of a fetch chunk), written by the thread
    /// that handles the partition or chunk; `max(partitions, maxChunks)` entries.
    let missCounts: UnsafeMutablePointer<Int>
    /// A second per-partition result slot.
    let extraCounts: UnsafeMutablePointer<Int>
    let partitions: Int
    /// The most chunks one bulk call splits its keys into.
    static let maxChunks = 64
    /// Per-chunk partition views for fetches (chunk × partitions).
    private(set) var views: UnsafeMutablePointer<HashMapPartition.View>
    private(set) var viewCapacity: Int
    private(set) var capacity: Int

    init(capacity: Int, partitions: Int) {
        self.capacity = max(capacity, 1)
        partitionOf = .allocate(capacity: self.capacity)
        mixed = .allocate(capacity: self.capacity)
        order = .allocate(capacity: self.capacity)
        misses = .allocate(capacity: self.capacity)
        candidates = .allocate(capacity: self.capacity)
        self.partitions = partitions
        viewCapacity = max(1, partitions)
        views = .allocate(capacity: viewCapacity)
        starts = .allocate(capacity: partitions + 1)
        starts.initialize(repeating: 0, count: partitions + 1)
        missCounts = .allocate(capacity: max(partitions, Self.maxChunks))
        missCounts.initialize(repeating: 0, count: max(partitions, Self.maxChunks))
        extraCounts = .allocate(capacity: partitions)
        extraCounts.initialize(repeating: 0, count: partitions)
    }

    func reserve(_ n: Int, views needed: Int = 0) {
        if needed > viewCapacity {
            views.deallocate()
            viewCapacity = needed
            views = .allocate(capacity: needed)
        }
        guard n > capacity else { return }
        deallocate()
        capacity = max(n, capacity * 2)
        partitionOf = .allocate(capacity: capacity)
        mixed = .allocate(capacity: capacity)
        order = .allocate(capacity: capacity)
        misses = .allocate(capacity: capacity)
        candidates = .allocate(capacity: capacity)
    }

    private func deallocate() {
        partitionOf.deallocate()
        mixed.deallocate()
        order.deallocate()
        misses.deallocate()
        candidates.deallocate()
    }

    deinit {
        deallocate()
        starts.deallocate()
        missCounts.deallocate()
        extraCounts.deallocate()
        views.deallocate()
    }
}

/// A free list of ``BulkScratch`` buffers.
final class ScratchPool: Sendable {
    private let free = FreeList<BulkScratch>()
    private let partitions: Int

    init(partitions: Int) { self.partitions = partitions }

    func withScratch<T>(capacity: Int, views: Int = 0, _ body: (BulkScratch) throws -> T) rethrows -> T {
        try free.with(orMake: { BulkScratch(capacity: capacity, partitions: partitions) }) { scratch in
            scratch.reserve(capacity, views: views)
            return try body(scratch)
        }
    }
}

/// Carries a value across a concurrency boundary that the compiler cannot check, where the caller
/// guarantees the accesses do not race (e.g. each worker touches only its own partitions).
package struct UnsafeTransfer<Value>: @unchecked Sendable {
    // @unchecked Sendable: by contract: the caller guarantees the accesses do not race (see above); use it only where
    // that holds.
    package let value: Value
    package init(_ value: Value) { self.value = value }
}
