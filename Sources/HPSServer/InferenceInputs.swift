import HPS

/// The `KEYS` and `NUMKEYS` inputs of a request as they are decoded, whatever the protocol: HTTP (JSON data or
/// binary tensor data) and gRPC (typed contents or raw input contents) check each input here, so the same bad
/// input gets the same error from both.
struct InferenceInputs {
    /// One input a request names, its name, datatype and shape checked.
    struct Input {
        enum Kind { case keys, numKeys }

        let kind: Kind
        let shape: [Int64]
        /// Values the shape `[1, n]` holds: n.
        var count: Int64 { shape[1] }

        var name: String { kind == .keys ? InferenceRequest.keysName : InferenceRequest.numKeysName }
        var datatype: String { kind == .keys ? "INT64" : "INT32" }
        /// Bytes one value takes in binary tensor data.
        var width: Int64 { kind == .keys ? 8 : 4 }

        /// Checks that `length` bytes of binary tensor data, as `source` gives them, are the shape's values.
        /// - Throws: ``ServeError`` 400 naming the input, the source and the bytes the shape needs.
        func checkByteCount(_ length: Int64, source: String) throws(ServeError) {
            let (bytes, overflow) = count.multipliedReportingOverflow(by: width)
            guard !overflow && length == bytes else {
                throw .badRequest("input \(name): \(source) is \(length) bytes but shape \(shape) × \(width) bytes is \(overflow ? "more" : "\(bytes)")")
            }
        }

        /// The shape's values from binary tensor data: little-endian integers of ``width`` bytes. `raw` holds
        /// at least ``count`` × ``width`` bytes (``checkByteCount(_:source:)``).
        func decode(littleEndian raw: UnsafeRawBufferPointer) -> [Int64] {
            let count = Int(count)
            precondition(raw.count >= count * Int(width))
            if kind == .keys {
                return [Int64](unsafeUninitializedCapacity: count) { out, n in
                    if count > 0 { UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: count * 8) }
                    for i in 0..<count { out[i] = Int64(littleEndian: out[i]) }
                    n = count
                }
            }
            return (0..<count).map { Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
        }

        /// Checks values given as numbers, in `source`: as many as the shape holds, each fitting the datatype.
        /// - Throws: ``ServeError`` 400 naming the input and the problem.
        func checkValues(_ values: [Int64], source: String) throws(ServeError) {
            guard Int64(values.count) == count else {
                throw .badRequest("input \(name) has \(values.count) values in \(source); shape \(shape) needs \(count)")
            }
            if kind == .numKeys, let bad = values.first(where: { Int32(exactly: $0) == nil }) {
                throw .badRequest("input \(name): \(bad) does not fit INT32")
            }
        }
    }

    private(set) var keys: [Int64]?
    private(set) var numKeys: [Int64]?

    /// Checks an input a request names: `KEYS` (INT64) or `NUMKEYS` (INT32), not given before, of shape `[1, n]`.
    /// - Throws: ``ServeError`` 400 naming the input (or `model` for an input it does not take).
    func input(name: String, datatype: String, shape: [Int64], model: ModelConfig) throws(ServeError) -> Input {
        let kind: Input.Kind
        switch name {
        case InferenceRequest.keysName: kind = .keys
        case InferenceRequest.numKeysName: kind = .numKeys
        default: throw .badRequest("unexpected input '\(name)'; model \(model.name) takes KEYS (INT64) and NUMKEYS (INT32)")
        }
        guard (kind == .keys ? keys : numKeys) == nil else { throw .badRequest("input \(name) given twice") }
        let input = Input(kind: kind, shape: shape)
        guard datatype == input.datatype else {
            throw .badRequest("input \(name) has datatype \(datatype); expected \(input.datatype)")
        }
        guard shape.count == 2 && shape[0] == 1 && shape[1] >= 0 else {
            throw .badRequest("input \(name) has shape \(shape); expected [1, n]")
        }
        return input
    }

    /// Records `input`'s values, checked by ``Input/checkValues(_:source:)`` or decoded by ``Input/decode(littleEndian:)``.
    mutating func set(_ values: [Int64], for input: Input) {
        switch input.kind {
        case .keys: keys = values
        case .numKeys: numKeys = values
        }
    }
}
