import CoreMetrics
import Synchronization

/// Request-level metrics of `hps serve`, reported through swift-metrics (the lookup sessions report their
/// per-table counters themselves): per model and protocol, requests that succeeded and failed
/// (`hps_inference_requests_total{model, protocol, outcome}`) and their latency
/// (`hps_inference_request_duration_seconds{model, protocol}`, request received → response encoded).
/// A request for a model that is not loaded counts under the model label `_unknown`, so a client cannot
/// make up label values.
final class ServeMetrics: Sendable {
    static let shared = ServeMetrics()

    enum Transport: String, Sendable { case http, grpc }

    private struct Handles: Sendable {
        let success: Counter
        let failure: Counter
        let duration: CoreMetrics.Timer
    }

    private let handles = Mutex<[String: Handles]>([:])

    /// Counts one inference request and its latency since `start`; `model` nil when the model was not found.
    func request(model: String?, protocol transport: Transport, succeeded: Bool, since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let h = handles(model ?? "_unknown", transport)
        (succeeded ? h.success : h.failure).increment()
        let (seconds, attoseconds) = elapsed.components
        h.duration.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    private func handles(_ model: String, _ transport: Transport) -> Handles {
        let key = transport.rawValue + "\u{0}" + model
        return handles.withLock { map in
            if let h = map[key] { return h }
            let labels = [("model", model), ("protocol", transport.rawValue)]
            let h = Handles(
                success: Counter(label: "hps_inference_requests_total", dimensions: labels + [("outcome", "success")]),
                failure: Counter(label: "hps_inference_requests_total", dimensions: labels + [("outcome", "failure")]),
                duration: CoreMetrics.Timer(label: "hps_inference_request_duration_seconds", dimensions: labels))
            map[key] = h
            return h
        }
    }
}
