import HPS
import HPSRuntime
import Testing

/// A small deployment on disk: tables written by the test, a config pointing at them, and a plain
/// dictionary model of what each key must return.
struct Fixture {
    let directory: TemporaryDirectory
    var config: ParameterServerConfig
    /// Table contents by table index: key → vector.
    let tables: [[Int64: [Float]]]

    init(rows: [Int] = [2000, 500], dims: [Int] = [8, 3], defaults: [Float] = [0.5, -1], maxBatch: Int = 64, keysPerSample: [Int] = [8, 4]) throws {
        directory = try TemporaryDirectory()
        var model = ModelConfig()
        model.name = "demo"
        model.deployedDevices = [0]
        model.maxBatchSize = maxBatch
        model.maxKeysPerSample = keysPerSample
        model.embeddingVectorSizes = dims
        model.defaultValues = defaults
        model.tableNames = dims.indices.map { "t\($0)" }
        model.cpuCache = true  // these tests exercise the cache; LookupSessionDirectTests covers the direct path
        var tables: [[Int64: [Float]]] = []
        for (t, n) in rows.enumerated() {
            let keys = (0..<n).map { Int64($0) * 3 + Int64(t) }  // gaps: keys ≡ t (mod 3)
            let vectors = DatabaseConformance.rows(keys, dim: dims[t], salt: Float(t))
            let path = directory.file("table\(t)")
            try TableWriter.write(directory: path, keys: keys, vectors: vectors, dimension: dims[t])
            model.sparseFiles.append(path)
            var map: [Int64: [Float]] = [:]
            for (i, k) in keys.enumerated() { map[k] = Array(vectors[(i * dims[t])..<((i + 1) * dims[t])]) }
            tables.append(map)
        }
        config = ParameterServerConfig()
        config.models = [model]
        config.volatileDatabase.numPartitions = 4
        self.tables = tables
    }

    var model: ModelConfig {
        get { config.models[0] }
        set { config.models[0] = newValue }
    }

    func expected(table: Int, keys: [Int64]) -> [Float] {
        let dim = config.models[0].embeddingVectorSizes[table]
        let fallback = [Float](repeating: config.models[0].defaultValues[table], count: dim)
        return keys.flatMap { tables[table][$0] ?? fallback }
    }

    func server() throws -> ParameterServer {
        try HPSRuntime.makeParameterServer(config: config, logger: .silent)
    }
}

/// Random batches mixing known keys, unknown keys and duplicates.
func mixedBatch(_ rng: inout SplitMix64, count: Int, knownRows: Int, table: Int) -> [Int64] {
    (0..<count).map { _ in
        switch rng.next() % 10 {
        case 0: return Int64(bitPattern: rng.next())  // unknown (almost surely)
        case 1: return Int64(knownRows * 3 + Int(rng.next() % 100))  // beyond the table
        default: return Int64(rng.next() % UInt64(min(knownRows, 50))) * 3 + Int64(table)  // hot, duplicated
        }
    }
}

@Suite struct LookupSessionTests {
    func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    @Test(arguments: [
        (true, EmbeddingCacheType.dynamic), (false, .dynamic), (true, .static), (true, .uvm),
    ])
    func answersExactlyWithDuplicatesAndUnknownKeys(cacheOn: Bool, type: EmbeddingCacheType) throws {
        var fixture = try Fixture()
        fixture.model.deviceCache = cacheOn
        fixture.model.embeddingCacheType = type
        fixture.model.hitRateThreshold = 1.0  // async only when everything hit: always exact
        fixture.model.deviceCachePercentage = 0.1  // small: evictions happen
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        var rng = SplitMix64(seed: 11)
        for round in 0..<30 {
            for table in 0..<2 {
                let n = [1, 17, 64 * fixture.model.maxKeysPerSample[table]][round % 3]
                let keys = mixedBatch(&rng, count: n, knownRows: fixture.tables[table].count, table: table)
                #expect(bits(try session.lookup(table: table, keys: keys)) == bits(fixture.expected(table: table, keys: keys)))
            }
        }
        #expect(try session.lookup(table: 0, keys: []).isEmpty)
    }

    @Test(arguments: [true, false])
    func largeBatchesTakeTheParallelPathAndStayExact(cacheOn: Bool) throws {
        var fixture = try Fixture(rows: [40000], dims: [5], defaults: [3], maxBatch: 40000, keysPerSample: [1])
        fixture.model.deviceCache = cacheOn
        fixture.model.hitRateThreshold = 1.0
        fixture.model.deviceCachePercentage = 0.3
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        var rng = SplitMix64(seed: 5)
        for _ in 0..<3 {
            // Mostly distinct keys (≥ 16384 unique), some unknown, some repeated.
            let keys: [Int64] = (0..<40000).map { _ in
                let r = rng.next() % 100
                return r < 5 ? -Int64(r) - 1 : Int64(rng.next() % 40000) * 3
            }
            #expect(bits(try session.lookup(table: 0, keys: keys)) == bits(fixture.expected(table: 0, keys: keys)))
        }
    }

    /// A session keeps alive what it uses: it answers exactly after the last reference to its server is
    /// gone, and the server itself is freed (no cycle through the server's table of sessions).
    @Test(arguments: [true, false])
    func sessionOutlivesItsServer(cacheOn: Bool) throws {
        var fixture = try Fixture()
        fixture.model.deviceCache = cacheOn
        fixture.model.hitRateThreshold = 1.0
        weak var released: ParameterServer?
        let session: LookupSession = try {
            let server = try fixture.server()
            released = server
            return try server.session(model: "demo", device: 0)
        }()
        #expect(released == nil)
        var rng = SplitMix64(seed: 7)
        for table in 0..<fixture.tables.count {
            let keys = mixedBatch(&rng, count: 64, knownRows: fixture.tables[table].count, table: table)
            #expect(bits(try session.lookup(table: table, keys: keys)) == bits(fixture.expected(table: table, keys: keys)))
        }
    }

    @Test func thresholdZeroAnswersDefaultsFirstThenInserts() throws {
        var fixture = try Fixture()
        fixture.model.hitRateThreshold = 0
        fixture.model.deviceCachePercentage = 1.0
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        let keys: [Int64] = [0, 3, 6, 9, 3]
        let first = try session.lookup(table: 0, keys: keys)
        #expect(bits(first) == bits([Float](repeating: 0.5, count: keys.count * 8)))
        session.waitForBackgroundInserts()
        #expect(bits(try session.lookup(table: 0, keys: keys)) == bits(fixture.expected(table: 0, keys: keys)))
    }

    @Test func thresholdHalfDependsOnTheBatchHitRate() throws {
        var fixture = try Fixture()
        fixture.model.hitRateThreshold = 0.5
        fixture.model.deviceCachePercentage = 1.0
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        // Nothing cached: hit rate 0 < 0.5 → fetched now, exact.
        let warm: [Int64] = [0, 3, 6, 9]
        #expect(bits(try session.lookup(table: 0, keys: warm)) == bits(fixture.expected(table: 0, keys: warm)))
        // 4 cached + 2 new: hit rate 4/6 ≥ 0.5 → the 2 new keys get the default now.
        let mixed: [Int64] = [0, 3, 6, 9, 12, 15]
        let answer = try session.lookup(table: 0, keys: mixed)
        #expect(bits(Array(answer[0..<32])) == bits(fixture.expected(table: 0, keys: warm)))
        #expect(bits(Array(answer[32...])) == bits([Float](repeating: 0.5, count: 16)))
        session.waitForBackgroundInserts()
        #expect(bits(try session.lookup(table: 0, keys: mixed)) == bits(fixture.expected(table: 0, keys: mixed)))
    }

    @Test func refreshUpdatesCachedKeysFromTheDatabase() throws {
        var fixture = try Fixture()
        fixture.model.hitRateThreshold = 1.0
        fixture.model.deviceCachePercentage = 1.0
        fixture.model.cacheRefreshPercentagePerIteration = 0.3
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        let keys: [Int64] = [0, 3, 6]
        _ = try session.lookup(table: 0, keys: keys)
        // Change the values in the volatile database behind the cache.
        let fresh = [Float](repeating: 42, count: keys.count * 8)
        try keys.withUnsafeBufferPointer { k in
            try fresh.withUnsafeBytes { _ = try server.volatileDatabase!.insert(table: "hps_et.demo.t0", keys: k, values: $0, valueSize: 32) }
        }
        #expect(bits(try session.lookup(table: 0, keys: keys)) == bits(fixture.expected(table: 0, keys: keys)))  // stale
        #expect(try session.refresh() > 0)
        #expect(try session.lookup(table: 0, keys: keys) == fresh)
    }

    @Test func warmUpFillsTheCache() throws {
        var fixture = try Fixture()
        fixture.model.deviceCachePercentage = 0.5
        fixture.model.cacheRefreshPercentagePerIteration = 0.2
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        // gpucacheper 0.5 of 2000 rows → 1024 slots in sets of 64; the first 1024 rows of the file go in,
        // and a set that gets more than 64 of them keeps its 64 most recent.
        let cache = session.caches[0]!
        #expect(cache.capacity == 1024)
        #expect(cache.count > 900 && cache.count <= 1024)
        let firstRows = Set((0..<1024).map { Int64($0) * 3 })
        #expect(try cache.keys(inUnits: 0..<cache.unitCount).allSatisfy(firstRows.contains))
        fixture.model.initializeCache = false
        let cold = try fixture.server().session(model: "demo", device: 0)
        #expect(cold.caches[0]!.count == 0)
    }

    @Test func errorsNameTheProblem() throws {
        let fixture = try Fixture()
        let server = try fixture.server()
        #expect(throws: HPSError.self) { _ = try server.session(model: "nope", device: 0) }
        #expect(throws: HPSError.self) { _ = try server.session(model: "demo", device: 3) }
        let session = try server.session(model: "demo", device: 0)
        do {
            _ = try session.lookup(table: 2, keys: [1])
            Issue.record("table 2 should not exist")
        } catch let error as HPSError {
            #expect(error.code == .unknownTable)
            #expect(error.description.contains("has 2 table(s)"))
        }
        var output = [Float](repeating: 0, count: 8 * 600)
        let tooMany = [Int64](repeating: 1, count: 64 * 8 + 1)
        do {
            try tooMany.withUnsafeBufferPointer { k in try output.withUnsafeMutableBufferPointer { try session.lookup(table: 0, keys: k, into: $0) } }
            Issue.record("too many keys should fail")
        } catch let error as HPSError {
            #expect(error.code == .invalidArgument)
            #expect(error.description.contains("513 keys"))
        }
        do {
            var small = [Float](repeating: 0, count: 7)
            try [Int64](arrayLiteral: 0).withUnsafeBufferPointer { k in try small.withUnsafeMutableBufferPointer { try session.lookup(table: 0, keys: k, into: $0) } }
            Issue.record("a too-small output should fail")
        } catch let error as HPSError {
            #expect(error.code == .invalidArgument)
        }
    }

    @Test func int32KeysWithoutLongLong() throws {
        var fixture = try Fixture()
        fixture.config.supportLongLong = false
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        let keys: [Int32] = [0, 3, 7, 3, -1]
        var output = [Float](repeating: .nan, count: keys.count * 8)
        try keys.withUnsafeBufferPointer { k in try output.withUnsafeMutableBufferPointer { try session.lookup(table: 0, keys: k, into: $0) } }
        #expect(bits(output) == bits(fixture.expected(table: 0, keys: keys.map { Int64(UInt32(bitPattern: $0)) })))
    }

    @Test func noDatabaseGivesDefaultsBeyondTheCache() throws {
        var fixture = try Fixture()
        fixture.config.volatileDatabase.type = .disabled
        fixture.model.embeddingCacheType = .dynamic
        fixture.model.deviceCache = false
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        #expect(try session.lookup(table: 1, keys: [1, 4]) == [Float](repeating: -1, count: 6))
    }

    @Test func overflowEvictionsLeaveExactOrDefault() throws {
        var fixture = try Fixture(rows: [2000], dims: [4], defaults: [7], keysPerSample: [32])
        fixture.config.volatileDatabase.overflowMargin = 100
        fixture.model.deviceCache = false
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        let keys = (0..<2000).map { Int64($0) * 3 }
        let answer = try session.lookup(table: 0, keys: keys)
        let expected = fixture.expected(table: 0, keys: keys)
        var exact = 0
        for i in 0..<keys.count {
            let got = Array(answer[(i * 4)..<(i * 4 + 4)])
            if bits(got) == bits(Array(expected[(i * 4)..<(i * 4 + 4)])) { exact += 1 } else { #expect(got == [7, 7, 7, 7]) }
        }
        #expect(exact == (try server.volatileDatabase!.size(table: "hps_et.demo.t0")))
        #expect(exact <= 400)
    }

    @Test func manyThreadsLookUpWhileAnotherInserts() async throws {
        var fixture = try Fixture(rows: [4000], dims: [16], defaults: [0], keysPerSample: [16])
        fixture.model.deviceCachePercentage = 0.05
        fixture.model.hitRateThreshold = 1.0
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        let vdb = server.volatileDatabase!
        let keys = (0..<4000).map { Int64($0) * 3 }
        let original = fixture.tables[0]
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                // Overwrite every row with constant vectors (all 1s, then all 2s, …).
                for round in 1...20 {
                    let values = [Float](repeating: Float(round), count: keys.count * 16)
                    try keys.withUnsafeBufferPointer { k in try values.withUnsafeBytes { _ = try vdb.insert(table: "hps_et.demo.t0", keys: k, values: $0, valueSize: 64) } }
                }
                return true
            }
            for t in 0..<8 {
                group.addTask {
                    var rng = SplitMix64(seed: UInt64(t))
                    var ok = true
                    for _ in 0..<100 {
                        let batch = (0..<256).map { _ in keys[Int(rng.next() % 4000)] }
                        let out = try session.lookup(table: 0, keys: batch)
                        for r in 0..<batch.count {
                            let v = Array(out[(r * 16)..<(r * 16 + 16)])
                            if Set(v).count != 1 && v != original[batch[r]]! { ok = false }
                        }
                    }
                    return ok
                }
            }
            for try await ok in group { #expect(ok) }
        }
    }

    @Test func deduplicationMatchesASet() throws {
        var fixture = try Fixture()
        fixture.model.deviceCache = true
        fixture.model.hitRateThreshold = 1.0
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        let before = server.statistics.snapshot
        let keys: [Int64] = [5, 5, 5, 0, 0, 9, -4, 9]
        _ = try session.lookup(table: 0, keys: keys)
        let after = server.statistics.snapshot
        #expect(after.uniqueKeys - before.uniqueKeys == Set(keys).count)
        #expect(after.keys - before.keys == keys.count)
    }

    @Test(arguments: [8, 40000])
    func cacheHitsCountDistinctKeysInEveryChunk(batch: Int) throws {
        // Keys repeat across the chunks a large batch is queried in: hits count each distinct key once.
        var fixture = try Fixture(rows: [4000], dims: [4], defaults: [0], maxBatch: 40000, keysPerSample: [1])
        fixture.model.hitRateThreshold = 1.0
        fixture.model.deviceCachePercentage = 1.0
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        let keys: [Int64] = (0..<batch).map { Int64(($0 * 7) % 1000) * 3 }  // 1000 keys: no set of 64 overflows
        #expect(bits(try session.lookup(table: 0, keys: keys)) == bits(fixture.expected(table: 0, keys: keys)))
        let before = server.statistics.snapshot
        #expect(bits(try session.lookup(table: 0, keys: keys)) == bits(fixture.expected(table: 0, keys: keys)))
        let after = server.statistics.snapshot
        #expect(after.cacheHits - before.cacheHits == Set(keys).count)
        #expect(after.cacheMisses == before.cacheMisses)
        #expect(after.uniqueKeys - before.uniqueKeys == Set(keys).count)
    }
}

/// Sessions on the CPU whose hash map holds every row look it up directly, with no CPU cache.
@Suite struct LookupSessionDirectTests {
    func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    func fixture() throws -> Fixture {
        var fixture = try Fixture()
        fixture.model.cpuCache = false
        fixture.model.hitRateThreshold = 0.9  // HPS's default: would answer defaults through a cache
        fixture.model.deviceCachePercentage = 0.5
        return fixture
    }

    @Test func answersExactlyInOnePassWithoutACache() throws {
        let fixture = try fixture()
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        #expect(session.direct == [true, true])
        #expect(session.caches.allSatisfy { $0 == nil })
        var rng = SplitMix64(seed: 23)
        let before = server.statistics.snapshot
        for round in 0..<30 {
            for table in 0..<2 {
                let n = [1, 17, 64 * fixture.model.maxKeysPerSample[table]][round % 3]
                let keys = mixedBatch(&rng, count: n, knownRows: fixture.tables[table].count, table: table)
                #expect(bits(try session.lookup(table: table, keys: keys)) == bits(fixture.expected(table: table, keys: keys)))
            }
        }
        let after = server.statistics.snapshot
        #expect(after.cacheHits == before.cacheHits && after.cacheMisses == before.cacheMisses)
        #expect(after.lookups - before.lookups == 60)
        #expect(try session.lookup(table: 0, keys: []).isEmpty)
    }

    @Test func largeBatchesAndInt32KeysStayExact() throws {
        var fixture = try Fixture(rows: [40000], dims: [5], defaults: [3], maxBatch: 40000, keysPerSample: [1])
        fixture.model.cpuCache = false
        fixture.config.supportLongLong = false
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        #expect(session.direct == [true])
        var rng = SplitMix64(seed: 7)
        let keys: [Int32] = (0..<40000).map { _ in Int32(rng.next() % 41000) * 3 }
        var output = [Float](repeating: .nan, count: keys.count * 5)
        try keys.withUnsafeBufferPointer { k in
            try output.withUnsafeMutableBufferPointer { try session.lookup(table: 0, keys: k, into: $0) }
        }
        #expect(bits(output) == bits(fixture.expected(table: 0, keys: keys.map { Int64($0) })))
    }

    @Test func aCacheIsKeptWhenAskedForOrWhenTheHashMapMayNotHoldEveryRow() throws {
        var asked = try fixture()
        asked.model.cpuCache = true
        #expect(try asked.server().session(model: "demo", device: 0).direct == [false, false])

        var bounded = try fixture()
        bounded.config.volatileDatabase.overflowMargin = 1000  // table 0 has 2000 rows, table 1 500
        #expect(try bounded.server().session(model: "demo", device: 0).direct == [false, true])

        var partial = try fixture()
        partial.config.volatileDatabase.initialCacheRate = 0.5
        partial.config.persistentDatabase = rocksConfig(partial.directory.file("rocksdb"))
        #expect(try partial.server().session(model: "demo", device: 0).direct == [false, false])
    }

    @Test func cpuCacheKeyParses() throws {
        let json = """
            {"models": [{"model": "m", "sparse_files": ["t"], "deployed_device_list": [0],
              "maxnum_catfeature_query_per_table_per_sample": [1], "embedding_vecsize_per_table": [4],
              "default_value_for_each_table": [0], "cpu_cache": true}]}
            """
        #expect(try ParameterServerConfig.parse(json: json, checkFiles: false).models.first?.cpuCache == true)
        #expect(try ParameterServerConfig.parse(json: json.replacingOccurrences(of: ", \"cpu_cache\": true", with: ""), checkFiles: false).models.first?.cpuCache == false)
    }
}
