@testable import HPS
import Testing

@Suite struct HashMapDatabaseTests {
    func config(partitions: Int = 4, margin: Int = .max, policy: OverflowPolicy = .evictRandom, allocationRate: Int = 1 << 20) -> VolatileDatabaseConfig {
        var c = VolatileDatabaseConfig()
        c.type = .hashMap
        c.numPartitions = partitions
        c.overflowMargin = margin
        c.overflowPolicy = policy
        c.allocationRate = allocationRate
        return c
    }

    @Test func conformance() throws {
        try DatabaseConformance.run { HashMapDatabase(config: config(), logger: .silent) }
    }

    @Test func conformanceOnePartitionTinyPages() throws {
        // Pages of 4 rows force many page allocations and the geometric-to-fixed page switch.
        try DatabaseConformance.run { HashMapDatabase(config: config(partitions: 1, allocationRate: 4 * 80), logger: .silent) }
    }

    @Test func conformanceParallelPath() throws {
        try DatabaseConformance.run {
            let db = HashMapDatabase(config: config(partitions: 16), logger: .silent)
            db.parallelThreshold = 1
            return db
        }
    }

    @Test func reservedTablesHoldWhatIsInsertedAfterwards() throws {
        let db = HashMapDatabase(config: config(partitions: 4), logger: .silent)
        let keys = (0..<20000).map { Int64($0) * 7 - 5000 }
        let values = DatabaseConformance.rows(keys, dim: 3)
        try db.reserve(table: "t", rows: keys.count, valueSize: 12)
        let inserted = try keys.withUnsafeBufferPointer { k in
            try values.withUnsafeBytes { v in try db.insert(table: "t", keys: k, values: v, valueSize: 12) }
        }
        #expect(inserted == keys.count)
        #expect(try db.size(table: "t") == keys.count)
        let (fetched, misses, _) = try DatabaseConformance.fetch(db, "t", keys, dim: 3)
        #expect(misses.isEmpty && fetched.map(\.bitPattern) == values.map(\.bitPattern))
        #expect(throws: HPSError.self) { try db.reserve(table: "t", rows: 10, valueSize: 8) }
    }

    @Test func loadProgressLines() {
        let start = ContinuousClock.now
        var progress = LoadProgress(tag: "hps_et.m.t", total: 1000, bytesPerRow: 520, start: start, quiet: 3, every: 5)
        #expect(progress.line(done: 100, now: start + .seconds(1)) == nil)  // quiet for short loads
        #expect(progress.line(done: 400, now: start + .seconds(4)) == "Table hps_et.m.t: loaded 400 / 1000 rows (40.0%), 0.00 M rows/s, 0 MB/s, ETA 6 s")
        #expect(progress.line(done: 500, now: start + .seconds(5)) == nil)
        #expect(progress.line(done: 1000, now: start + .seconds(10)) == nil)  // done: the summary line follows
        var large = LoadProgress(tag: "t", total: 2_000_000, bytesPerRow: 72, start: start)
        #expect(large.line(done: 100_000, now: start + .milliseconds(100)) == nil)
        #expect(large.line(done: 200_000, now: start + .milliseconds(200)) != nil)  // every 10% of a large table
        #expect(large.line(done: 300_000, now: start + .milliseconds(300)) == nil)
        #expect(large.line(done: 400_000, now: start + .milliseconds(400)) != nil)
        #expect(LoadProgress.format(tag: "t", done: 2_500_000, total: 10_000_000, bytesPerRow: 520, elapsed: 2)
            == "Table t: loaded 2500000 / 10000000 rows (25.0%), 1.25 M rows/s, 650 MB/s, ETA 6 s")
    }

    @Test func capacityIsMarginTimesPartitions() {
        #expect(HashMapDatabase(config: config(partitions: 4, margin: 10), logger: .silent).capacity(table: "t") == 40)
        #expect(HashMapDatabase(config: config(partitions: 4), logger: .silent).capacity(table: "t") == .max)
    }

    @Test(arguments: [OverflowPolicy.evictRandom, .evictLeastUsed, .evictOldest])
    func overflowKeepsPartitionsWithinMargin(policy: OverflowPolicy) throws {
        let db = HashMapDatabase(config: config(partitions: 2, margin: 100, policy: policy), logger: .silent)
        let keys = (0..<1000).map(Int64.init)
        for start in stride(from: 0, to: 1000, by: 50) {
            try DatabaseConformance.insert(db, "hps_et.m.t", Array(keys[start..<(start + 50)]), dim: 4)
        }
        let size = try db.size(table: "hps_et.m.t")
        #expect(size <= 200)
        #expect(size >= 2 * 80 - 50)  // evicts down to 80 per partition, then refills
        // Whatever survived is exact.
        let (values, misses, hits) = try DatabaseConformance.fetch(db, "hps_et.m.t", keys, dim: 4)
        #expect(hits == size)
        let missSet = Set(misses)
        for i in 0..<1000 where !missSet.contains(i) {
            #expect(Array(values[(i * 4)..<(i * 4 + 4)]).map(\.bitPattern) == DatabaseConformance.row(Int64(i), dim: 4).map(\.bitPattern))
        }
    }

    @Test func leastUsedKeepsFrequentlyFetchedKeys() throws {
        let db = HashMapDatabase(config: config(partitions: 1, margin: 100, policy: .evictLeastUsed), logger: .silent)
        let hot: [Int64] = Array(0..<20)
        try DatabaseConformance.insert(db, "hps_et.m.t", Array(0..<100), dim: 2)
        for _ in 0..<5 { _ = try DatabaseConformance.fetch(db, "hps_et.m.t", hot, dim: 2) }
        // Push 200 new keys through a full partition: the hot keys, fetched 5 more times, must survive.
        for start in stride(from: 100, to: 300, by: 10) {
            try DatabaseConformance.insert(db, "hps_et.m.t", (start..<(start + 10)).map(Int64.init), dim: 2)
            _ = try DatabaseConformance.fetch(db, "hps_et.m.t", hot, dim: 2)
        }
        #expect(try DatabaseConformance.fetch(db, "hps_et.m.t", hot, dim: 2).misses.isEmpty)
    }

    @Test func oldestEvictsLeastRecentlyTouched() throws {
        let db = HashMapDatabase(config: config(partitions: 1, margin: 100, policy: .evictOldest), logger: .silent)
        try DatabaseConformance.insert(db, "hps_et.m.t", Array(0..<100), dim: 2)
        // Touch keys 50..<100 after the insert; inserting one more key evicts 20 of the untouched 0..<50.
        _ = try DatabaseConformance.fetch(db, "hps_et.m.t", Array(50..<100), dim: 2)
        try DatabaseConformance.insert(db, "hps_et.m.t", [1000], dim: 2)
        let recent = try DatabaseConformance.fetch(db, "hps_et.m.t", Array(50..<100), dim: 2)
        #expect(recent.misses.isEmpty)
        let old = try DatabaseConformance.fetch(db, "hps_et.m.t", Array(0..<50), dim: 2)
        #expect(old.misses.count == 20)  // full at 100 → evict down to 80, then insert the new key
    }

    /// One partition at 3/4 load (the most its index holds before growing) has probe runs longer than the
    /// fetch pipeline's window; after removals (backward shifts) and new keys, every fetch — inline, and split
    /// into chunks — must answer what a dictionary of the same rows answers, misses in input order.
    @Test(arguments: [Int.max, 1])
    func fetchAgreesWithADictionaryAtFullLoad(parallelThreshold: Int) throws {
        let db = HashMapDatabase(config: config(partitions: 1), logger: .silent)
        db.parallelThreshold = parallelThreshold
        let dim = 3
        var reference: [Int64: [Float]] = [:]
        func insert(_ keys: [Int64], salt: Float) throws {
            let values = keys.flatMap { k in (0..<dim).map { Float(k % 1000) + Float($0) / 8 + salt } }
            _ = try keys.withUnsafeBufferPointer { k in
                try values.withUnsafeBytes { v in try db.insert(table: "t", keys: k, values: v, valueSize: dim * 4) }
            }
            for (i, k) in keys.enumerated() { reference[k] = Array(values[(i * dim)..<(i * dim + dim)]) }
        }
        let first = (0..<12288).map { Int64($0) &* 0x9E37_79B9 &+ 3 }
        try insert(first, salt: 0)
        #expect(db.memoryUsage(table: "t").entries == 12288)
        let removed = stride(from: 0, to: first.count, by: 3).map { first[$0] }
        _ = try removed.withUnsafeBufferPointer { try db.evict(table: "t", keys: $0) }
        for k in removed { reference[k] = nil }
        try insert((0..<3000).map { Int64($0) * -17 - 1 }, salt: 0.5)
        try insert(Array(first[1..<2000]), salt: 0.25)  // overwrites
        var probe = first + removed + (0..<3000).map { Int64($0) * -17 - 1 } + (0..<500).map { Int64($0) + 1 << 40 }
        var rng = SplitMix64(seed: 7)
        probe.shuffle(using: &rng)
        probe += Array(probe[0..<5000])  // duplicates
        let (values, misses, _) = try DatabaseConformance.fetch(db, "t", probe, dim: dim)
        var expectedMisses: [Int] = []
        for (i, k) in probe.enumerated() {
            if let row = reference[k] {
                #expect(Array(values[(i * dim)..<(i * dim + dim)]).map(\.bitPattern) == row.map(\.bitPattern))
            } else {
                expectedMisses.append(i)
            }
        }
        #expect(misses == expectedMisses)
    }

    @Test func fetchChunksStayWithinTheScratch() {
        #expect(HashMapDatabase.fetchChunks(keys: 100, threshold: 4096) == 1)
        for n in [4096, 65536, 1 << 22] {
            let chunks = HashMapDatabase.fetchChunks(keys: n, threshold: 4096)
            #expect(chunks <= BulkScratch.maxChunks)
            #expect(SystemInfo.processorCount == 1 ? chunks == 1 : chunks >= 2)
        }
    }

    @Test func bytesPerEntryNearRawSize() throws {
        let db = HashMapDatabase(config: config(partitions: 4, allocationRate: 256 << 20), logger: .silent)
        let n = 200_000
        let dim = 16
        let keys = (0..<n).map { Int64($0) * 31 }
        try DatabaseConformance.insert(db, "hps_et.m.t", keys, dim: dim)
        let usage = db.memoryUsage(table: "hps_et.m.t")
        #expect(usage.entries == n)
        let raw = Double(n * (8 + dim * 4))
        // Geometric pages can over-allocate up to 2x of the rows of the last page; the index ≤ 8/0.375 B.
        #expect(Double(usage.bytes) / raw < 1.8)
    }

    @Test func concurrentReadersNeverSeeTornValues() async throws {
        let db = HashMapDatabase(config: config(partitions: 4), logger: .silent)
        let keys: [Int64] = Array(0..<512)
        let dim = 32
        // Every row is constant (all elements equal); writers alternate between two constants.
        func constantRows(_ v: Float) -> [Float] { [Float](repeating: v, count: keys.count * dim) }
        let a = constantRows(1), b = constantRows(2)
        try keys.withUnsafeBufferPointer { k in try a.withUnsafeBytes { _ = try db.insert(table: "hps_et.m.t", keys: k, values: $0, valueSize: dim * 4) } }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for round in 0..<200 {
                    let rows = round % 2 == 0 ? b : a
                    try keys.withUnsafeBufferPointer { k in try rows.withUnsafeBytes { _ = try db.insert(table: "hps_et.m.t", keys: k, values: $0, valueSize: dim * 4) } }
                }
                return true
            }
            for _ in 0..<4 {
                group.addTask {
                    var torn = false
                    for _ in 0..<200 {
                        let (values, misses, _) = try DatabaseConformance.fetch(db, "hps_et.m.t", keys, dim: dim)
                        if !misses.isEmpty { torn = true }
                        for r in 0..<keys.count where Set(values[(r * dim)..<(r * dim + dim)]).count != 1 { torn = true }
                    }
                    return !torn
                }
            }
            for try await ok in group { #expect(ok) }
        }
    }
}
