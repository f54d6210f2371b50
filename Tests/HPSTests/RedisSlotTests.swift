import HPS
import HPSRedis
import Testing

/// The pure parts of the Redis client: slot hashing, HPS's key layout, address parsing.
@Suite struct RedisSlotTests {
    @Test func crc16KnownValues() {
        // The check value of CRC-16/XMODEM, as in Redis Cluster's specification.
        #expect(RedisClusterSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(RedisClusterSlot.crc16([UInt8]()) == 0)
        #expect(RedisClusterSlot.crc16([0x00]) == 0)
        #expect(RedisClusterSlot.crc16([0x41]) == 0x58E5)  // "A"
    }

    @Test func slotsOfKnownKeys() {
        #expect(RedisClusterSlot.slot("foo") == 12182)
        #expect(RedisClusterSlot.slot("bar") == 5061)
        #expect(RedisClusterSlot.slot("hello") == 866)
        #expect(RedisClusterSlot.slot("") == 0)
        for key in ["a", "somewhat longer key", "hps_et{hps_et.m.t/p0}v"] {
            #expect((0..<RedisClusterSlot.count).contains(RedisClusterSlot.slot(key)))
        }
    }

    @Test func hashTags() {
        let slot: (String) -> Int = RedisClusterSlot.slot
        #expect(slot("{user1000}.following") == slot("{user1000}.followers"))
        #expect(slot("{user1000}.following") == slot("user1000"))
        // Only the first {…} counts; an empty {} means the whole key is hashed.
        #expect(slot("foo{bar}{zap}") == slot("bar"))
        #expect(slot("foo{}{bar}") == Int(RedisClusterSlot.crc16(Array("foo{}{bar}".utf8)) & 0x3FFF))
        #expect(slot("foo{{bar}}zap") == slot("{bar"))
        #expect(slot("foo{bar") == Int(RedisClusterSlot.crc16(Array("foo{bar".utf8)) & 0x3FFF))
        #expect(RedisClusterSlot.hashTag(Array("a{b}c".utf8)) == Array("b".utf8)[...])
    }

    @Test func hpsKeyLayout() {
        let tag = TableTag.make(model: "m", table: "t")
        #expect(RedisKeyLayout.hashKey(tag: tag, partition: 3, suffix: "v") == "hps_et{hps_et.m.t/p3}v")
        #expect(RedisKeyLayout.hashKey(tag: tag, partition: 12, suffix: "t") == "hps_et{hps_et.m.t/p12}t")
        // Values and metadata of a partition share a slot; partitions of one table are spread.
        #expect(RedisClusterSlot.slot("hps_et{hps_et.m.t/p3}v") == RedisClusterSlot.slot("hps_et{hps_et.m.t/p3}t"))
        #expect(RedisClusterSlot.slot("hps_et{hps_et.m.t/p3}v") == RedisClusterSlot.slot("hps_et.m.t/p3"))
        let slots = Set((0..<16).map { RedisClusterSlot.slot(RedisKeyLayout.hashKey(tag: tag, partition: $0, suffix: "v")) })
        #expect(slots.count > 8)

        let parsed = RedisKeyLayout.parse("hps_et{hps_et.my-model.table_1/p15}v")
        #expect(parsed?.tag == "hps_et.my-model.table_1")
        #expect(parsed?.partition == 15)
        #expect(parsed?.suffix == "v")
        #expect(RedisKeyLayout.parse("hps_et{hps_et.m.t/p2}t")?.suffix == "t")
        for bad in ["hps_et{hps_et.m.t/p}v", "hps_et{hps_et.m.t}v", "hps_et{hps_et.m.t/p1}x", "other{x/p1}v", "hps_et{/p1}v", "hps_et{hps_et.m.t/p1}"] {
            #expect(RedisKeyLayout.parse(bad) == nil, "\(bad)")
        }
        #expect(RedisKeyLayout.valueHashPattern(model: "m") == "hps_et{hps_et.m.*}v")
    }

    @Test func addressLists() throws {
        let list = try RedisEndpoint.parseList("127.0.0.1:7000, 10.0.0.2:7001;redis.local,[::1]:7002")
        #expect(list == [
            RedisEndpoint(host: "127.0.0.1", port: 7000), RedisEndpoint(host: "10.0.0.2", port: 7001),
            RedisEndpoint(host: "redis.local", port: 6379), RedisEndpoint(host: "::1", port: 7002),
        ])
        #expect(list[3].description == "[::1]:7002")
        for bad in ["", " , ", "host:0", "host:70000", "host:x", ":7000", "[::1:7000"] {
            #expect(throws: HPSError.self, "\(bad)") { try RedisEndpoint.parseList(bad) }
        }
        do {
            _ = try RedisEndpoint.parseList("host:99999")
        } catch let error as HPSError {
            #expect(error.code == .invalidConfig)
            #expect(error.subject == "volatile_db.address")
            #expect(error.message.contains("99999"))
        }
    }

    @Test func configErrorsAreClear() {
        var config = VolatileDatabaseConfig()
        config.type = .redisCluster
        config.enableTLS = true
        #expect(throws: HPSError.self) { try RedisClusterDatabase(config: config, logger: .silent) }
        config.enableTLS = false
        config.numNodeConnections = 0
        #expect(throws: HPSError.self) { try RedisClusterDatabase(config: config, logger: .silent) }
        config.numNodeConnections = 1
        config.address = "localhost:notaport"
        do {
            _ = try RedisClusterDatabase(config: config, logger: .silent)
            Issue.record("expected an error")
        } catch let error as HPSError {
            #expect(error.subject == "volatile_db.address")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
