import Hummingbird

/// A request the server answers with an HTTP error status and `{"error": message}`.
struct ServeError: Error, Sendable {
    let status: HTTPResponse.Status
    let message: String

    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }

    static func badRequest(_ message: String) -> ServeError { ServeError(.badRequest, message) }
    static func notFound(_ message: String) -> ServeError { ServeError(.notFound, message) }

    /// The JSON error response Triton sends: `{"error": "..."}`.
    var response: Response { JSONBody.response(status: status, object: ["error": message]) }
}
