#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CTensorFlow
import HPS
import Synchronization

/// The process-wide parameter server the `Init` op builds once and every `Lookup` op uses.
///
/// The first successful `Init` builds it; every later `Init` returns "OK" and changes nothing, whatever
/// its arguments (as HPS's `std::call_once`), but one naming a different configuration file logs a
/// warning naming both files. An `Init` that fails leaves nothing behind, so a corrected call may still
/// succeed.
enum ParameterServerState {
    private static let server = Mutex<ParameterServer?>(nil)
    /// The configuration file the server was built from.
    private static let builtFrom = Mutex<String?>(nil)
    /// Serialises builds, so concurrent first `Init`s build the server once while lookups keep reading.
    private static let buildLock = Mutex<Void>(())

    /// The server, once initialized.
    static var current: ParameterServer? { server.withLock { $0 } }

    /// Builds the server from `configFile` unless it exists, after checking the arguments as HPS's
    /// `LookupManager::init_check` does.
    static func initialize(configFile: String, globalBatchSize: Int, replicaId: Int, replicaCount: Int, visibleDevices: [Int]) throws(TFError) {
        if current != nil { return warnIfDifferent(configFile) }
        try buildLock.withLock { (_: inout Void) throws(TFError) in
            if current != nil { return warnIfDifferent(configFile) }
            try checkArguments(configFile: configFile, globalBatchSize: globalBatchSize, replicaId: replicaId, replicaCount: replicaCount, visibleDevices: visibleDevices)
            let logger = HPSLogger.standard
            let made: ParameterServer
            do {
                made = try CoreRuntime.makeParameterServer(configFile: configFile, logger: logger)
            } catch {
                throw .aborted("hierarchical parameter server initialization from \(configFile) failed: \(error)")
            }
            try checkModels(made.config, globalBatchSize: globalBatchSize, replicaCount: replicaCount, configFile: configFile)
            builtFrom.withLock { $0 = configFile }
            server.withLock { $0 = made }
            let models = made.config.models.map { "\($0.name) (\($0.tableCount) table\($0.tableCount == 1 ? "" : "s"))" }
            logger.info("hierarchical parameter server initialized from \(configFile): \(models.joined(separator: ", "))")
        }
    }

    /// Logs a warning when a later `Init` names another configuration file than the one in use.
    private static func warnIfDifferent(_ configFile: String) {
        // An empty file name is a layer built without ps_config_file after an explicit hps.Init: nothing to compare.
        guard !configFile.isEmpty, let first = builtFrom.withLock({ $0 }), !sameFile(first, configFile) else { return }
        HPSLogger.standard.warning(
            "hps.Init(ps_config_file=\(configFile)) is ignored: the parameter server is already initialized from \(first) and keeps serving that configuration (restart the process to use \(configFile))")
    }

    /// Whether two paths name the same file (same device and inode), or are equal strings when either
    /// cannot be examined.
    private static func sameFile(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        var sa = stat()
        var sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }

    private static func checkArguments(configFile: String, globalBatchSize: Int, replicaId: Int, replicaCount: Int, visibleDevices: [Int]) throws(TFError) {
        guard !configFile.isEmpty else {
            throw .invalidArgument("ps_config_file is empty: pass the HPS JSON configuration file to hps.Init(ps_config_file=...) or to the layer's ps_config_file")
        }
        guard globalBatchSize > 0 else {
            throw .invalidArgument("global_batch_size must be positive, got \(globalBatchSize)")
        }
        guard replicaCount > 0 else {
            throw .invalidArgument("num_replicas_in_sync must be positive, got \(replicaCount)")
        }
        guard replicaCount == visibleDevices.count else {
            throw .aborted("num_replicas_in_sync (\(replicaCount)) must equal the number of visible devices (\(visibleDevices.count): \(visibleDevices))")
        }
        guard replicaId >= 0 && replicaId < replicaCount else {
            throw .invalidArgument("global_replica_id \(replicaId) is out of range for \(replicaCount) replica(s)")
        }
        guard globalBatchSize % replicaCount == 0 else {
            throw .invalidArgument("global_batch_size \(globalBatchSize) is not divisible by num_replicas_in_sync \(replicaCount)")
        }
    }

    private static func checkModels(_ config: ParameterServerConfig, globalBatchSize: Int, replicaCount: Int, configFile: String) throws(TFError) {
        let perReplica = globalBatchSize / replicaCount
        for model in config.models {
            guard model.deployedDevices.sorted() == Array(0..<replicaCount) else {
                throw .failedPrecondition("model \(model.name) in \(configFile): deployed_device_list \(model.deployedDevices) must list the devices 0..<\(replicaCount) (one per replica, num_replicas_in_sync = \(replicaCount))")
            }
            guard perReplica <= model.maxBatchSize else {
                throw .invalidArgument("model \(model.name) in \(configFile): global_batch_size / num_replicas_in_sync = \(globalBatchSize) / \(replicaCount) = \(perReplica) exceeds max_batch_size \(model.maxBatchSize)")
            }
        }
    }
}

extension HPSError.Code {
    /// The TensorFlow status code an ``HPSError`` of this kind becomes.
    var tensorFlowCode: TFError {
        switch self {
        case .unknownModel, .unknownTable, .invalidArgument: .invalidArgument("")
        case .unsupported: TFError(TSL_UNIMPLEMENTED, "")
        default: .internalError("")
        }
    }
}

extension TFError {
    /// `error` (an ``HPSError`` or anything else) as a TensorFlow error, prefixed with `context`.
    init(wrapping error: any Error, context: String) {
        if let hps = error as? HPSError {
            self = hps.code.tensorFlowCode
        } else if let tf = error as? TFError {
            self = tf
            self.message = "\(context): \(tf.message)"
            return
        } else {
            self = .internalError("")
        }
        message = "\(context): \(error)"
    }
}
