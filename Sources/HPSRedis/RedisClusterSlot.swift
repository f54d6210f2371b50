/// Redis Cluster's key → slot mapping: CRC16 (XMODEM) of the key's hash tag, modulo 16384.
public enum RedisClusterSlot {
    /// Slots in a Redis Cluster.
    public static let count = 16384

    /// CRC16-CCITT as Redis Cluster uses it (XMODEM: polynomial 0x1021, initial value 0, no
    /// reflection, no final xor). `crc16("123456789") == 0x31C3`.
    public static func crc16<Bytes: Sequence>(_ bytes: Bytes) -> UInt16 where Bytes.Element == UInt8 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }

    /// The part of `key` that is hashed: the bytes between the first `{` and the first `}` after it,
    /// when that is not empty; otherwise the whole key.
    public static func hashTag(_ key: [UInt8]) -> ArraySlice<UInt8> {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")),
            let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")),
            close > open + 1
        else { return key[...] }
        return key[(open + 1)..<close]
    }

    /// The slot of `key` (raw bytes).
    public static func slot(_ key: [UInt8]) -> Int { Int(crc16(hashTag(key)) & 0x3FFF) }

    /// The slot of `key` (its UTF-8 bytes).
    public static func slot(_ key: String) -> Int { slot(Array(key.utf8)) }

    private static let table: [UInt16] = (0..<256).map { i in
        var crc = UInt16(i) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}

/// The Redis keys HPS uses for a table: per partition `n` a hash of values `hps_et{<tag>/p<n>}v` and a
/// hash of LRU/LFU metadata `hps_et{<tag>/p<n>}t`; the hash tag `{<tag>/p<n>}` puts both on one slot.
/// Fields are the key's 8 raw little-endian bytes; partition = ``hpsKeyMix(_:)`` `% num_partitions`.
public enum RedisKeyLayout {
    /// `hps_et{<tag>/p<partition>}<suffix>` with `suffix` `v` (values) or `t` (metadata).
    public static func hashKey(tag: String, partition: Int, suffix: Character) -> String {
        "hps_et{\(tag)/p\(partition)}\(suffix)"
    }

    /// The SCAN pattern matching the value hashes of every table of `model`.
    public static func valueHashPattern(model: String) -> String { "hps_et{hps_et.\(model).*}v" }

    /// The table tag, partition and suffix (`v` or `t`) of a hash key, if `key` is one.
    public static func parse(_ key: String) -> (tag: String, partition: Int, suffix: Character)? {
        let bytes = Array(key.utf8)
        let prefix = Array("hps_et{".utf8)
        guard bytes.count > prefix.count + 4, bytes.starts(with: prefix), bytes[bytes.count - 2] == UInt8(ascii: "}") else { return nil }
        let suffix = bytes[bytes.count - 1]
        guard suffix == UInt8(ascii: "v") || suffix == UInt8(ascii: "t") else { return nil }
        let inner = bytes[prefix.count..<(bytes.count - 2)]
        // The last "/p" followed by digits only.
        var i = inner.endIndex - 1
        while i > inner.startIndex && inner[i] >= UInt8(ascii: "0") && inner[i] <= UInt8(ascii: "9") { i -= 1 }
        guard i > inner.startIndex + 1, i < inner.endIndex - 1, inner[i] == UInt8(ascii: "p"), inner[i - 1] == UInt8(ascii: "/"),
            let partition = Int(String(decoding: inner[(i + 1)...], as: UTF8.self))
        else { return nil }
        return (String(decoding: inner[..<(i - 1)], as: UTF8.self), partition, Character(UnicodeScalar(suffix)))
    }
}
