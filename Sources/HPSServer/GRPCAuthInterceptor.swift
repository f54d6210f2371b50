import GRPCCore

/// `--auth-token-file` over gRPC: every RPC but ServerLive and ServerReady (the health checks) needs the
/// metadata `authorization: Bearer <token>`, as the HTTP endpoints need the header; UNAUTHENTICATED otherwise.
struct GRPCAuthInterceptor: ServerInterceptor {
    let token: String

    private static let open: Set<String> = ["ServerLive", "ServerReady"]

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        if Self.open.contains(context.descriptor.method) { return try await next(request, context) }
        var given = ""
        for value in request.metadata[stringValues: "authorization"] {
            given = value
            break
        }
        guard BearerToken.matches(given, token: token) else {
            throw RPCError(code: .unauthenticated, message: "missing or wrong bearer token (metadata authorization: Bearer <token>)")
        }
        return try await next(request, context)
    }
}
