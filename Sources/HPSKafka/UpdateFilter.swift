import HPS

/// One entry of `update_filters`: which table tags (Kafka topics) a database takes updates for.
///
/// HPS turns each filter `s` into the topic pattern `^hps_et\.<s>\..+$`, so a filter names models (`.+` takes
/// every model, `wdl` the model wdl). Its default `^hps_.+$` then yields a pattern with a second `^` that
/// matches nothing. Here a filter that starts with `^` is a pattern over the whole tag instead, so the
/// default takes every table; any other filter keeps HPS's model rule.
public struct UpdateFilter: Sendable, CustomStringConvertible {
    /// The filter as written in the configuration.
    public let filter: String
    /// The regular expression over the whole topic name (also the subscription pattern librdkafka gets).
    public let pattern: String
    nonisolated(unsafe) private let regex: Regex<AnyRegexOutput>  // immutable after init; matching does not mutate it

    /// - Throws: the regular expression's error, when the filter is not a valid expression.
    public init(_ filter: String) throws {
        self.filter = filter
        pattern = filter.hasPrefix("^") ? filter : "^hps_et\\." + filter + "\\..+$"
        regex = try Regex(pattern)
    }

    /// Whether updates of table tag `topic` pass this filter.
    public func matches(_ topic: String) -> Bool { (try? regex.firstMatch(in: topic)) != nil }

    public var description: String { filter }
}

extension Array where Element == UpdateFilter {
    /// Filters from the strings of a configuration.
    /// - Throws: the first invalid expression's error.
    public init(filters: [String]) throws { self = try filters.map(UpdateFilter.init) }

    /// Whether any filter passes `topic`.
    public func matchAny(_ topic: String) -> Bool { contains { $0.matches(topic) } }
}
