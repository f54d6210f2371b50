import Synchronization

/// Messages that may repeat (a tier that keeps failing, a node that stays down): each `key` is logged at
/// most once per interval, with the number of messages held back since, so a failure does not flood the
/// log. Shared by the lookup path (errors) and the backends (warnings) with package access.
package final class RateLimitedLog: Sendable {
    private let logger: HPSLogger
    private let interval: Duration
    private let state = Mutex<[String: (last: ContinuousClock.Instant, suppressed: Int)]>([:])

    /// A log that lets one message per key through every `intervalMs` milliseconds.
    package init(logger: HPSLogger, intervalMs: Int = 1000) {
        self.logger = logger
        interval = .milliseconds(max(0, intervalMs))
    }

    /// Logs `message` as an error unless one of `key` was logged within the interval.
    package func error(key: String = "", _ message: @autoclosure () -> String) {
        guard let suppressed = admit(key) else { return }
        logger.error(message() + (suppressed > 0 ? " (\(suppressed) similar errors suppressed)" : ""))
    }

    /// Logs `message` as a warning unless one of `key` was logged within the interval.
    package func warning(key: String = "", _ message: @autoclosure () -> String) {
        guard let suppressed = admit(key) else { return }
        logger.warning(message() + (suppressed > 0 ? " (\(suppressed) similar messages suppressed)" : ""))
    }

    /// Nil when `key` is held back now; else the number held back since its last message.
    private func admit(_ key: String) -> Int? {
        let now = ContinuousClock.now
        return state.withLock { map in
            if let entry = map[key], now - entry.last < interval {
                map[key] = (entry.last, entry.suppressed + 1)
                return nil
            }
            let held = map[key]?.suppressed ?? 0
            map[key] = (now, 0)
            return held
        }
    }
}
