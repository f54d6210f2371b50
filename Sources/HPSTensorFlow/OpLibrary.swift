import CTensorFlow
import HPS

/// The op library's entry point: called by the C constructor in CTensorFlow when
/// `tf.load_op_library` opens `libhierarchical_parameter_server.so` (TensorFlow collects the ops
/// registered while the library's constructors run).
@_cdecl("hps_tf_register_ops")
public func hps_tf_register_ops() {
    OpLibrary.registerAll()
}

/// The ops `Init` and `Lookup`, with exactly the inputs, outputs and attributes of NVIDIA's HPS plugin
/// (`hps_tf/hps_cc/ops`), so a graph or SavedModel made with it loads with this library; and
/// `MaxKeysPerLookup`, this library's own, which `hps.SparseLookupLayer` uses.
///
/// Only CPU kernels are registered: this build serves lookups from host memory. On a GPU build of
/// TensorFlow the ops are placed on the CPU (their inputs and outputs are small host tensors or are
/// copied by TensorFlow); no GPU kernel is registered.
enum OpLibrary {
    static let initOp = OpDefinition(
        name: "Init",
        inputs: ["global_replica_id: int32", "num_replicas_in_sync: int32", "visible_devices: int32"],
        outputs: ["status: string"],
        attributes: ["ps_config_file: string", "global_batch_size: int >= 1"],
        // Stateful so that graph optimisation never folds or prunes the one-time initialisation.
        isStateful: true,
        shapeFunction: { ctx, status in
            guard let ctx, let status else { return }
            guard ShapeInference.requireRankAtMost(ctx, status, input: 0, rank: 1),
                ShapeInference.requireRankAtMost(ctx, status, input: 1, rank: 1),
                ShapeInference.requireRank(ctx, status, input: 2, rank: 1)
            else { return }
            ShapeInference.setScalarOutput(ctx, status, output: 0)
        })

    static let lookupOp = OpDefinition(
        name: "Lookup",
        inputs: ["values: value_dtype", "global_replica_id: int32", "init_status: status_dtype"],
        outputs: ["emb_vector: dtype"],
        attributes: [
            "value_dtype: {int32, int64}", "model_name: string", "table_id: int", "emb_vec_size: int",
            "dtype: {float32}", "status_dtype: {string}",
        ],
        isStateful: false,
        shapeFunction: { ctx, status in
            guard let ctx, let status else { return }
            guard ShapeInference.requireRankAtMost(ctx, status, input: 1, rank: 1) else { return }
            ShapeInference.appendUnknownDimension(ctx, status, input: 0)
        })

    /// Not one of NVIDIA's ops: `hps.SparseLookupLayer` asks it how many ids one `Lookup` of a table takes
    /// (see ``KeyLimitKernel``).
    static let keyLimitOp = OpDefinition(
        name: "MaxKeysPerLookup",
        inputs: ["init_status: status_dtype"],
        outputs: ["limit: int64"],
        attributes: ["model_name: string", "table_id: int", "status_dtype: {string}"],
        isStateful: false,
        shapeFunction: { ctx, status in
            guard let ctx, let status else { return }
            ShapeInference.setScalarOutput(ctx, status, output: 0)
        })

    static func registerAll() {
        do {
            try initOp.register()
            try lookupOp.register()
            try keyLimitOp.register()
            try registerKernel(op: "Init", device: "CPU", name: "HPSInitCPU", create: InitKernel.create, compute: InitKernel.compute, delete: InitKernel.delete)
            try registerKernel(op: "Lookup", device: "CPU", name: "HPSLookupCPU", create: LookupKernel.create, compute: LookupKernel.compute, delete: LookupKernel.delete)
            try registerKernel(
                op: "MaxKeysPerLookup", device: "CPU", name: "HPSMaxKeysPerLookupCPU", create: KeyLimitKernel.create, compute: KeyLimitKernel.compute,
                delete: KeyLimitKernel.delete)
        } catch {
            HPSLogger.standard.error("hierarchical_parameter_server op library: \(error.message)")
        }
    }
}
