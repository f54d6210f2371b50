import CTensorFlow
import HPS

/// `MaxKeysPerLookup(init_status) -> limit`, attributes `model_name`, `table_id`, `status_dtype`: the most keys
/// one `Lookup` of the table accepts (`max_batch_size × maxnum_catfeature_query_per_table_per_sample[table_id]`),
/// an int64 scalar.
///
/// `hps.SparseLookupLayer` compares it with its id count at run time: ids that fit are looked up as they are
/// (one vector per id, no `tf.unique` pass); more ids than that are deduplicated first, as NVIDIA's layer
/// always does, so the limit applies to the distinct ids either way.
final class KeyLimitKernel: Sendable {
    let modelName: String
    let tableId: Int

    /// - Throws: ``TFError`` when an attribute cannot be read or `table_id` is negative.
    init(_ construction: KernelConstruction) throws(TFError) {
        modelName = try construction.string("model_name")
        tableId = Int(try construction.int64("table_id"))
        guard tableId >= 0 else { throw .invalidArgument("table_id must not be negative, got \(tableId)") }
    }

    /// - Throws: ``TFError`` `FAILED_PRECONDITION` before `Init`; `INVALID_ARGUMENT` for an unknown model or
    ///   table; an allocation failure of the output.
    func compute(_ context: KernelContext) throws(TFError) {
        let status = try context.input(0, name: "init_status")
        guard status.stringScalarEquals("OK"), let server = ParameterServerState.current else {
            throw .failedPrecondition("hierarchical parameter server is not initialized.")
        }
        guard let model = server.config.model(named: modelName) else {
            let known = server.config.models.map(\.name).joined(separator: ", ")
            throw .invalidArgument("unknown model_name \"\(modelName)\": the parameter server holds the model(s) \(known)")
        }
        guard tableId < model.tableCount else {
            throw .invalidArgument("table_id \(tableId) is out of range: model \(modelName) has \(model.tableCount) table(s) (table_id 0..<\(model.tableCount))")
        }
        let limit = Int64(clamping: model.maxQueryLength(table: tableId))
        try withUnsafeTemporaryAllocation(of: Int64.self, capacity: 0) { (dims) throws(TFError) in
            let output = try context.allocateOutput(0, dataType: TF_INT64, dimensions: UnsafeBufferPointer(dims), elementSize: 8)
            guard let data = output.data else { throw TFError.internalError("MaxKeysPerLookup: output without data") }
            data.storeBytes(of: limit, as: Int64.self)
        }
    }

    static let create: @convention(c) (OpaquePointer?) -> UnsafeMutableRawPointer? = { raw in
        guard let raw else { return nil }
        let construction = KernelConstruction(raw: raw)
        do throws(TFError) {
            return Unmanaged.passRetained(try KeyLimitKernel(construction)).toOpaque()
        } catch {
            construction.fail(TFError(error.code, "MaxKeysPerLookup: \(error.message)"))
            return nil
        }
    }

    static let compute: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?) -> Void = { kernel, raw in
        guard let kernel, let raw else { return }
        let context = KernelContext(raw: raw)
        do throws(TFError) {
            try Unmanaged<KeyLimitKernel>.fromOpaque(kernel).takeUnretainedValue().compute(context)
        } catch {
            context.fail(error)
        }
    }

    static let delete: @convention(c) (UnsafeMutableRawPointer?) -> Void = { kernel in
        guard let kernel else { return }
        Unmanaged<KeyLimitKernel>.fromOpaque(kernel).release()
    }
}
