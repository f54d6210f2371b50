import Foundation
import HPS
import Hummingbird
import Logging

/// `hps serve`: the KServe v2 HTTP inference protocol as Triton speaks it, over the same `LookupSession`s
/// as every other front end. Returns after SIGTERM or SIGINT once requests in flight are answered.
public enum HPSServe {
    /// - Throws: ``HPSError`` when the config cannot be read or (with `--model-control-mode none`) a model cannot be
    ///   built; the HTTP server's error when it cannot bind or fails.
    public static func run(_ options: ServeOptions) async throws {
        let repository = try ModelRepository(configFile: options.configFile, mode: options.modelControlMode)
        let lookups = LookupThreadPool(threads: options.lookupThreads, name: "hps-serve-lookup")
        defer {
            lookups.shutdown()
            repository.shutdown()
        }
        let router = Router()
        if let token = options.authToken { router.add(middleware: BearerTokenMiddleware(token: token)) }
        Routes(repository: repository, lookups: lookups, options: options).register(on: router)
        var logger = Logger(label: "hps.serve")
        logger.logLevel = .warning
        let host = options.host, port = options.httpPort
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "hps"),
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0)" } ?? "\(host):\(port)"
                FileHandle.standardError.write(Data("hps serve: listening on \(address) (HTTP, KServe v2)\n".utf8))
            },
            logger: logger)
        try await app.runService()
        FileHandle.standardError.write(Data("hps serve: stopped\n".utf8))
    }
}
