import HPS
import Synchronization

/// What an update source did: rows applied, batches, messages skipped per topic and reason, and the
/// publish → visible latency of each applied batch (the producer's Kafka timestamp of the batch's oldest
/// message to the moment the databases and caches hold it).
public final class UpdateStatistics: Sendable {
    struct State {
        var appliedKeys = 0
        var appliedBatches = 0
        var appliedMessages = 0
        var beacons = 0
        var skipped: [String: [UpdateMessage.Problem: Int]] = [:]
        /// Latencies in milliseconds, the newest `latencyWindow` batches.
        var latencies: [Double] = []
        var nextLatency = 0
    }

    private let state = Mutex(State())
    /// How many batch latencies are kept for percentiles.
    public static let latencyWindow = 65536

    public init() {}

    /// Rows applied so far.
    public var appliedKeys: Int { state.withLock { $0.appliedKeys } }
    /// Batches applied so far.
    public var appliedBatches: Int { state.withLock { $0.appliedBatches } }
    /// Header-only messages seen.
    public var beacons: Int { state.withLock { $0.beacons } }
    /// Messages skipped, by topic and reason.
    public var skipped: [String: [UpdateMessage.Problem: Int]] { state.withLock { $0.skipped } }
    /// All messages skipped.
    public var skippedTotal: Int { state.withLock { $0.skipped.values.reduce(0) { $0 + $1.values.reduce(0, +) } } }

    /// The `fraction` (0…1) quantile of the kept batch latencies in milliseconds; nil before the first batch.
    public func latencyQuantile(_ fraction: Double) -> Double? {
        let sorted = state.withLock { $0.latencies }.sorted()
        guard !sorted.isEmpty else { return nil }
        let rank = min(sorted.count - 1, max(0, Int((fraction * Double(sorted.count)).rounded(.up)) - 1))
        return sorted[rank]
    }

    /// Forgets the kept latencies (a benchmark phase starts).
    public func resetLatencies() { state.withLock { $0.latencies.removeAll(); $0.nextLatency = 0 } }

    func recordBatch(keys: Int, latencyMs: Double?) {
        state.withLock { s in
            s.appliedKeys += keys
            s.appliedBatches += 1
            guard let latencyMs else { return }
            if s.latencies.count < Self.latencyWindow {
                s.latencies.append(latencyMs)
            } else {
                s.latencies[s.nextLatency] = latencyMs
                s.nextLatency = (s.nextLatency + 1) % Self.latencyWindow
            }
        }
    }

    func recordBeacon() { state.withLock { $0.beacons += 1 } }

    /// Counts a skipped message; true when it is the first of its topic (the caller then logs it).
    func recordSkip(topic: String, problem: UpdateMessage.Problem) -> Bool {
        state.withLock { s in
            let first = s.skipped[topic] == nil
            s.skipped[topic, default: [:]][problem, default: 0] += 1
            return first
        }
    }

    /// One line per topic with skipped messages: "topic: N skipped (reason: n, …)".
    public func skipSummary() -> [String] {
        skipped.sorted { $0.key < $1.key }.map { topic, counts in
            let total = counts.values.reduce(0, +)
            let parts = UpdateMessage.Problem.allCases.compactMap { p in counts[p].map { "\(p): \($0)" } }
            return "\(topic): \(total) message(s) skipped (\(parts.joined(separator: ", ")))"
        }
    }
}
