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
        var inputs = InferenceInputs()
        for tensor in request.inputs {
            let input = try inputs.input(name: tensor.name, datatype: tensor.datatype, shape: tensor.shape, model: model)
            if let size = tensor.parameters?.binaryDataSize {
                guard tensor.data == nil else { throw .badRequest("input \(input.name) has both data and binary_data_size") }
                try input.checkByteCount(size, source: "binary_data_size")
                guard size <= Int64(binaryEnd - binaryOffset) else {
                    throw .badRequest("input \(input.name): binary_data_size \(size) is beyond the \(binaryEnd - binaryOffset) bytes of binary data left in the body")
                }
                let bytes = body.getSlice(at: binaryOffset, length: Int(size)) ?? ByteBuffer()
                inputs.set(bytes.withUnsafeReadableBytes { input.decode(littleEndian: $0) }, for: input)
                binaryOffset += Int(size)
            } else {
                guard let data = tensor.data else { throw .badRequest("input \(input.name) has neither data nor binary_data_size") }
                try input.checkValues(data.values, source: "data")
                inputs.set(data.values, for: input)
            }
        }
        guard binaryOffset == binaryEnd else {
            throw .badRequest("\(binaryEnd - binaryOffset) bytes after the JSON and the inputs' binary data belong to no input")
        }
        try self.init(id: request.id, inputs: inputs, binaryOutput: false, model: model)

        var binary = request.parameters?.binaryDataOutput ?? false
        if let outputs = request.outputs {
            for output in outputs {
                try Self.checkOutput(name: output.name, model: model)
                binary = output.parameters?.binaryData ?? binary
            }
        }
        binaryOutput = binary
    }

    /// Checks decoded inputs against `model`: both present, NUMKEYS one count per table, each within the
    /// table's limit, adding up to the number of keys.
    /// - Throws: ``ServeError`` 400 naming the problem.
    init(id: String?, inputs: InferenceInputs, binaryOutput: Bool, model: ModelConfig) throws(ServeError) {
        guard let keys = inputs.keys else { throw .badRequest("missing input KEYS (INT64, [1, total keys])") }
        guard let numKeys = inputs.numKeys else { throw .badRequest("missing input NUMKEYS (INT32, [1, tables])") }
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

    /// Checks an output a request asks for: `OUTPUT0`, the only one.
    /// - Throws: ``ServeError`` 400 naming the output and `model`.
    static func checkOutput(name: String, model: ModelConfig) throws(ServeError) {
        guard name == outputName else {
            throw .badRequest("unknown output '\(name)'; model \(model.name) has OUTPUT0")
        }
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
