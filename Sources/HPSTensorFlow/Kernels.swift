import CTensorFlow
import HPS
import Synchronization

// The `Init` and `Lookup` kernels. Their inputs, outputs and attributes are those of NVIDIA's HPS plugin
// (see OpLibrary.swift), so graphs and SavedModels made with it run with this library.

// MARK: - Init

/// `Init(global_replica_id, num_replicas_in_sync, visible_devices) -> status`, attributes
/// `ps_config_file`, `global_batch_size`: builds the process-wide parameter server once.
final class InitKernel {
    let configFile: String
    let globalBatchSize: Int

    init(_ construction: KernelConstruction) throws(TFError) {
        configFile = try construction.string("ps_config_file")
        globalBatchSize = Int(try construction.int64("global_batch_size"))
    }

    func compute(_ context: KernelContext) throws(TFError) {
        let replicaId = try context.input(0, name: "global_replica_id").int32Scalar(name: "global_replica_id")
        let replicaCount = try context.input(1, name: "num_replicas_in_sync").int32Scalar(name: "num_replicas_in_sync")
        let visible = try context.input(2, name: "visible_devices").int32Values(name: "visible_devices")
        try ParameterServerState.initialize(
            configFile: configFile, globalBatchSize: globalBatchSize, replicaId: Int(replicaId), replicaCount: Int(replicaCount),
            visibleDevices: visible.map(Int.init))
        try withUnsafeTemporaryAllocation(of: Int64.self, capacity: 0) { (dims) throws(TFError) in
            let output = try context.allocateOutput(0, dataType: TF_STRING, dimensions: UnsafeBufferPointer(dims), elementSize: 24)
            guard let data = output.data, hps_tstring_write_small(data, "OK", 2) else {
                throw TFError.internalError("cannot write the Init status")
            }
        }
    }

    static let create: @convention(c) (OpaquePointer?) -> UnsafeMutableRawPointer? = { raw in
        guard let raw else { return nil }
        let construction = KernelConstruction(raw: raw)
        do throws(TFError) {
            return Unmanaged.passRetained(try InitKernel(construction)).toOpaque()
        } catch {
            construction.fail(TFError(error.code, "Init: \(error.message)"))
            return nil
        }
    }

    static let compute: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?) -> Void = { kernel, raw in
        guard let kernel, let raw else { return }
        let context = KernelContext(raw: raw)
        do throws(TFError) {
            try Unmanaged<InitKernel>.fromOpaque(kernel).takeUnretainedValue().compute(context)
        } catch {
            context.fail(error)
        }
    }

    static let delete: @convention(c) (UnsafeMutableRawPointer?) -> Void = { kernel in
        guard let kernel else { return }
        Unmanaged<InitKernel>.fromOpaque(kernel).release()
    }
}

// MARK: - Lookup

/// `Lookup(values, global_replica_id, init_status) -> emb_vector`, attributes `model_name`, `table_id`,
/// `emb_vec_size`, `value_dtype`, `dtype`, `status_dtype`: one embedding vector per key, in key order,
/// shape `values.shape + [emb_vec_size]`.
final class LookupKernel: Sendable {
    let modelName: String
    let tableId: Int
    let vectorSize: Int

    /// What a successful first lookup on a replica resolved: the session and the limits to check.
    struct Target {
        var session: LookupSession
        var maxKeys: Int
        var int64Keys: Bool
    }

    /// One target per replica id, filled on first use (the server never changes once built).
    private let targets = Mutex<[Int: Target]>([:])

    init(_ construction: KernelConstruction) throws(TFError) {
        modelName = try construction.string("model_name")
        tableId = Int(try construction.int64("table_id"))
        vectorSize = Int(try construction.int64("emb_vec_size"))
        let dtype = try construction.dataType("dtype")
        guard dtype == TF_FLOAT else { throw .invalidArgument("dtype must be float32, got \(dtype.name)") }
        guard vectorSize > 0 else { throw .invalidArgument("emb_vec_size must be positive, got \(vectorSize)") }
        guard tableId >= 0 else { throw .invalidArgument("table_id must not be negative, got \(tableId)") }
    }

    private var what: String { "model \(modelName) table \(tableId)" }

    /// Checks the request against the model's config and gets the session of `replica`.
    private func resolve(replica: Int) throws(TFError) -> Target {
        if let target = targets.withLock({ $0[replica] }) { return target }
        guard let server = ParameterServerState.current else {
            throw .failedPrecondition("hierarchical parameter server is not initialized.")
        }
        let config = server.config
        guard let model = config.model(named: modelName) else {
            let known = config.models.map(\.name).joined(separator: ", ")
            throw .invalidArgument("unknown model_name \"\(modelName)\": the parameter server holds the model(s) \(known)")
        }
        guard tableId < model.tableCount else {
            throw .invalidArgument("table_id \(tableId) is out of range: model \(modelName) has \(model.tableCount) table(s) (table_id 0..<\(model.tableCount))")
        }
        let size = model.embeddingVectorSizes[tableId]
        guard vectorSize == size else {
            throw .invalidArgument("emb_vec_size \(vectorSize) does not match \(what), whose embedding_vecsize_per_table is \(size)")
        }
        let session: LookupSession
        do {
            session = try server.session(model: modelName, device: replica)
        } catch {
            throw TFError(wrapping: error, context: "no lookup session for \(what) on global_replica_id \(replica)")
        }
        let target = Target(session: session, maxKeys: model.maxQueryLength(table: tableId), int64Keys: config.supportLongLong)
        targets.withLock { $0[replica] = target }
        return target
    }

    func compute(_ context: KernelContext) throws(TFError) {
        // init_status must be the "OK" of an Init op.
        let status = try context.input(2, name: "init_status")
        guard status.stringScalarEquals("OK"), ParameterServerState.current != nil else {
            throw .failedPrecondition("hierarchical parameter server is not initialized.")
        }
        let replica = try context.input(1, name: "global_replica_id").int32Scalar(name: "global_replica_id")
        guard replica >= 0 else { throw .invalidArgument("global_replica_id must not be negative, got \(replica)") }
        let target = try resolve(replica: Int(replica))

        let values = try context.input(0, name: "values")
        let keyType = values.dataType
        let wanted = target.int64Keys ? TF_INT64 : TF_INT32
        guard keyType == wanted else {
            let flag = target.int64Keys ? "true" : "false"
            throw .invalidArgument("keys of \(what) are \(keyType.name) but the config sets supportlonglong=\(flag), which needs \(wanted.name) keys (cast the ids with tf.cast(ids, tf.\(wanted.name)))")
        }
        let count = values.elementCount
        guard count <= target.maxKeys else {
            let model = target.session.model
            throw .invalidArgument("\(count) keys for \(what) exceed the most one lookup may carry: max_batch_size \(model.maxBatchSize) × maxnum_catfeature_query_per_table_per_sample[\(tableId)] \(model.maxKeysPerSample[tableId]) = \(target.maxKeys)")
        }

        let rank = values.rank
        try withUnsafeTemporaryAllocation(of: Int64.self, capacity: rank + 1) { (dims) throws(TFError) in
            for i in 0..<rank { dims[i] = values.dimension(i) }
            dims[rank] = Int64(vectorSize)
            let output = try context.allocateOutput(0, dataType: TF_FLOAT, dimensions: UnsafeBufferPointer(dims), elementSize: 4)
            guard count > 0 else { return }
            guard let keys = values.data, let out = output.data else { throw TFError.internalError("\(what): tensor without data") }
            let vectors = UnsafeMutableBufferPointer(start: out.assumingMemoryBound(to: Float.self), count: count * vectorSize)
            do {
                if target.int64Keys {
                    try target.session.lookup(table: tableId, keys: UnsafeBufferPointer(start: keys.assumingMemoryBound(to: Int64.self), count: count), into: vectors)
                } else {
                    try target.session.lookup(table: tableId, keys: UnsafeBufferPointer(start: keys.assumingMemoryBound(to: Int32.self), count: count), into: vectors)
                }
            } catch {
                throw TFError(wrapping: error, context: "lookup of \(count) keys in \(what) failed")
            }
        }
    }

    static let create: @convention(c) (OpaquePointer?) -> UnsafeMutableRawPointer? = { raw in
        guard let raw else { return nil }
        let construction = KernelConstruction(raw: raw)
        do throws(TFError) {
            return Unmanaged.passRetained(try LookupKernel(construction)).toOpaque()
        } catch {
            construction.fail(TFError(error.code, "Lookup: \(error.message)"))
            return nil
        }
    }

    static let compute: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?) -> Void = { kernel, raw in
        guard let kernel, let raw else { return }
        let context = KernelContext(raw: raw)
        do throws(TFError) {
            try Unmanaged<LookupKernel>.fromOpaque(kernel).takeUnretainedValue().compute(context)
        } catch {
            context.fail(error)
        }
    }

    static let delete: @convention(c) (UnsafeMutableRawPointer?) -> Void = { kernel in
        guard let kernel else { return }
        Unmanaged<LookupKernel>.fromOpaque(kernel).release()
    }
}
