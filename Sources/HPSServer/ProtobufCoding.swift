import GRPCCore
import SwiftProtobuf

/// Encodes a protobuf message for gRPC (the generated service code under Generated/ names these). Kept here
/// rather than taken from grpc-swift-protobuf: that package's build plugins put protoc's C++ sources into
/// every `swift build --build-tests` of this package.
struct ProtobufMessageSerializer<Message: SwiftProtobuf.Message>: GRPCCore.MessageSerializer {
    init() {}

    func serialize<Bytes: GRPCContiguousBytes>(_ message: Message) throws -> Bytes {
        do {
            let adapter: ProtobufBytes<Bytes> = try message.serializedBytes()
            return adapter.bytes
        } catch {
            throw RPCError(code: .internalError, message: "cannot encode \(Message.protoMessageName)", cause: error)
        }
    }
}

/// Decodes a protobuf message from gRPC; bytes that are no such message are INVALID_ARGUMENT.
struct ProtobufMessageDeserializer<Message: SwiftProtobuf.Message>: GRPCCore.MessageDeserializer {
    init() {}

    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Message {
        do {
            return try Message(serializedBytes: ProtobufBytes(serializedMessageBytes))
        } catch {
            throw RPCError(code: .invalidArgument, message: "malformed \(Message.protoMessageName) message: \(error)", cause: error)
        }
    }
}

/// gRPC's byte container seen as swift-protobuf's.
private struct ProtobufBytes<Bytes: GRPCContiguousBytes>: GRPCContiguousBytes, SwiftProtobufContiguousBytes {
    var bytes: Bytes

    init(_ bytes: Bytes) { self.bytes = bytes }
    init(repeating byte: UInt8, count: Int) { bytes = Bytes(repeating: byte, count: count) }
    init(_ sequence: some Sequence<UInt8>) { bytes = Bytes(sequence) }
    var count: Int { bytes.count }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes(body)
    }

    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeMutableBytes(body)
    }
}
