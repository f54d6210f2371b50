/// The limits validation puts on every configured size that drives an allocation, so that no
/// configuration can make the process overflow an integer or ask for more memory than any deployment
/// needs. Each limit is far above what HPS deployments use; `hps validate` names the limit it applies.
/// docs/reliability.md lists them.
public enum ConfigLimits {
    /// Most keys one lookup may carry: `max_batch_size × maxnum_catfeature_query_per_table_per_sample[t]`
    /// (2^28 = 268,435,456).
    public static let maxKeysPerLookup = 1 << 28
    /// Largest `embedding_vecsize_per_table` entry (2^20 floats = 4 MiB per vector).
    public static let maxDimension = 1 << 20
    /// Most bytes of lookup buffers per session: `num_of_worker_buffer_in_pool × lookup buffer`
    /// (2^36 = 64 GiB).
    public static let maxSessionBufferBytes = 1 << 36
    /// Most `volatile_db.num_partitions` (each table allocates its partitions up front).
    public static let maxPartitions = 4096
    /// Largest `max_batch_size` of `volatile_db` and `persistent_db` (keys per database batch; 2^28).
    public static let maxDatabaseBatchSize = 1 << 28
    /// Most `persistent_db.num_threads` (RocksDB starts that many background threads).
    public static let maxDatabaseThreads = 1024
    /// Bytes of lookup buffer per key besides its vectors: keys, unique keys, inverse and missing indices,
    /// the missed keys, the database miss list and the deduplication table (up to 4 slots per key).
    public static let lookupBytesPerKey = 8 + 8 + 4 + 4 + 8 + 8 + 4 * (4 + 4)
}

extension ConfigLimits {
    /// `n` bytes in words: `80000000000 bytes (74.5 GiB)`.
    static func describe(bytes n: Int) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(n)
        var unit = -1
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit < 0 { return "\(n) bytes" }
        return "\(n) bytes (\((value * 10).rounded() / 10) \(units[unit]))"
    }

    /// `268435456 (2^28)` for powers of two, the plain number otherwise.
    static func describe(limit: Int) -> String {
        limit > 0 && limit & (limit - 1) == 0 ? "\(limit) (2^\(limit.trailingZeroBitCount))" : "\(limit)"
    }
}

extension ParameterServerConfig {
    /// Every size of the configuration beyond ``ConfigLimits``, and every default value that is not a finite
    /// float32, each with its JSON path. Empty for a configuration that validation accepted.
    ///
    /// ``parse(json:file:baseDirectory:checkFiles:)`` reports these with the other problems; the runtime
    /// checks them again before building a server from a configuration made in code, so that no
    /// configuration reaches an allocation or a multiplication that could trap.
    public func limitIssues() -> [ConfigValidationError.Issue] {
        var issues: [ConfigValidationError.Issue] = []
        func issue(_ path: String, _ message: String) { issues.append(.init(path: path, message: message)) }
        for (i, m) in models.enumerated() {
            let path = "models[\(i)]"
            let before = issues.count
            if m.maxBatchSize > ConfigLimits.maxKeysPerLookup {
                issue(path + ".max_batch_size", "is \(m.maxBatchSize), more than the limit of \(ConfigLimits.describe(limit: ConfigLimits.maxKeysPerLookup)) samples per lookup")
            }
            for (t, perSample) in m.maxKeysPerSample.enumerated() {
                let itemPath = path + ".maxnum_catfeature_query_per_table_per_sample[\(t)]"
                if perSample > ConfigLimits.maxKeysPerLookup {
                    issue(itemPath, "is \(perSample), more than the limit of \(ConfigLimits.describe(limit: ConfigLimits.maxKeysPerLookup)) keys per sample")
                    continue
                }
                guard m.maxBatchSize <= ConfigLimits.maxKeysPerLookup else { continue }
                let keys = m.maxQueryLength(table: t)
                if keys > ConfigLimits.maxKeysPerLookup {
                    issue(
                        itemPath,
                        "max_batch_size \(m.maxBatchSize) × \(perSample) = \(keys) keys per lookup is more than the limit of \(ConfigLimits.describe(limit: ConfigLimits.maxKeysPerLookup))")
                }
            }
            for (t, dimension) in m.embeddingVectorSizes.enumerated() where dimension > ConfigLimits.maxDimension {
                issue(path + ".embedding_vecsize_per_table[\(t)]", "is \(dimension), more than the limit of \(ConfigLimits.describe(limit: ConfigLimits.maxDimension)) floats per vector")
            }
            for (t, value) in m.defaultValues.enumerated() where !value.isFinite {
                issue(path + ".default_value_for_each_table[\(t)]", "\(value) is not a finite float32")
            }
            // Fused tables: one lookup of a group takes the keys of all its tables.
            let fusion = issues.count == before && fuseEmbeddingTable && m.fuseEmbeddingTable ? self.fusion(of: m) : nil
            for group in fusion?.groups ?? [] where group.isFused {
                let keys = fusion!.servedModel.maxQueryLength(table: group.table.index)
                if keys > ConfigLimits.maxKeysPerLookup {
                    issue(
                        path + ".fuse_embedding_table",
                        "the fused group \(group.table.name) of tables \(group.members) takes max_batch_size \(m.maxBatchSize) × \(group.table.maxKeysPerSample) = \(keys) keys per lookup, more than the limit of \(ConfigLimits.describe(limit: ConfigLimits.maxKeysPerLookup)); set fuse_embedding_table false for this model")
                }
            }
            // The buffers, only when the sizes they derive from are themselves within their limits.
            if issues.count == before {
                let bytes = (fusion?.servedModel ?? m).sessionBufferBytes
                if bytes.map({ $0 > ConfigLimits.maxSessionBufferBytes }) ?? true {
                    let served = fusion?.servedModel ?? m
                    let keys = (0..<served.tableCount).map { served.maxQueryLength(table: $0) }.max() ?? 1
                    let dimension = m.embeddingVectorSizes.max() ?? 1
                    issue(
                        path,
                        "lookup buffers would take \(bytes.map { ConfigLimits.describe(bytes: $0) } ?? "more than Int.max bytes") per device: "
                            + "num_of_worker_buffer_in_pool \(m.workerBuffers) × \(keys) keys × (\(ConfigLimits.lookupBytesPerKey) + 2 × 4 × embedding_vecsize \(dimension)) bytes, "
                            + "more than the limit of \(ConfigLimits.describe(bytes: ConfigLimits.maxSessionBufferBytes)); "
                            + "lower max_batch_size, maxnum_catfeature_query_per_table_per_sample or num_of_worker_buffer_in_pool")
                }
            }
        }
        let v = volatileDatabase
        if v.numPartitions > ConfigLimits.maxPartitions {
            issue("volatile_db.num_partitions", "is \(v.numPartitions), more than the limit of \(ConfigLimits.maxPartitions) partitions")
        }
        if v.maxBatchSize > ConfigLimits.maxDatabaseBatchSize {
            issue("volatile_db.max_batch_size", "is \(v.maxBatchSize), more than the limit of \(ConfigLimits.describe(limit: ConfigLimits.maxDatabaseBatchSize)) keys per batch")
        }
        let p = persistentDatabase
        if p.maxBatchSize > ConfigLimits.maxDatabaseBatchSize {
            issue("persistent_db.max_batch_size", "is \(p.maxBatchSize), more than the limit of \(ConfigLimits.describe(limit: ConfigLimits.maxDatabaseBatchSize)) keys per batch")
        }
        if p.numThreads > ConfigLimits.maxDatabaseThreads {
            issue("persistent_db.num_threads", "is \(p.numThreads), more than the limit of \(ConfigLimits.maxDatabaseThreads) threads")
        }
        return issues
    }
}
