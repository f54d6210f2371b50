import HPS

/// HPS's Kafka update message: the topic is the table tag (`hps_et.<model>.<table>`), the Kafka key is empty,
/// and the payload is
///
///     u32 0x52544348 ("HCTR", little-endian) | u32 value_size | { key (8 bytes, or 4 without supportlonglong), value (value_size bytes) } …
///
/// A payload of the header alone is a beacon (no rows). Every integer is little-endian.
public enum UpdateMessage {
    /// "HCTR" read as a little-endian u32.
    public static let magic: UInt32 = 0x5254_4348
    /// Bytes before the first record.
    public static let headerSize = 8

    /// Why a message was skipped.
    public enum Problem: String, Sendable, CaseIterable, CustomStringConvertible {
        /// Shorter than the header, or the magic is not "HCTR".
        case badHeader = "bad header"
        /// The header's value size is not the table's `dimension × 4`.
        case valueSize = "value size does not match the table"
        /// The records do not fill the payload exactly (a cut record).
        case truncated = "truncated record"
        /// The topic names no table of the configuration.
        case unknownTable = "unknown table"
        public var description: String { rawValue }
    }

    /// What a payload holds.
    public enum Content: Equatable, Sendable {
        /// The header alone.
        case beacon
        /// `count` records of `valueSize` bytes each.
        case rows(count: Int, valueSize: Int)
        /// A payload to skip, and why.
        case malformed(Problem)
    }

    /// The payload of `keys.count` records: `values` holds `keys.count × valueSize` bytes.
    public static func encode(keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer, valueSize: Int, keyWidth: KeyWidth = .int64) -> [UInt8] {
        precondition(values.count == keys.count * valueSize)
        var payload = header(valueSize: valueSize)
        payload.reserveCapacity(headerSize + keys.count * (keyWidth.byteCount + valueSize))
        for i in 0..<keys.count {
            appendRecord(to: &payload, key: keys[i], value: UnsafeRawBufferPointer(rebasing: values[(i * valueSize)..<((i + 1) * valueSize)]), keyWidth: keyWidth)
        }
        return payload
    }

    /// The 8 header bytes for rows of `valueSize` bytes (alone, a beacon).
    public static func header(valueSize: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerSize)
        withUnsafeBytes(of: magic.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: valueSize).littleEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// Appends one record (key, then value bytes) to `payload`.
    @inline(__always)
    public static func appendRecord(to payload: inout [UInt8], key: Int64, value: UnsafeRawBufferPointer, keyWidth: KeyWidth) {
        if keyWidth == .int64 {
            withUnsafeBytes(of: key.littleEndian) { payload.append(contentsOf: $0) }
        } else {
            withUnsafeBytes(of: UInt32(truncatingIfNeeded: key).littleEndian) { payload.append(contentsOf: $0) }
        }
        payload.append(contentsOf: value)
    }

    /// What `payload` holds for a table whose rows are `expectedValueSize` bytes.
    public static func inspect(_ payload: UnsafeRawBufferPointer, keyWidth: KeyWidth, expectedValueSize: Int) -> Content {
        guard payload.count >= headerSize, payload.loadUnaligned(fromByteOffset: 0, as: UInt32.self) == magic.littleEndian else {
            return .malformed(.badHeader)
        }
        let valueSize = Int(UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        if payload.count == headerSize { return .beacon }
        guard valueSize == expectedValueSize else { return .malformed(.valueSize) }
        let record = keyWidth.byteCount + valueSize
        let body = payload.count - headerSize
        guard body % record == 0 else { return .malformed(.truncated) }
        return .rows(count: body / record, valueSize: valueSize)
    }

    /// Copies records `range` of a payload that ``inspect(_:keyWidth:expectedValueSize:)`` found to hold rows
    /// of `valueSize` bytes: keys to `keys[0...]` (widened to Int64), values to `values` (`range.count × valueSize` bytes).
    public static func copyRows(
        _ payload: UnsafeRawBufferPointer, range: Range<Int>, valueSize: Int, keyWidth: KeyWidth,
        keys: UnsafeMutablePointer<Int64>, values: UnsafeMutableRawPointer
    ) {
        let keyBytes = keyWidth.byteCount
        let record = keyBytes + valueSize
        var at = payload.baseAddress! + headerSize + range.lowerBound * record
        for j in 0..<range.count {
            if keyBytes == 8 {
                keys[j] = Int64(littleEndian: at.loadUnaligned(as: Int64.self))
            } else {
                keys[j] = Int64(UInt32(littleEndian: at.loadUnaligned(as: UInt32.self)))
            }
            (values + j * valueSize).copyMemory(from: at + keyBytes, byteCount: valueSize)
            at += record
        }
    }
}
