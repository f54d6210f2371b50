import Hummingbird

/// `--auth-token-file`: every endpoint but `/v2/health/*` needs `Authorization: Bearer <token>`.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path.hasPrefix("/v2/health/") { return try await next(request, context) }
        guard BearerToken.matches(request.headers[.authorization] ?? "", token: token) else {
            return ServeError(.unauthorized, "missing or wrong bearer token (Authorization: Bearer <token>)").response
        }
        return try await next(request, context)
    }
}

/// The bearer-token comparison HTTP and gRPC share.
enum BearerToken {
    /// Whether `given` (an `Authorization` header or metadata value) is `Bearer <token>`, compared in time
    /// that does not depend on where the two differ.
    static func matches(_ given: String, token: String) -> Bool {
        let x = Array(given.utf8), y = Array(("Bearer " + token).utf8)
        var difference = x.count ^ y.count
        for i in 0..<min(x.count, y.count) { difference |= Int(x[i] ^ y[i]) }
        return difference == 0
    }
}
