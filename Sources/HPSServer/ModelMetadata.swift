import HPS

/// The metadata and Triton-style config of a served HPS model: the inputs and output of HPS's Triton
/// backend.
enum ModelMetadata {
    static func metadata(_ model: ModelConfig) -> [String: Any] {
        [
            "name": model.name,
            "versions": ["1"],
            "platform": "hps",
            "inputs": [
                ["name": "KEYS", "datatype": "INT64", "shape": [1, -1]],
                ["name": "NUMKEYS", "datatype": "INT32", "shape": [1, -1]],
            ],
            "outputs": [["name": "OUTPUT0", "datatype": "FP32", "shape": [-1]]],
        ]
    }

    /// The model as a Triton model config (JSON form of `config.pbtxt`), with HPS's per-table settings as
    /// string parameters.
    static func config(_ model: ModelConfig, configFile: String) -> [String: Any] {
        func list<T>(_ values: [T]) -> String { values.map { "\($0)" }.joined(separator: ",") }
        let tables = model.tables
        return [
            "name": model.name,
            "platform": "hps",
            "backend": "hps",
            "max_batch_size": model.maxBatchSize,
            "version_policy": ["latest": ["num_versions": 1]],
            "input": [
                ["name": "KEYS", "data_type": "TYPE_INT64", "dims": [-1]],
                ["name": "NUMKEYS", "data_type": "TYPE_INT32", "dims": [-1]],
            ],
            "output": [["name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]]],
            "instance_group": [["count": 1, "kind": "KIND_AUTO", "gpus": model.deployedDevices]],
            "parameters": [
                "config": ["string_value": configFile],
                "embedding_table_names": ["string_value": list(tables.map(\.name))],
                "embedding_vecsize_per_table": ["string_value": list(tables.map(\.dimension))],
                "maxnum_catfeature_query_per_table_per_sample": ["string_value": list(tables.map(\.maxKeysPerSample))],
                "default_value_for_each_table": ["string_value": list(tables.map(\.defaultValue))],
            ],
        ]
    }
}
