/// A JSON value as read from a configuration file.
///
/// Integers and fractional numbers stay distinct: a literal without a fraction or exponent that fits in
/// `Int` is `.int`, every other number is `.double`. Objects keep their keys in file order.
public enum JSONValue: Sendable, Equatable {
    case object(JSONObject)
    case array([JSONValue])
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case null

    /// Parses `text` as one JSON document.
    ///
    /// - Parameter warnings: receives one line per duplicate key (the last value wins, as in HPS's parser).
    /// - Throws: ``JSONSyntaxError`` with the line and column of the first problem.
    public static func parse(_ text: String, warnings: inout [String]) throws(JSONSyntaxError) -> JSONValue {
        var parser = JSONParser(bytes: Array(text.utf8))
        let value = try parser.parseDocument()
        warnings += parser.warnings
        return value
    }

    /// Parses `text` as one JSON document, ignoring duplicate-key warnings.
    /// - Throws: ``JSONSyntaxError`` with the line and column of the first problem.
    public static func parse(_ text: String) throws(JSONSyntaxError) -> JSONValue {
        var ignored: [String] = []
        return try parse(text, warnings: &ignored)
    }

    /// The JSON type name, for error messages: `object`, `array`, `string`, `integer`, `number`, `boolean`, `null`.
    public var typeName: String {
        switch self {
        case .object: "object"
        case .array: "array"
        case .string: "string"
        case .int: "integer"
        case .double: "number"
        case .bool: "boolean"
        case .null: "null"
        }
    }

    /// Member `key` of an object (nil for other values or a missing key).
    public subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }
}

/// A JSON object whose members keep their order in the source text.
public struct JSONObject: Sendable, Equatable, Sequence {
    /// One `"key": value` member.
    public struct Member: Sendable, Equatable {
        public var key: String
        public var value: JSONValue
    }

    public private(set) var members: [Member] = []
    private var index: [String: Int] = [:]

    public init() {}

    /// The value of `key`, if present. Setting replaces the value in place (keeping the key's position) or
    /// appends a new member.
    public subscript(key: String) -> JSONValue? {
        get { index[key].map { members[$0].value } }
        set {
            if let i = index[key] {
                if let newValue {
                    members[i].value = newValue
                } else {
                    members.remove(at: i)
                    index = Dictionary(uniqueKeysWithValues: members.enumerated().map { ($1.key, $0) })
                }
            } else if let newValue {
                index[key] = members.count
                members.append(Member(key: key, value: newValue))
            }
        }
    }

    /// Keys in source order.
    public var keys: [String] { members.map(\.key) }
    public var count: Int { members.count }
    public func makeIterator() -> IndexingIterator<[Member]> { members.makeIterator() }
}

/// Malformed JSON, with the 1-based line and column (in characters) where the problem was found.
public struct JSONSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var message: String

    public init(line: Int, column: Int, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }

    /// `invalid JSON at line L, column C: <message>`.
    public var description: String { "invalid JSON at line \(line), column \(column): \(message)" }
}

extension JSONValue: CustomStringConvertible {
    /// Compact JSON text of the value (object members in order).
    public var description: String {
        var out = ""
        write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += d.isFinite ? "\(d)" : "null"
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(to: &out)
            }
            out += "]"
        case .object(let object):
            out += "{"
            for (i, member) in object.members.enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(member.key, to: &out)
                out += ":"
                member.value.write(to: &out)
            }
            out += "}"
        }
    }

    private static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

/// A recursive-descent parser over UTF-8 bytes (RFC 8259; a leading byte-order mark is skipped).
struct JSONParser {
    private let bytes: [UInt8]
    private var position = 0
    private var depth = 0
    private(set) var warnings: [String] = []

    /// Deeper nesting is rejected rather than risking the stack.
    static let maximumDepth = 512

    init(bytes: [UInt8]) {
        self.bytes = bytes
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
    }

    mutating func parseDocument() throws(JSONSyntaxError) -> JSONValue {
        skipWhitespace()
        guard position < bytes.count else { throw error("the document is empty; expected a JSON value") }
        let value = try parseValue()
        skipWhitespace()
        guard position == bytes.count else {
            throw error("unexpected \(describeCurrent()) after the end of the JSON value")
        }
        return value
    }

    // MARK: Values

    private mutating func parseValue() throws(JSONSyntaxError) -> JSONValue {
        guard position < bytes.count else { throw error("unexpected end of input; expected a JSON value") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        default: throw error("expected a JSON value, found \(describeCurrent())")
        }
    }

    private mutating func parseObject() throws(JSONSyntaxError) -> JSONValue {
        try enterNesting()
        position += 1  // {
        var object = JSONObject()
        skipWhitespace()
        if peek(UInt8(ascii: "}")) {
            position += 1
            depth -= 1
            return .object(object)
        }
        while true {
            skipWhitespace()
            guard peek(UInt8(ascii: "\"")) else {
                throw error("expected a string key in double quotes, found \(describeCurrent())")
            }
            let (keyLine, keyColumn) = lineAndColumn(of: position)
            let key = try parseString()
            skipWhitespace()
            guard peek(UInt8(ascii: ":")) else { throw error("expected ':' after key \"\(key)\", found \(describeCurrent())") }
            position += 1
            skipWhitespace()
            let value = try parseValue()
            if object[key] != nil {
                warnings.append(
                    "duplicate key \"\(key)\" at line \(keyLine), column \(keyColumn); the last value is used")
            }
            object[key] = value
            skipWhitespace()
            if peek(UInt8(ascii: ",")) {
                position += 1
                continue
            }
            if peek(UInt8(ascii: "}")) {
                position += 1
                depth -= 1
                return .object(object)
            }
            throw error("expected ',' or '}', found \(describeCurrent())")
        }
    }

    private mutating func parseArray() throws(JSONSyntaxError) -> JSONValue {
        try enterNesting()
        position += 1  // [
        var items: [JSONValue] = []
        skipWhitespace()
        if peek(UInt8(ascii: "]")) {
            position += 1
            depth -= 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            if peek(UInt8(ascii: ",")) {
                position += 1
                continue
            }
            if peek(UInt8(ascii: "]")) {
                position += 1
                depth -= 1
                return .array(items)
            }
            throw error("expected ',' or ']', found \(describeCurrent())")
        }
    }

    private mutating func parseString() throws(JSONSyntaxError) -> String {
        let start = position
        position += 1  // opening quote
        var utf8: [UInt8] = []
        while true {
            guard position < bytes.count else {
                throw error("unterminated string (it starts at \(describeLocation(start)))")
            }
            let c = bytes[position]
            switch c {
            case UInt8(ascii: "\""):
                position += 1
                return String(decoding: utf8, as: UTF8.self)
            case UInt8(ascii: "\\"):
                position += 1
                guard position < bytes.count else { throw error("unterminated string (it starts at \(describeLocation(start)))") }
                let e = bytes[position]
                switch e {
                case UInt8(ascii: "\""): utf8.append(0x22)
                case UInt8(ascii: "\\"): utf8.append(0x5C)
                case UInt8(ascii: "/"): utf8.append(0x2F)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"):
                    let scalar = try parseUnicodeEscape()
                    utf8.append(contentsOf: String(Character(scalar)).utf8)
                    continue  // parseUnicodeEscape leaves position after the escape
                default:
                    throw error("invalid escape sequence '\\\(describeByte(e))' in string")
                }
                position += 1
            default:
                if c < 0x20 {
                    throw error("control character \(describeByte(c)) in string; escape it (e.g. \\n)")
                }
                utf8.append(c)
                position += 1
            }
        }
    }

    /// Parses `uXXXX` (position at `u`), joining a surrogate pair; leaves position after the escape.
    private mutating func parseUnicodeEscape() throws(JSONSyntaxError) -> Unicode.Scalar {
        let high = try parseHex4()
        if (0xD800...0xDBFF).contains(high) {
            guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u")
            else { throw error("unpaired UTF-16 surrogate \\u\(String(high, radix: 16)) in string") }
            position += 1
            let low = try parseHex4()
            guard (0xDC00...0xDFFF).contains(low) else {
                throw error("invalid UTF-16 surrogate pair in string")
            }
            return Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))!
        }
        guard let scalar = Unicode.Scalar(high) else {
            throw error("unpaired UTF-16 surrogate \\u\(String(high, radix: 16)) in string")
        }
        return scalar
    }

    /// Position at `u`; reads four hex digits and leaves position after them.
    private mutating func parseHex4() throws(JSONSyntaxError) -> UInt32 {
        position += 1  // u
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard position < bytes.count, let digit = hexValue(bytes[position]) else {
                throw error("expected four hex digits after \\u")
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }

    private mutating func parseNumber() throws(JSONSyntaxError) -> JSONValue {
        let start = position
        var isInteger = true
        if peek(UInt8(ascii: "-")) { position += 1 }
        guard position < bytes.count, isDigit(bytes[position]) else {
            throw error("expected a digit in number, found \(describeCurrent())")
        }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
            if position < bytes.count, isDigit(bytes[position]) {
                throw error("leading zeros are not allowed in numbers")
            }
        } else {
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        if peek(UInt8(ascii: ".")) {
            isInteger = false
            position += 1
            guard position < bytes.count, isDigit(bytes[position]) else {
                throw error("expected a digit after '.', found \(describeCurrent())")
            }
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        if peek(UInt8(ascii: "e")) || peek(UInt8(ascii: "E")) {
            isInteger = false
            position += 1
            if peek(UInt8(ascii: "+")) || peek(UInt8(ascii: "-")) { position += 1 }
            guard position < bytes.count, isDigit(bytes[position]) else {
                throw error("expected a digit in the exponent, found \(describeCurrent())")
            }
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        if isInteger, let i = Int(text) { return .int(i) }
        guard let d = Double(text) else {
            position = start
            throw error("invalid number \(text)")
        }
        return .double(d)
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONSyntaxError) {
        let text = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        for (i, byte) in text.enumerated() {
            guard position + i < bytes.count, bytes[position + i] == byte else {
                throw error("expected a JSON value, found \(describeWord())")
            }
        }
        position += text.count
        if position < bytes.count, isIdentifierByte(bytes[position]) {
            throw error("expected a JSON value, found \(describeWord())")
        }
    }

    // MARK: Helpers

    private mutating func enterNesting() throws(JSONSyntaxError) {
        depth += 1
        if depth > Self.maximumDepth { throw error("nesting deeper than \(Self.maximumDepth) levels") }
    }

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    private func peek(_ byte: UInt8) -> Bool { position < bytes.count && bytes[position] == byte }
    private func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    private func isIdentifierByte(_ c: UInt8) -> Bool {
        isDigit(c) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
    }
    private func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: UInt32(c - 0x30)
        case 0x41...0x46: UInt32(c - 0x41 + 10)
        case 0x61...0x66: UInt32(c - 0x61 + 10)
        default: nil
        }
    }

    private func describeByte(_ c: UInt8) -> String {
        if c >= 0x20 && c < 0x7F { return String(UnicodeScalar(c)) }
        return "0x" + (c < 0x10 ? "0" : "") + String(c, radix: 16)
    }

    private func describeCurrent() -> String {
        guard position < bytes.count else { return "end of input" }
        let c = bytes[position]
        if c >= 0x20 && c < 0x7F { return "'\(String(UnicodeScalar(c)))'" }
        return "byte \(describeByte(c))"
    }

    /// The identifier-like word at the position (for `tru`, `None`, `True`, ...).
    private func describeWord() -> String {
        var end = position
        while end < bytes.count, isIdentifierByte(bytes[end]), end - position < 32 { end += 1 }
        if end == position { return describeCurrent() }
        return "'" + String(decoding: bytes[position..<end], as: UTF8.self) + "'"
    }

    private func describeLocation(_ offset: Int) -> String {
        let (line, column) = lineAndColumn(of: offset)
        return "line \(line), column \(column)"
    }

    /// 1-based line and column of a byte offset; columns count characters (UTF-8 lead bytes), not bytes.
    private func lineAndColumn(of offset: Int) -> (Int, Int) {
        var line = 1
        var column = 1
        var i = 0
        let end = min(offset, bytes.count)
        while i < end {
            let c = bytes[i]
            if c == 0x0A {
                line += 1
                column = 1
            } else if c & 0xC0 != 0x80 && !(i < 3 && bytes.starts(with: [0xEF, 0xBB, 0xBF])) {
                column += 1
            }
            i += 1
        }
        return (line, column)
    }

    private func error(_ message: String) -> JSONSyntaxError {
        let (line, column) = lineAndColumn(of: position)
        return JSONSyntaxError(line: line, column: column, message: message)
    }
}
