import HPS
import HPSRedis
import HPSTestSupport
import Testing

/// The Redis Cluster backend against real 3-node clusters on 127.0.0.1 (each test starts its own and
/// stops it): the database contract, HPS's key layout, routing and redirections, overflow policies,
/// node failures and reconnection, seeds and AUTH.
@Suite(.disabled(if: skipRedisTests, "HPS_SKIP_REDIS_TESTS=1"), .timeLimit(.minutes(2)))
struct RedisClusterTests {
    typealias C = DatabaseConformance

    @Test func conformance() throws {
        let cluster = try LocalRedisCluster()
        defer { cluster.shutdown() }
        // Every contract run starts from an empty cluster.
        try C.run {
            try cluster.flushAll()
            return try openRedis(redisConfig(cluster.address, partitions: 5))
        }
        // Tiny batches split every command into many pipelined chunks; one partition puts a whole
        // table on one node.
        try C.run {
            try cluster.flushAll()
            return try openRedis(redisConfig(cluster.address, partitions: 3, maxBatchSize: 7, connections: 1))
        }
        try C.run {
            try cluster.flushAll()
            return try openRedis(redisConfig(cluster.address, partitions: 1, maxBatchSize: 1000))
        }
    }

    /// HPS's layout on the wire, discovery from one seed, and MOVED / ASK while a slot migrates.
    @Test func layoutAndRedirections() throws {
        let cluster = try LocalRedisCluster()
        defer { cluster.shutdown() }
        // One seed only: the client must learn the other nodes from CLUSTER SLOTS.
        let partitions = 16
        let db = try openRedis(redisConfig(cluster.address(ofNode: 0), partitions: partitions))
        #expect(db.masterAddresses.sorted() == cluster.ports.indices.map { cluster.address(ofNode: $0) }.sorted())
        #expect(db.name == "redis_cluster")
        #expect(db.isShared)
        let tag = TableTag.make(model: "layout", table: "emb")
        let keys = (0..<3000).map { Int64($0) * 7_919 - 1_000_000 }
        #expect(try C.insert(db, tag, keys, dim: 4) == keys.count)

        // Every node holds some of the partitions' hashes.
        for i in cluster.ports.indices {
            guard case .integer(let n) = try cluster.command(node: i, ["DBSIZE"]) else { Issue.record("DBSIZE"); continue }
            #expect(n > 0, "node \(i) holds no hash")
        }
        // Each key is a field of hps_et{<tag>/p<n>}v with n = hpsKeyMix(key) % partitions, its 8 raw
        // bytes as the field and the raw float32 row as the value; slots agree with the server's.
        let owners = try cluster.partitionOwners(tag: tag, partitions: partitions)
        for key in keys.prefix(40) {
            let p = Int(hpsKeyMix(key) % UInt64(partitions))
            let hash = RedisKeyLayout.hashKey(tag: tag, partition: p, suffix: "v")
            #expect(try cluster.command(node: 0, ["CLUSTER", "KEYSLOT", hash]) == .integer(RedisClusterSlot.slot(hash)))
            let raw = try rawHGET(cluster, node: owners[p], hash: hash, field: keyBytes(key))
            #expect(raw == C.row(key, dim: 4).withUnsafeBytes { Array($0) })
        }
        // findTables uses SCAN on every master.
        try C.insert(db, TableTag.make(model: "layout", table: "other"), [1, 2, 3], dim: 2)
        try C.insert(db, TableTag.make(model: "layout2", table: "emb"), [1], dim: 2)
        #expect(try db.findTables(model: "layout") == [tag, TableTag.make(model: "layout", table: "other")])
        #expect(db.statistics.redirects == 0)

        // Migrate partition 0's slot from its owner A to B by hand, as a resharding would.
        let hash0 = RedisKeyLayout.hashKey(tag: tag, partition: 0, suffix: "v")
        let slot = RedisClusterSlot.slot(hash0)
        let a = owners[0]
        let b = (a + 1) % 3
        let idA = try cluster.nodeID(a)
        let idB = try cluster.nodeID(b)
        #expect(try cluster.command(node: b, ["CLUSTER", "SETSLOT", "\(slot)", "IMPORTING", idA]) == .status("OK"))
        #expect(try cluster.command(node: a, ["CLUSTER", "SETSLOT", "\(slot)", "MIGRATING", idB]) == .status("OK"))
        #expect(try cluster.command(node: a, ["MIGRATE", "127.0.0.1", "\(cluster.ports[b])", "", "0", "5000", "KEYS", hash0]) == .status("OK"))
        // Mid-migration: A answers ASK for the moved hash; the client follows it with ASKING.
        let partition0 = keys.filter { hpsKeyMix($0) % UInt64(partitions) == 0 }
        #expect(!partition0.isEmpty)
        let asked = try C.fetch(db, tag, partition0, dim: 4)
        #expect(asked.misses.isEmpty)
        #expect(asked.values.map(\.bitPattern) == C.rows(partition0, dim: 4).map(\.bitPattern))
        let afterAsk = db.statistics.redirects
        #expect(afterAsk > 0)
        // Finish the migration: now A answers MOVED; the client refreshes its slot map.
        for i in cluster.ports.indices {
            #expect(try cluster.command(node: i, ["CLUSTER", "SETSLOT", "\(slot)", "NODE", idB]) == .status("OK"))
        }
        let refreshes = db.statistics.slotMapRefreshes
        let moved = try C.fetch(db, tag, keys, dim: 4)
        #expect(moved.misses.isEmpty)
        #expect(moved.values.map(\.bitPattern) == C.rows(keys, dim: 4).map(\.bitPattern))
        #expect(db.statistics.redirects > afterAsk)
        #expect(db.statistics.slotMapRefreshes > refreshes)
        // Later calls go straight to B.
        let settled = db.statistics.redirects
        #expect(try C.insert(db, tag, partition0, dim: 4, salt: 1) == 0)
        #expect(try C.fetch(db, tag, partition0, dim: 4).values.map(\.bitPattern) == C.rows(partition0, dim: 4, salt: 1).map(\.bitPattern))
        #expect(db.statistics.redirects == settled)
        #expect(try cluster.owner(ofSlot: slot) == b)
    }

    @Test func overflowPolicies() throws {
        let cluster = try LocalRedisCluster()
        defer { cluster.shutdown() }

        // Random: after each insert a partition above the margin drops to round(margin × target).
        let random = try openRedis(redisConfig(cluster.address, partitions: 2, maxBatchSize: 16, margin: 50, policy: .evictRandom, target: 0.8))
        #expect(random.capacity(table: "x") == 100)
        let tagR = "hps_et.overflow.random"
        for b in 0..<20 { try C.insert(random, tagR, (0..<10).map { Int64(b * 10 + $0) }, dim: 2) }
        let sizeR = try random.size(table: tagR)
        #expect(sizeR <= 100)
        #expect(sizeR >= 80)
        #expect(random.statistics.overflowEvictions == 200 - sizeR)

        // LRU: keys fetched after loading are newer than the rest and survive the eviction.
        let lru = try openRedis(redisConfig(cluster.address, partitions: 1, margin: 50, policy: .evictOldest, target: 0.8))
        let tagL = "hps_et.overflow.lru"
        try C.insert(lru, tagL, (0..<50).map { Int64($0) }, dim: 2)
        #expect(try lru.size(table: tagL) == 50)
        _ = try C.fetch(lru, tagL, (0..<10).map { Int64($0) }, dim: 2)
        lru.waitForMetadataUpdates()
        try C.insert(lru, tagL, [1000], dim: 2)
        #expect(try lru.size(table: tagL) == 40)
        let keptL = try C.fetch(lru, tagL, (0..<10).map { Int64($0) } + [1000], dim: 2)
        #expect(keptL.misses.isEmpty)

        // LFU: keys fetched often survive; counters are HINCRBY'd in the metadata hash.
        let lfu = try openRedis(redisConfig(cluster.address, partitions: 1, margin: 50, policy: .evictLeastUsed, target: 0.5))
        let tagF = "hps_et.overflow.lfu"
        try C.insert(lfu, tagF, (0..<50).map { Int64($0) }, dim: 2)
        for _ in 0..<3 { _ = try C.fetch(lfu, tagF, (40..<50).map { Int64($0) }, dim: 2) }
        lfu.waitForMetadataUpdates()
        let meta = RedisKeyLayout.hashKey(tag: tagF, partition: 0, suffix: "t")
        let owner = try cluster.owner(ofSlot: RedisClusterSlot.slot(meta))
        #expect(try cluster.command(node: owner, ["HLEN", meta]) == .integer(10))
        #expect(try rawHGET(cluster, node: owner, hash: meta, field: keyBytes(45)) == Array("3".utf8))
        try C.insert(lfu, tagF, [1000, 1001], dim: 2)
        #expect(try lfu.size(table: tagF) == 25)
        let keptF = try C.fetch(lfu, tagF, (40..<50).map { Int64($0) }, dim: 2)
        #expect(keptF.misses.isEmpty)
        #expect(lfu.statistics.overflowEvictions == 27)

        // evict(table) removes both hashes of every partition.
        #expect(try lfu.evict(table: tagF) == 25)
        #expect(try cluster.command(node: owner, ["EXISTS", meta, RedisKeyLayout.hashKey(tag: tagF, partition: 0, suffix: "v")]) == .integer(0))
    }

    /// A node that dies or hangs turns its keys into misses (no throw, no hang); writes report it; the
    /// client reconnects when the node is back.
    @Test func nodeFailuresAndRecovery() throws {
        let cluster = try LocalRedisCluster()
        defer { cluster.shutdown() }
        let partitions = 12
        let db = try openRedis(redisConfig(cluster.address, partitions: partitions, maxBatchSize: 500))
        let tag = TableTag.make(model: "faults", table: "emb")
        let keys = (0..<6000).map { Int64($0) * 104_729 + 5 }
        try C.insert(db, tag, keys, dim: 8)
        let owners = try cluster.partitionOwners(tag: tag, partitions: partitions)
        func expectedMisses(node: Int) -> [Int] {
            keys.indices.filter { owners[Int(hpsKeyMix(keys[$0]) % UInt64(partitions))] == node }
        }
        func checkHits(_ result: (values: [Float], misses: [Int], hits: Int), except missing: [Int]) {
            #expect(result.misses == missing)
            #expect(result.hits == keys.count - missing.count)
            let missingSet = Set(missing)
            var wrong = 0
            for (i, key) in keys.enumerated() where !missingSet.contains(i) {
                if Array(result.values[(i * 8)..<(i * 8 + 8)]).map(\.bitPattern) != C.row(key, dim: 8).map(\.bitPattern) { wrong += 1 }
            }
            #expect(wrong == 0)
        }

        // 1. A hung node (SIGSTOP): its keys become misses within the command timeout.
        let hung = 1
        let missing1 = expectedMisses(node: hung)
        #expect(!missing1.isEmpty)
        cluster.pause(node: hung)
        var start = monotonicSeconds()
        let whileHung = try C.fetch(db, tag, keys, dim: 8)
        #expect(monotonicSeconds() - start < 3)
        checkHits(whileHung, except: missing1)
        #expect(db.statistics.failedLookupKeys == missing1.count)
        // While it is in back-off, its keys fail at once.
        start = monotonicSeconds()
        checkHits(try C.fetch(db, tag, keys, dim: 8), except: missing1)
        #expect(monotonicSeconds() - start < 2)
        cluster.resume(node: hung)
        // Back after the reconnect interval, with its data.
        var recovered = false
        for _ in 0..<50 where !recovered {
            recovered = try C.fetch(db, tag, keys, dim: 8).misses.isEmpty
            if !recovered { sleepMs(100) }
        }
        #expect(recovered)

        // 2. A crashed node (SIGKILL).
        let dead = 2
        let missing2 = expectedMisses(node: dead)
        #expect(!missing2.isEmpty)
        let opened = db.statistics.connectionsOpened
        cluster.kill(node: dead)
        start = monotonicSeconds()
        checkHits(try C.fetch(db, tag, keys, dim: 8), except: missing2)
        #expect(monotonicSeconds() - start < 3)
        // contains counts its keys as absent; size and writes report the node.
        #expect(try keys.withUnsafeBufferPointer { try db.contains(table: tag, keys: $0) } == keys.count - missing2.count)
        #expect(throws: HPSError.self) { try db.size(table: tag) }
        do {
            try C.insert(db, tag, keys, dim: 8, salt: 2)
            Issue.record("insert with a dead node must throw")
        } catch let error as HPSError {
            #expect(error.code == .database)
            #expect(error.subject == tag)
            #expect(error.message.contains(cluster.address(ofNode: dead)))
            #expect(error.message.contains("\(missing2.count) keys were not stored"))
        }
        #expect(db.statistics.failedInsertKeys == missing2.count)
        // The other nodes took the insert.
        let partial = try C.fetch(db, tag, keys, dim: 8)
        #expect(partial.misses == missing2)
        let missing2Set = Set(missing2)
        var stale = 0
        for (i, key) in keys.enumerated() where !missing2Set.contains(i) {
            if Array(partial.values[(i * 8)..<(i * 8 + 8)]).map(\.bitPattern) != C.row(key, dim: 8, salt: 2).map(\.bitPattern) { stale += 1 }
        }
        #expect(stale == 0)

        // 3. The node comes back (same port, same nodes.conf, no data): the client reconnects; a reload
        // makes every key hit again.
        try cluster.restart(node: dead)
        var reloaded = false
        for _ in 0..<50 where !reloaded {
            do {
                try C.insert(db, tag, keys, dim: 8)
                reloaded = true
            } catch {
                sleepMs(100)
            }
        }
        #expect(reloaded)
        checkHits(try C.fetch(db, tag, keys, dim: 8), except: [])
        #expect(try db.size(table: tag) == keys.count)
        #expect(db.statistics.connectionsOpened > opened)
    }

    @Test func seedsAndAuthentication() throws {
        let cluster = try LocalRedisCluster(password: "s3cret")
        defer { cluster.shutdown() }
        // A dead first seed is skipped.
        let dead = "127.0.0.1:\(unusedPort())"
        let db = try openRedis(redisConfig("\(dead),\(cluster.address(ofNode: 1))", password: "s3cret"))
        try C.insert(db, "hps_et.auth.t", [1, 2, 3], dim: 2)
        #expect(try C.fetch(db, "hps_et.auth.t", [1, 2, 3, 4], dim: 2).misses == [3])
        // Explicit user name "default" works the same.
        var named = redisConfig(cluster.address, password: "s3cret")
        named.userName = "default"
        #expect(try openRedis(named).size(table: "hps_et.auth.t") == 3)

        // Wrong or missing password: a clear error naming the address, quickly.
        for password in ["wrong", ""] {
            let start = monotonicSeconds()
            do {
                _ = try openRedis(redisConfig(cluster.address(ofNode: 0), password: password))
                Issue.record("expected an AUTH error for password '\(password)'")
            } catch let error as HPSError {
                #expect(error.code == .database)
                #expect(error.subject == "volatile_db.address")
                #expect(error.underlying?.contains(password.isEmpty ? "NOAUTH" : "AUTH") == true, "\(error)")
            }
            #expect(monotonicSeconds() - start < 3)
        }
        // No node at all.
        let start = monotonicSeconds()
        #expect(throws: HPSError.self) { try openRedis(redisConfig("\(dead),127.0.0.1:\(unusedPort())")) }
        #expect(monotonicSeconds() - start < 3)
    }
}

/// HGET with a binary field, through a raw connection (the test helper's String arguments are UTF-8).
func rawHGET(_ cluster: LocalRedisCluster, node: Int, hash: String, field: [UInt8]) throws -> [UInt8]? {
    switch try cluster.command(node: node, bytes: [Array("HGET".utf8), Array(hash.utf8), field]) {
    case .string(let bytes): return bytes
    default: return nil
    }
}
