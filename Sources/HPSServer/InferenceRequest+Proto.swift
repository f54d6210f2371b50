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
        var inputs = InferenceInputs()
        for (i, tensor) in request.inputs.enumerated() {
            let input = try inputs.input(name: tensor.name, datatype: tensor.datatype, shape: tensor.shape, model: model)
            if !raw.isEmpty {
                guard !tensor.hasContents else { throw .badRequest("input \(input.name) has both contents and raw_input_contents") }
                try input.checkByteCount(Int64(raw[i].count), source: "raw_input_contents[\(i)]")
                inputs.set(raw[i].withUnsafeBytes { input.decode(littleEndian: $0) }, for: input)
            } else {
                let values: [Int64]
                switch input.kind {
                case .keys: values = tensor.contents.int64Contents
                case .numKeys: values = tensor.contents.intContents.map { Int64($0) }
                }
                try input.checkValues(values, source: input.kind == .keys ? "int64_contents" : "int_contents")
                inputs.set(values, for: input)
            }
        }
        try self.init(id: request.id.isEmpty ? nil : request.id, inputs: inputs, binaryOutput: true, model: model)
        for output in request.outputs {
            try Self.checkOutput(name: output.name, model: model)
        }
    }
}
