import CTensorFlow

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// Thin typed wrappers over the TensorFlow C API calls the op library makes. Every C call of this module
// goes through this file.

/// A TensorFlow error: a status code and a message naming what is wrong.
struct TFError: Error, CustomStringConvertible {
    var code: TF_Code
    var message: String

    init(_ code: TF_Code, _ message: String) {
        self.code = code
        self.message = message
    }

    static func invalidArgument(_ message: String) -> TFError { TFError(TSL_INVALID_ARGUMENT, message) }
    static func failedPrecondition(_ message: String) -> TFError { TFError(TSL_FAILED_PRECONDITION, message) }
    static func aborted(_ message: String) -> TFError { TFError(TSL_ABORTED, message) }
    static func internalError(_ message: String) -> TFError { TFError(TSL_INTERNAL, message) }
    static func resourceExhausted(_ message: String) -> TFError { TFError(TSL_RESOURCE_EXHAUSTED, message) }

    var description: String { message }
}

/// An owned `TF_Status`.
struct TFStatus: ~Copyable {
    let raw: OpaquePointer

    init() { raw = TF_NewStatus() }
    deinit { TF_DeleteStatus(raw) }

    var isOK: Bool { TF_GetCode(raw) == TSL_OK }
    var message: String { String(cString: TF_Message(raw)) }

    func set(_ error: TFError) { TF_SetStatus(raw, error.code, error.message) }

    /// Throws the status as a ``TFError`` (prefixed with `context`) unless it is OK.
    func check(_ context: @autoclosure () -> String) throws(TFError) {
        if !isOK { throw TFError(TF_GetCode(raw), "\(context()): \(message)") }
    }
}

/// An owned `TF_Tensor` handle (deleted when dropped; the buffer itself belongs to TensorFlow).
struct TFTensor: ~Copyable {
    let raw: OpaquePointer

    deinit { TF_DeleteTensor(raw) }

    var dataType: TF_DataType { TF_TensorType(raw) }
    var rank: Int { Int(TF_NumDims(raw)) }
    func dimension(_ i: Int) -> Int64 { TF_Dim(raw, Int32(i)) }
    var elementCount: Int { Int(TF_TensorElementCount(raw)) }
    var data: UnsafeMutableRawPointer? { TF_TensorData(raw) }

    var shapeDescription: String {
        "[" + (0..<rank).map { String(dimension($0)) }.joined(separator: ", ") + "]"
    }

    /// The single element of a one-element int32 tensor (a scalar, or shape `[1]`).
    func int32Scalar(name: String) throws(TFError) -> Int32 {
        guard dataType == TF_INT32 else { throw .invalidArgument("\(name) must be an int32 tensor, got dtype \(dataType.name)") }
        guard elementCount == 1, let data else {
            throw .invalidArgument("\(name) must be a scalar, got shape \(shapeDescription)")
        }
        return data.load(as: Int32.self)
    }

    /// The elements of an int32 tensor.
    func int32Values(name: String) throws(TFError) -> [Int32] {
        guard dataType == TF_INT32 else { throw .invalidArgument("\(name) must be an int32 tensor, got dtype \(dataType.name)") }
        let n = elementCount
        guard n > 0, let data else { return [] }
        return Array(UnsafeBufferPointer(start: data.assumingMemoryBound(to: Int32.self), count: n))
    }

    /// Whether this tensor is a one-element string tensor holding exactly `expected`.
    func stringScalarEquals(_ expected: StaticString) -> Bool {
        guard dataType == TF_STRING, elementCount == 1, let data else { return false }
        var bytes: UnsafePointer<CChar>? = nil
        var size = 0
        hps_tstring_read(data, &bytes, &size)
        guard size == expected.utf8CodeUnitCount, let bytes else { return false }
        return memcmp(bytes, expected.utf8Start, size) == 0
    }

    /// The string of a one-element string tensor, for messages (nil when the tensor is not one).
    func stringScalar() -> String? {
        guard dataType == TF_STRING, elementCount == 1, let data else { return nil }
        var bytes: UnsafePointer<CChar>? = nil
        var size = 0
        hps_tstring_read(data, &bytes, &size)
        guard let bytes else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: bytes, count: size), as: UTF8.self)
    }
}

/// The `TF_OpKernelContext` of one kernel invocation.
struct KernelContext {
    let raw: OpaquePointer

    /// Input `index`, with TensorFlow's message when it cannot be read.
    func input(_ index: Int32, name: String) throws(TFError) -> TFTensor {
        let status = TFStatus()
        var tensor: OpaquePointer? = nil
        TF_GetInput(raw, index, &tensor, status.raw)
        try status.check("cannot read input \(name)")
        guard let tensor else { throw .internalError("input \(name) is missing") }
        return TFTensor(raw: tensor)
    }

    func inputDataType(_ index: Int32) -> TF_DataType { TF_InputDatatype(raw, index) }

    /// Allocates output `index` with the given shape.
    func allocateOutput(_ index: Int32, dataType: TF_DataType, dimensions: UnsafeBufferPointer<Int64>, elementSize: Int) throws(TFError) -> TFTensor {
        let status = TFStatus()
        let count = dimensions.reduce(1, &*)
        let tensor = TF_AllocateOutput(raw, index, dataType, dimensions.baseAddress, Int32(dimensions.count), Int(count) &* elementSize, status.raw)
        try status.check("cannot allocate output \(index)")
        guard let tensor else { throw .resourceExhausted("cannot allocate output \(index)") }
        return TFTensor(raw: tensor)
    }

    /// Fails this invocation with `error`.
    func fail(_ error: TFError) {
        let status = TFStatus()
        status.set(error)
        TF_OpKernelContext_Failure(raw, status.raw)
    }
}

/// The `TF_OpKernelConstruction` of a kernel being created (attribute access).
struct KernelConstruction {
    let raw: OpaquePointer

    func string(_ name: String) throws(TFError) -> String {
        let status = TFStatus()
        var listSize: Int32 = 0
        var totalSize: Int32 = 0
        TF_OpKernelConstruction_GetAttrSize(raw, name, &listSize, &totalSize, status.raw)
        try status.check("cannot read attribute \(name)")
        let length = Int(max(totalSize, 0))
        var buffer = [CChar](repeating: 0, count: length + 1)
        TF_OpKernelConstruction_GetAttrString(raw, name, &buffer, length, status.raw)
        try status.check("cannot read attribute \(name)")
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func int64(_ name: String) throws(TFError) -> Int64 {
        let status = TFStatus()
        var value: Int64 = 0
        TF_OpKernelConstruction_GetAttrInt64(raw, name, &value, status.raw)
        try status.check("cannot read attribute \(name)")
        return value
    }

    func dataType(_ name: String) throws(TFError) -> TF_DataType {
        let status = TFStatus()
        var value = TF_FLOAT
        TF_OpKernelConstruction_GetAttrType(raw, name, &value, status.raw)
        try status.check("cannot read attribute \(name)")
        return value
    }

    func fail(_ error: TFError) {
        let status = TFStatus()
        status.set(error)
        TF_OpKernelConstruction_Failure(raw, status.raw)
    }
}

extension TF_DataType {
    /// TensorFlow's name of the type, for messages.
    var name: String {
        switch self {
        case TF_FLOAT: "float32"
        case TF_DOUBLE: "float64"
        case TF_INT32: "int32"
        case TF_INT64: "int64"
        case TF_STRING: "string"
        default: "type #\(rawValue)"
        }
    }
}

/// Builds and registers one op definition.
struct OpDefinition {
    var name: String
    var inputs: [String] = []
    var outputs: [String] = []
    var attributes: [String] = []
    var isStateful = false
    var shapeFunction: (@convention(c) (OpaquePointer?, OpaquePointer?) -> Void)? = nil

    func register() throws(TFError) {
        guard let builder = TF_NewOpDefinitionBuilder(name) else { throw .internalError("cannot create op builder \(name)") }
        for spec in attributes { TF_OpDefinitionBuilderAddAttr(builder, spec) }
        for spec in inputs { TF_OpDefinitionBuilderAddInput(builder, spec) }
        for spec in outputs { TF_OpDefinitionBuilderAddOutput(builder, spec) }
        // TF's C API marks the op stateful whatever the flag says, so it is only called for stateful ops.
        if isStateful { TF_OpDefinitionBuilderSetIsStateful(builder, true) }
        if let shapeFunction { TF_OpDefinitionBuilderSetShapeInferenceFunction(builder, shapeFunction) }
        let status = TFStatus()
        TF_RegisterOpDefinition(builder, status.raw)  // frees the builder either way
        try status.check("cannot register op \(name)")
    }
}

/// Registers a kernel for `op` on `device` with C callbacks.
func registerKernel(
    op: String, device: String, name: String,
    create: @convention(c) (OpaquePointer?) -> UnsafeMutableRawPointer?,
    compute: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?) -> Void,
    delete: @convention(c) (UnsafeMutableRawPointer?) -> Void
) throws(TFError) {
    guard let builder = TF_NewKernelBuilder(op, device, create, compute, delete) else {
        throw .internalError("cannot create kernel builder for \(op) on \(device)")
    }
    let status = TFStatus()
    TF_RegisterKernelBuilder(name, builder, status.raw)
    try status.check("cannot register the \(device) kernel of \(op)")
}

/// Shape-inference helpers (used from the shape functions, which TensorFlow calls with a context and a
/// status to fill).
enum ShapeInference {
    /// Output 0 := input `input`'s shape followed by one unknown dimension (the C API cannot read integer
    /// attributes here, so `emb_vec_size` is filled in by the Python layer with `set_shape`).
    static func appendUnknownDimension(_ ctx: OpaquePointer?, _ status: OpaquePointer?, input: Int32) {
        guard let ctx, let status else { return }
        let shape = TF_NewShapeHandle()
        defer { TF_DeleteShapeHandle(shape) }
        TF_ShapeInferenceContextGetInput(ctx, input, shape, status)
        guard TF_GetCode(status) == TSL_OK else { return }
        guard TF_ShapeInferenceContextRankKnown(ctx, shape) != 0 else {
            TF_ShapeInferenceContextSetUnknownShape(ctx, status)
            return
        }
        let last = TF_ShapeInferenceContextVectorFromSize(ctx, -1)  // (size_t)-1 is TF's unknown dimension
        defer { TF_DeleteShapeHandle(last) }
        let result = TF_NewShapeHandle()
        defer { TF_DeleteShapeHandle(result) }
        TF_ShapeInferenceContextConcatenateShapes(ctx, shape, last, result, status)
        guard TF_GetCode(status) == TSL_OK else { return }
        TF_ShapeInferenceContextSetOutput(ctx, 0, result, status)
    }

    /// Fails unless input `input` has at most `rank` dimensions.
    static func requireRankAtMost(_ ctx: OpaquePointer, _ status: OpaquePointer, input: Int32, rank: Int64) -> Bool {
        let shape = TF_NewShapeHandle()
        defer { TF_DeleteShapeHandle(shape) }
        TF_ShapeInferenceContextGetInput(ctx, input, shape, status)
        guard TF_GetCode(status) == TSL_OK else { return false }
        let result = TF_NewShapeHandle()
        defer { TF_DeleteShapeHandle(result) }
        TF_ShapeInferenceContextWithRankAtMost(ctx, shape, rank, result, status)
        return TF_GetCode(status) == TSL_OK
    }

    /// Fails unless input `input` has exactly `rank` dimensions.
    static func requireRank(_ ctx: OpaquePointer, _ status: OpaquePointer, input: Int32, rank: Int64) -> Bool {
        let shape = TF_NewShapeHandle()
        defer { TF_DeleteShapeHandle(shape) }
        TF_ShapeInferenceContextGetInput(ctx, input, shape, status)
        guard TF_GetCode(status) == TSL_OK else { return false }
        let result = TF_NewShapeHandle()
        defer { TF_DeleteShapeHandle(result) }
        TF_ShapeInferenceContextWithRank(ctx, shape, rank, result, status)
        return TF_GetCode(status) == TSL_OK
    }

    /// Output `output` := a scalar.
    static func setScalarOutput(_ ctx: OpaquePointer, _ status: OpaquePointer, output: Int32) {
        let scalar = TF_ShapeInferenceContextScalar(ctx)
        defer { TF_DeleteShapeHandle(scalar) }
        TF_ShapeInferenceContextSetOutput(ctx, output, scalar, status)
    }
}
