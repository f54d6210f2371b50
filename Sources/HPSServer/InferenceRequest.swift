import Foundation
import HPS
import Hummingbird

/// A checked HPS inference request, the inputs of HPS's Triton backend: `KEYS` (INT64, [1, total keys]:
/// table 0's keys, then table 1's, …) and `NUMKEYS` (INT32, [1, tables]: keys per table).
struct InferenceRequest: Sendable {
    var id: String?
    var keys: [Int64]
    var keysPerTable: [Int]
    /// Whether `OUTPUT0` goes back as binary data after the JSON (Triton's binary tensor extension).
    var binaryOutput: Bool

    static let keysName = "KEYS"
    static let numKeysName = "NUMKEYS"
    static let outputName = "OUTPUT0"

    /// Parses and checks a request body against `model`. `headerLength` is the request's
    /// `Inference-Header-Content-Length`: the JSON is that many bytes, binary tensor data follows.
    /// - Throws: ``ServeError`` 400 naming the problem.
    init(body: ByteBuffer, headerLength: Int?, model: ModelConfig) throws(ServeError) {
        let total = body.readableBytes
        let jsonLength = headerLength ?? total
        guard jsonLength >= 0 && jsonLength <= total else {
            throw .badRequest("Inference-Header-Content-Length \(jsonLength) is beyond the body's \(total) bytes")
        }
        let request: InferenceRequestJSON
        do {
            let json = body.getSlice(at: body.readerIndex, length: jsonLength) ?? ByteBuffer()
            request = try JSONDecoder().decode(InferenceRequestJSON.self, from: Data(json.readableBytesView))
        } catch {
            throw .badRequest("malformed inference request JSON: \(Self.describe(error))")
        }
        var binaryOffset = body.readerIndex + jsonLength
        let binaryEnd = body.readerIndex + total
        var keys: [Int64]?
        var numKeys: [Int64]?
        for input in request.inputs {
            let expected: String
            switch input.name {
            case Self.keysName: expected = "INT64"
            case Self.numKeysName: expected = "INT32"
            default: throw .badRequest("unexpected input '\(input.name)'; model \(model.name) takes KEYS (INT64) and NUMKEYS (INT32)")
            }
            guard (input.name == Self.keysName ? keys : numKeys) == nil else { throw .badRequest("input \(input.name) given twice") }
            guard input.datatype == expected else {
                throw .badRequest("input \(input.name) has datatype \(input.datatype); expected \(expected)")
            }
            guard input.shape.count == 2 && input.shape[0] == 1 && input.shape[1] >= 0 else {
                throw .badRequest("input \(input.name) has shape \(input.shape); expected [1, n]")
            }
            let count = input.shape[1]
            var values: [Int64]
            if let size = input.parameters?.binaryDataSize {
                let width: Int64 = expected == "INT64" ? 8 : 4
                guard input.data == nil else { throw .badRequest("input \(input.name) has both data and binary_data_size") }
                let (bytes, overflow) = count.multipliedReportingOverflow(by: width)
                guard !overflow && size == bytes else {
                    throw .badRequest("input \(input.name): binary_data_size \(size) does not match shape \(input.shape) × \(width) bytes")
                }
                guard size <= Int64(binaryEnd - binaryOffset) else {
                    throw .badRequest("input \(input.name): binary_data_size \(size) is beyond the \(binaryEnd - binaryOffset) bytes of binary data left in the body")
                }
                values = Self.read(body, at: binaryOffset, count: Int(count), width: Int(width))
                binaryOffset += Int(size)
            } else {
                guard let data = input.data else { throw .badRequest("input \(input.name) has neither data nor binary_data_size") }
                guard Int64(data.values.count) == count else {
                    throw .badRequest("input \(input.name) has \(data.values.count) values; shape \(input.shape) needs \(count)")
                }
                values = data.values
                if expected == "INT32", let bad = values.first(where: { $0 < Int64(Int32.min) || $0 > Int64(Int32.max) }) {
                    throw .badRequest("input \(input.name): \(bad) does not fit INT32")
                }
            }
            if input.name == Self.keysName { keys = values } else { numKeys = values }
        }
        guard binaryOffset == binaryEnd else {
            throw .badRequest("\(binaryEnd - binaryOffset) bytes after the JSON and the inputs' binary data belong to no input")
        }
        try self.init(id: request.id, keys: keys, numKeys: numKeys, binaryOutput: false, model: model)

        var binary = request.parameters?.binaryDataOutput ?? false
        if let outputs = request.outputs {
            for output in outputs {
                guard output.name == Self.outputName else {
                    throw .badRequest("unknown output '\(output.name)'; model \(model.name) has OUTPUT0")
                }
                binary = output.parameters?.binaryData ?? binary
            }
        }
        binaryOutput = binary
    }

    /// Checks decoded inputs against `model`: both present, NUMKEYS one count per table, each within the
    /// table's limit, adding up to the number of keys.
    /// - Throws: ``ServeError`` 400 naming the problem.
    init(id: String?, keys: [Int64]?, numKeys: [Int64]?, binaryOutput: Bool, model: ModelConfig) throws(ServeError) {
        guard let keys else { throw .badRequest("missing input KEYS (INT64, [1, total keys])") }
        guard let numKeys else { throw .badRequest("missing input NUMKEYS (INT32, [1, tables])") }
        guard numKeys.count == model.tableCount else {
            throw .badRequest("NUMKEYS has \(numKeys.count) entries; model \(model.name) has \(model.tableCount) table(s)")
        }
        var sum = 0
        for (table, n) in numKeys.enumerated() {
            guard n >= 0 else { throw .badRequest("NUMKEYS[\(table)] is \(n); key counts cannot be negative") }
            let limit = model.maxQueryLength(table: table)
            guard n <= Int64(limit) else {
                throw .badRequest(
                    "NUMKEYS[\(table)] is \(n): more keys than table \(table) of model \(model.name) allows in one request (max_batch_size × maxnum_catfeature_query_per_table_per_sample = \(limit))")
            }
            sum += Int(n)
        }
        guard sum == keys.count else {
            throw .badRequest("NUMKEYS adds up to \(sum) but KEYS holds \(keys.count) keys")
        }
        self.id = id
        self.keys = keys
        keysPerTable = numKeys.map { Int($0) }
        self.binaryOutput = binaryOutput
    }

    /// Floats `OUTPUT0` holds for this request: each table's keys × its dim.
    func outputCount(_ model: ModelConfig) -> Int {
        var total = 0
        for (t, n) in keysPerTable.enumerated() { total += n * model.tables[t].dimension }
        return total
    }

    /// Looks up every table's keys into `output` (``outputCount(_:)`` floats): table t's keys × its dim, in
    /// request order. One multi-table lookup: the tables of a fused group (`fuse_embedding_table`) are
    /// answered in one pass.
    /// - Throws: the session's ``HPSError`` when a lookup fails.
    func lookUp(in session: LookupSession, into output: UnsafeMutableBufferPointer<Float>) throws {
        try keys.withUnsafeBufferPointer { keys in
            try session.lookup(tables: Array(keysPerTable.indices), keys: keys, counts: keysPerTable, into: output)
        }
    }

    /// `count` little-endian integers of `width` bytes at `offset`.
    private static func read(_ body: ByteBuffer, at offset: Int, count: Int, width: Int) -> [Int64] {
        let bytes = body.getSlice(at: offset, length: count * width) ?? ByteBuffer()
        return bytes.withUnsafeReadableBytes { raw in
            if width == 8 {
                return [Int64](unsafeUninitializedCapacity: count) { out, n in
                    if count > 0 { UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: count * 8) }
                    for i in 0..<count { out[i] = Int64(littleEndian: out[i]) }
                    n = count
                }
            }
            return (0..<count).map { Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
        }
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context):
            return context.debugDescription + path(context.codingPath)
        case DecodingError.keyNotFound(let key, let context):
            return "missing '\(key.stringValue)'" + path(context.codingPath)
        case DecodingError.typeMismatch(let type, let context), DecodingError.valueNotFound(let type, let context):
            return "expected \(type): \(context.debugDescription)" + path(context.codingPath)
        default:
            return "\(error)"
        }
    }

    private static func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.isEmpty ? "" : " at " + codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }
}
