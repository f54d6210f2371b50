/// Byte counts of the host-memory structures for a table, computed from the same layout rules the
/// structures allocate by (each formula sits beside the type whose allocations it mirrors), so `hps plan`
/// can size a deployment before anything is loaded.

extension HashMapDatabase {
    /// Bytes of one table of `rows` rows of `valueSize` bytes in the hash map under `config`.
    ///
    /// From ``HashMapPartition`` and ``RowPages``: rows spread evenly over `num_partitions`; a partition holds
    /// at most `overflow_margin` of them and only the `initial_cache_rate` share is loaded; its index has 8-byte
    /// entries, starts at 16 and doubles whenever it would be more than 3/4 full; its rows of
    /// `stride = 8 [+ 4 counter] + valueSize` bytes (rounded to 4) live in pages of 2^8, 2^8, 2^9, … rows up to
    /// `allocation_rate` bytes each.
    public static func estimatedBytes(rows: Int, valueSize: Int, config: VolatileDatabaseConfig) -> Int {
        let partitions = max(1, config.numPartitions)
        let loaded = Int((config.initialCacheRate * Double(max(0, rows))).rounded(.up))
        let perPartition = min((loaded + partitions - 1) / partitions, config.overflowMargin)
        let counters = config.overflowPolicy != .evictRandom
        let stride = ((counters ? 12 : 8) + valueSize + 3) & ~3
        var index = 16
        while perPartition * 4 > index * 3 { index *= 2 }
        let maxRows = max(1, config.allocationRate / max(1, stride))
        let maxShift = Int.bitWidth - 1 - maxRows.leadingZeroBitCount
        let baseShift = min(maxShift, 8)
        var pageRows = 0, page = 0
        while pageRows < perPartition {
            pageRows += page == 0 ? 1 << baseShift : 1 << min(maxShift, baseShift + page - 1)
            page += 1
        }
        return partitions * (index * 8 + pageRows * stride)
    }
}

extension DynamicCache {
    /// Host bytes of a CPU dynamic cache of at least `capacity` slots (whole sets of 64): per slot a tag byte,
    /// an 8-byte key, an 8-byte LRU stamp and the vector; per set a 4-byte spin lock; with admission the
    /// frequency sketch (16 bytes per slot, rounded up to a power of two).
    public static func estimatedBytes(capacity: Int, dimension: Int, admission: CacheAdmission = .none) -> Int {
        let sets = max(1, (max(capacity, slotsPerSet) + slotsPerSet - 1) / slotsPerSet)
        let sketch = admission == .tinyLFU ? FrequencySketch.estimatedBytes(slots: sets * slotsPerSet) : 0
        return sets * slotsPerSet * (1 + 8 + 8 + dimension * 4) + sets * 4 + sketch
    }
}

extension StaticCache {
    /// Host bytes of a CPU static table of `capacity` rows: the rows, their keys and an index of 8-byte
    /// entries at most 3/4 full (a power of two, at least 16).
    public static func estimatedBytes(capacity: Int, dimension: Int) -> Int {
        let rows = max(1, capacity)
        var index = 16
        while index * 3 < rows * 4 { index *= 2 }
        return index * 8 + rows * 8 + rows * dimension * 4
    }
}

extension ModelConfig {
    /// Host bytes of one lookup session's workspaces (``LookupWorkspace``, `num_of_worker_buffer_in_pool` of
    /// them): per key of the longest lookup the keys, distinct keys, inverse, misses, missed keys, database
    /// scratch and two vectors of the widest table, plus the dedup table (8 bytes per slot, a power of two ≥ 2 ×
    /// keys).
    public var estimatedSessionBytes: Int {
        let keys = max(1, (0..<tableCount).map { maxQueryLength(table: $0) }.max() ?? 1)
        let dim = max(1, embeddingVectorSizes.max() ?? 1)
        var dedup = 16
        while dedup < 2 * keys { dedup *= 2 }
        let one = keys * (8 + 8 + 4 + 4 + 8 + 8 + 2 * dim * 4) + dedup * 8
        return max(1, workerBuffers) * one
    }
}
