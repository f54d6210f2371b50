import GRPCCore

extension ServeError {
    /// The gRPC status of the same problem, as Triton maps its HTTP codes: 400 → INVALID_ARGUMENT, 404 →
    /// NOT_FOUND, 401 → UNAUTHENTICATED, 413 → RESOURCE_EXHAUSTED, anything else → INTERNAL.
    var rpcError: RPCError {
        let code: RPCError.Code
        switch status.code {
        case 400: code = .invalidArgument
        case 404: code = .notFound
        case 401: code = .unauthenticated
        case 413: code = .resourceExhausted
        default: code = .internalError
        }
        return RPCError(code: code, message: message)
    }
}
