#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

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
}

/// A small line logger writing `[HPS][hh:mm:ss.mmm][LEVEL]: message` to standard error.
///
/// The level comes from `HPS_LOG_LEVEL` (a number or a level name), default `info`.
public struct HPSLogger: Sendable {
    public var level: LogLevel
    public var sink: @Sendable (String) -> Void

    public init(level: LogLevel = HPSLogger.environmentLevel, sink: @escaping @Sendable (String) -> Void = HPSLogger.standardError) {
        self.level = level
        self.sink = sink
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
        var tv = timeval()
        gettimeofday(&tv, nil)
        var seconds = tv.tv_sec
        var parts = tm()
        localtime_r(&seconds, &parts)
        let stamp = String(format2: parts.tm_hour) + ":" + String(format2: parts.tm_min) + ":" + String(format2: parts.tm_sec)
            + "." + String(format3: Int(tv.tv_usec) / 1000)
        sink("[HPS][\(stamp)][\(level.label)]: \(message())")
    }

    public func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    public func warning(_ message: @autoclosure () -> String) { log(.warning, message()) }
    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }
    public func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
}

extension String {
    fileprivate init(format2 value: Int32) { self = value < 10 ? "0\(value)" : "\(value)" }
    fileprivate init(format3 value: Int) { self = value < 10 ? "00\(value)" : value < 100 ? "0\(value)" : "\(value)" }
}
