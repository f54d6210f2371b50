import Foundation
import GRPCCore
import HPS

/// The KServe v2 `GRPCInferenceService` as Triton serves it (Protos/grpc_service.proto), over the same
/// model repository and lookup threads as the HTTP endpoints, with the same checks; a ``ServeError`` becomes
/// the matching gRPC status (``ServeError/rpcError``).
struct GRPCInferenceService: Inference_GRPCInferenceService.SimpleServiceProtocol {
    let repository: ModelRepository
    let lookups: LookupThreadPool
    let options: ServeOptions

    func serverLive(request: Inference_ServerLiveRequest, context: ServerContext) async throws -> Inference_ServerLiveResponse {
        var response = Inference_ServerLiveResponse()
        response.live = true
        return response
    }

    func serverReady(request: Inference_ServerReadyRequest, context: ServerContext) async throws -> Inference_ServerReadyResponse {
        var response = Inference_ServerReadyResponse()
        response.ready = true
        return response
    }

    /// Ready when loaded; false (not an error) for a model that is not loaded or not in the config, as Triton.
    func modelReady(request: Inference_ModelReadyRequest, context: ServerContext) async throws -> Inference_ModelReadyResponse {
        var response = Inference_ModelReadyResponse()
        response.ready = (request.version.isEmpty || request.version == "1") && repository.state(request.name).ready
        return response
    }

    func serverMetadata(request: Inference_ServerMetadataRequest, context: ServerContext) async throws -> Inference_ServerMetadataResponse {
        var response = Inference_ServerMetadataResponse()
        response.name = "hps"
        response.version = options.serverVersion
        response.extensions = ["binary_tensor_data", "model_repository", "model_configuration"]
        return response
    }

    func modelMetadata(request: Inference_ModelMetadataRequest, context: ServerContext) async throws -> Inference_ModelMetadataResponse {
        try mapped { ModelMetadata.metadataMessage(try served(request.name, request.version).config) }
    }

    func modelConfig(request: Inference_ModelConfigRequest, context: ServerContext) async throws -> Inference_ModelConfigResponse {
        try mapped {
            var response = Inference_ModelConfigResponse()
            response.config = ModelMetadata.configMessage(try served(request.name, request.version).config, configFile: options.configFile)
            return response
        }
    }

    func modelInfer(request: Inference_ModelInferRequest, context: ServerContext) async throws -> Inference_ModelInferResponse {
        let clock = ContinuousClock.now
        var modelLabel: String?
        do {
            let served = try served(request.modelName, request.modelVersion)
            modelLabel = served.config.name
            let response = try await lookups.run {
                let parsed = try InferenceRequest(message: request, model: served.config)
                var output = Data(count: parsed.outputCount(served.config) * MemoryLayout<Float>.size)
                try output.withUnsafeMutableBytes { raw in
                    try parsed.lookUp(in: served.session, into: raw.bindMemory(to: Float.self))
                }
                var tensor = Inference_ModelInferResponse.InferOutputTensor()
                tensor.name = InferenceRequest.outputName
                tensor.datatype = "FP32"
                tensor.shape = [Int64(output.count / MemoryLayout<Float>.size)]
                var response = Inference_ModelInferResponse()
                response.modelName = served.config.name
                response.modelVersion = "1"
                if let id = parsed.id { response.id = id }
                response.outputs = [tensor]
                response.rawOutputContents = [output]  // little-endian hosts only, as Triton
                return response
            }
            ServeMetrics.shared.request(model: modelLabel, protocol: .grpc, succeeded: true, since: clock)
            return response
        } catch let error as ServeError {
            ServeMetrics.shared.request(model: modelLabel, protocol: .grpc, succeeded: false, since: clock)
            throw error.rpcError
        } catch {
            ServeMetrics.shared.request(model: modelLabel, protocol: .grpc, succeeded: false, since: clock)
            throw RPCError(code: .internalError, message: "lookup failed: \(error)")
        }
    }

    func repositoryIndex(request: Inference_RepositoryIndexRequest, context: ServerContext) async throws -> Inference_RepositoryIndexResponse {
        var response = Inference_RepositoryIndexResponse()
        response.models = repository.index().filter { !request.ready || $0.ready }.map { entry in
            var model = Inference_RepositoryIndexResponse.ModelIndex()
            model.name = entry.name
            model.version = "1"
            model.state = entry.ready ? "READY" : "UNAVAILABLE"
            model.reason = entry.ready ? "" : "unloaded"
            return model
        }
        return response
    }

    func repositoryModelLoad(request: Inference_RepositoryModelLoadRequest, context: ServerContext) async throws -> Inference_RepositoryModelLoadResponse {
        do { try await repository.load(request.modelName) } catch let error as ServeError { throw error.rpcError }
        return Inference_RepositoryModelLoadResponse()
    }

    func repositoryModelUnload(request: Inference_RepositoryModelUnloadRequest, context: ServerContext) async throws -> Inference_RepositoryModelUnloadResponse {
        do { try await repository.unload(request.modelName) } catch let error as ServeError { throw error.rpcError }
        return Inference_RepositoryModelUnloadResponse()
    }

    // MARK: Helpers

    /// The loaded model `name`; NOT_FOUND-mapped errors for an unknown or unloaded model or a version other
    /// than 1 (an empty version means the latest, 1).
    private func served(_ name: String, _ version: String) throws(ServeError) -> ServedModel {
        guard version.isEmpty || version == "1" else {
            throw .notFound("model '\(name)' has no version '\(version)'; HPS models have version 1")
        }
        return try repository.model(name)
    }

    private func mapped<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as ServeError { throw error.rpcError }
    }
}
