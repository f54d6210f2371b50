/// A fully associative LRU cache of keys (no vectors) for hit-rate simulations: one recency list over all
/// slots, an open-addressing index (linear probing, backward-shift deletion) from key to slot.
struct ExactLRU {
    let capacity: Int
    private var keys: [Int64]
    private var prev: [Int32]
    private var next: [Int32]
    private var index: [Int32]
    private let mask: Int
    private var head: Int32 = -1  // most recent
    private var tail: Int32 = -1  // least recent
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        keys = [Int64](repeating: 0, count: self.capacity)
        prev = [Int32](repeating: -1, count: self.capacity)
        next = [Int32](repeating: -1, count: self.capacity)
        var size = 16
        while size < 2 * self.capacity { size *= 2 }
        index = [Int32](repeating: -1, count: size)
        mask = size - 1
    }

    @inline(__always)
    private func home(_ key: Int64) -> Int { Int(truncatingIfNeeded: (UInt64(bitPattern: key) &* 0x9E37_79B9_7F4A_7C15) >> 29) & mask }

    private func find(_ key: Int64) -> (position: Int, slot: Int32) {
        var p = home(key)
        while true {
            let s = index[p]
            if s < 0 || keys[Int(s)] == key { return (p, s) }
            p = (p + 1) & mask
        }
    }

    private mutating func unlink(_ s: Int32) {
        let p = prev[Int(s)], n = next[Int(s)]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { prev[Int(n)] = p } else { tail = p }
    }

    private mutating func pushFront(_ s: Int32) {
        prev[Int(s)] = -1
        next[Int(s)] = head
        if head >= 0 { prev[Int(head)] = s }
        head = s
        if tail < 0 { tail = s }
    }

    private mutating func removeFromIndex(at position: Int) {
        var hole = position
        var p = (position + 1) & mask
        while index[p] >= 0 {
            let h = home(keys[Int(index[p])])
            // Move p's entry into the hole if its home is not cyclically in (hole, p].
            if (p &- h) & mask >= (p &- hole) & mask {
                index[hole] = index[p]
                hole = p
            }
            p = (p + 1) & mask
        }
        index[hole] = -1
    }

    /// Whether `key` is cached; a hit becomes the most recent.
    mutating func touch(_ key: Int64) -> Bool {
        let (_, s) = find(key)
        guard s >= 0 else { return false }
        unlink(s)
        pushFront(s)
        return true
    }

    /// Inserts `key` (not cached) as the most recent, evicting the least recent when full.
    mutating func insert(_ key: Int64) {
        var s: Int32
        if count < capacity {
            s = Int32(count)
            count += 1
        } else {
            s = tail
            unlink(s)
            removeFromIndex(at: find(keys[Int(s)]).position)
        }
        keys[Int(s)] = key
        index[find(key).position] = s
        pushFront(s)
    }
}
