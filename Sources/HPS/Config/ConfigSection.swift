/// Collects every problem and warning found while reading a configuration.
final class ConfigDiagnostics {
    var issues: [ConfigValidationError.Issue] = []
    var warnings: [String] = []

    func issue(_ path: String, _ message: String) {
        issues.append(ConfigValidationError.Issue(path: path, message: message))
    }

    func warn(_ message: String) { warnings.append(message) }

    /// Rows of each table directory opened while checking files: its JSON path, model and table index.
    var tableRows: [(path: String, model: Int, table: Int, rows: Int)] = []
}

/// A rule a number read from the configuration must satisfy.
enum NumberRule {
    case any
    /// `value ≥ bound`.
    case atLeast(Double)
    /// `low ≤ value ≤ high`.
    case within(Double, Double)
    /// `low < value ≤ high`.
    case above(Double, atMost: Double)

    /// Why `value` breaks the rule, or nil when it does not.
    func violation(_ value: Double) -> String? {
        switch self {
        case .any:
            return nil
        case .atLeast(let low):
            return value >= low ? nil : "must be at least \(Self.format(low)), found \(Self.format(value))"
        case .within(let low, let high):
            return (low...high).contains(value)
                ? nil : "must be between \(Self.format(low)) and \(Self.format(high)), found \(Self.format(value))"
        case .above(let low, let high):
            return value > low && value <= high
                ? nil
                : "must be greater than \(Self.format(low)) and at most \(Self.format(high)), found \(Self.format(value))"
        }
    }

    static func format(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int(value)) }
        return "\(value)"
    }
}

/// One JSON object of the configuration (the top level, a model, a database section) being read.
///
/// Each reader records the key it asked for, so that ``reportUnknownKeys(foreign:)`` can warn about the keys
/// nobody asked for and suggest the closest known one. Wrong types and values become issues naming the JSON
/// path; the reader then returns the default so that parsing continues and every problem is reported.
final class ConfigSection {
    let path: String
    let object: JSONObject
    let diagnostics: ConfigDiagnostics
    private(set) var knownKeys: [String] = []

    init(path: String, object: JSONObject, diagnostics: ConfigDiagnostics) {
        self.path = path
        self.object = object
        self.diagnostics = diagnostics
    }

    /// The JSON path of `key` in this section.
    func path(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    /// The raw value of `key`, recording the key as known.
    func value(_ key: String) -> JSONValue? {
        if !knownKeys.contains(key) { knownKeys.append(key) }
        return object[key]
    }

    /// Whether `key` is present (and records it as known).
    func has(_ key: String) -> Bool { value(key) != nil }

    /// Records `key` as a known key that this parser reads without a typed accessor.
    func markKnown(_ keys: String...) { for key in keys where !knownKeys.contains(key) { knownKeys.append(key) } }

    // MARK: Scalars

    func bool(_ key: String, default defaultValue: Bool) -> Bool {
        guard let value = value(key) else { return defaultValue }
        guard case .bool(let b) = value else {
            diagnostics.issue(path(key), "expected true or false, found \(Self.describe(value))")
            return defaultValue
        }
        return b
    }

    /// An integer; integral numbers written with a fraction or exponent (`4.0`, `1e6`) are accepted.
    /// With `saturating`, integers beyond `Int.max` (e.g. `SIZE_MAX`) read as `Int.max`.
    func int(_ key: String, default defaultValue: Int, _ rule: NumberRule = .any, saturating: Bool = false) -> Int {
        guard let value = value(key) else { return defaultValue }
        guard let n = Self.integer(value, path: path(key), diagnostics: diagnostics, saturating: saturating) else {
            return defaultValue
        }
        if let problem = rule.violation(Double(n)) {
            diagnostics.issue(path(key), problem)
            return defaultValue
        }
        return n
    }

    func double(_ key: String, default defaultValue: Double, _ rule: NumberRule = .any) -> Double {
        guard let value = value(key) else { return defaultValue }
        guard let d = Self.number(value, path: path(key), diagnostics: diagnostics) else { return defaultValue }
        if let problem = rule.violation(d) {
            diagnostics.issue(path(key), problem)
            return defaultValue
        }
        return d
    }

    func string(_ key: String, default defaultValue: String) -> String {
        guard let value = value(key) else { return defaultValue }
        guard case .string(let s) = value else {
            diagnostics.issue(path(key), "expected a string, found \(Self.describe(value))")
            return defaultValue
        }
        return s
    }

    /// One of a fixed set of names, each with aliases (compared case-insensitively). An unknown name is an
    /// issue listing every accepted name.
    func choice<T>(_ key: String, default defaultValue: T, what: String, _ options: [(value: T, names: [String])]) -> T {
        guard let value = value(key) else { return defaultValue }
        guard case .string(let raw) = value else {
            diagnostics.issue(path(key), "expected a string naming the \(what), found \(Self.describe(value))")
            return defaultValue
        }
        let name = raw.lowercased()
        if let match = options.first(where: { $0.names.contains(name) }) { return match.value }
        diagnostics.issue(path(key), "unknown \(what) \"\(raw)\"; accepted: \(Self.describe(options: options.map(\.names)))")
        return defaultValue
    }

    // MARK: Lists

    /// A list of strings. Nil when absent, not an array, or holding any non-string (each bad element is
    /// reported), so that later checks do not pile up on a list already known to be wrong.
    func stringList(_ key: String, required: Bool = false) -> [String]? {
        guard let items = list(key, required: required) else { return nil }
        var result: [String] = []
        var valid = true
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item else {
                diagnostics.issue(path(key) + "[\(i)]", "expected a string, found \(Self.describe(item))")
                valid = false
                continue
            }
            result.append(s)
        }
        return valid ? result : nil
    }

    /// A list of integers each satisfying `rule`; nil (after reporting every bad element) unless all are valid.
    func intList(_ key: String, required: Bool = false, _ rule: NumberRule = .any) -> [Int]? {
        guard let items = list(key, required: required) else { return nil }
        var result: [Int] = []
        for (i, item) in items.enumerated() {
            let itemPath = path(key) + "[\(i)]"
            guard let n = Self.integer(item, path: itemPath, diagnostics: diagnostics, saturating: false) else { continue }
            if let problem = rule.violation(Double(n)) {
                diagnostics.issue(itemPath, problem)
                continue
            }
            result.append(n)
        }
        return result.count == items.count ? result : nil
    }

    /// A list of numbers; nil (after reporting every bad element) unless all are numbers.
    func doubleList(_ key: String, required: Bool = false) -> [Double]? {
        guard let items = list(key, required: required) else { return nil }
        let result = items.enumerated().compactMap { i, item in
            Self.number(item, path: path(key) + "[\(i)]", diagnostics: diagnostics)
        }
        return result.count == items.count ? result : nil
    }

    private func list(_ key: String, required: Bool) -> [JSONValue]? {
        guard let value = value(key) else {
            if required { diagnostics.issue(path(key), "required key is missing") }
            return nil
        }
        guard case .array(let items) = value else {
            diagnostics.issue(path(key), "expected an array, found \(Self.describe(value))")
            return nil
        }
        return items
    }

    /// The object under `key`, or nil when absent (a present non-object is an issue).
    func section(_ key: String) -> ConfigSection? {
        guard let value = value(key) else { return nil }
        guard case .object(let object) = value else {
            diagnostics.issue(path(key), "expected an object, found \(Self.describe(value))")
            return nil
        }
        return ConfigSection(path: path(key), object: object, diagnostics: diagnostics)
    }

    // MARK: Unknown keys

    /// Warns about every key of the object that no reader asked for. `foreign` keys are known to belong to
    /// other tools (HugeCTR training or Triton) and get a message saying so; other keys within edit distance
    /// 2 of a known key get a "did you mean".
    func reportUnknownKeys(foreign: Set<String> = []) {
        for key in object.keys where !knownKeys.contains(key) {
            if foreign.contains(key) {
                diagnostics.warn("\(path(key)): not used by the parameter server (a HugeCTR/Triton key); ignored")
            } else if let suggestion = Self.closest(to: key, among: knownKeys) {
                diagnostics.warn("\(path(key)): unknown key, ignored; did you mean \"\(suggestion)\"?")
            } else {
                diagnostics.warn("\(path(key)): unknown key, ignored")
            }
        }
    }

    /// The known key closest to `key` within edit distance 2 (case-insensitive), if any.
    static func closest(to key: String, among known: [String]) -> String? {
        var best: (key: String, distance: Int)?
        let lower = Array(key.lowercased().unicodeScalars)
        for candidate in known {
            let d = editDistance(lower, Array(candidate.lowercased().unicodeScalars), limit: 2)
            if d <= 2, d < (best?.distance ?? .max) { best = (candidate, d) }
        }
        return best?.key
    }

    /// Optimal-string-alignment distance (insertions, deletions, substitutions, adjacent transpositions);
    /// returns `limit + 1` as soon as the distance is known to exceed `limit`.
    static func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar], limit: Int) -> Int {
        if abs(a.count - b.count) > limit { return limit + 1 }
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            var rowMinimum = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                var d = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d = min(d, previous2[j - 2] + 1) }
                current[j] = d
                rowMinimum = min(rowMinimum, d)
            }
            if rowMinimum > limit { return limit + 1 }
            (previous2, previous, current) = (previous, current, previous2)
        }
        return previous[b.count]
    }

    // MARK: Conversions

    static func integer(_ value: JSONValue, path: String, diagnostics: ConfigDiagnostics, saturating: Bool) -> Int? {
        switch value {
        case .int(let n):
            return n
        case .double(let d):
            guard d.isFinite else {
                diagnostics.issue(path, "the number is beyond the range of a double (read as \(d))")
                return nil
            }
            guard d == d.rounded(.towardZero) else {
                diagnostics.issue(path, "expected an integer, found the fraction \(d)")
                return nil
            }
            if d >= 9.223372036854775807e18 {
                if saturating { return .max }
                diagnostics.issue(path, "\(NumberRule.format(d)) is too large")
                return nil
            }
            if d < -9.223372036854775807e18 {
                diagnostics.issue(path, "\(NumberRule.format(d)) is too small")
                return nil
            }
            return Int(d)
        default:
            diagnostics.issue(path, "expected an integer, found \(describe(value))")
            return nil
        }
    }

    static func number(_ value: JSONValue, path: String, diagnostics: ConfigDiagnostics) -> Double? {
        switch value {
        case .int(let n): return Double(n)
        case .double(let d):
            guard d.isFinite else {
                diagnostics.issue(path, "the number is beyond the range of a double (read as \(d))")
                return nil
            }
            return d
        default:
            diagnostics.issue(path, "expected a number, found \(describe(value))")
            return nil
        }
    }

    /// `string "abc"`, `integer 5`, `boolean true`, `an array`, ...
    static func describe(_ value: JSONValue) -> String {
        switch value {
        case .string(let s): "string \"\(s.count > 40 ? String(s.prefix(40)) + "…" : s)\""
        case .int(let n): "integer \(n)"
        case .double(let d): "number \(d)"
        case .bool(let b): "boolean \(b)"
        case .null: "null"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// `"a" (or "a1", "a2"), "b"`.
    static func describe(options: [[String]]) -> String {
        options.map { names in
            let head = "\"\(names[0])\""
            let rest = names.dropFirst().map { "\"\($0)\"" }
            return rest.isEmpty ? head : head + " (or " + rest.joined(separator: ", ") + ")"
        }.joined(separator: ", ")
    }
}
