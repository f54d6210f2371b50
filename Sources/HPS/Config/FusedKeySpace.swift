/// The key space of a fused table: the keys of several tables of one model, each tagged with the index of
/// its table within the group (its *member* index), so that equal keys of different tables stay different
/// entries of the one cache and database table they share.
///
/// - `supportlonglong: false` (uint32 keys): `fused = member << 32 | key`. Every key fits.
/// - `supportlonglong: true` (int64 keys): the top ``memberBits`` bits hold the member index, the low
///   ``keyBits`` bits the key; a key fits when it lies in ``keyRange`` (the keys representable in `keyBits`
///   bits, two's complement), e.g. ±2^58 for a group of 26 tables. Loading a table whose key file holds a key
///   outside the range fails, naming the table and the key. A lookup of a key outside the range cannot find
///   a row (no loaded key lies there): it maps to ``absentKey``, whose member index is ``memberCount``, which
///   no table has, and gets the default value.
///
/// Member 0's keys in `0 ..< 2^keyBits` are their own fused keys.
public struct FusedKeySpace: Sendable, Equatable, CustomStringConvertible {
    /// Tables in the group.
    public let memberCount: Int
    public let keyWidth: KeyWidth
    /// Bits of the key: 32 for uint32 keys, `64 - memberBits` for int64 keys.
    public let keyBits: Int

    /// A key space for `memberCount` tables (at least 1) of keys of `keyWidth`.
    public init(memberCount: Int, keyWidth: KeyWidth) {
        precondition(memberCount >= 1 && memberCount < 1 << 31)
        self.memberCount = memberCount
        self.keyWidth = keyWidth
        // int64: enough bits for the member indices 0 ..< memberCount and one more (``absentKey``).
        keyBits = keyWidth == .uint32 ? 32 : 64 - (Int.bitWidth - memberCount.leadingZeroBitCount)
    }

    /// Bits of the member index above the key.
    public var memberBits: Int { 64 - keyBits }

    /// The keys a fused table can hold (normalized keys: uint32 values for `supportlonglong: false`).
    public var keyRange: ClosedRange<Int64> {
        keyWidth == .uint32 ? 0...Int64(UInt32.max) : (Int64.min >> Int64(memberBits))...(Int64.max >> Int64(memberBits))
    }

    /// The fused key every key outside ``keyRange`` maps to: no table's row has it.
    public var absentKey: Int64 { Int64(bitPattern: UInt64(memberCount) << UInt64(keyBits)) }

    /// The tag of `member` (its bits above the key).
    @inline(__always)
    public func memberTag(_ member: Int) -> UInt64 { UInt64(member) << UInt64(keyBits) }

    /// Whether `key` (normalized) can be held by the fused table.
    @inline(__always)
    public func fits(_ key: Int64) -> Bool {
        keyWidth == .uint32 ? UInt64(bitPattern: key) >> 32 == 0 : (key << Int64(memberBits)) >> Int64(memberBits) == key
    }

    /// The fused key of `key` (normalized) of table `member`, or ``absentKey`` when the key does not fit.
    @inline(__always)
    public func encode(_ key: Int64, member: Int) -> Int64 {
        guard fits(key) else { return absentKey }
        let low = UInt64(bitPattern: key) & (UInt64.max >> UInt64(memberBits))
        return Int64(bitPattern: memberTag(member) | low)
    }

    /// The member index and key of a fused key.
    public func decode(_ fused: Int64) -> (member: Int, key: Int64) {
        let bits = UInt64(bitPattern: fused)
        let member = Int(bits >> UInt64(keyBits))
        let key = keyWidth == .uint32 ? Int64(bits & 0xFFFF_FFFF) : (fused << Int64(memberBits)) >> Int64(memberBits)
        return (member, key)
    }

    /// Writes the fused keys of `keys` (normalized) of table `table`, member `member` of the group, to `output`
    /// (room for `keys.count` keys).
    /// - Parameter file: the file the keys come from, named by the error.
    /// - Throws: ``rangeError(key:table:file:)`` for the first key outside ``keyRange`` (never dropped or
    ///   truncated); `output` then holds the keys before it.
    public func tag(
        _ keys: UnsafeBufferPointer<Int64>, member: Int, table: TableConfig, file: String, into output: UnsafeMutablePointer<Int64>
    ) throws {
        for (i, key) in keys.enumerated() {
            guard fits(key) else { throw rangeError(key: key, table: table, file: file) }
            output[i] = encode(key, member: member)
        }
    }

    /// The error for `key` of table `table`, read from `file`, that lies outside ``keyRange``: ``HPSError``
    /// `.invalidTable` with `file` as its subject, naming the key, the table, the range and the way out
    /// (`fuse_embedding_table: false` for the table's model).
    public func rangeError(key: Int64, table: TableConfig, file: String) -> HPSError {
        HPSError(
            .invalidTable, subject: file,
            "key \(key) of table \(table.tag) lies outside \(keyRange.lowerBound)...\(keyRange.upperBound), the int64 keys a table fused with \(memberCount - 1) other(s) can hold "
                + "(the top \(memberBits) bits tag the table); set fuse_embedding_table false for model \(table.model)")
    }

    /// What a device lookup of table `member` applies to its keys (see ``FusedKeyTransform``).
    public func transform(member: Int) -> FusedKeyTransform {
        FusedKeyTransform(tag: memberTag(member), keyBits: keyBits, absentKey: UInt64(bitPattern: absentKey), int64Keys: keyWidth == .int64)
    }

    public var description: String {
        keyWidth == .uint32
            ? "\(memberCount) tables, uint32 keys tagged with the table in bits 32 and up"
            : "\(memberCount) tables, int64 keys in \(keyRange.lowerBound)...\(keyRange.upperBound) tagged with the table in the top \(memberBits) bits"
    }
}

/// The key tagging of one table of a fused group, in the form a device kernel takes: a normalized key `k`
/// becomes `tag | (k & (2^keyBits - 1))` when it fits `keyBits` bits (two's complement for int64 keys), else
/// `absentKey`. Uint32 keys (``int64Keys`` false, `keyBits` 32) always fit.
public struct FusedKeyTransform: Sendable, Equatable {
    public var tag: UInt64
    public var keyBits: Int
    public var absentKey: UInt64
    public var int64Keys: Bool

    public init(tag: UInt64, keyBits: Int, absentKey: UInt64, int64Keys: Bool) {
        self.tag = tag
        self.keyBits = keyBits
        self.absentKey = absentKey
        self.int64Keys = int64Keys
    }

    /// The fused key of normalized key `key`.
    @inline(__always)
    public func apply(_ key: Int64) -> Int64 {
        let shift = Int64(64 - keyBits)
        let fits = int64Keys ? (key << shift) >> shift == key : UInt64(bitPattern: key) >> 32 == 0
        guard fits else { return Int64(bitPattern: absentKey) }
        return Int64(bitPattern: tag | (UInt64(bitPattern: key) & (UInt64.max >> UInt64(shift))))
    }
}
