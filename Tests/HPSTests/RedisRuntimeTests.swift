import HPS
import HPSRedis
import HPSRuntime
import HPSTestSupport
import Testing

/// The Redis tier inside a whole parameter server built by HPSRuntime from a config.
@Suite(.disabled(if: skipRedisTests, "HPS_SKIP_REDIS_TESTS=1"), .timeLimit(.minutes(2)))
struct RedisRuntimeTests {
    @Test func parameterServerOverRedisFallsBackToRocksDBWhenANodeDies() throws {
        let cluster = try LocalRedisCluster()
        defer { cluster.shutdown() }
        var fixture = try Fixture(rows: [3000, 500])
        fixture.config.volatileDatabase = redisConfig(cluster.address, partitions: 6)
        fixture.config.persistentDatabase.type = .rocksDB
        fixture.config.persistentDatabase.path = fixture.directory.file("rocks")
        fixture.config.persistentDatabase.numThreads = 2
        fixture.model.deviceCache = false
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
