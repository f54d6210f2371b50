import HPS
import Logging
import Synchronization
import Testing

/// HPS logs through swift-log: its own handler keeps the `[HPS][time][LEVEL]: message` lines at the
/// configured level, and an application can hand HPS any swift-log logger instead.
@Suite struct LoggerTests {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        func add(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    @Test func hpsLinesAtTheConfiguredLevel() {
        let lines = Lines()
        let logger = HPSLogger(level: .warning, sink: { lines.add($0) })
        logger.info("not shown")
        logger.warning("shown")
        logger.error("also shown")
        #expect(lines.all.count == 2)
        #expect(lines.all[0].hasPrefix("[HPS][") && lines.all[0].hasSuffix("][WARNING]: shown"))
        #expect(lines.all[1].hasSuffix("][ERROR]: also shown"))
        let silent = Lines()
        HPSLogger(level: .silence, sink: { silent.add($0) }).error("nothing")
        #expect(silent.all.isEmpty)
    }

    /// A swift-log backend of the application's: records what reaches it.
    struct Recorder: LogHandler {
        let lines: Lines
        var metadata: Logging.Logger.Metadata = [:]
        var logLevel: Logging.Logger.Level = .info
        subscript(metadataKey key: String) -> Logging.Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { lines.add("\(event.level) \(event.message)") }
    }

    @Test func anySwiftLogBackend() throws {
        let lines = Lines()
        var app = Logging.Logger(label: "app") { _ in Recorder(lines: lines) }
        app.logLevel = .warning
        let logger = HPSLogger(logger: app)
        #expect(logger.level == .warning)
        logger.info("dropped")
        logger.warning("kept")
        #expect(lines.all == ["warning kept"])
        // A server built with it reports through it.
        var config = ParameterServerConfig()
        config.volatileDatabase.type = .disabled
        _ = ParameterServer(config: config, volatileDatabase: nil, persistentDatabase: nil, logger: logger)
        #expect(lines.all.contains { $0.hasPrefix("warning No database") })
    }
}
