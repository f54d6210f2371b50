import CHiredis

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// Every C call of HPSRedis lives in this file: the hiredis blocking client (`RedisConnection`, reply
// views), and the few POSIX calls the module needs (monotonic clock, SIGPIPE, worker threads, and the
// process, socket and file calls of the local cluster launcher, `SystemNative`). Each wrapper is thin:
// it converts Swift values to the C shapes, turns hiredis' `err`/`errstr` and `errno` into thrown
// values, and frees what the C side allocated.

/// Why a Redis command produced no reply: the node could not be reached, the connection broke or timed
/// out, or the node is in its reconnect back-off after such a failure.
struct RedisFailure: Error, CustomStringConvertible, Sendable {
    enum Kind: Sendable, Equatable {
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

    var kind: Kind
    /// `host:port` of the node.
    var address: String
    var message: String

    var description: String { "\(address): \(message)" }

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
struct RedisReplyView {
    fileprivate let raw: UnsafeMutablePointer<redisReply>

    @inline(__always) var type: Int32 { raw.pointee.type }
    @inline(__always) var isString: Bool { type == REDIS_REPLY_STRING }
    @inline(__always) var isArray: Bool { type == REDIS_REPLY_ARRAY }
    @inline(__always) var isNil: Bool { type == REDIS_REPLY_NIL }
    @inline(__always) var isInteger: Bool { type == REDIS_REPLY_INTEGER }
    @inline(__always) var isError: Bool { type == REDIS_REPLY_ERROR }
    @inline(__always) var isStatus: Bool { type == REDIS_REPLY_STATUS }

    @inline(__always) var integer: Int { Int(raw.pointee.integer) }
    /// The string, status or error bytes.
    @inline(__always) var bytes: UnsafeRawBufferPointer {
        guard let str = raw.pointee.str else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: str, count: raw.pointee.len)
    }
    var text: String { String(decoding: bytes, as: UTF8.self) }
    /// Elements of an array reply.
    @inline(__always) var count: Int { isArray ? raw.pointee.elements : 0 }
    @inline(__always) subscript(i: Int) -> RedisReplyView { RedisReplyView(raw: raw.pointee.element[i]!) }

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
final class RedisConnection {
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
    static func connect(
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
    func append(argc: Int, _ fill: (UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafeMutablePointer<Int>) -> Void) {
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
    func flush() throws(RedisFailure) {
        var done: Int32 = 0
        while done == 0 {
            guard redisBufferWrite(context, &done) == REDIS_OK else { throw failure() }
        }
    }

    // MARK: Reading replies

    /// Flushes pending commands if needed, reads the next reply and passes it to `body`; the reply is
    /// freed when `body` returns. Throws when the connection fails or times out (it is then broken).
    @inline(__always)
    func readReply<T>(_ body: (RedisReplyView) -> T) throws(RedisFailure) -> T {
        var reply: UnsafeMutableRawPointer? = nil
        guard redisGetReply(context, &reply) == REDIS_OK, let reply else {
            throw failure()
        }
        defer { freeReplyObject(reply) }
        return body(RedisReplyView(raw: reply.assumingMemoryBound(to: redisReply.self)))
    }

    /// Sends one command and returns its reply, copied.
    func command(_ args: [String]) throws(RedisFailure) -> RedisValue {
        append(args)
        return try readReply { $0.value }
    }

    /// Sends one command of byte arguments and returns its reply, copied.
    func command(bytes args: [[UInt8]]) throws(RedisFailure) -> RedisValue {
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

/// POSIX calls: clock, signals, threads, processes, sockets and files.
enum SystemNative {
    /// Nanoseconds on the monotonic clock.
    @inline(__always)
    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Microseconds since the Unix epoch (LRU stamps shared across processes).
    static func wallClockMicroseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }

    /// Writing to a socket whose peer is gone raises SIGPIPE, whose default action ends the process;
    /// hiredis writes with `write(2)`. When the process still has the default action, ignore the signal
    /// (the write then fails with EPIPE, which the client handles). A handler someone installed is kept.
    static func ignoreBrokenPipeUnlessHandled() {
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

    /// A joinable thread.
    struct Thread {
        fileprivate let handle: pthread_t
    }

    /// Starts a joinable thread running `body`.
    static func startThread(_ body: @escaping @Sendable () -> Void) -> Thread? {
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
        return thread.map(Thread.init(handle:))
        #else
        return Thread(handle: thread)
        #endif
    }

    static func join(_ thread: Thread) { pthread_join(thread.handle, nil) }

    // MARK: Processes

    /// Starts `arguments[0]` (searched on `PATH`) with stdout and stderr appended to `logPath`.
    /// - Returns: the child's process id.
    static func spawn(_ arguments: [String], logPath: String) throws(SystemCallError) -> pid_t {
        #if canImport(Darwin)
        var actions: posix_spawn_file_actions_t? = nil
        #else
        var actions = posix_spawn_file_actions_t()
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // The calling thread may block signals (Dispatch's workers do) or ignore SIGPIPE (this module
        // does); the child starts with no blocked signals and default actions, so SIGTERM stops it.
        #if canImport(Darwin)
        var attributes: posix_spawnattr_t? = nil
        #else
        var attributes = posix_spawnattr_t()
        #endif
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGPIPE, SIGTERM, SIGINT, SIGHUP] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard rc == 0 else { throw SystemCallError(call: "posix_spawnp \(arguments[0])", errno: rc) }
        return pid
    }

    /// Reaps `pid` if it has exited. - Returns: its exit status (128+signal when killed), or nil while
    /// it runs.
    static func poll(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == 0 { return nil }
        if rc < 0 { return -1 }  // not our child any more (already reaped)
        let signalled = status & 0x7f
        return signalled == 0 ? (status >> 8) & 0xff : 128 + signalled
    }

    static func signal(_ pid: pid_t, _ sig: Int32) { _ = kill(pid, sig) }
    static var terminate: Int32 { SIGTERM }
    static var killSignal: Int32 { SIGKILL }
    static var stopSignal: Int32 { SIGSTOP }
    static var continueSignal: Int32 { SIGCONT }

    static func sleep(milliseconds: Int) { usleep(UInt32(max(0, milliseconds)) * 1000) }

    // MARK: Sockets

    /// Whether a TCP listener can bind 127.0.0.1:`port` now.
    static func canBind(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return rc == 0
    }

    // MARK: Files

    static var processID: Int32 { getpid() }

    /// Creates a fresh directory `<base>/<prefix>XXXXXX`.
    static func makeTemporaryDirectory(base: String, prefix: String) throws(SystemCallError) -> String {
        var template = Array((base + "/" + prefix + "XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw SystemCallError(call: "mkdtemp \(base)", errno: errno) }
        return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The text of a file (empty when unreadable), at most `limit` bytes from its end.
    static func readTail(_ path: String, limit: Int = 4096) -> String {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        let size = Int(lseek(fd, 0, SEEK_END))
        let start = max(0, size - limit)
        lseek(fd, off_t(start), SEEK_SET)
        var bytes = [UInt8](repeating: 0, count: size - start)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return String(decoding: bytes.prefix(max(0, n)), as: UTF8.self)
    }

    /// The names in directory `path` (without `.` and `..`).
    static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Removes a directory and everything in it (not following links).
    static func removeTree(_ target: String) {
        var info = stat()
        guard lstat(target, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            if let dir = opendir(target) {
                var children: [String] = []
                while let entry = readdir(dir) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                    }
                    if name != "." && name != ".." { children.append(name) }
                }
                closedir(dir)
                for child in children { removeTree(target + "/" + child) }
            }
            rmdir(target)
        } else {
            unlink(target)
        }
    }

    /// Whether `name` is an executable file in a directory of `PATH`.
    static func isOnPath(_ name: String) -> Bool {
        guard let path = getenv("PATH").map({ String(cString: $0) }) else { return false }
        return path.split(separator: ":").contains { access("\($0)/\(name)", X_OK) == 0 }
    }
}

/// The text of a failed POSIX call: the call's name and `strerror(errno)`.
struct SystemCallError: Error, CustomStringConvertible {
    var call: String
    var errno: Int32
    var description: String { "\(call): \(String(cString: strerror(errno)))" }
}
