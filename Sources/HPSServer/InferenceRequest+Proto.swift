import Foundation
import HPS

extension InferenceRequest {
    /// Checks a gRPC `ModelInferRequest` against `model`. Tensor data comes either from
    /// `raw_input_contents` (one little-endian byte string per input, in input order: tritonclient.grpc's
    /// default) or from each input's typed `contents` (`int64_contents` for KEYS, `int_contents` for NUMKEYS).
    /// - Throws: ``ServeError`` 400 naming the problem.
    init(message request: Inference_ModelInferRequest, model: ModelConfig) throws(ServeError) {
        let raw = request.rawInputContents
        guard raw.isEmpty || raw.count == request.inputs.count else {
            throw .badRequest("raw_input_contents holds \(raw.count) tensor(s) for \(request.inputs.count) input(s); it must hold one per input or none")
        }
        var keys: [Int64]?
        var numKeys: [Int64]?
        for (i, input) in request.inputs.enumerated() {
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
            if !raw.isEmpty {
                guard !input.hasContents else { throw .badRequest("input \(input.name) has both contents and raw_input_contents") }
                let width: Int64 = expected == "INT64" ? 8 : 4
                let (bytes, overflow) = count.multipliedReportingOverflow(by: width)
                guard !overflow && Int64(raw[i].count) == bytes else {
                    throw .badRequest("input \(input.name): raw_input_contents[\(i)] holds \(raw[i].count) bytes; shape \(input.shape) × \(width) bytes needs \(overflow ? "more" : "\(bytes)")")
                }
                values = Self.read(raw[i], count: Int(count), width: Int(width))
            } else {
                let contents = input.contents
                values = expected == "INT64" ? contents.int64Contents : contents.intContents.map { Int64($0) }
                guard Int64(values.count) == count else {
                    throw .badRequest("input \(input.name) has \(values.count) \(expected == "INT64" ? "int64_contents" : "int_contents") values; shape \(input.shape) needs \(count)")
                }
            }
            if input.name == Self.keysName { keys = values } else { numKeys = values }
        }
        for output in request.outputs where output.name != Self.outputName {
            throw .badRequest("unknown output '\(output.name)'; model \(model.name) has OUTPUT0")
        }
        try self.init(id: request.id.isEmpty ? nil : request.id, keys: keys, numKeys: numKeys, binaryOutput: true, model: model)
    }

    /// `count` little-endian integers of `width` (4 or 8) bytes.
    private static func read(_ data: Data, count: Int, width: Int) -> [Int64] {
        data.withUnsafeBytes { raw in
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
}
