#if canImport(HPSServer)
import ArgumentParser
import Foundation
import HPS
import HPSServer

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve lookups over HTTP and gRPC with the KServe v2 protocol, as Triton and HPS's Triton backend speak it.",
        discussion: """
            Each model of the config is a served model with HPS's Triton backend I/O: inputs KEYS (INT64, \
            [1, total keys]: table 0's keys, then table 1's, ...) and NUMKEYS (INT32, [1, tables]), output \
            OUTPUT0 (FP32, flat). JSON tensors and Triton's binary tensor extension; the repository \
            extension (index, load, unload). HTTP on --http-port, gRPC (GRPCInferenceService) on --grpc-port, \
            Prometheus text on --metrics-port (GET /metrics). SIGTERM or SIGINT drains and exits 0.
            """
    )

    @Option(help: "The HPS JSON config file.")
    var config: String

    @Option(help: "Address to bind (default 127.0.0.1, loopback only).")
    var host: String = "127.0.0.1"

    @Option(help: "HTTP port.")
    var httpPort: Int = 8000

    @Option(help: "gRPC port (KServe v2 GRPCInferenceService).")
    var grpcPort: Int = 8001

    @Option(help: "Port of GET /metrics (Prometheus text).")
    var metricsPort: Int = 8002

    @Option(help: "Serve gRPC (true/false).")
    var allowGrpc: Bool = true

    @Option(help: "Serve /metrics (true/false).")
    var allowMetrics: Bool = true

    @Option(help: "none: load every model at start-up, refuse load/unload; explicit: load none until asked.")
    var modelControlMode: String = "none"

    @Option(help: "Largest request body in bytes (larger: 413).")
    var maxRequestBytes: Int = 64 << 20

    @Option(help: "A file holding a bearer token every endpoint but /v2/health/* then requires.")
    var authTokenFile: String?

    @Option(help: "Threads that run lookups.")
    var lookupThreads: Int = 8

    func validate() throws {
        guard ServeOptions.ModelControlMode(rawValue: modelControlMode) != nil else {
            throw ValidationError("--model-control-mode must be none or explicit")
        }
        guard (0...65535).contains(httpPort) else { throw ValidationError("--http-port must be 0...65535") }
        guard (0...65535).contains(grpcPort) else { throw ValidationError("--grpc-port must be 0...65535") }
        guard (0...65535).contains(metricsPort) else { throw ValidationError("--metrics-port must be 0...65535") }
        guard maxRequestBytes > 0 else { throw ValidationError("--max-request-bytes must be positive") }
        guard (1...1024).contains(lookupThreads) else { throw ValidationError("--lookup-threads must be 1...1024") }
    }

    func run() async throws {
        var options = ServeOptions(configFile: config)
        options.host = host
        options.httpPort = httpPort
        options.grpcPort = allowGrpc ? grpcPort : nil
        options.metricsPort = allowMetrics ? metricsPort : nil
        if allowMetrics {
            // Lookups and the server report through swift-metrics; here into the registry /metrics shows.
            options.metricsRegistry = HPSServe.bootstrapPrometheus()
        }
        options.modelControlMode = ServeOptions.ModelControlMode(rawValue: modelControlMode) ?? .none
        options.maxRequestBytes = maxRequestBytes
        options.lookupThreads = lookupThreads
        options.serverVersion = HPSVersion.string
        if let authTokenFile {
            let token = try String(contentsOfFile: authTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw ValidationError("--auth-token-file \(authTokenFile) is empty") }
            options.authToken = token
        }
        try await HPSServe.run(options)
    }
}
#endif
