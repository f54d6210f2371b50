#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

/// Log levels. Raw values are HPS's `HUGECTR_LOG_LEVEL` numbers (error −1, silence 0, info 1, warning 2,
/// debug 3, trace 9); the order is by verbosity: silence < error < warning < info < debug < trace. A
/// logger writes messages whose level is at most its own.
public enum LogLevel: Int, Sendable, Comparable {
    case error = -1, silence = 0, info = 1, warning = 2, debug = 3, trace = 9

    private var verbosity: Int {
        switch self {
        case .silence: 0
        case .error: 1
        case .warning: 2
        case .info: 3
        case .debug: 4
        case .trace: 5
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.verbosity < b.verbosity }

    var label: String {
        switch self {
        case .error: "ERROR"
        case .silence: "SILENCE"
        case .info: "INFO"
        case .warning: "WARNING"
        case .debug: "DEBUG"
        case .trace: "TRACE"
        }
    }

    /// The swift-log level of this level (silence has none: nothing is logged).
    var swiftLogLevel: Logging.Logger.Level {
        switch self {
        case .error: .error
        case .silence: .critical
        case .info: .info
        case .warning: .warning
        case .debug: .debug
        case .trace: .trace
        }
    }

    init(_ level: Logging.Logger.Level) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info, .notice: self = .info
        case .warning: self = .warning
        case .error, .critical: self = .error
        }
    }
}

/// The logger every part of HPS writes through: a swift-log `Logger` (label `hps`), so an application that
/// embeds the library can route HPS's messages to any swift-log backend (``init(logger:)``).
///
/// By default the handler is ``HPSLogHandler``: lines `[HPS][hh:mm:ss.mmm][LEVEL]: message` on standard error,
/// at the level of `HPS_LOG_LEVEL` (a number or a level name; default `info`) — the CLI, the TensorFlow op
/// library and the C API all write this way.
public struct HPSLogger: Sendable {
    /// The level messages must reach to be written.
    public let level: LogLevel
    /// The swift-log logger messages go to.
    public let logger: Logging.Logger

    /// A logger writing HPS's line format to `sink` at `level`.
    public init(level: LogLevel = HPSLogger.environmentLevel, sink: @escaping @Sendable (String) -> Void = HPSLogger.standardError) {
        self.level = level
        logger = Logging.Logger(label: "hps") { _ in HPSLogHandler(level: level, sink: sink) }
    }

    /// A logger writing to `logger` (any swift-log backend), at its level.
    public init(logger: Logging.Logger) {
        self.logger = logger
        level = LogLevel(logger.logLevel)
    }

    /// The process-wide default logger.
    public static let standard = HPSLogger()
    /// A logger that writes nothing (tests, benchmarks).
    public static let silent = HPSLogger(level: .silence, sink: { _ in })

    public static let standardError: @Sendable (String) -> Void = { line in
        var text = line + "\n"
        text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
    }

    public static var environmentLevel: LogLevel {
        guard let raw = getenv("HPS_LOG_LEVEL").map({ String(cString: $0) }) else { return .info }
        if let n = Int(raw), let level = LogLevel(rawValue: n) { return level }
        switch raw.lowercased() {
        case "error": return .error
        case "silence", "silent", "off": return .silence
        case "warning", "warn": return .warning
        case "debug": return .debug
        case "trace": return .trace
        default: return .info
        }
    }

    public func log(_ level: LogLevel, _ message: @autoclosure () -> String) {
        guard self.level != .silence, level != .silence, level <= self.level else { return }
        logger.log(level: level.swiftLogLevel, "\(message())")
    }

    public func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    public func warning(_ message: @autoclosure () -> String) { log(.warning, message()) }
    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }
    public func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
}

/// The swift-log handler of HPS's line format: `[HPS][hh:mm:ss.mmm][LEVEL]: message` (local time), metadata
/// appended as `key=value`, written to a sink (standard error by default). Level `silence` writes nothing.
public struct HPSLogHandler: LogHandler {
    public var metadata: Logging.Logger.Metadata = [:]
    public var logLevel: Logging.Logger.Level
    private let silent: Bool
    private let sink: @Sendable (String) -> Void

    public init(level: LogLevel, sink: @escaping @Sendable (String) -> Void = HPSLogger.standardError) {
        logLevel = level.swiftLogLevel
        silent = level == .silence
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logging.Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        guard !silent else { return }
        var tv = timeval()
        gettimeofday(&tv, nil)
        var seconds = tv.tv_sec
        var parts = tm()
        localtime_r(&seconds, &parts)
        let stamp = String(format2: parts.tm_hour) + ":" + String(format2: parts.tm_min) + ":" + String(format2: parts.tm_sec)
            + "." + String(format3: Int(tv.tv_usec) / 1000)
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let extra = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        sink("[HPS][\(stamp)][\(LogLevel(event.level).label)]: \(event.message)\(extra)")
    }
}

extension String {
    fileprivate init(format2 value: Int32) { self = value < 10 ? "0\(value)" : "\(value)" }
    fileprivate init(format3 value: Int) { self = value < 10 ? "00\(value)" : value < 100 ? "0\(value)" : "\(value)" }
}
