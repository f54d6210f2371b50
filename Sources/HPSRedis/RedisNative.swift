import CHiredis

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// Every C call of HPSRedis lives in this file: the hiredis blocking client (`RedisConnection`, reply
// views), and the few POSIX calls swift-system does not cover (the wall clock, SIGPIPE, joinable worker
// threads; at the end). The local cluster launcher's process and socket calls are in HPSTestSupport.
// Each wrapper is thin:
// it converts Swift values to the C shapes, turns hiredis' `err`/`errstr` and `errno` into thrown
// values, and frees what the C side allocated.

/// Why a Redis command produced no reply: the node could not be reached, the connection broke or timed
/// out, or the node is in its reconnect back-off after such a failure.
package struct RedisFailure: Error, CustomStringConvertible, Sendable {
    package enum Kind: Sendable, Equatable {
        /// The TCP connection could not be made (refused, unreachable, connect timeout).
        case connect
        /// AUTH was rejected.
        case auth
        /// A read or write failed or the peer closed the connection.
        case io
        /// No reply within the command timeout.
        case timeout
        /// The node failed recently and is not retried until its back-off ends.
        case nodeDown
        /// The node answered with an error (e.g. `CLUSTERDOWN`, `LOADING`, too many redirects).
        case server
        /// The reply had an unexpected shape.
        case protocolError
    }

    package var kind: Kind
    /// `host:port` of the node.
    package var address: String
    package var message: String

    package init(kind: Kind, address: String, message: String) {
        self.kind = kind
        self.address = address
        self.message = message
    }

    package var description: String { "\(address): \(message)" }

    /// Whether the connection that produced this failure can no longer be used.
    var breaksConnection: Bool {
        switch kind {
        case .connect, .auth, .io, .timeout, .protocolError: true
        case .nodeDown, .server: false
        }
    }
}

/// One Redis reply, copied out of hiredis' reply tree (for control commands; the hot path reads replies
/// in place through ``RedisReplyView``).
public enum RedisValue: Sendable, Equatable, CustomStringConvertible {
    case string([UInt8])
    case integer(Int)
    case array([RedisValue])
    case null
    case status(String)
    case error(String)

    /// The bulk string or status as UTF-8 text (lossy), nil for other kinds.
    public var text: String? {
        switch self {
        case .string(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let text): text
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .string(let bytes): "\"\(String(decoding: bytes, as: UTF8.self))\""
        case .integer(let n): "(integer) \(n)"
        case .array(let items): "[" + items.map(\.description).joined(separator: ", ") + "]"
        case .null: "(nil)"
        case .status(let text): text
        case .error(let text): "(error) \(text)"
        }
    }
}

/// A borrowed view of a hiredis reply; valid only inside the closure that receives it.
package struct RedisReplyView {
    fileprivate let raw: UnsafeMutablePointer<redisReply>

    @inline(__always) var type: Int32 { raw.pointee.type }
    @inline(__always) package var isString: Bool { type == REDIS_REPLY_STRING }
    @inline(__always) var isArray: Bool { type == REDIS_REPLY_ARRAY }
    @inline(__always) var isNil: Bool { type == REDIS_REPLY_NIL }
    @inline(__always) var isInteger: Bool { type == REDIS_REPLY_INTEGER }
    @inline(__always) var isError: Bool { type == REDIS_REPLY_ERROR }
    @inline(__always) var isStatus: Bool { type == REDIS_REPLY_STATUS }

    @inline(__always) var integer: Int { Int(raw.pointee.integer) }
    /// The string, status or error bytes.
    @inline(__always) package var bytes: UnsafeRawBufferPointer {
        guard let str = raw.pointee.str else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: str, count: raw.pointee.len)
    }
    var text: String { String(decoding: bytes, as: UTF8.self) }
    /// Elements of an array reply.
    @inline(__always) package var count: Int { isArray ? raw.pointee.elements : 0 }
    @inline(__always) package subscript(i: Int) -> RedisReplyView { RedisReplyView(raw: raw.pointee.element[i]!) }

    /// A deep copy.
    var value: RedisValue {
        switch type {
        case REDIS_REPLY_STRING: .string(Array(bytes))
        case REDIS_REPLY_INTEGER: .integer(integer)
        case REDIS_REPLY_ARRAY: .array((0..<count).map { self[$0].value })
        case REDIS_REPLY_STATUS: .status(text)
        case REDIS_REPLY_ERROR: .error(text)
        default: .null
        }
    }
}

/// One blocking hiredis connection to one node, with reusable argument buffers for building commands
/// without copying keys or values (hiredis formats them into its own output buffer).
///
/// Not thread-safe: a connection is used by one thread at a time (the node's pool hands it out).
package final class RedisConnection {
    let address: String
    /// The node's connection generation this connection belongs to (see ``RedisNode``).
    var generation = 0
    private let context: UnsafeMutablePointer<redisContext>
    private var argv: UnsafeMutablePointer<UnsafePointer<CChar>?>
    private var lengths: UnsafeMutablePointer<Int>
    private var argvCapacity: Int
    private let commandTimeoutMs: Int

    private init(address: String, context: UnsafeMutablePointer<redisContext>, commandTimeoutMs: Int) {
        self.address = address
        self.context = context
        self.commandTimeoutMs = commandTimeoutMs
        argvCapacity = 16
        argv = .allocate(capacity: argvCapacity)
        lengths = .allocate(capacity: argvCapacity)
    }

    deinit {
        redisFree(context)
        argv.deallocate()
        lengths.deallocate()
    }

    /// Connects within `connectTimeoutMs`, sets the command (socket) timeout and TCP keep-alive, and
    /// authenticates when `password` is not empty (`AUTH password`, or `AUTH user password` for a user
    /// other than `default`).
    package static func connect(
        host: String, port: Int, connectTimeoutMs: Int, commandTimeoutMs: Int, userName: String = "", password: String = ""
    ) throws(RedisFailure) -> RedisConnection {
        let address = "\(host):\(port)"
        guard let context = redisConnectWithTimeout(host, Int32(clamping: port), timeval(milliseconds: connectTimeoutMs)) else {
            throw RedisFailure(kind: .connect, address: address, message: "hiredis could not allocate a connection")
        }
        if context.pointee.err != 0 {
            let message = errorText(context)
            redisFree(context)
            throw RedisFailure(kind: .connect, address: address, message: "cannot connect within \(connectTimeoutMs) ms: \(message)")
        }
        let connection = RedisConnection(address: address, context: context, commandTimeoutMs: commandTimeoutMs)
        if redisSetTimeout(context, timeval(milliseconds: commandTimeoutMs)) != REDIS_OK {
            throw RedisFailure(kind: .connect, address: address, message: "cannot set the command timeout: \(errorText(context))")
        }
        _ = redisEnableKeepAlive(context)
        if !password.isEmpty {
            let args = userName.isEmpty || userName == "default" ? ["AUTH", password] : ["AUTH", userName, password]
            let reply = try connection.command(args)
            if case .error(let text) = reply {
                throw RedisFailure(kind: .auth, address: address, message: "AUTH as user '\(userName.isEmpty ? "default" : userName)' was rejected: \(text)")
            }
        }
        return connection
    }

    /// Whether hiredis flagged the connection as failed (it must then be closed).
    var isBroken: Bool { context.pointee.err != 0 }

    // MARK: Building commands

    /// Appends one command of `argc` arguments to the output buffer; `fill` writes each argument's
    /// pointer and length. The pointed-to bytes need only live until `fill`'s caller returns.
    @inline(__always)
    package func append(argc: Int, _ fill: (UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafeMutablePointer<Int>) -> Void) {
        if argc > argvCapacity {
            argv.deallocate()
            lengths.deallocate()
            argvCapacity = max(argc, argvCapacity * 2)
            argv = .allocate(capacity: argvCapacity)
            lengths = .allocate(capacity: argvCapacity)
        }
        fill(argv, lengths)
        // Fails only when out of memory; the following read then reports the context's error.
        _ = redisAppendCommandArgv(context, Int32(argc), argv, lengths)
    }

    /// Appends a command whose arguments are byte arrays.
    func append(_ args: [[UInt8]]) {
        // Keep every argument alive while hiredis formats the command.
        let copies = args.map { bytes -> UnsafeMutableRawBufferPointer in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, bytes.count), alignment: 1)
            buffer.copyBytes(from: bytes)
            return buffer
        }
        defer { copies.forEach { $0.deallocate() } }
        append(argc: args.count) { argv, lengths in
            for (i, buffer) in copies.enumerated() {
                argv[i] = UnsafePointer(buffer.baseAddress!.assumingMemoryBound(to: CChar.self))
                lengths[i] = args[i].count
            }
        }
    }

    /// Appends a command whose arguments are strings.
    func append(_ args: [String]) { append(args.map { Array($0.utf8) }) }

    /// Writes every appended command to the socket now (instead of at the next read), so that several
    /// connections can be sent to before any reply is awaited.
    package func flush() throws(RedisFailure) {
        var done: Int32 = 0
        while done == 0 {
            guard redisBufferWrite(context, &done) == REDIS_OK else { throw failure() }
        }
    }

    // MARK: Reading replies

    /// Flushes pending commands if needed, reads the next reply and passes it to `body`; the reply is
    /// freed when `body` returns. Throws when the connection fails or times out (it is then broken).
    @inline(__always)
    package func readReply<T>(_ body: (RedisReplyView) -> T) throws(RedisFailure) -> T {
        var reply: UnsafeMutableRawPointer? = nil
        guard redisGetReply(context, &reply) == REDIS_OK, let reply else {
            throw failure()
        }
        defer { freeReplyObject(reply) }
        return body(RedisReplyView(raw: reply.assumingMemoryBound(to: redisReply.self)))
    }

    /// Sends one command and returns its reply, copied.
    package func command(_ args: [String]) throws(RedisFailure) -> RedisValue {
        append(args)
        return try readReply { $0.value }
    }

    /// Sends one command of byte arguments and returns its reply, copied.
    package func command(bytes args: [[UInt8]]) throws(RedisFailure) -> RedisValue {
        append(args)
        return try readReply { $0.value }
    }

    /// The failure hiredis recorded in the context.
    private func failure() -> RedisFailure {
        let text = Self.errorText(context)
        switch context.pointee.err {
        case REDIS_ERR_EOF:
            return RedisFailure(kind: .io, address: address, message: "the server closed the connection (\(text))")
        case REDIS_ERR_IO where text.contains("temporarily unavailable") || text.contains("timed out"):
            return RedisFailure(kind: .timeout, address: address, message: "no reply within the command timeout of \(commandTimeoutMs) ms")
        case REDIS_ERR_PROTOCOL:
            return RedisFailure(kind: .protocolError, address: address, message: "protocol error: \(text)")
        case 0:
            return RedisFailure(kind: .protocolError, address: address, message: "hiredis returned no reply")
        default:
            return RedisFailure(kind: .io, address: address, message: text)
        }
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}

extension timeval {
    fileprivate init(milliseconds: Int) {
        let ms = max(1, milliseconds)
        self.init(tv_sec: .init(ms / 1000), tv_usec: .init((ms % 1000) * 1000))
    }
}

/// The wall clock, in microseconds since the Unix epoch: the LRU stamps several processes share through
/// Redis must agree across processes, which the monotonic clock does not. (swift-system has no clock API.)
enum WallClock {
    static func microseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }
}

/// SIGPIPE: writing to a socket whose peer is gone raises it, and its default action ends the process;
/// hiredis writes with `write(2)`. (swift-system has no signal API.)
enum BrokenPipeSignal {
    /// When the process still has the default action, ignore the signal (the write then fails with EPIPE,
    /// which the client handles). A handler someone installed is kept.
    static func ignoreUnlessHandled() {
        #if canImport(Glibc)
        var current = sigaction()
        guard sigaction(SIGPIPE, nil, &current) == 0 else { return }
        if current.__sigaction_handler.sa_handler == nil {  // SIG_DFL
            var ignore = sigaction()
            ignore.__sigaction_handler.sa_handler = SIG_IGN
            sigemptyset(&ignore.sa_mask)
            sigaction(SIGPIPE, &ignore, nil)
        }
        #else
        let previous = signal(SIGPIPE, SIG_IGN)
        if previous != nil, let previous, unsafeBitCast(previous, to: Int.self) != unsafeBitCast(SIG_IGN, to: Int.self) {
            signal(SIGPIPE, previous)
        }
        #endif
    }
}

/// A thread that can be joined (Foundation's `Thread` cannot): the Redis worker pool's threads block in
/// hiredis calls, and closing the pool waits for them.
struct JoinableThread {
    private let handle: pthread_t

    /// Starts a thread running `body`; nil when the system refuses a thread.
    static func start(_ body: @escaping @Sendable () -> Void) -> JoinableThread? {
        final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        #if canImport(Darwin)
        var thread: pthread_t? = nil
        #else
        var thread = pthread_t()
        #endif
        let rc = pthread_create(&thread, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            return nil
        }
        #if canImport(Darwin)
        return thread.map(JoinableThread.init(handle:))
        #else
        return JoinableThread(handle: thread)
        #endif
    }

    /// Waits until the thread has finished.
    func join() { pthread_join(handle, nil) }
}
