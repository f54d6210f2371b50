/// An error raised by the parameter server, with what failed and where.
///
/// `code` says what kind of failure it is; `subject` names the thing that failed (a file, a JSON path, a
/// table tag, a model name); `message` says what is wrong in words a user can act on; `underlying` carries
/// the text of a lower-level error (errno, a C library message) when there is one, and `cause` the error
/// value itself when one was thrown below (e.g. an `Errno`, a ``SystemCallError``, another `HPSError`).
public struct HPSError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The kind of failure. Extensible: backends add their own codes.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The JSON configuration is malformed or violates a rule.
        public static let invalidConfig = Code("invalid config")
        /// A table directory or one of its files is missing, the wrong size, or unreadable.
        public static let invalidTable = Code("invalid table")
        /// A file system call failed.
        public static let io = Code("I/O error")
        /// A lookup named a model the parameter server does not hold.
        public static let unknownModel = Code("unknown model")
        /// A lookup named a table index or name the model does not have.
        public static let unknownTable = Code("unknown table")
        /// An argument is out of range or malformed.
        public static let invalidArgument = Code("invalid argument")
        /// A database backend failed.
        public static let database = Code("database error")
        /// A requested feature or backend is not available in this build.
        public static let unsupported = Code("unsupported")
        /// A dump file is malformed or does not match the table.
        public static let invalidDump = Code("invalid dump")
    }

    public var code: Code
    /// The file, JSON path, table tag or argument the error is about.
    public var subject: String?
    public var message: String
    /// The lower-level error text, if any (e.g. `strerror(errno)` or a C library's message).
    public var underlying: String?
    /// For a write to a database of several nodes that stored only part of its keys: how many keys each
    /// failed node did not take (nil for every other error).
    public var unwrittenKeysByNode: [String: Int]?
    /// The lower-level error this one wraps, when there is one; its text is `underlying` unless that was
    /// given separately.
    public var cause: (any Error)?

    /// An error of kind `code` about `subject`.
    /// - Parameters:
    ///   - underlying: the lower-level error text; defaults to the description of `cause`.
    ///   - cause: the error that caused this one, kept for callers that inspect it.
    public init(
        _ code: Code, subject: String? = nil, _ message: String, underlying: String? = nil, cause: (any Error)? = nil,
        unwrittenKeysByNode: [String: Int]? = nil
    ) {
        self.code = code
        self.subject = subject
        self.message = message
        self.underlying = underlying ?? cause.map { String(describing: $0) }
        self.cause = cause
        self.unwrittenKeysByNode = unwrittenKeysByNode
    }

    /// Equal when code, subject, message, underlying text and unwritten keys are; the cause is compared by
    /// its text (errors in general are not `Equatable`).
    public static func == (a: HPSError, b: HPSError) -> Bool {
        a.code == b.code && a.subject == b.subject && a.message == b.message && a.underlying == b.underlying
            && a.unwrittenKeysByNode == b.unwrittenKeysByNode
            && a.cause.map { String(describing: $0) } == b.cause.map { String(describing: $0) }
    }

    public var description: String {
        var text = "\(code)"
        if let subject { text += ": \(subject)" }
        text += ": \(message)"
        if let underlying { text += " (\(underlying))" }
        return text
    }
}

/// Every problem found while validating a configuration, so a user can fix them all at once.
public struct ConfigValidationError: Error, CustomStringConvertible, Sendable {
    /// One problem: the JSON path it concerns (e.g. `models[0].sparse_files[1]`) and the reason.
    public struct Issue: Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var message: String
        public init(path: String, message: String) {
            self.path = path
            self.message = message
        }
        public var description: String { path.isEmpty ? message : "\(path): \(message)" }
    }

    /// The file the configuration came from, when it came from a file.
    public var file: String?
    public var issues: [Issue]

    public init(file: String? = nil, issues: [Issue]) {
        self.file = file
        self.issues = issues
    }

    public var description: String {
        let head = file.map { "invalid config \($0)" } ?? "invalid config"
        return ([head + ":"] + issues.map { "  " + $0.description }).joined(separator: "\n")
    }
}
