import CHPSSupport

/// One partition of a hash-map table: an open-addressing index of 16-byte entries `key | tag` pointing into
/// rows that hold the value, followed by a 4-byte LRU/LFU counter when the overflow policy needs one.
///
/// Index entry: the key, and a tag whose high 32 bits are the key's hash fingerprint and low 32 bits its
/// slot + 1 (tag 0 = empty). The position of an entry is derived from its fingerprint, so the index grows
/// without rehashing keys. A probe compares keys in the index itself, so a hit reads one index line and the
/// value's lines — one line for a 64-byte value, whose rows start on cache-line boundaries — and a miss
/// reads no row. Linear probing, backward-shift deletion, at most 3/4 full.
///
/// Memory per entry: `stride` (value bytes [+ 4], rounded to 4) + 16 / load factor. The index and row pages
/// of 2 MiB or more ask for huge pages (``LargeAllocation``), so random probes rarely miss the TLB.
///
/// Hot loops take a ``View`` (plain pointers and constants) once per batch under the lock, so they run
/// without class-property access overhead.
///
/// Not thread-safe by itself: readers (find, views, touch) hold ``lock`` shared; anything that changes the
/// index or rows holds it exclusively. Access counters and the clock are updated with relaxed atomics, so
/// concurrent readers may record accesses.
final class HashMapPartition: @unchecked Sendable {
    // @unchecked Sendable: callers follow the locking contract above: `lock` shared to read, exclusive to change;
    // counters and the clock are relaxed atomics.
    let lock = ReadWriteLock()
    let valueSize: Int
    private var pages: RowPages
    private var index: UnsafeMutablePointer<Entry>
    private var indexShift: Int  // 64 - log2(index capacity)
    private var indexMask: Int
    private var freeSlots: [UInt32] = []
    private var nextSlot = 0
    private(set) var count = 0
    /// Logical clock for LRU: bumped once per fetch or insert batch (atomically: readers bump it too).
    private let clock: UnsafeMutablePointer<UInt32> = {
        let p = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        p.initialize(to: 1)
        return p
    }()

    /// One index entry: a key and where its row is.
    struct Entry {
        var key: Int64
        /// Fingerprint << 32 | (slot + 1); 0 marks an empty entry (whose key means nothing).
        var tag: UInt64

        static let empty = Entry(key: 0, tag: 0)
        var slot: Int { Int(truncatingIfNeeded: tag & 0xFFFF_FFFF) - 1 }
        var fingerprint: UInt64 { tag >> 32 }
    }

    /// The most entries one partition holds: slots are 32-bit and the index (at most 2^32 entries) stays at
    /// most 3/4 full. ``HashMapDatabase`` refuses new keys beyond it with an error.
    static let maxEntries = 3 << 30
    /// Where the LRU/LFU counter sits in a row (after the value, 4-byte aligned), when there is one.
    let counterOffset: Int
    let hasCounter: Bool

    init(valueSize: Int, allocationRate: Int, counters: Bool) {
        self.valueSize = valueSize
        hasCounter = counters
        counterOffset = (valueSize + 3) & ~3
        pages = RowPages(stride: counterOffset + (counters ? 4 : 0), allocationRate: allocationRate)
        let capacity = 16
        index = LargeAllocation.allocate(Entry.self, count: capacity)
        index.initialize(repeating: .empty, count: capacity)
        indexShift = 64 - 4
        indexMask = capacity - 1
    }

    deinit {
        LargeAllocation.deallocate(index)
        pages.destroy()
        clock.deallocate()
    }

    /// Plain pointers and constants for a hot loop; valid while the lock is held and nothing is inserted.
    struct View {
        let index: UnsafeMutablePointer<Entry>
        let mask: Int
        let shift: UInt64
        let rows: RowPages.Layout
        let counterOffset: Int

        @inline(__always)
        func start(_ mixed: UInt64) -> UnsafeMutablePointer<Entry> {
            index + Int(truncatingIfNeeded: (HashMapPartition.fingerprint(mixed) << 32) >> shift)
        }

        /// The row (value first) holding `key`, or nil.
        @inline(__always)
        func find(_ key: Int64, _ mixed: UInt64) -> UnsafeMutableRawPointer? {
            let slot = HashMapPartition.probe(index, mask: mask, from: start(mixed) - index, key: key).slot
            return slot >= 0 ? rows.row(slot) : nil
        }

        /// What the probe run from `key`'s home entry `entry` (from ``start(_:)``) says within `window` entries:
        /// the row of `key` (tagged with bit 0), ``definiteMiss`` when an empty entry ends the run first (the
        /// key is absent), ``unknown`` when `window` entries were walked without either.
        @inline(__always)
        func candidate(from entry: UnsafeMutablePointer<Entry>, _ key: Int64, window: Int) -> UInt {
            var pos = entry - index
            for _ in 0..<window {
                let e = index[pos]
                if e.tag == 0 { return View.definiteMiss }
                if e.key == key { return UInt(bitPattern: rows.row(e.slot)) | 1 }
                pos = (pos + 1) & mask
            }
            return View.unknown
        }

        /// ``candidate(from:_:window:)`` results that are not rows (rows are tagged with bit 0).
        static let unknown: UInt = 0
        static let definiteMiss: UInt = 2
    }

    var view: View {
        View(index: index, mask: indexMask, shift: UInt64(indexShift), rows: pages.layout, counterOffset: counterOffset)
    }

    var indexCapacity: Int { indexMask + 1 }
    var stride: Int { pages.stride }

    /// Bytes held by this partition (index, rows, free list).
    var allocatedBytes: Int { indexCapacity * MemoryLayout<Entry>.stride + pages.allocatedBytes + freeSlots.capacity * 4 }

    // MARK: Hashing

    @inline(__always)
    static func fingerprint(_ mixed: UInt64) -> UInt64 {
        // Independent of the partition choice (which uses mixed % partitions): multiply, take high bits.
        (mixed &* 0x9E37_79B9_7F4A_7C15) >> 32
    }

    @inline(__always)
    private func position(ofFingerprint f: UInt64) -> Int { Int(truncatingIfNeeded: (f << 32) >> UInt64(indexShift)) }

    @inline(__always)
    func row(_ slot: Int) -> UnsafeMutableRawPointer { pages.row(slot) }

    /// Probes `index` (of `mask + 1` entries) for `key` from position `start`: its slot and index position when
    /// present, else slot -1 and the empty position where it would go. The one probe loop behind find, upsert,
    /// the batch insert and remove, and ``View/find(_:_:)``.
    @inline(__always)
    static func probe(_ index: UnsafeMutablePointer<Entry>, mask: Int, from start: Int, key: Int64) -> (position: Int, slot: Int) {
        var pos = start
        while true {
            let e = index[pos]
            if e.tag == 0 { return (pos, -1) }
            if e.key == key { return (pos, e.slot) }
            pos = (pos + 1) & mask
        }
    }

    @inline(__always)
    private func locate(key: Int64, fingerprint f: UInt64) -> (position: Int, slot: Int) {
        Self.probe(index, mask: indexMask, from: position(ofFingerprint: f), key: key)
    }

    /// The slot of `key`, or -1.
    @inline(__always)
    func find(key: Int64, mixed: UInt64) -> Int { locate(key: key, fingerprint: Self.fingerprint(mixed)).slot }

    /// The first value byte of `slot` (values start their rows).
    @inline(__always)
    func value(_ slot: Int) -> UnsafeMutableRawPointer { pages.row(slot) }

    /// Advances the LRU clock; call once per batch. Safe under a shared lock.
    @inline(__always)
    func advanceClock() -> UInt32 {
        let now = hps_atomic_add_u32(clock, 1)
        return now == 0 ? hps_atomic_add_u32(clock, 1) : now
    }

    /// Records an access to `slot` for the overflow policy.
    @inline(__always)
    func touch(_ slot: Int, policy: OverflowPolicy, now: UInt32) {
        Self.touch(counter: pages.row(slot) + counterOffset, policy: policy, now: now)
    }

    /// Records an access to a row's counter at `counter` (LFU: count, LRU: stamp); a no-op for `evict_random`.
    @inline(__always)
    static func touch(counter raw: UnsafeMutableRawPointer, policy: OverflowPolicy, now: UInt32) {
        let counter = raw.assumingMemoryBound(to: UInt32.self)
        switch policy {
        case .evictLeastUsed:
            if hps_atomic_load_u32(counter) != .max { _ = hps_atomic_add_u32(counter, 1) }
        case .evictOldest:
            hps_atomic_store_u32(counter, now)
        case .evictRandom:
            break
        }
    }

    /// Prefetches the first index entry of `mixed` (a hint for a coming ``upsert(key:mixed:value:policy:now:)``).
    @inline(__always)
    func prefetchIndex(mixed: UInt64) {
        hps_prefetch(index + position(ofFingerprint: Self.fingerprint(mixed)))
    }

    /// Grows the index now so that `entries` entries fit without growing again (a bulk load sizes it once
    /// instead of rehashing at every doubling).
    func reserve(entries: Int) {
        var capacity = indexCapacity
        while entries * 4 > capacity * 3 { capacity *= 2 }
        if capacity > indexCapacity { grow(to: capacity) }
    }

    /// Inserts or overwrites. - Returns: true when the key was new.
    @discardableResult
    func upsert(key: Int64, mixed: UInt64, value: UnsafeRawPointer, policy: OverflowPolicy, now: UInt32) -> Bool {
        let f = Self.fingerprint(mixed)
        let (pos, existing) = locate(key: key, fingerprint: f)
        if existing >= 0 {
            pages.row(existing).copyMemory(from: value, byteCount: valueSize)
            if hasCounter { touch(existing, policy: policy, now: now) }
            return false
        }
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = Int(free)
        } else {
            slot = nextSlot
            nextSlot += 1
            pages.ensure(slot: slot)
        }
        let row = pages.row(slot)
        row.copyMemory(from: value, byteCount: valueSize)
        if hasCounter { (row + counterOffset).storeBytes(of: policy == .evictOldest ? now : 1, as: UInt32.self) }
        index[pos] = Entry(key: key, tag: (f << 32) | UInt64(slot + 1))
        count += 1
        if count * 4 > indexCapacity * 3 { grow() }
        return true
    }

    /// Inserts or overwrites a batch as ``upsert(key:mixed:value:policy:now:)`` would key by key, in one loop
    /// over plain local copies of the index and page table: `order[range]` names positions `i` into `keys`,
    /// `mixed` (their ``hpsKeyMix(_:)``) and `values` (row `i` at `values + i × valueSize`). The index entries of
    /// keys `ahead` places on are prefetched.
    ///
    /// Taken only when the whole batch fits as it stands: no freed slot waits for reuse, and even if every key
    /// were new the partition would stay within `margin` entries (no eviction), ``maxEntries`` and its index
    /// capacity (no growth). Otherwise nothing is done and the caller goes key by key.
    /// - Returns: how many keys were new, or nil when the batch does not qualify.
    func upsertBatch(
        keys: UnsafePointer<Int64>, mixed: UnsafePointer<UInt64>, order: UnsafePointer<Int32>, range: Range<Int>,
        values: UnsafeRawPointer, policy: OverflowPolicy, now: UInt32, margin: Int, ahead: Int
    ) -> Int? {
        let batch = range.count
        guard freeSlots.isEmpty, batch <= min(margin, Self.maxEntries) - count, (count + batch) * 4 <= indexCapacity * 3 else { return nil }
        let index = self.index, mask = indexMask, shift = UInt64(indexShift)
        let counterOffset = self.counterOffset, valueSize = self.valueSize, hasCounter = self.hasCounter
        var rows = pages.layout
        var rowCapacity = pages.capacity
        var next = nextSlot
        var inserted = 0
        for j in range.lowerBound..<min(range.upperBound, range.lowerBound + ahead) {
            hps_prefetch(index + Int(truncatingIfNeeded: (Self.fingerprint(mixed[Int(order[j])]) << 32) >> shift))
        }
        for j in range {
            if j + ahead < range.upperBound {
                hps_prefetch(index + Int(truncatingIfNeeded: (Self.fingerprint(mixed[Int(order[j + ahead])]) << 32) >> shift))
            }
            let i = Int(order[j])
            let key = keys[i]
            let f = Self.fingerprint(mixed[i])
            let value = values + i * valueSize
            let (pos, existing) = Self.probe(index, mask: mask, from: Int(truncatingIfNeeded: (f << 32) >> shift), key: key)
            if existing >= 0 {
                let row = rows.row(existing)
                row.copyMemory(from: value, byteCount: valueSize)
                if hasCounter { Self.touch(counter: row + counterOffset, policy: policy, now: now) }
                continue
            }
            let slot = next
            next += 1
            if slot >= rowCapacity {
                pages.ensure(slot: slot)
                rows = pages.layout
                rowCapacity = pages.capacity
            }
            let row = rows.row(slot)
            row.copyMemory(from: value, byteCount: valueSize)
            if hasCounter { (row + counterOffset).storeBytes(of: policy == .evictOldest ? now : 1, as: UInt32.self) }
            index[pos] = Entry(key: key, tag: (f << 32) | UInt64(slot + 1))
            inserted += 1
        }
        nextSlot = next
        count += inserted
        return inserted
    }

    /// Removes `key`. - Returns: true when it was present.
    @discardableResult
    func remove(key: Int64, mixed: UInt64) -> Bool {
        let (pos, slot) = locate(key: key, fingerprint: Self.fingerprint(mixed))
        guard slot >= 0 else { return false }
        removeEntry(at: pos)
        return true
    }

    /// Removes the entry at index position `pos` and shifts later entries of its cluster back.
    private func removeEntry(at start: Int) {
        freeSlots.append(UInt32(index[start].slot))
        count -= 1
        var hole = start
        var pos = (start + 1) & indexMask
        while true {
            let e = index[pos]
            if e.tag == 0 { break }
            let home = position(ofFingerprint: e.fingerprint)
            // Move e into the hole unless its home lies cyclically in (hole, pos].
            let distanceHomeToPos = (pos - home) & indexMask
            let distanceHoleToPos = (pos - hole) & indexMask
            if distanceHomeToPos >= distanceHoleToPos {
                index[hole] = e
                hole = pos
            }
            pos = (pos + 1) & indexMask
        }
        index[hole] = .empty
        if count == 0 {
            freeSlots.removeAll(keepingCapacity: true)
            nextSlot = 0
        }
    }

    /// Rehashes into an index of `newCapacity` entries (a power of two, larger than now; twice by default).
    private func grow(to newCapacity: Int? = nil) {
        let oldCapacity = indexCapacity
        let old = index
        let newCapacity = newCapacity ?? oldCapacity * 2
        index = LargeAllocation.allocate(Entry.self, count: newCapacity)
        index.initialize(repeating: .empty, count: newCapacity)
        indexShift = newCapacity.leadingZeroBitCount + 1  // 64 - log2(newCapacity)
        indexMask = newCapacity - 1
        for i in 0..<oldCapacity {
            let e = old[i]
            if e.tag == 0 { continue }
            var pos = position(ofFingerprint: e.fingerprint)
            while index[pos].tag != 0 { pos = (pos + 1) & indexMask }
            index[pos] = e
        }
        LargeAllocation.deallocate(old)
    }

    /// Drops every entry and frees the rows.
    func removeAll() {
        LargeAllocation.deallocate(index)
        pages.deallocateAll()
        freeSlots = []
        nextSlot = 0
        count = 0
        index = LargeAllocation.allocate(Entry.self, count: 16)
        index.initialize(repeating: .empty, count: 16)
        indexShift = 64 - 4
        indexMask = 15
    }

    /// Calls `body(key, slot)` for every live entry, in index order, starting at index position `from`;
    /// stops after `limit` entries. - Returns: the index position to continue from (indexCapacity at end).
    func forEachSlot(from: Int, limit: Int, _ body: (Int64, Int) -> Void) -> Int {
        var pos = from
        var n = 0
        while pos < indexCapacity && n < limit {
            let e = index[pos]
            if e.tag != 0 {
                body(e.key, e.slot)
                n += 1
            }
            pos += 1
        }
        return pos
    }

    /// Evicts entries until at most `target` remain, choosing victims by `policy`.
    /// - Returns: how many were evicted.
    func resolveOverflow(target: Int, policy: OverflowPolicy, random: inout SplitMix64) -> Int {
        let excess = count - max(0, target)
        guard excess > 0 else { return 0 }
        var victims: [Int64] = []
        victims.reserveCapacity(excess)
        switch policy {
        case .evictRandom:
            var keys: [Int64] = []
            keys.reserveCapacity(count)
            _ = forEachSlot(from: 0, limit: .max) { key, _ in keys.append(key) }
            for i in 0..<excess {
                let j = i + Int(random.next() % UInt64(keys.count - i))
                keys.swapAt(i, j)
                victims.append(keys[i])
            }
        case .evictLeastUsed, .evictOldest:
            var entries: [(counter: UInt32, key: Int64)] = []
            entries.reserveCapacity(count)
            let now = hps_atomic_load_u32(clock)
            _ = forEachSlot(from: 0, limit: .max) { key, slot in
                var c = (pages.row(slot) + counterOffset).loadUnaligned(as: UInt32.self)
                // LRU ticks wrap: measure age relative to now.
                if policy == .evictOldest { c = ~(now &- c) }
                entries.append((c, key))
            }
            entries.sort { $0.counter < $1.counter }
            for i in 0..<excess { victims.append(entries[i].key) }
            if policy == .evictLeastUsed {
                // Halve survivors' counts so old popularity fades (HPS meant to normalise; this one works).
                for i in excess..<entries.count {
                    let slot = find(key: entries[i].key, mixed: hpsKeyMix(entries[i].key))
                    let counter = pages.row(slot) + counterOffset
                    counter.storeBytes(of: max(1, counter.loadUnaligned(as: UInt32.self) / 2), as: UInt32.self)
                }
            }
        }
        for key in victims { remove(key: key, mixed: hpsKeyMix(key)) }
        return victims.count
    }
}

/// A small, fast pseudo-random generator (SplitMix64) for eviction choices and synthetic data.
package struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    package init(seed: UInt64) { state = seed }
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
