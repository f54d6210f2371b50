import Foundation
import Hummingbird

/// JSON response bodies.
enum JSONBody {
    static let contentType = "application/json"

    /// A response whose body is `object` (dictionaries, arrays, strings, numbers, bools) as JSON.
    static func response(status: HTTPResponse.Status = .ok, object: Any) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(
            status: status, headers: [.contentType: contentType],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// `text` as a JSON string literal, quotes included.
    static func quoted(_ text: String) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: [text], options: [.fragmentsAllowed]),
            let array = String(data: data, encoding: .utf8)
        else { return "\"\"" }
        return String(array.dropFirst().dropLast())
    }
}
