import Synchronization

/// The buffers one lookup needs, sized once from `max_batch_size × maxnum_catfeature_query…` and the
/// widest table, and reused: a session keeps a pool of them (`num_of_worker_buffer_in_pool`), so lookups
/// allocate nothing.
final class LookupWorkspace: @unchecked Sendable {
    // @unchecked Sendable: held by one lookup at a time (taken from and returned to ``WorkspacePool``); the buffers'
    // sizes are immutable.
    let maxKeys: Int
    let maxDimension: Int
    /// Keys widened to Int64 (for int32 input) or normalized.
    let keys: UnsafeMutablePointer<Int64>
    let unique: UnsafeMutablePointer<Int64>
    /// Position of each input key in `unique`.
    let inverse: UnsafeMutablePointer<Int32>
    let uniqueVectors: UnsafeMutablePointer<Float>
    let missing: UnsafeMutablePointer<Int32>
    let missingKeys: UnsafeMutablePointer<Int64>
    let fetched: UnsafeMutablePointer<Float>
    /// Indices the volatile database missed (for the persistent database).
    let databaseMisses: UnsafeMutablePointer<Int>
    // Deduplication hash set: slot → index into `unique`, valid when `stamp[slot] == generation`.
    let dedupSlots: UnsafeMutablePointer<Int32>
    let dedupStamps: UnsafeMutablePointer<UInt32>
    let dedupMask: Int
    let dedupShift: UInt64
    var generation: UInt32 = 0
    /// What the call holding this workspace has answered so far, for its metrics.
    var tally = LookupTally()

    init(maxKeys: Int, maxDimension: Int) {
        self.maxKeys = max(1, maxKeys)
        self.maxDimension = max(1, maxDimension)
        let n = self.maxKeys
        keys = .allocate(capacity: n)
        unique = .allocate(capacity: n)
        inverse = .allocate(capacity: n)
        uniqueVectors = .allocate(capacity: n * self.maxDimension)
        missing = .allocate(capacity: n)
        missingKeys = .allocate(capacity: n)
        fetched = .allocate(capacity: n * self.maxDimension)
        databaseMisses = .allocate(capacity: n)
        var size = 16
        var log: UInt64 = 4
        while size < 2 * n { size *= 2; log += 1 }
        dedupSlots = .allocate(capacity: size)
        dedupStamps = .allocate(capacity: size)
        dedupStamps.initialize(repeating: 0, count: size)
        dedupMask = size - 1
        dedupShift = 64 - log
    }

    deinit {
        keys.deallocate()
        unique.deallocate()
        inverse.deallocate()
        uniqueVectors.deallocate()
        missing.deallocate()
        missingKeys.deallocate()
        fetched.deallocate()
        databaseMisses.deallocate()
        dedupSlots.deallocate()
        dedupStamps.deallocate()
    }

    /// Writes the distinct keys of `keys[0..<n]` to `unique` (first-seen order) and each input's position
    /// in it to `inverse`. - Returns: the number of distinct keys.
    func deduplicate(_ input: UnsafePointer<Int64>, count n: Int) -> Int {
        generation &+= 1
        if generation == 0 {
            dedupStamps.update(repeating: 0, count: dedupMask + 1)
            generation = 1
        }
        let gen = generation
        var u = 0
        for i in 0..<n {
            let key = input[i]
            var pos = Int(truncatingIfNeeded: (UInt64(bitPattern: key) &* 0x9E37_79B9_7F4A_7C15) >> dedupShift)
            while true {
                if dedupStamps[pos] != gen {
                    dedupStamps[pos] = gen
                    dedupSlots[pos] = Int32(truncatingIfNeeded: u)
                    unique[u] = key
                    inverse[i] = Int32(truncatingIfNeeded: u)
                    u += 1
                    break
                }
                let candidate = Int(dedupSlots[pos])
                if unique[candidate] == key {
                    inverse[i] = Int32(truncatingIfNeeded: candidate)
                    break
                }
                pos = (pos + 1) & dedupMask
            }
        }
        return u
    }
}

/// A free list of workspaces. Acquiring from an empty pool makes a new workspace (and the pool keeps
/// it), instead of spinning as HPS does when "memory pool is empty".
final class WorkspacePool: Sendable {
    private let free: FreeList<LookupWorkspace>
    private let maxKeys: Int
    private let maxDimension: Int
    private let made: Atomic<Int>
    /// Workspaces made so far (those made at the start included).
    var created: Int { made.load(ordering: .relaxed) }

    init(count: Int, maxKeys: Int, maxDimension: Int) {
        self.maxKeys = maxKeys
        self.maxDimension = maxDimension
        let first = (0..<max(1, count)).map { _ in LookupWorkspace(maxKeys: maxKeys, maxDimension: maxDimension) }
        free = FreeList(first)
        made = Atomic(first.count)
    }

    func acquire() -> LookupWorkspace {
        if let ws = free.take() { return ws }
        made.add(1, ordering: .relaxed)
        return LookupWorkspace(maxKeys: maxKeys, maxDimension: maxDimension)
    }

    func release(_ ws: LookupWorkspace) { free.giveBack(ws) }
}
