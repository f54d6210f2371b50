import Hummingbird

/// Encodes `OUTPUT0` (FP32, flat: each table's keys × its dim, in request order) the way Triton does: as
/// JSON `data`, or with the binary tensor extension as raw little-endian floats after the JSON, whose
/// length the `Inference-Header-Content-Length` header gives.
enum InferenceResponse {
    static let headerLengthField = HTTPFields.Element.Name("Inference-Header-Content-Length")!

    static func make(modelName: String, id: String?, output: [Float], binary: Bool) -> Response {
        var json = "{\"model_name\":\(JSONBody.quoted(modelName)),\"model_version\":\"1\","
        if let id { json += "\"id\":\(JSONBody.quoted(id)),"}
        json += "\"outputs\":[{\"name\":\"OUTPUT0\",\"datatype\":\"FP32\",\"shape\":[\(output.count)],"
        if binary {
            json += "\"parameters\":{\"binary_data_size\":\(output.count * 4)}}]}"
            let header = Array(json.utf8)
            var buffer = ByteBufferAllocator().buffer(capacity: header.count + output.count * 4)
            buffer.writeBytes(header)
            _ = output.withUnsafeBytes { buffer.writeBytes($0) }  // little-endian hosts only, as Triton
            return Response(
                status: .ok,
                headers: [.contentType: "application/octet-stream", headerLengthField: String(header.count)],
                body: .init(byteBuffer: buffer))
        }
        var text = json + "\"data\":["
        text.reserveCapacity(text.utf8.count + output.count * 12 + 8)
        for (i, value) in output.enumerated() {
            if i > 0 { text += "," }
            // A double that parses back to exactly this float; JSON has no NaN or infinity (sent as null).
            text += value.isFinite ? Double(value).description : "null"
        }
        text += "]}]}"
        return Response(status: .ok, headers: [.contentType: JSONBody.contentType], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
