import Foundation
import HPS
import Hummingbird

/// The KServe v2 HTTP endpoints, as Triton serves them, over the model repository.
struct Routes: Sendable {
    let repository: ModelRepository
    let lookups: LookupThreadPool
    let options: ServeOptions

    func register(on router: Router<BasicRequestContext>) {
        router.get("/v2/health/live") { _, _ in JSONBody.response(object: ["live": true]) }
        router.get("/v2/health/ready") { _, _ in JSONBody.response(object: ["ready": true]) }
        router.get("/v2") { _, _ in serverMetadata() }
        router.get("/v2/models/:model") { _, context in answer { try modelMetadata(context) } }
        router.get("/v2/models/:model/versions/:version") { _, context in answer { try modelMetadata(context) } }
        router.get("/v2/models/:model/ready") { _, context in answer { try modelReady(context) } }
        router.get("/v2/models/:model/versions/:version/ready") { _, context in answer { try modelReady(context) } }
        router.get("/v2/models/:model/config") { _, context in answer { try modelConfig(context) } }
        router.get("/v2/models/:model/versions/:version/config") { _, context in answer { try modelConfig(context) } }
        router.post("/v2/models/:model/infer") { request, context in await infer(request, context) }
        router.post("/v2/models/:model/versions/:version/infer") { request, context in await infer(request, context) }
        router.post("/v2/repository/index") { _, _ in repositoryIndex() }
        router.post("/v2/repository/models/:model/load") { _, context in
            await control(context) { try await repository.load($0) }
        }
        router.post("/v2/repository/models/:model/unload") { _, context in
            await control(context) { try await repository.unload($0) }
        }
    }

    // MARK: Server and models

    private func serverMetadata() -> Response {
        JSONBody.response(object: [
            "name": "hps",
            "version": options.serverVersion,
            "extensions": ["binary_tensor_data", "model_repository", "model_configuration"],
        ])
    }

    /// The model and version of the path; 404 for a version other than 1.
    private func modelName(_ context: BasicRequestContext) throws -> String {
        let name = context.parameters.get("model") ?? ""
        if let version = context.parameters.get("version"), version != "1" {
            throw ServeError.notFound("model '\(name)' has no version '\(version)'; HPS models have version 1")
        }
        return name
    }

    private func modelMetadata(_ context: BasicRequestContext) throws -> Response {
        JSONBody.response(object: ModelMetadata.metadata(try repository.model(modelName(context)).config))
    }

    private func modelConfig(_ context: BasicRequestContext) throws -> Response {
        JSONBody.response(object: ModelMetadata.config(try repository.model(modelName(context)).config, configFile: options.configFile))
    }

    private func modelReady(_ context: BasicRequestContext) throws -> Response {
        let name = try modelName(context)
        let state = repository.state(name)
        guard state.known else { throw ServeError.notFound("unknown model '\(name)'") }
        guard state.ready else { throw ServeError.badRequest("model '\(name)' is not ready (not loaded)") }
        return JSONBody.response(object: ["name": name, "ready": true])
    }

    private func repositoryIndex() -> Response {
        JSONBody.response(object: repository.index().map { entry in
            ["name": entry.name, "version": "1", "state": entry.ready ? "READY" : "UNAVAILABLE", "reason": entry.ready ? "" : "unloaded"]
        })
    }

    private func control(_ context: BasicRequestContext, _ action: (String) async throws -> Void) async -> Response {
        let name = context.parameters.get("model") ?? ""
        do {
            try await action(name)
            return JSONBody.response(object: [String: Any]())
        } catch let error as ServeError {
            return error.response
        } catch {
            return ServeError(.internalServerError, "\(error)").response
        }
    }

    private func answer(_ body: () throws -> Response) -> Response {
        do { return try body() } catch let error as ServeError { return error.response } catch {
            return ServeError(.internalServerError, "\(error)").response
        }
    }

    // MARK: Inference

    private func infer(_ request: Request, _ context: BasicRequestContext) async -> Response {
        let clock = ContinuousClock.now
        var modelLabel: String?
        let response = await infer(request, context, model: &modelLabel)
        ServeMetrics.shared.request(model: modelLabel, protocol: .http, succeeded: response.status == .ok, since: clock)
        return response
    }

    private func infer(_ request: Request, _ context: BasicRequestContext, model modelLabel: inout String?) async -> Response {
        do {
            let served = try repository.model(modelName(context))
            modelLabel = served.config.name
            let body = try await collectBody(request)
            var headerLength: Int?
            if let text = request.headers[InferenceResponse.headerLengthField] {
                guard let n = Int(text) else {
                    throw ServeError.badRequest("Inference-Header-Content-Length '\(text)' is not a byte count")
                }
                headerLength = n
            }
            // Parsing, the lookups and encoding all run on the lookup pool: a large body is CPU work that
            // must not hold an event loop or a cooperative thread either.
            let jsonLength = headerLength
            return try await lookups.run {
                let parsed = try InferenceRequest(body: body, headerLength: jsonLength, model: served.config)
                let output = try Self.lookUp(parsed, in: served)
                return InferenceResponse.make(modelName: served.config.name, id: parsed.id, output: output, binary: parsed.binaryOutput)
            }
        } catch let error as ServeError {
            return error.response
        } catch {
            return ServeError(.internalServerError, "lookup failed: \(error)").response
        }
    }

    private func collectBody(_ request: Request) async throws -> ByteBuffer {
        let limit = options.maxRequestBytes
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw ServeError(.contentTooLarge, "request body of \(length) bytes exceeds --max-request-bytes \(limit)")
        }
        do { return try await request.body.collect(upTo: limit) } catch {
            throw ServeError(.contentTooLarge, "request body exceeds --max-request-bytes \(limit)")
        }
    }

    /// Looks up every table's keys into one output buffer: table t's keys × its dim, in request order. One
    /// multi-table lookup: the tables of a fused group (`fuse_embedding_table`) are answered in one pass.
    private static func lookUp(_ request: InferenceRequest, in served: ServedModel) throws -> [Float] {
        var output = [Float](repeating: 0, count: request.outputCount(served.config))
        try output.withUnsafeMutableBufferPointer { try request.lookUp(in: served.session, into: $0) }
        return output
    }
}
