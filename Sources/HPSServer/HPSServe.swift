import CoreMetrics
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HPS
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle

/// `hps serve`: the KServe v2 inference protocol as Triton speaks it, over HTTP and gRPC, over the same
/// `LookupSession`s as every other front end, with Prometheus text on a port of its own. Returns after
/// SIGTERM or SIGINT once requests in flight are answered.
public enum HPSServe {
    /// - Throws: ``HPSError`` when the config cannot be read or (with `--model-control-mode none`) a model cannot be
    ///   built; the HTTP or gRPC server's error when a port cannot be bound or the server fails.
    public static func run(_ options: ServeOptions) async throws {
        let repository = try ModelRepository(configFile: options.configFile, mode: options.modelControlMode)
        let lookups = LookupThreadPool(threads: options.lookupThreads, name: "hps-serve-lookup")
        defer {
            lookups.shutdown()
            repository.shutdown()
        }
        var logger = Logger(label: "hps.serve")
        logger.logLevel = .warning

        var services: [any Service] = []
        if let port = options.grpcPort {
            let service = GRPCInferenceService(repository: repository, lookups: lookups, options: options)
            services.append(try GRPCEndpoint(host: options.host, port: port, service: service, options: options))
        }
        if let port = options.metricsPort, let registry = options.metricsRegistry {
            services.append(metricsApplication(host: options.host, port: port, registry: registry, logger: logger))
        }

        let router = Router()
        if let token = options.authToken { router.add(middleware: BearerTokenMiddleware(token: token)) }
        Routes(repository: repository, lookups: lookups, options: options).register(on: router)
        let host = options.host, port = options.httpPort
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "hps"),
            services: services,
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0)" } ?? "\(host):\(port)"
                FileHandle.standardError.write(Data("hps serve: listening on \(address) (HTTP, KServe v2)\n".utf8))
            },
            logger: logger)
        try await app.runService()
        FileHandle.standardError.write(Data("hps serve: stopped\n".utf8))
    }

    /// Bootstraps swift-metrics (once per process) with a Prometheus factory over a new registry, with
    /// latency buckets from 50 µs to 5 s, and returns the registry for ``ServeOptions/metricsRegistry``: the
    /// lookups and the server then report into what `/metrics` shows.
    public static func bootstrapPrometheus() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
            .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }

    /// `GET /metrics` on its own port: the registry as Prometheus text (version 0.0.4).
    private static func metricsApplication(host: String, port: Int, registry: PrometheusCollectorRegistry, logger: Logger) -> some Service {
        let router = Router()
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "hps-metrics"),
            onServerRunning: { channel in
                let address = channel.localAddress.map { "\($0)" } ?? "\(host):\(port)"
                FileHandle.standardError.write(Data("hps serve: metrics on \(address) (GET /metrics)\n".utf8))
            },
            logger: logger)
    }
}

/// The gRPC server as a service of the application's group: serves until graceful shutdown (SIGTERM), then
/// stops accepting RPCs and returns once those in flight are answered.
struct GRPCEndpoint: Service {
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let transport: HTTP2ServerTransport.Posix

    /// - Throws: ``ServeError`` when `host` is not an IP address or `localhost`.
    init(host: String, port: Int, service: GRPCInferenceService, options: ServeOptions) throws {
        let address: GRPCNIOTransportCore.SocketAddress
        if host == "localhost" {
            address = .ipv4(host: "127.0.0.1", port: port)
        } else if host.contains(":") {
            address = .ipv6(host: host, port: port)
        } else {
            address = .ipv4(host: host, port: port)
        }
        transport = HTTP2ServerTransport.Posix(
            address: address, transportSecurity: .plaintext,
            config: .defaults { $0.rpc.maxRequestPayloadSize = options.maxRequestBytes })
        server = GRPCServer(
            transport: transport, services: [service],
            interceptors: options.authToken.map { [GRPCAuthInterceptor(token: $0)] } ?? [])
    }

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await server.serve() }
                group.addTask {
                    if let address = try? await transport.listeningAddress {
                        FileHandle.standardError.write(Data("hps serve: listening on \(address) (gRPC, KServe v2)\n".utf8))
                    }
                }
            }
        } onGracefulShutdown: {
            server.beginGracefulShutdown()
        }
    }
}
