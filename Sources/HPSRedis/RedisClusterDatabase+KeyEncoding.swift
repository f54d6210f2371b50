// Key encoding for `RedisClusterDatabase`'s commands: the hash keys and slots of a table's partitions
// (`hps_et{<tag>/p<n>}v` and `…t`), command names as static C strings, and the helpers that put them and
// 8-byte keys into a command's argument vector.

/// A byte string that lives as long as its owner (a table's hash key, a stamp), as a command argument.
package struct HashKey: @unchecked Sendable {
    // @unchecked Sendable: a pointer into bytes its owner (``TableKeys``, or a caller's local buffer for the duration
    // of a call) writes once and never changes; it is only read.
    let pointer: UnsafePointer<CChar>
    let count: Int
    init(_ pointer: UnsafePointer<CChar>, _ count: Int) {
        self.pointer = pointer
        self.count = count
    }
    var text: String {
        String(decoding: UnsafeRawBufferPointer(start: pointer, count: count), as: UTF8.self)
    }
}

/// The hash keys and slots of each partition of one table.
package final class TableKeys: @unchecked Sendable {
    // @unchecked Sendable: every property is written in init and only read afterwards; `storage`, which the hash keys
    // point into, lives until deinit.
    let tag: String
    package let values: [HashKey]
    let meta: [HashKey]
    package let slots: [Int]
    private let storage: UnsafeMutableRawBufferPointer

    package init(tag: String, partitions: Int) {
        self.tag = tag
        let valueKeys = (0..<partitions).map { Array(RedisKeyLayout.hashKey(tag: tag, partition: $0, suffix: "v").utf8) }
        let metaKeys = (0..<partitions).map { Array(RedisKeyLayout.hashKey(tag: tag, partition: $0, suffix: "t").utf8) }
        let total = (valueKeys + metaKeys).reduce(0) { $0 + $1.count }
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, total), alignment: 1)
        self.storage = storage
        var offset = 0
        func place(_ bytes: [UInt8]) -> HashKey {
            let start = storage.baseAddress! + offset
            start.copyMemory(from: bytes, byteCount: bytes.count)
            offset += bytes.count
            return HashKey(UnsafePointer(start.assumingMemoryBound(to: CChar.self)), bytes.count)
        }
        values = valueKeys.map(place)
        meta = metaKeys.map(place)
        slots = valueKeys.map { RedisClusterSlot.slot($0) }
    }

    deinit { storage.deallocate() }
}

/// Command names as static C strings.
package enum Verb {
    package static let hmget: StaticString = "HMGET"
    static let hset: StaticString = "HSET"
    static let hlen: StaticString = "HLEN"
    static let hdel: StaticString = "HDEL"
    static let hexists: StaticString = "HEXISTS"
    static let hincrby: StaticString = "HINCRBY"
    static let hrandfield: StaticString = "HRANDFIELD"
    static let hkeys: StaticString = "HKEYS"
    static let hgetall: StaticString = "HGETALL"
    static let hscan: StaticString = "HSCAN"
    static let del: StaticString = "DEL"
    static let count: StaticString = "COUNT"
    static let withValues: StaticString = "WITHVALUES"
    static let one: StaticString = "1"
}

@inline(__always)
func set(_ argv: UnsafeMutablePointer<UnsafePointer<CChar>?>, _ lengths: UnsafeMutablePointer<Int>, _ i: Int, _ word: StaticString) {
    argv[i] = UnsafeRawPointer(word.utf8Start).assumingMemoryBound(to: CChar.self)
    lengths[i] = word.utf8CodeUnitCount
}

@inline(__always)
func set(_ argv: UnsafeMutablePointer<UnsafePointer<CChar>?>, _ lengths: UnsafeMutablePointer<Int>, _ i: Int, _ key: HashKey) {
    argv[i] = key.pointer
    lengths[i] = key.count
}

/// Appends `<verb> <hash> key_0 … key_{n-1}` where each key is 8 bytes at `key(j)`.
@inline(__always)
package func appendKeyCommand(_ c: RedisConnection, _ verb: StaticString, _ hash: HashKey, count n: Int, key: (Int) -> UnsafeRawPointer) {
    c.append(argc: 2 + n) { argv, lengths in
        set(argv, lengths, 0, verb)
        set(argv, lengths, 1, hash)
        for j in 0..<n {
            argv[2 + j] = key(j).assumingMemoryBound(to: CChar.self)
            lengths[2 + j] = 8
        }
    }
}
