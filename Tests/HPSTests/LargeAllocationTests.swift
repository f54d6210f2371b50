@testable import HPS
import Testing

@Suite struct LargeAllocationTests {
    @Test(arguments: [1, 100, 4096, LargeAllocation.hugePageSize - 1, LargeAllocation.hugePageSize, 3 * LargeAllocation.hugePageSize + 5])
    func blocksAreAlignedAndWritable(byteCount: Int) {
        let block = LargeAllocation.allocate(byteCount: byteCount, alignment: 64)
        defer { LargeAllocation.deallocate(block) }
        let alignment = byteCount >= LargeAllocation.hugePageSize ? LargeAllocation.hugePageSize : 64
        #expect(UInt(bitPattern: block) % UInt(alignment) == 0)
        // Every byte is usable: write a pattern and read it back.
        let bytes = block.bindMemory(to: UInt8.self, capacity: byteCount)
        for i in stride(from: 0, to: byteCount, by: 997) { bytes[i] = UInt8(truncatingIfNeeded: i) }
        bytes[byteCount - 1] = 0xA5
        for i in stride(from: 0, to: byteCount - 1, by: 997) { #expect(bytes[i] == UInt8(truncatingIfNeeded: i)) }
        #expect(bytes[byteCount - 1] == 0xA5)
    }

    @Test func typedBlocksHoldTheirCount() {
        let entries = LargeAllocation.allocate(HashMapPartition.Entry.self, count: 200_000)
        defer { LargeAllocation.deallocate(entries) }
        entries.initialize(repeating: .empty, count: 200_000)
        entries[199_999] = HashMapPartition.Entry(key: 7, tag: 1 << 32 | 1)
        #expect(entries[199_999].slot == 0 && entries[199_999].key == 7 && entries[0].tag == 0)
    }
}
