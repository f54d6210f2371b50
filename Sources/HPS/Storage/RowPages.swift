/// Fixed-stride rows stored in pages that grow geometrically up to `maxPageRows` rows (the volatile
/// database's `allocation_rate`), so a small table does not reserve a full page and a large one does not
/// need one huge allocation. Slot `s` maps to a page and offset with a few bit operations. Pages start on
/// 64-byte boundaries (rows of a 64-byte multiple stride never straddle a cache line); pages of 2 MiB or
/// more ask for huge pages (``LargeAllocation``).
///
/// Page addresses live in a plain pointer table so the hot path reads them without Swift array
/// overhead; ``RowPages/Layout`` is a copyable snapshot of that table for loops.
///
/// Not thread-safe: the owning partition's lock guards it.
struct RowPages {
    /// A snapshot of the page table, valid until the next ``ensure(slot:)``.
    struct Layout {
        let stride: Int
        let baseShift: Int
        let maxShift: Int
        let pages: UnsafeMutablePointer<UnsafeMutableRawPointer>

        @inline(__always)
        func row(_ slot: Int) -> UnsafeMutableRawPointer {
            if slot < 1 << baseShift { return pages[0] + slot * stride }
            if slot < 1 << maxShift {
                let log = Int.bitWidth - 1 - slot.leadingZeroBitCount  // ≥ baseShift
                return pages[log - baseShift + 1] + (slot - (1 << log)) * stride
            }
            let rest = slot - (1 << maxShift)
            return pages[maxShift - baseShift + 1 + (rest >> maxShift)] + (rest & ((1 << maxShift) - 1)) * stride
        }
    }

    let stride: Int
    private let baseShift: Int
    private let maxShift: Int
    private var table: UnsafeMutablePointer<UnsafeMutableRawPointer>
    private var tableCapacity = 8
    private(set) var pageCount = 0
    /// Rows the allocated pages hold.
    private(set) var capacity: Int = 0

    init(stride: Int, allocationRate: Int) {
        self.stride = stride
        let maxRows = max(1, allocationRate / max(1, stride))
        maxShift = Int.bitWidth - 1 - maxRows.leadingZeroBitCount  // floor(log2)
        baseShift = min(maxShift, 8)
        table = .allocate(capacity: tableCapacity)
    }

    var layout: Layout { Layout(stride: stride, baseShift: baseShift, maxShift: maxShift, pages: table) }

    /// Rows of page `i`: 2^b, 2^b, 2^(b+1), … up to 2^maxShift, then 2^maxShift.
    private func rows(ofPage i: Int) -> Int {
        if i == 0 { return 1 << baseShift }
        return 1 << min(maxShift, baseShift + i - 1)
    }

    @inline(__always)
    func row(_ slot: Int) -> UnsafeMutableRawPointer { layout.row(slot) }

    /// Makes sure slot `slot` is backed by memory.
    mutating func ensure(slot: Int) {
        while slot >= capacity {
            if pageCount == tableCapacity {
                let bigger = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: tableCapacity * 2)
                bigger.moveInitialize(from: table, count: pageCount)
                table.deallocate()
                table = bigger
                tableCapacity *= 2
            }
            let n = rows(ofPage: pageCount)
            (table + pageCount).initialize(to: LargeAllocation.allocate(byteCount: n * stride, alignment: 64))
            pageCount += 1
            capacity += n
        }
    }

    /// Bytes allocated for rows.
    var allocatedBytes: Int { capacity * stride }

    /// Frees every page (the page table stays for reuse).
    mutating func deallocateAll() {
        for i in 0..<pageCount { LargeAllocation.deallocate(table[i]) }
        pageCount = 0
        capacity = 0
    }

    /// Frees everything, the page table included; the value must not be used afterwards.
    mutating func destroy() {
        deallocateAll()
        table.deallocate()
    }
}
