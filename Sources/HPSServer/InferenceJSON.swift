/// The JSON part of a KServe v2 inference request, as Triton's HTTP clients send it.
struct InferenceRequestJSON: Decodable, Sendable {
    var id: String?
    var inputs: [InputTensorJSON]
    var outputs: [RequestedOutputJSON]?
    var parameters: RequestParametersJSON?
}

struct InputTensorJSON: Decodable, Sendable {
    var name: String
    var datatype: String
    var shape: [Int64]
    var data: FlatIntegers?
    var parameters: TensorParametersJSON?
}

struct RequestedOutputJSON: Decodable, Sendable {
    var name: String
    var parameters: TensorParametersJSON?
}

/// Triton's binary tensor extension: `binary_data_size` on an input (its bytes follow the JSON),
/// `binary_data` on a requested output. Other parameters are accepted and ignored.
struct TensorParametersJSON: Decodable, Sendable {
    var binaryDataSize: Int64?
    var binaryData: Bool?

    enum CodingKeys: String, CodingKey {
        case binaryDataSize = "binary_data_size"
        case binaryData = "binary_data"
    }
}

struct RequestParametersJSON: Decodable, Sendable {
    /// Set by tritonclient when no outputs are listed: every output as binary data.
    var binaryDataOutput: Bool?

    enum CodingKeys: String, CodingKey {
        case binaryDataOutput = "binary_data_output"
    }
}

/// A tensor's `data`: integers, flat or nested in arrays (Triton accepts both), flattened in row-major
/// order. Anything else (a fraction, a string, a bool, null) fails to decode.
struct FlatIntegers: Decodable, Sendable {
    var values: [Int64] = []

    init(from decoder: any Decoder) throws {
        if var array = try? decoder.unkeyedContainer() {
            try Self.flatten(&array, into: &values)
        } else {
            values.append(try decoder.singleValueContainer().decode(Int64.self))
        }
    }

    private static func flatten(_ array: inout any UnkeyedDecodingContainer, into values: inout [Int64]) throws {
        while !array.isAtEnd {
            if let value = try? array.decode(Int64.self) {
                values.append(value)
            } else if var nested = try? array.nestedUnkeyedContainer() {
                try flatten(&nested, into: &values)
            } else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: array.codingPath, debugDescription: "tensor data must hold integers (element \(values.count))"))
            }
        }
    }
}
