import HPS
import HPSRedis
import HPSTestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Redis tests start real `redis-server` processes (Debian package `redis-server`). Set
/// `HPS_SKIP_REDIS_TESTS=1` to skip them on a machine without Redis; otherwise a missing server fails
/// the tests with a clear message.
let skipRedisTests = getenv("HPS_SKIP_REDIS_TESTS").map { String(cString: $0) == "1" } ?? false

/// A volatile-database config for the Redis backend at `address`.
func redisConfig(
    _ address: String, partitions: Int = 5, maxBatchSize: Int = 65536, connections: Int = 2,
    margin: Int = .max, policy: OverflowPolicy = .evictRandom, target: Double = 0.8, password: String = ""
) -> VolatileDatabaseConfig {
    var config = VolatileDatabaseConfig()
    config.type = .redisCluster
    config.address = address
    config.numPartitions = partitions
    config.maxBatchSize = maxBatchSize
    config.numNodeConnections = connections
    config.overflowMargin = margin
    config.overflowPolicy = policy
    config.overflowResolutionTarget = target
    config.password = password
    return config
}

/// Short timeouts so fault tests finish quickly.
func fastRedisOptions() -> RedisClusterDatabase.Options {
    var options = RedisClusterDatabase.Options()
    options.connectTimeoutMs = 500
    options.commandTimeoutMs = 500
    options.reconnectIntervalMs = 200
    return options
}

func openRedis(_ config: VolatileDatabaseConfig, options: RedisClusterDatabase.Options = fastRedisOptions()) throws -> RedisClusterDatabase {
    try RedisClusterDatabase(config: config, options: options, logger: .silent)
}

extension LocalRedisCluster {
    /// Index (into `ports`) of the node that serves `slot`, by `CLUSTER SLOTS` asked of node `via`.
    func owner(ofSlot slot: Int, via: Int = 0) throws -> Int {
        guard case .array(let ranges) = try command(node: via, ["CLUSTER", "SLOTS"]) else { return -1 }
        for case .array(let fields) in ranges {
            guard fields.count >= 3, case .integer(let start) = fields[0], case .integer(let end) = fields[1],
                case .array(let master) = fields[2], master.count >= 2, case .integer(let port) = master[1]
            else { continue }
            if (start...end).contains(slot) { return ports.firstIndex(of: port) ?? -1 }
        }
        return -1
    }

    /// Node index of each partition's hashes of `tag`.
    func partitionOwners(tag: String, partitions: Int, via: Int = 0) throws -> [Int] {
        try (0..<partitions).map { p in
            try owner(ofSlot: RedisClusterSlot.slot(RedisKeyLayout.hashKey(tag: tag, partition: p, suffix: "v")), via: via)
        }
    }
}

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Little-endian bytes of `key`, as HPS stores it as a hash field.
func keyBytes(_ key: Int64) -> [UInt8] { withUnsafeBytes(of: key.littleEndian) { Array($0) } }

func sleepMs(_ ms: Int) { usleep(UInt32(ms) * 1000) }

/// A port nothing listens on (for dead seeds).
func unusedPort() -> Int {
    for port in 45000..<46000 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if ok == 0 { return port }
    }
    return 1
}
