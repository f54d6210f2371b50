import Prometheus

/// What `hps serve` was asked for: where to listen, which config to serve, and the safety limits.
public struct ServeOptions: Sendable {
    /// How models are loaded, as Triton's `--model-control-mode`.
    public enum ModelControlMode: String, Sendable, CaseIterable {
        /// Every model of the config is loaded at start-up; the repository's load and unload are refused.
        case none
        /// No model is loaded at start-up; `POST /v2/repository/models/{m}/load` loads one.
        case explicit
    }

    /// The HPS JSON config whose models are served (re-read on every load).
    public var configFile: String
    public var host: String = "127.0.0.1"
    public var httpPort: Int = 8000
    /// The gRPC port (KServe v2 `GRPCInferenceService`), nil for no gRPC endpoint.
    public var grpcPort: Int? = 8001
    /// The port of `GET /metrics` (Prometheus text of `metricsRegistry`), nil for no metrics endpoint.
    public var metricsPort: Int? = 8002
    /// The registry `/metrics` shows; the caller bootstraps swift-metrics with a `PrometheusMetricsFactory`
    /// over it (once per process), so that the lookups and the server report into it. Nil: no endpoint.
    public var metricsRegistry: PrometheusCollectorRegistry?
    public var modelControlMode: ModelControlMode = .none
    /// Largest request body accepted; larger ones get 413.
    public var maxRequestBytes: Int = 64 << 20
    /// When set, every endpoint but `/v2/health/*` needs `Authorization: Bearer <token>`.
    public var authToken: String?
    /// Threads that run the blocking lookups (never NIO's event loops or Swift's cooperative pool).
    public var lookupThreads: Int = 8
    /// The version `GET /v2` reports.
    public var serverVersion: String = "0.1.0"

    public init(configFile: String) { self.configFile = configFile }
}
