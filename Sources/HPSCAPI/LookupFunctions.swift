import HPS

// Lookups of include/hps.h, in host or device memory.

private let memoryHost: Int32 = 0
private let memoryDevice: Int32 = 1

@_cdecl("hps_lookup")
public func hps_lookup(
    _ session: OpaquePointer?, _ table: Int32, _ keys: UnsafePointer<Int64>?, _ count: Int64, _ out: UnsafeMutablePointer<Float>?,
    _ memory: Int32, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    lookup(session, table, UnsafeRawPointer(keys), int32Keys: false, count, out, memory, stream)
}

@_cdecl("hps_lookup_i32")
public func hps_lookup_i32(
    _ session: OpaquePointer?, _ table: Int32, _ keys: UnsafePointer<Int32>?, _ count: Int64, _ out: UnsafeMutablePointer<Float>?,
    _ memory: Int32, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    lookup(session, table, UnsafeRawPointer(keys), int32Keys: true, count, out, memory, stream)
}

private func lookup(
    _ pointer: OpaquePointer?, _ table: Int32, _ keys: UnsafeRawPointer?, int32Keys: Bool, _ count: Int64, _ out: UnsafeMutablePointer<Float>?,
    _ memory: Int32, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    let function = int32Keys ? "hps_lookup_i32" : "hps_lookup"
    return guarded(function) {
        let (handle, config) = try sessionTable(pointer, table, function)
        let session = handle.session
        // Built only for a message (a lookup that succeeds formats nothing).
        var what: String { "\(function)(model \(session.model.name), table \(table) '\(config.name)', device \(session.device))" }
        guard count >= 0 else { throw CAPIError(.invalidArgument, "\(what): count \(count) is negative") }
        let limit = session.model.maxQueryLength(table: Int(table))
        guard count <= Int64(limit) else {
            throw CAPIError(
                .tooManyKeys,
                "\(what): \(count) keys exceed max_batch_size × maxnum_catfeature_query_per_table_per_sample = \(session.model.maxBatchSize) × \(config.maxKeysPerSample) = \(limit); split the lookup")
        }
        guard memory == memoryHost || memory == memoryDevice else {
            throw CAPIError(.invalidArgument, "\(what): memory must be HPS_MEMORY_HOST (0) or HPS_MEMORY_DEVICE (1), got \(memory)")
        }
        let longKeys = handle.owner.server.config.supportLongLong
        if int32Keys && longKeys {
            throw CAPIError(.keyWidth, "\(what): int32 keys, but the configuration has supportlonglong true (int64 keys): use hps_lookup")
        }
        if !int32Keys && !longKeys {
            throw CAPIError(.keyWidth, "\(what): int64 keys, but the configuration has supportlonglong false (int32 keys): use hps_lookup_i32")
        }
        guard count > 0 else { return }
        guard let keys else { throw CAPIError(.invalidArgument, "\(what): keys is NULL") }
        guard let out else { throw CAPIError(.invalidArgument, "\(what): out is NULL") }
        let n = Int(count)
        do {
            if memory == memoryHost {
                let output = UnsafeMutableBufferPointer(start: out, count: n * config.dimension)
                if int32Keys {
                    try session.lookup(table: Int(table), keys: UnsafeBufferPointer(start: keys.assumingMemoryBound(to: Int32.self), count: n), into: output)
                } else {
                    try session.lookup(table: Int(table), keys: UnsafeBufferPointer(start: keys.assumingMemoryBound(to: Int64.self), count: n), into: output)
                }
            } else {
                guard session.deviceLookups[Int(table)] != nil else {
                    throw CAPIError(
                        .noDevice,
                        "\(what): device memory, but no CUDA device serves this session (no usable GPU, HPS_DISABLE_CUDA set, or device \(session.device) absent); pass host memory")
                }
                try session.lookupDevice(
                    table: Int(table), keys: UInt64(UInt(bitPattern: keys)), int32Keys: int32Keys, count: n, output: UInt64(UInt(bitPattern: out)),
                    stream: stream)
            }
        } catch {
            throw CAPIError(wrapping: error, context: what)
        }
    }
}

@_cdecl("hps_lookup_tables")
public func hps_lookup_tables(
    _ session: OpaquePointer?, _ numTables: Int32, _ tables: UnsafePointer<Int32>?, _ counts: UnsafePointer<Int64>?, _ keys: UnsafePointer<Int64>?,
    _ out: UnsafeMutablePointer<Float>?, _ memory: Int32, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    lookupTables(session, numTables, tables, counts, UnsafeRawPointer(keys), int32Keys: false, out, memory, stream)
}

@_cdecl("hps_lookup_tables_i32")
public func hps_lookup_tables_i32(
    _ session: OpaquePointer?, _ numTables: Int32, _ tables: UnsafePointer<Int32>?, _ counts: UnsafePointer<Int64>?, _ keys: UnsafePointer<Int32>?,
    _ out: UnsafeMutablePointer<Float>?, _ memory: Int32, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    lookupTables(session, numTables, tables, counts, UnsafeRawPointer(keys), int32Keys: true, out, memory, stream)
}

/// Several tables in one call: host memory through `LookupSession.lookup(tables:keys:counts:into:)` (one pass per
/// fused group), device memory one table after another.
private func lookupTables(
    _ pointer: OpaquePointer?, _ numTables: Int32, _ tables: UnsafePointer<Int32>?, _ counts: UnsafePointer<Int64>?, _ keys: UnsafeRawPointer?,
    int32Keys: Bool, _ out: UnsafeMutablePointer<Float>?, _ memory: Int32, _ stream: UnsafeMutableRawPointer?
) -> Int32 {
    let function = int32Keys ? "hps_lookup_tables_i32" : "hps_lookup_tables"
    return guarded(function) {
        let handle = try Handles.session(pointer)
        let session = handle.session
        var what: String { "\(function)(model \(session.model.name), device \(session.device))" }
        guard numTables >= 0 else { throw CAPIError(.invalidArgument, "\(what): num_tables \(numTables) is negative") }
        guard memory == memoryHost || memory == memoryDevice else {
            throw CAPIError(.invalidArgument, "\(what): memory must be HPS_MEMORY_HOST (0) or HPS_MEMORY_DEVICE (1), got \(memory)")
        }
        let longKeys = handle.owner.server.config.supportLongLong
        if int32Keys && longKeys {
            throw CAPIError(.keyWidth, "\(what): int32 keys, but the configuration has supportlonglong true (int64 keys): use hps_lookup_tables")
        }
        if !int32Keys && !longKeys {
            throw CAPIError(.keyWidth, "\(what): int64 keys, but the configuration has supportlonglong false (int32 keys): use hps_lookup_tables_i32")
        }
        guard numTables > 0 else { return }
        guard let tables else { throw CAPIError(.invalidArgument, "\(what): tables is NULL") }
        guard let counts else { throw CAPIError(.invalidArgument, "\(what): counts is NULL") }
        var tableList: [Int] = []
        var countList: [Int] = []
        var configs: [TableConfig] = []
        var total = 0
        for j in 0..<Int(numTables) {
            let (_, config) = try sessionTable(pointer, tables[j], function)
            let count = counts[j]
            guard count >= 0 else { throw CAPIError(.invalidArgument, "\(what): counts[\(j)] (table \(tables[j]) '\(config.name)') is \(count), negative") }
            let limit = session.model.maxQueryLength(table: Int(tables[j]))
            guard count <= Int64(limit) else {
                throw CAPIError(
                    .tooManyKeys,
                    "\(what): counts[\(j)] = \(count) keys of table \(tables[j]) '\(config.name)' exceed max_batch_size × maxnum_catfeature_query_per_table_per_sample = \(session.model.maxBatchSize) × \(config.maxKeysPerSample) = \(limit); split the lookup")
            }
            tableList.append(Int(tables[j]))
            countList.append(Int(count))
            configs.append(config)
            total += Int(count)
        }
        guard total > 0 else { return }
        guard let keys else { throw CAPIError(.invalidArgument, "\(what): keys is NULL") }
        guard let out else { throw CAPIError(.invalidArgument, "\(what): out is NULL") }
        let floats = zip(countList, configs).reduce(0) { $0 + $1.0 * $1.1.dimension }
        do {
            if memory == memoryHost {
                let output = UnsafeMutableBufferPointer(start: out, count: floats)
                if int32Keys {
                    try session.lookup(tables: tableList, keys: UnsafeBufferPointer(start: keys.assumingMemoryBound(to: Int32.self), count: total), counts: countList, into: output)
                } else {
                    try session.lookup(tables: tableList, keys: UnsafeBufferPointer(start: keys.assumingMemoryBound(to: Int64.self), count: total), counts: countList, into: output)
                }
            } else {
                var keyOffset = 0, outOffset = 0
                for (j, table) in tableList.enumerated() {
                    guard session.deviceLookups[table] != nil else {
                        throw CAPIError(
                            .noDevice,
                            "\(what): device memory, but no CUDA device serves this session (no usable GPU, HPS_DISABLE_CUDA set, or device \(session.device) absent); pass host memory")
                    }
                    if countList[j] > 0 {
                        try session.lookupDevice(
                            table: table, keys: UInt64(UInt(bitPattern: keys + keyOffset * (int32Keys ? 4 : 8))), int32Keys: int32Keys, count: countList[j],
                            output: UInt64(UInt(bitPattern: out + outOffset)), stream: stream)
                    }
                    keyOffset += countList[j]
                    outOffset += countList[j] * configs[j].dimension
                }
            }
        } catch {
            throw CAPIError(wrapping: error, context: what)
        }
    }
}
