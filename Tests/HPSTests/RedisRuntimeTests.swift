import Foundation
import HPS
import HPSRedis
import HPSRuntime
import HPSTestSupport
import Synchronization
import Testing

/// The Redis tier inside a whole parameter server built by HPSRuntime from a config.
@Suite(.disabled(if: skipRedisTests, "HPS_SKIP_REDIS_TESTS=1"), .timeLimit(.minutes(2)))
struct RedisRuntimeTests {
    /// Two tables (3,000 and 500 rows) over the cluster's Redis (6 partitions) with RocksDB behind it, no cache.
    func redisOverRocksDB(_ cluster: LocalRedisCluster) throws -> Fixture {
        var fixture = try Fixture(rows: [3000, 500])
        fixture.config.volatileDatabase = redisConfig(cluster.address, partitions: 6)
        fixture.config.persistentDatabase.type = .rocksDB
        fixture.config.persistentDatabase.path = fixture.directory.file("rocks")
        fixture.config.persistentDatabase.numThreads = 2
        fixture.model.deviceCache = false
        return fixture
    }

    @Test func parameterServerOverRedisFallsBackToRocksDBWhenANodeDies() throws {
        let cluster = try LocalRedisCluster()
        defer { cluster.shutdown() }
        let fixture = try redisOverRocksDB(cluster)
        defer { fixture.directory.remove() }
        let server = try fixture.server()
        let vdb = try #require(server.volatileDatabase as? RedisClusterDatabase)
        #expect(try vdb.size(table: "hps_et.demo.t0") == 3000)
        #expect(try vdb.findTables(model: "demo") == ["hps_et.demo.t0", "hps_et.demo.t1"])
        let session = try server.session(model: "demo", device: 0)
        // Known keys (≡ 0 mod 3), unknown keys and duplicates.
        let keys: [Int64] = (0..<200).map { Int64($0 * 7 % 400) } + [3, 3, 999_999]
        let expected = fixture.expected(table: 0, keys: keys).map(\.bitPattern)
        #expect(try session.lookup(table: 0, keys: keys).map(\.bitPattern) == expected)

        // A dead node: its keys miss in Redis and come from RocksDB, exactly, without an error.
        cluster.kill(node: 1)
        #expect(try session.lookup(table: 0, keys: keys).map(\.bitPattern) == expected)
        #expect(vdb.statistics.failedLookupKeys > 0)
        #expect(try session.lookup(table: 1, keys: [1, 4, 5]).map(\.bitPattern) == fixture.expected(table: 1, keys: [1, 4, 5]).map(\.bitPattern))
    }

    /// Issue 17, item 9: a node down at startup, RocksDB behind Redis holding every key. The server starts,
    /// names the node and the keys it could not write, and answers exactly (Redis, then RocksDB).
    @Test func startsWithARedisNodeDownAndAnswersFromRocksDB() throws {
        let cluster = try LocalRedisCluster()
        defer { cluster.shutdown() }
        let fixture = try redisOverRocksDB(cluster)
        defer { fixture.directory.remove() }
        let dead = 1
        let owners = try cluster.partitionOwners(tag: "hps_et.demo.t0", partitions: 6)
        #expect(owners.contains(dead))
        cluster.kill(node: dead)

        let log = LogCapture()
        let server = try HPSRuntime.makeParameterServer(config: fixture.config, logger: log.logger)
        let warnings = log.all.filter { $0.contains("could not take") }
        #expect(warnings.count == 2, "one warning per table: \(warnings)")
        let t0 = try #require(warnings.first { $0.contains("hps_et.demo.t0") })
        #expect(t0.contains(cluster.address(ofNode: dead)))
        #expect(t0.contains("rocks_db"))
        // The count is the number of keys of the dead node's partitions.
        let keys0 = (0..<3000).map { Int64($0) * 3 }
        let deadKeys = keys0.filter { owners[Int(hpsKeyMix($0) % 6)] == dead }.count
        #expect(deadKeys > 0)
        #expect(t0.contains("could not take \(deadKeys) of 3000 keys"), "\(t0)")

        let session = try server.session(model: "demo", device: 0)
        let keys: [Int64] = keys0 + [1, 2, 999_999]
        #expect(try session.lookup(table: 0, keys: keys).map(\.bitPattern) == fixture.expected(table: 0, keys: keys).map(\.bitPattern))
        let keys1 = (0..<500).map { Int64($0) * 3 + 1 } + [0, 3]
        #expect(try session.lookup(table: 1, keys: keys1).map(\.bitPattern) == fixture.expected(table: 1, keys: keys1).map(\.bitPattern))
        #expect(server.statistics.persistentHits.load(ordering: .relaxed) >= deadKeys)
    }

    /// Issue 17, item 9: the node that was down at startup is filled once it is back — by the background
    /// timer, or at once by a session's refresh — and then answers every key itself.
    @Test(arguments: ["timer", "refresh"])
    func aNodeThatComesBackIsFilled(via trigger: String) throws {
        let cluster = try LocalRedisCluster()
        defer { cluster.shutdown() }
        let fixture = try redisOverRocksDB(cluster)
        defer { fixture.directory.remove() }
        cluster.kill(node: 1)
        let log = LogCapture()
        let server = try HPSRuntime.makeParameterServer(config: fixture.config, logger: log.logger)
        #expect(server.tablesAwaitingVolatileRefill == ["hps_et.demo.t0", "hps_et.demo.t1"])
        let vdb = try #require(server.volatileDatabase)
        #expect((try? vdb.size(table: "hps_et.demo.t0")) == nil, "size fails while a node is down")
        // Still down: a refresh changes nothing and keeps the tables pending.
        let session = try server.session(model: "demo", device: 0)
        _ = try session.refresh()
        #expect(server.tablesAwaitingVolatileRefill.count == 2)

        try cluster.restart(node: 1)
        let deadline = ContinuousClock.now + .seconds(60)
        while !server.tablesAwaitingVolatileRefill.isEmpty && ContinuousClock.now < deadline {
            if trigger == "refresh" { _ = try session.refresh() }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(server.tablesAwaitingVolatileRefill.isEmpty, "\(log.all.suffix(5))")
        #expect(try vdb.size(table: "hps_et.demo.t0") == 3000)
        #expect(try vdb.size(table: "hps_et.demo.t1") == 500)
        #expect(log.all.contains { $0.contains("hps_et.demo.t0") && $0.contains("wrote its 3000 rows back") })
        // Every key now comes from Redis; none from RocksDB.
        let before = server.statistics.persistentHits.load(ordering: .relaxed)
        let keys0 = (0..<3000).map { Int64($0) * 3 }
        #expect(try session.lookup(table: 0, keys: keys0).map(\.bitPattern) == fixture.expected(table: 0, keys: keys0).map(\.bitPattern))
        #expect(server.statistics.persistentHits.load(ordering: .relaxed) == before)
    }

    /// Without a persistent database the keys of a dead node would get the default value: the start fails
    /// and names the node.
    @Test func aRedisNodeDownWithoutPersistentDatabaseFailsTheStart() throws {
        let cluster = try LocalRedisCluster()
        defer { cluster.shutdown() }
        var fixture = try Fixture(rows: [3000, 500])
        defer { fixture.directory.remove() }
        fixture.config.volatileDatabase = redisConfig(cluster.address, partitions: 6)
        fixture.model.deviceCache = false
        cluster.kill(node: 1)
        do {
            _ = try fixture.server()
            Issue.record("expected the start to fail")
        } catch let error as HPSError {
            #expect(error.code == .database)
            #expect(error.message.contains(cluster.address(ofNode: 1)))
        }
    }

    /// A table Redis already holds (loaded by an earlier start or another process) is not written again;
    /// after the table was evicted (its size no longer matches the record) it is.
    @Test func aSecondStartDoesNotRewriteWhatRedisHolds() throws {
        let cluster = try LocalRedisCluster()
        defer { cluster.shutdown() }
        var fixture = try Fixture(rows: [3000, 500])
        defer { fixture.directory.remove() }
        fixture.config.volatileDatabase = redisConfig(cluster.address, partitions: 6)
        fixture.model.deviceCache = false
        let first = try fixture.server()
        let vdb = try #require(first.volatileDatabase as? RedisClusterDatabase)
        // A marker only a rewrite would overwrite: key 0 of table 0 (dimension 8) now holds 9s.
        let marker = [Float](repeating: 9, count: 8)
        try [Int64(0)].withUnsafeBufferPointer { k in
            try marker.withUnsafeBytes { v in _ = try vdb.insert(table: "hps_et.demo.t0", keys: k, values: v, valueSize: 32) }
        }

        let log = LogCapture()
        let second = try HPSRuntime.makeParameterServer(config: fixture.config, logger: log.logger)
        #expect(log.count("already holds these table files (loaded by this or another process)") == 2)
        #expect(try second.session(model: "demo", device: 0).lookup(table: 0, keys: [0, 3]) == marker + fixture.expected(table: 0, keys: [3]))

        _ = try vdb.evict(table: "hps_et.demo.t0")
        let log3 = LogCapture()
        let third = try HPSRuntime.makeParameterServer(config: fixture.config, logger: log3.logger)
        #expect(log3.count("already holds these table files (loaded by this or another process)") == 1)
        let keys = (0..<3000).map { Int64($0) * 3 }
        #expect(try third.session(model: "demo", device: 0).lookup(table: 0, keys: keys).map(\.bitPattern) == fixture.expected(table: 0, keys: keys).map(\.bitPattern))
        #expect(try vdb.size(table: "hps_et.demo.t0") == 3000)
    }

    @Test func runtimeReportsAnUnreachableCluster() {
        var config = VolatileDatabaseConfig()
        config.type = .redisCluster
        config.address = "127.0.0.1:\(unusedPort())"
        do {
            _ = try HPSRuntime.makeVolatileDatabase(config, logger: .silent)
            Issue.record("expected an error")
        } catch let error as HPSError {
            #expect(error.code == .database)
            #expect(error.subject == "volatile_db.address")
            #expect(error.description.contains(config.address))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
