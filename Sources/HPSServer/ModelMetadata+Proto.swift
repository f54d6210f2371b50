import HPS

/// The metadata and Triton-style config of a served model as the gRPC protocol's messages: the same content
/// as ``ModelMetadata``'s JSON.
extension ModelMetadata {
    static func metadataMessage(_ model: ModelConfig) -> Inference_ModelMetadataResponse {
        func tensor(_ name: String, _ datatype: String, _ shape: [Int64]) -> Inference_ModelMetadataResponse.TensorMetadata {
            var t = Inference_ModelMetadataResponse.TensorMetadata()
            t.name = name
            t.datatype = datatype
            t.shape = shape
            return t
        }
        var m = Inference_ModelMetadataResponse()
        m.name = model.name
        m.versions = ["1"]
        m.platform = "hps"
        m.inputs = [tensor(InferenceRequest.keysName, "INT64", [1, -1]), tensor(InferenceRequest.numKeysName, "INT32", [1, -1])]
        m.outputs = [tensor(InferenceRequest.outputName, "FP32", [-1])]
        return m
    }

    static func configMessage(_ model: ModelConfig, configFile: String) -> Inference_ModelConfig {
        func list<T>(_ values: [T]) -> String { values.map { "\($0)" }.joined(separator: ",") }
        func parameter(_ value: String) -> Inference_ModelParameter {
            var p = Inference_ModelParameter()
            p.stringValue = value
            return p
        }
        var c = Inference_ModelConfig()
        c.name = model.name
        c.platform = "hps"
        c.backend = "hps"
        c.maxBatchSize = Int32(clamping: model.maxBatchSize)
        var latest = Inference_ModelVersionPolicy.Latest()
        latest.numVersions = 1
        c.versionPolicy.latest = latest
        var keys = Inference_ModelInput(), numKeys = Inference_ModelInput()
        keys.name = InferenceRequest.keysName
        keys.dataType = .typeInt64
        keys.dims = [-1]
        numKeys.name = InferenceRequest.numKeysName
        numKeys.dataType = .typeInt32
        numKeys.dims = [-1]
        c.input = [keys, numKeys]
        var output = Inference_ModelOutput()
        output.name = InferenceRequest.outputName
        output.dataType = .typeFp32
        output.dims = [-1]
        c.output = [output]
        var group = Inference_ModelInstanceGroup()
        group.count = 1
        group.kind = .auto
        group.gpus = model.deployedDevices.map { Int32(clamping: $0) }
        c.instanceGroup = [group]
        let tables = model.tables
        c.parameters = [
            "config": parameter(configFile),
            "embedding_table_names": parameter(list(tables.map(\.name))),
            "embedding_vecsize_per_table": parameter(list(tables.map(\.dimension))),
            "maxnum_catfeature_query_per_table_per_sample": parameter(list(tables.map(\.maxKeysPerSample))),
            "default_value_for_each_table": parameter(list(tables.map(\.defaultValue))),
        ]
        return c
    }
}
