/// A NumPy `.npy` file (format versions 1, 2 and 3): its header, read eagerly, and its data, read on demand
/// by element range so arrays larger than memory can be streamed.
///
/// Supported element types are little-endian `float32`, `float64`, `int32`, `int64`, `uint32` and `uint64`,
/// in C order (Fortran order is accepted for rank ≤ 1, where it is the same layout).
public struct NumpyArray: Sendable, Equatable {
    /// The `descr` of the array.
    public enum ElementType: String, Sendable, Equatable, CaseIterable {
        case float32 = "<f4"
        case float64 = "<f8"
        case int32 = "<i4"
        case int64 = "<i8"
        case uint32 = "<u4"
        case uint64 = "<u8"

        /// Bytes per element.
        public var byteCount: Int {
            switch self {
            case .float32, .int32, .uint32: 4
            case .float64, .int64, .uint64: 8
            }
        }

        public var isFloatingPoint: Bool { self == .float32 || self == .float64 }
    }

    /// The file.
    public let path: String
    /// The `.npy` format major version (1, 2 or 3).
    public let formatVersion: Int
    public let elementType: ElementType
    /// The array shape; `[]` for a scalar.
    public let shape: [Int]
    /// Byte offset of the first element.
    public let dataOffset: Int

    /// Number of elements (the product of ``shape``).
    public var elementCount: Int { shape.reduce(1, *) }
    /// Number of dimensions.
    public var rank: Int { shape.count }
    /// The shape as NumPy prints it, e.g. `(10, 4)`.
    public var shapeDescription: String {
        shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    }

    /// Reads and checks the header of `path`, and that the file holds all the data the header announces.
    ///
    /// - Throws: ``HPSError`` `invalidTable` naming the file for a bad magic string, an unsupported version or
    ///   dtype, Fortran order, a malformed header or truncated data; `io` when the file cannot be read.
    public init(path: String) throws {
        self.path = path
        let file = try OpenFile.openForReading(path)
        let fileSize = try file.size()
        var prefix = [UInt8](repeating: 0, count: 12)
        let got = try prefix.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }
        guard got >= 10, prefix.starts(with: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) else {
            throw HPSError(.invalidTable, subject: path, "not a NumPy .npy file (the magic string \\x93NUMPY is missing)")
        }
        let major = Int(prefix[6])
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(prefix[8]) | Int(prefix[9]) << 8
            headerStart = 10
        case 2, 3:
            guard got >= 12 else { throw HPSError(.invalidTable, subject: path, "the .npy header is truncated") }
            headerLength = Int(prefix[8]) | Int(prefix[9]) << 8 | Int(prefix[10]) << 16 | Int(prefix[11]) << 24
            headerStart = 12
        default:
            throw HPSError(
                .invalidTable, subject: path, "unsupported .npy format version \(major).\(prefix[7]) (1, 2 and 3 are supported)")
        }
        guard headerStart + headerLength <= fileSize else {
            throw HPSError(
                .invalidTable, subject: path,
                "the .npy header says it is \(headerLength) bytes but the file is only \(fileSize) bytes")
        }
        var header = [UInt8](repeating: 0, count: headerLength)
        _ = try header.withUnsafeMutableBytes { try file.read(into: $0, at: headerStart) }
        let fields = try NumpyHeaderParser.parse(header, path: path)

        guard case .string(var descr)? = fields["descr"] else {
            if case .list? = fields["descr"] {
                throw HPSError(.invalidTable, subject: path, "structured dtypes are not supported; save a plain numeric array")
            }
            throw HPSError(.invalidTable, subject: path, "the .npy header has no string 'descr'")
        }
        if descr.hasPrefix("=") || descr.hasPrefix("|") {
            #if _endian(little)
            descr = "<" + descr.dropFirst()
            #endif
        }
        guard let type = ElementType(rawValue: descr) else {
            if descr.hasPrefix(">") {
                throw HPSError(
                    .invalidTable, subject: path,
                    "big-endian dtype '\(descr)' is not supported; save it with arr.astype('<\(descr.dropFirst())')")
            }
            let accepted = ElementType.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")
            throw HPSError(.invalidTable, subject: path, "unsupported dtype '\(descr)'; accepted: \(accepted)")
        }
        guard case .tuple(let dims)? = fields["shape"] else {
            throw HPSError(.invalidTable, subject: path, "the .npy header has no tuple 'shape'")
        }
        var shape: [Int] = []
        for dim in dims {
            guard case .int(let n) = dim, n >= 0 else {
                throw HPSError(.invalidTable, subject: path, "the .npy shape holds something other than non-negative integers")
            }
            shape.append(n)
        }
        var count = 1
        for n in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: n)
            guard !overflow else { throw HPSError(.invalidTable, subject: path, "the .npy shape is too large") }
            count = product
        }
        guard case .bool(let fortranOrder)? = fields["fortran_order"] else {
            throw HPSError(.invalidTable, subject: path, "the .npy header has no boolean 'fortran_order'")
        }
        if fortranOrder && shape.count > 1 {
            throw HPSError(
                .invalidTable, subject: path,
                "the array is in Fortran order; save a C-ordered array (np.ascontiguousarray(arr))")
        }
        self.formatVersion = major
        self.elementType = type
        self.shape = shape
        self.dataOffset = headerStart + headerLength

        let (dataBytes, overflow) = count.multipliedReportingOverflow(by: type.byteCount)
        let available = fileSize - dataOffset
        guard !overflow, available >= dataBytes else {
            throw HPSError(
                .invalidTable, subject: path,
                "truncated: shape \(shapeDescription) of \(type.rawValue) needs \(dataBytes) bytes of data after the "
                    + "\(dataOffset)-byte header, but the file holds only \(available)")
        }
    }

    /// Reads elements `elements` (in C order) as `Float`, converting from `float64` when needed (rounded to
    /// the nearest float32; a finite value beyond float32's range is an error, never `inf`).
    /// - Throws: ``HPSError`` `.io` naming the file when it cannot be opened or read; `.invalidArgument` when
    ///   `elements` or `buffer` do not fit the array; `.invalidTable` naming the file and element for a float64 value
    ///   beyond float32's range or an integer dtype.
    public func read(elements: Range<Int>, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        try read(elements: elements, into: buffer, file: try OpenFile.openForReading(path))
    }

    /// Reads elements `elements` (in C order) as `Int64`, widening `int32`/`uint32`; a `uint64` value of
    /// 2^63 or more is an error (it has no int64 key).
    /// - Throws: ``HPSError`` `.io` naming the file when it cannot be opened or read; `.invalidArgument` when
    ///   `elements` or `buffer` do not fit the array; `.invalidTable` naming the file and element for a uint64 value
    ///   of 2^63 or more.
    public func read(elements: Range<Int>, into buffer: UnsafeMutableBufferPointer<Int64>) throws {
        try read(elements: elements, into: buffer, file: try OpenFile.openForReading(path))
    }

    func read(elements: Range<Int>, into buffer: UnsafeMutableBufferPointer<Float>, file: OpenFile) throws {
        try checkRange(elements, bufferCount: buffer.count)
        switch elementType {
        case .float32:
            try readRaw(elements, into: UnsafeMutableRawBufferPointer(buffer), file: file)
            #if _endian(big)
            for i in 0..<elements.count { buffer[i] = Float(bitPattern: UInt32(littleEndian: buffer[i].bitPattern)) }
            #endif
        case .float64:
            try convert(elements, from: UInt64.self, into: buffer, file: file) { bits, index in
                let value = Double(bitPattern: bits)
                let narrowed = Float(value)
                guard narrowed.isFinite || !value.isFinite else {
                    throw HPSError(
                        .invalidTable, subject: path,
                        "element \(index) (\(describe(index: index))) is \(value), which does not fit float32 (largest finite: ±\(Float.greatestFiniteMagnitude)); the table would answer inf")
                }
                return narrowed
            }
        default:
            throw HPSError(
                .invalidTable, subject: path,
                "dtype \(elementType.rawValue) is an integer type; expected float32 ('<f4') or float64 ('<f8') values")
        }
    }

    func read(elements: Range<Int>, into buffer: UnsafeMutableBufferPointer<Int64>, file: OpenFile) throws {
        try checkRange(elements, bufferCount: buffer.count)
        switch elementType {
        case .int64:
            try readRaw(elements, into: UnsafeMutableRawBufferPointer(buffer), file: file)
            #if _endian(big)
            for i in 0..<elements.count { buffer[i] = Int64(littleEndian: buffer[i]) }
            #endif
        case .uint64:
            try convert(elements, from: UInt64.self, into: buffer, file: file) { value, index in
                guard let key = Int64(exactly: value) else {
                    throw HPSError(
                        .invalidTable, subject: path,
                        "element \(index) is the uint64 key \(value), which does not fit an int64 key (at most \(Int64.max))")
                }
                return key
            }
        case .int32:
            try convert(elements, from: UInt32.self, into: buffer, file: file) { value, _ in Int64(Int32(bitPattern: value)) }
        case .uint32:
            try convert(elements, from: UInt32.self, into: buffer, file: file) { value, _ in Int64(value) }
        case .float32, .float64:
            throw HPSError(
                .invalidTable, subject: path,
                "dtype \(elementType.rawValue) is a float type; expected integer keys ('<i8', also '<i4', '<u4', '<u8')")
        }
    }

    private func checkRange(_ elements: Range<Int>, bufferCount: Int) throws {
        guard elements.lowerBound >= 0, elements.upperBound <= elementCount else {
            throw HPSError(
                .invalidArgument, subject: path, "elements \(elements) are outside the array's \(elementCount) elements")
        }
        guard bufferCount >= elements.count else {
            throw HPSError(.invalidArgument, subject: path, "buffer of \(bufferCount) is too small for \(elements.count) elements")
        }
    }

    private func readRaw(_ elements: Range<Int>, into raw: UnsafeMutableRawBufferPointer, file: OpenFile) throws {
        let size = elementType.byteCount
        let target = UnsafeMutableRawBufferPointer(rebasing: raw[0..<(elements.count * size)])
        try file.readExactly(
            into: target, at: dataOffset + elements.lowerBound * size,
            expectedFileSize: dataOffset + elementCount * size)
    }

    /// Reads little-endian `Raw` words into a scratch buffer and converts each into `buffer`; `transform`
    /// gets each word and its element index.
    private func convert<Raw: FixedWidthInteger, Element>(
        _ elements: Range<Int>, from: Raw.Type, into buffer: UnsafeMutableBufferPointer<Element>, file: OpenFile,
        _ transform: (Raw, Int) throws -> Element
    ) throws {
        let scratch = UnsafeMutableBufferPointer<Raw>.allocate(capacity: max(elements.count, 1))
        defer { scratch.deallocate() }
        try readRaw(elements, into: UnsafeMutableRawBufferPointer(scratch), file: file)
        for i in 0..<elements.count { buffer[i] = try transform(Raw(littleEndian: scratch[i]), elements.lowerBound + i) }
    }

    /// `row r, column c` of a rank-2 array for element `index` (C order), `index i` otherwise.
    private func describe(index: Int) -> String {
        guard rank == 2, shape[1] > 0 else { return "index \(index)" }
        return "row \(index / shape[1]), column \(index % shape[1])"
    }
}

/// Parses the Python dict literal of a `.npy` header, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
struct NumpyHeaderParser {
    enum Value: Equatable {
        case string(String)
        case int(Int)
        case bool(Bool)
        case none
        case tuple([Value])
        case list([Value])
    }

    private let bytes: [UInt8]
    private let path: String
    private var position = 0

    static func parse(_ bytes: [UInt8], path: String) throws -> [String: Value] {
        var parser = NumpyHeaderParser(bytes: bytes, path: path)
        return try parser.parseDictionary()
    }

    private init(bytes: [UInt8], path: String) {
        self.bytes = bytes
        self.path = path
    }

    private mutating func parseDictionary() throws -> [String: Value] {
        skipSpace()
        try expect("{")
        var result: [String: Value] = [:]
        while true {
            skipSpace()
            if accept("}") { return result }
            guard case .string(let key) = try parseValue() else { throw malformed("expected a quoted key") }
            skipSpace()
            try expect(":")
            result[key] = try parseValue()
            skipSpace()
            if accept(",") { continue }
            try expect("}")
            return result
        }
    }

    private mutating func parseValue() throws -> Value {
        skipSpace()
        guard position < bytes.count else { throw malformed("unexpected end") }
        let c = bytes[position]
        switch c {
        case UInt8(ascii: "'"), UInt8(ascii: "\""):
            position += 1
            let start = position
            while position < bytes.count, bytes[position] != c { position += 1 }
            guard position < bytes.count else { throw malformed("unterminated string") }
            let text = String(decoding: bytes[start..<position], as: UTF8.self)
            position += 1
            return .string(text)
        case UInt8(ascii: "("), UInt8(ascii: "["):
            let close = c == UInt8(ascii: "(") ? UInt8(ascii: ")") : UInt8(ascii: "]")
            position += 1
            var items: [Value] = []
            while true {
                skipSpace()
                if position < bytes.count, bytes[position] == close {
                    position += 1
                    break
                }
                items.append(try parseValue())
                skipSpace()
                if accept(",") { continue }
                guard position < bytes.count, bytes[position] == close else { throw malformed("expected ',' or a closing bracket") }
                position += 1
                break
            }
            return c == UInt8(ascii: "(") ? .tuple(items) : .list(items)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let start = position
            position += 1
            while position < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) { position += 1 }
            guard let n = Int(String(decoding: bytes[start..<position], as: UTF8.self)) else {
                throw malformed("integer out of range")
            }
            _ = accept("L")  // Python 2 long suffix
            return .int(n)
        default:
            for (word, value) in [("True", Value.bool(true)), ("False", .bool(false)), ("None", .none)] {
                if bytes[position...].starts(with: word.utf8) {
                    position += word.utf8.count
                    return value
                }
            }
            throw malformed("unexpected character '\(String(UnicodeScalar(c)))'")
        }
    }

    private mutating func skipSpace() {
        while position < bytes.count, bytes[position] == 0x20 || bytes[position] == 0x0A || bytes[position] == 0x09 {
            position += 1
        }
    }

    private mutating func accept(_ char: Unicode.Scalar) -> Bool {
        guard position < bytes.count, bytes[position] == UInt8(ascii: char) else { return false }
        position += 1
        return true
    }

    private mutating func expect(_ char: Unicode.Scalar) throws {
        guard accept(char) else { throw malformed("expected '\(char)'") }
    }

    private func malformed(_ what: String) -> HPSError {
        HPSError(.invalidTable, subject: path, "malformed .npy header at byte \(position): \(what)")
    }
}
