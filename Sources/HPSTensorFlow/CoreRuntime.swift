import HPS
import HPSRuntime

/// Where the op library gets its parameter server from: HPSRuntime's wiring, so the TF ops, the CLI and a
/// server build the same hierarchy (databases, tables, sessions) from a config the same way.
enum CoreRuntime {
    static func makeParameterServer(configFile: String, logger: HPSLogger) throws -> ParameterServer {
        try HPSRuntime.makeParameterServer(configFile: configFile, logger: logger)
    }
}
