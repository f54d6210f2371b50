/// Fixed-stride rows stored in pages that grow geometrically up to `maxPageRows` rows (the volatile
/// database's `allocation_rate`), so a small table does not reserve a full page and a large one does not
/// need one huge allocation. Slot `s` maps to a page and offset with a few bit operations.
///
/// Not thread-safe: the owning partition's lock guards it.
struct RowPages {
    let stride: Int
    /// log2 of the first page's rows.
    private let baseShift: Int
    /// log2 of the largest page's rows.
    private let maxShift: Int
    private(set) var pages: [UnsafeMutableRawPointer] = []
    /// Rows the allocated pages hold.
    private(set) var capacity: Int = 0

    init(stride: Int, allocationRate: Int) {
        self.stride = stride
        let maxRows = max(1, allocationRate / max(1, stride))
        maxShift = Int.bitWidth - 1 - maxRows.leadingZeroBitCount  // floor(log2)
        baseShift = min(maxShift, 8)
    }

    /// Rows of page `i`: 2^b, 2^b, 2^(b+1), … up to 2^maxShift, then 2^maxShift.
    private func rows(ofPage i: Int) -> Int {
        if i == 0 { return 1 << baseShift }
        return 1 << min(maxShift, baseShift + i - 1)
    }

    /// Number of geometric pages before pages reach full size.
    private var geometricPages: Int { maxShift - baseShift + 1 }

    @inline(__always)
    func row(_ slot: Int) -> UnsafeMutableRawPointer {
        let base = 1 << baseShift
        if slot < base { return pages[0] + slot * stride }
        let geometricEnd = 1 << maxShift
        if slot < geometricEnd {
            let log = Int.bitWidth - 1 - slot.leadingZeroBitCount  // ≥ baseShift
            let page = log - baseShift + 1
            let offset = slot - (1 << log)
            return pages[page] + offset * stride
        }
        let rest = slot - geometricEnd
        let page = geometricPages + (rest >> maxShift)
        return pages[page] + (rest & ((1 << maxShift) - 1)) * stride
    }

    /// Makes sure slot `slot` is backed by memory.
    mutating func ensure(slot: Int) {
        while slot >= capacity {
            let n = rows(ofPage: pages.count)
            pages.append(.allocate(byteCount: n * stride, alignment: 64))
            capacity += n
        }
    }

    /// Bytes allocated for rows.
    var allocatedBytes: Int { capacity * stride }

    mutating func deallocateAll() {
        for page in pages { page.deallocate() }
        pages.removeAll()
        capacity = 0
    }
}
