import HPS
import HPSRedis

/// The baseline `hps bench redis` compares ``RedisClusterDatabase`` with: the plainest fast way to read
/// HPS's hashes from a cluster, written directly against hiredis. One connection per master; a batch
/// is grouped by HPS partition, every partition's `HMGET hps_et{<tag>/p<n>}v k…` chunks are appended to
/// its node's connection, all connections are flushed, then the replies are read and copied out, on
/// the calling thread. No redirections, no fault handling, no metadata.
public final class RedisRawBaseline: @unchecked Sendable {
    // @unchecked Sendable: the benchmark drives one baseline from one thread (`hps bench redis`: threads 1); `order`
    // and `starts` are that thread's scratch, the connections are not shared with anything else.
    private let connections: [RedisConnection]
    /// Per partition: its connection's index and hash key.
    private let partitionConnection: [Int]
    private let keys: TableKeys
    private let maxBatch: Int
    private let partitions: Int
    private var order: [Int32] = []
    private var starts: [Int]

    /// Connects to every master of the cluster at `address` (one seed suffices).
    /// - Throws: ``HPSError`` `.database` naming the address when no node answers or a master cannot be connected.
    public init(address: String, tag: String, partitions: Int, maxBatchSize: Int, password: String = "") throws {
        let settings = RedisClientSettings(
            connectTimeoutMs: 2000, commandTimeoutMs: 30_000, reconnectIntervalMs: 0, connectionsPerNode: 1,
            userName: "", password: password)
        do {
            let client = try RedisClusterClient(seeds: try RedisEndpoint.parseList(address), settings: settings)
            let masters = client.masters
            connections = try masters.map { node throws(RedisFailure) in
                try RedisConnection.connect(
                    host: node.endpoint.host, port: node.endpoint.port, connectTimeoutMs: 2000, commandTimeoutMs: 30_000, password: password)
            }
            keys = TableKeys(tag: tag, partitions: partitions)
            partitionConnection = try keys.slots.map { slot throws(RedisFailure) in
                guard let owner = client.owner(ofSlot: slot), let index = masters.firstIndex(where: { $0 === owner }) else {
                    throw RedisFailure(kind: .server, address: address, message: "no master serves slot \(slot)")
                }
                return index
            }
            client.close()
        } catch let error as RedisFailure {
            throw HPSError(.database, subject: address, "raw baseline cannot connect", cause: error)
        }
        maxBatch = maxBatchSize
        self.partitions = partitions
        starts = Array(repeating: 0, count: partitions + 1)
    }

    /// Fetches `keys` into `values` (rows of `valueSize` bytes). - Returns: the number of hits.
    /// - Throws: ``HPSError`` `.database` naming the node when a connection fails or a reply is not what `HMGET`
    ///   returns.
    public func fetch(keys input: UnsafeBufferPointer<Int64>, values: UnsafeMutableRawBufferPointer, valueSize: Int) throws -> Int {
        let n = input.count
        if order.count < n { order = Array(repeating: 0, count: n) }
        // Group positions by partition (counting sort).
        for p in 0...partitions { starts[p] = 0 }
        for i in 0..<n { starts[Int(hpsKeyMix(input[i]) % UInt64(partitions)) + 1] += 1 }
        for p in 0..<partitions { starts[p + 1] += starts[p] }
        var cursor = starts
        for i in 0..<n {
            let p = Int(hpsKeyMix(input[i]) % UInt64(partitions))
            order[cursor[p]] = Int32(i)
            cursor[p] += 1
        }
        let keyBase = UnsafeRawPointer(input.baseAddress!)
        let out = values.baseAddress!
        var hits = 0
        do {
            try order.withUnsafeBufferPointer { order throws(RedisFailure) in
                for p in 0..<partitions {
                    var lo = starts[p]
                    while lo < starts[p + 1] {
                        let hi = min(starts[p + 1], lo + maxBatch)
                        appendKeyCommand(connections[partitionConnection[p]], Verb.hmget, keys.values[p], count: hi - lo) { j in
                            keyBase + Int(order[lo + j]) * 8
                        }
                        lo = hi
                    }
                }
                for connection in connections { try connection.flush() }
                for p in 0..<partitions {
                    var lo = starts[p]
                    while lo < starts[p + 1] {
                        let hi = min(starts[p + 1], lo + maxBatch)
                        try connections[partitionConnection[p]].readReply { reply in
                            for j in 0..<min(hi - lo, reply.count) {
                                let element = reply[j]
                                guard element.isString, element.bytes.count == valueSize else { continue }
                                (out + Int(order[lo + j]) * valueSize).copyMemory(from: element.bytes.baseAddress!, byteCount: valueSize)
                                hits += 1
                            }
                        }
                        lo = hi
                    }
                }
            }
        } catch {
            throw HPSError(.database, subject: "raw baseline", "HMGET pipeline failed", cause: error)
        }
        return hits
    }
}
