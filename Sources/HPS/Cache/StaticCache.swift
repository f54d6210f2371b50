import CHPSSupport

/// The static device cache on the CPU: the whole table in an open-addressing index over a contiguous
/// value array. Read-mostly: queries take a shared lock; ``update(keys:values:)`` and ``replace(keys:values:)``
/// take it exclusively. Misses are final (the default value), as in HPS's static table.
///
/// Also serves `uvm` on the CPU, where device and host memory are the same memory.
public final class StaticCache: EmbeddingCache, @unchecked Sendable {
    // @unchecked Sendable: `lock` guards the index, rows and `rowCount`: queries hold it shared, inserts and resizes
    // exclusively.
    public let dimension: Int
    public let capacity: Int
    public var holdsWholeTable: Bool { true }

    private let lock = ReadWriteLock()
    private var index: UnsafeMutablePointer<UInt64>  // fingerprint << 32 | row + 1
    private var indexMask: Int
    private var indexShift: Int
    private var rowKeys: UnsafeMutablePointer<Int64>
    private var rows: UnsafeMutablePointer<Float>
    private var rowCount = 0

    /// An empty static table for up to `capacity` rows.
    public init(capacity: Int, dimension: Int) {
        self.dimension = dimension
        self.capacity = max(1, capacity)
        var size = 16
        var log = 4
        while size * 3 < self.capacity * 4 { size *= 2; log += 1 }
        index = .allocate(capacity: size)
        index.initialize(repeating: 0, count: size)
        indexMask = size - 1
        indexShift = 64 - log
        rowKeys = .allocate(capacity: self.capacity)
        rows = .allocate(capacity: self.capacity * dimension)
    }

    deinit {
        index.deallocate()
        rowKeys.deallocate()
        rows.deallocate()
    }

    @inline(__always)
    private func fingerprint(_ key: Int64) -> UInt64 { (hpsKeyMix(key) &* 0x9E37_79B9_7F4A_7C15) >> 32 }

    @inline(__always)
    private func position(_ f: UInt64) -> Int { Int(truncatingIfNeeded: (f << 32) >> UInt64(indexShift)) }

    @inline(__always)
    private func find(_ key: Int64) -> Int {
        let f = fingerprint(key)
        var pos = position(f)
        while true {
            let e = index[pos]
            if e == 0 { return -1 }
            if e >> 32 == f {
                let row = Int(truncatingIfNeeded: e & 0xFFFF_FFFF) - 1
                if rowKeys[row] == key { return row }
            }
            pos = (pos + 1) & indexMask
        }
    }

    public var unitCount: Int { max(1, (rowCount + 63) / 64) }
    public var count: Int { lock.withReadLock { rowCount } }

    public func query(keys input: UnsafeBufferPointer<Int64>, into output: UnsafeMutablePointer<Float>, missing: UnsafeMutablePointer<Int32>) -> Int {
        let dim = dimension
        return lock.withReadLock {
            var misses = 0
            let ahead = 8
            for i in 0..<min(ahead, input.count) { hps_prefetch(index + position(fingerprint(input[i]))) }
            for i in 0..<input.count {
                if i + ahead < input.count { hps_prefetch(index + position(fingerprint(input[i + ahead]))) }
                let row = find(input[i])
                if row >= 0 {
                    hps_copy(output + i * dim, rows + row * dim, dim * 4)
                } else {
                    missing[misses] = Int32(truncatingIfNeeded: i)
                    misses += 1
                }
            }
            return misses
        }
    }

    /// Adds rows (new keys) or overwrites existing ones. Keys beyond capacity are ignored.
    public func replace(keys input: UnsafeBufferPointer<Int64>, values source: UnsafePointer<Float>) {
        let dim = dimension
        lock.withWriteLock {
            for i in 0..<input.count {
                let key = input[i]
                let existing = find(key)
                if existing >= 0 {
                    (rows + existing * dim).update(from: source + i * dim, count: dim)
                    continue
                }
                guard rowCount < capacity else { continue }
                let row = rowCount
                rowCount += 1
                rowKeys[row] = key
                (rows + row * dim).update(from: source + i * dim, count: dim)
                let f = fingerprint(key)
                var pos = position(f)
                while index[pos] != 0 { pos = (pos + 1) & indexMask }
                index[pos] = (f << 32) | UInt64(row + 1)
            }
        }
    }

    public func update(keys input: UnsafeBufferPointer<Int64>, values source: UnsafePointer<Float>) {
        let dim = dimension
        lock.withWriteLock {
            for i in 0..<input.count {
                let row = find(input[i])
                if row >= 0 { (rows + row * dim).update(from: source + i * dim, count: dim) }
            }
        }
    }

    public func keys(inUnits range: Range<Int>) -> [Int64] {
        lock.withReadLock {
            let lower = min(rowCount, range.lowerBound * 64)
            let upper = min(rowCount, range.upperBound * 64)
            return Array(UnsafeBufferPointer(start: rowKeys + lower, count: upper - lower))
        }
    }
}
