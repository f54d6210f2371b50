import Dispatch
import HPS
import Synchronization

/// A Redis node's address.
public struct RedisEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port` (`[v6]:port` for IPv6 literals).
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The port Redis listens on when an address names none.
    public static let defaultPort = 6379

    /// Parses `volatile_db.address`: `host[:port]` entries separated by commas (or semicolons), e.g.
    /// `"10.0.0.1:7000,10.0.0.2:7000"`; IPv6 literals in brackets (`[::1]:7000`).
    /// - Throws: ``HPSError`` `.invalidConfig` naming `volatile_db.address` for an empty list, an empty
    ///   host or a port outside 1…65535.
    public static func parseList(_ text: String) throws -> [RedisEndpoint] {
        var endpoints: [RedisEndpoint] = []
        for raw in text.split(whereSeparator: { $0 == "," || $0 == ";" }) {
            let entry = raw.trimmingSpaces()
            if entry.isEmpty { continue }
            var host = entry
            var portText: Substring? = nil
            if entry.hasPrefix("[") {
                guard let close = entry.firstIndex(of: "]") else {
                    throw HPSError(.invalidConfig, subject: "volatile_db.address", "'\(entry)' opens an IPv6 bracket but does not close it")
                }
                host = entry[entry.index(after: entry.startIndex)..<close]
                let rest = entry[entry.index(after: close)...]
                if rest.hasPrefix(":") { portText = rest.dropFirst() } else if !rest.isEmpty {
                    throw HPSError(.invalidConfig, subject: "volatile_db.address", "'\(entry)' is not host[:port]")
                }
            } else if let colon = entry.lastIndex(of: ":") {
                host = entry[..<colon]
                portText = entry[entry.index(after: colon)...]
            }
            guard !host.isEmpty else {
                throw HPSError(.invalidConfig, subject: "volatile_db.address", "'\(entry)' has no host; expected host[:port],host[:port]…")
            }
            var port = defaultPort
            if let portText {
                guard let p = Int(portText), (1...65535).contains(p) else {
                    throw HPSError(.invalidConfig, subject: "volatile_db.address", "'\(entry)' has an invalid port '\(portText)' (1…65535)")
                }
                port = p
            }
            endpoints.append(RedisEndpoint(host: String(host), port: port))
        }
        guard !endpoints.isEmpty else {
            throw HPSError(.invalidConfig, subject: "volatile_db.address", "names no Redis node; expected host[:port],host[:port]…")
        }
        return endpoints
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" || c == "\n" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\n" { s.removeLast() }
        return s
    }
}

/// Connection settings shared by every node of a client.
package struct RedisClientSettings: Sendable {
    package var connectTimeoutMs: Int
    package var commandTimeoutMs: Int
    /// After a connection to a node fails, the node is not tried again for this long; its commands fail
    /// at once (their keys become misses) instead of each waiting for a timeout.
    package var reconnectIntervalMs: Int
    /// Connections kept per node (`num_node_connections`).
    package var connectionsPerNode: Int
    package var userName: String
    package var password: String

    package init(
        connectTimeoutMs: Int, commandTimeoutMs: Int, reconnectIntervalMs: Int, connectionsPerNode: Int, userName: String, password: String
    ) {
        self.connectTimeoutMs = connectTimeoutMs
        self.commandTimeoutMs = commandTimeoutMs
        self.reconnectIntervalMs = reconnectIntervalMs
        self.connectionsPerNode = connectionsPerNode
        self.userName = userName
        self.password = password
    }
}

/// Counters of a client, for logs and tests.
final class RedisClientCounters: Sendable {
    let redirects = Atomic<Int>(0)
    let slotMapRefreshes = Atomic<Int>(0)
    let connectionsOpened = Atomic<Int>(0)
    let connectionFailures = Atomic<Int>(0)
}

/// One cluster node: its address and a pool of up to `connectionsPerNode` connections.
///
/// When a connection breaks (the node died, a reply timed out) every connection of the node is
/// discarded (they most likely failed too) and the node is marked down for `reconnectIntervalMs`:
/// during that time checkouts fail at once. After it, the next checkout reconnects.
package final class RedisNode: @unchecked Sendable {
    // @unchecked Sendable: `condition` guards `idle`, `open`, `generation`, `downUntil` and `lastFailure`;
    // `endpoint`, `address`, `settings` and `counters` (atomics) are immutable; a checked-out connection belongs to
    // one caller until it is returned.
    package let endpoint: RedisEndpoint
    let address: String
    private let settings: RedisClientSettings
    private let counters: RedisClientCounters
    private let condition = Condition()
    private var idle: [RedisConnection] = []
    private var open = 0
    private var generation = 0
    private var downUntil: UInt64 = 0
    private var lastFailure: RedisFailure?

    init(endpoint: RedisEndpoint, settings: RedisClientSettings, counters: RedisClientCounters) {
        self.endpoint = endpoint
        self.address = endpoint.description
        self.settings = settings
        self.counters = counters
    }

    /// Takes an idle connection, opens one when fewer than the pool size exist, or waits for one.
    /// - Throws: ``RedisFailure`` `.nodeDown` during the back-off after a failure, or the connect failure.
    func checkout() throws(RedisFailure) -> RedisConnection {
        condition.lock()
        while true {
            if let connection = idle.popLast() {
                if connection.generation == generation {
                    condition.unlock()
                    return connection
                }
                open -= 1
                continue  // a connection from before the last failure: drop it
            }
            if downUntil != 0 {
                if DispatchTime.now().uptimeNanoseconds < downUntil {
                    let reason = lastFailure?.message ?? "failed"
                    condition.unlock()
                    throw RedisFailure(kind: .nodeDown, address: address, message: "node is down (\(reason)); retrying at most every \(settings.reconnectIntervalMs) ms")
                }
            }
            if open < max(1, settings.connectionsPerNode) {
                open += 1
                let generation = self.generation
                condition.unlock()
                do {
                    let connection = try RedisConnection.connect(
                        host: endpoint.host, port: endpoint.port, connectTimeoutMs: settings.connectTimeoutMs,
                        commandTimeoutMs: settings.commandTimeoutMs, userName: settings.userName, password: settings.password)
                    connection.generation = generation
                    counters.connectionsOpened.add(1, ordering: .relaxed)
                    condition.lock()
                    downUntil = 0
                    condition.unlock()
                    return connection
                } catch {
                    condition.lock()
                    open -= 1
                    markDown(error)
                    condition.unlock()
                    throw error
                }
            }
            condition.wait()
        }
    }

    /// Returns a connection; `failure` (when it broke the connection) discards it and every other
    /// connection of the node and starts the back-off.
    func checkin(_ connection: RedisConnection, failure: RedisFailure?) {
        condition.lock()
        defer { condition.unlock() }
        if let failure, failure.breaksConnection || connection.isBroken {
            open -= 1
            markDown(failure)
            return
        }
        if connection.isBroken || connection.generation != generation {
            open -= 1
            condition.broadcast()
            return
        }
        idle.append(connection)
        condition.broadcast()
    }

    /// Whether the node is in its back-off now.
    var isDown: Bool {
        condition.lock()
        defer { condition.unlock() }
        return downUntil != 0 && DispatchTime.now().uptimeNanoseconds < downUntil
    }

    /// Closes every idle connection.
    func closeIdle() {
        condition.lock()
        open -= idle.count
        idle.removeAll()
        condition.unlock()
    }

    private func markDown(_ failure: RedisFailure) {
        generation += 1
        open -= idle.count
        idle.removeAll()
        lastFailure = failure
        downUntil = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, settings.reconnectIntervalMs)) * 1_000_000
        counters.connectionFailures.add(1, ordering: .relaxed)
        condition.broadcast()
    }
}

/// The outcome of one pipelined command: its reply, or why there is none. Error replies arrive as
/// `.failure` with kind `.server`.
enum RedisOutcome {
    case reply(RedisReplyView)
    case failure(RedisFailure)
}

/// A small Redis Cluster client over blocking hiredis connections: discovers the slot map with
/// `CLUSTER SLOTS` from any seed that answers, routes each command by its slot, pipelines many commands
/// on one connection, follows `MOVED` (and refreshes the map) and `ASK` (with `ASKING`) redirections, and
/// keeps a pool of connections per node. A server without cluster support is used as a single node that
/// owns every slot.
///
/// Never blocks longer than its timeouts: connects are bounded by `connectTimeoutMs`, every read and
/// write by `commandTimeoutMs`, and a node that failed is not retried for `reconnectIntervalMs`.
package final class RedisClusterClient: @unchecked Sendable {
    // @unchecked Sendable: `mapLock` guards `nodesByAddress`, `owners`, `mastersInMap` and `isStandalone`;
    // `refreshLock` serialises slot-map reloads and guards `lastRefresh`; `seeds`, `settings` and `counters`
    // (atomics) are immutable.
    let seeds: [RedisEndpoint]
    let settings: RedisClientSettings
    let counters = RedisClientCounters()
    /// Most redirections followed for one command.
    static let maxRedirects = 5

    private let mapLock = Lock()
    private var nodesByAddress: [String: RedisNode] = [:]
    /// Owner of each slot (nil while unknown).
    private var owners: [RedisNode?] = Array(repeating: nil, count: RedisClusterSlot.count)
    private var mastersInMap: [RedisNode] = []
    private(set) var isStandalone = false
    private let refreshLock = Lock()
    private var lastRefresh: UInt64 = 0

    /// Connects to the first seed that answers and loads the slot map.
    /// - Throws: ``RedisFailure`` when no seed answers (the message lists each seed's failure).
    package init(seeds: [RedisEndpoint], settings: RedisClientSettings) throws(RedisFailure) {
        self.seeds = seeds
        self.settings = settings
        BrokenPipeSignal.ignoreUnlessHandled()
        try refreshSlots(since: 0)
    }

    /// Closes every idle connection.
    package func close() {
        let nodes = mapLock.withLock { Array(nodesByAddress.values) }
        for node in nodes { node.closeIdle() }
    }

    // MARK: Slot map

    /// The node for `endpoint`, created on first use.
    func node(_ endpoint: RedisEndpoint) -> RedisNode {
        mapLock.withLock { nodeLocked(endpoint) }
    }

    private func nodeLocked(_ endpoint: RedisEndpoint) -> RedisNode {
        let key = endpoint.description
        if let node = nodesByAddress[key] { return node }
        let node = RedisNode(endpoint: endpoint, settings: settings, counters: counters)
        nodesByAddress[key] = node
        return node
    }

    /// The node serving `slot`, if the map knows one.
    package func owner(ofSlot slot: Int) -> RedisNode? { mapLock.withLock { owners[slot] } }

    /// The masters that own slots, in slot order.
    package var masters: [RedisNode] { mapLock.withLock { mastersInMap } }

    /// Reloads the slot map from the known masters, then the seeds, unless another thread reloaded it
    /// after `since` (a monotonic time in ns).
    func refreshSlots(since: UInt64) throws(RedisFailure) {
        refreshLock.lock()
        defer { refreshLock.unlock() }
        if since != 0 && lastRefresh > since { return }
        var candidates = masters.map(\.endpoint).filter { !node($0).isDown }
        for seed in seeds where !candidates.contains(seed) { candidates.append(seed) }
        for node in masters.map(\.endpoint) where !candidates.contains(node) { candidates.append(node) }
        var failures: [String] = []
        for candidate in candidates {
            do {
                try loadSlots(from: candidate)
                lastRefresh = DispatchTime.now().uptimeNanoseconds
                counters.slotMapRefreshes.add(1, ordering: .relaxed)
                return
            } catch {
                failures.append(error.description)
            }
        }
        throw RedisFailure(kind: .connect, address: candidates.map(\.description).joined(separator: ","),
                           message: "no node answered CLUSTER SLOTS: " + failures.joined(separator: "; "))
    }

    private func loadSlots(from endpoint: RedisEndpoint) throws(RedisFailure) {
        let source = node(endpoint)
        let reply = try command(on: source, ["CLUSTER", "SLOTS"])
        var ranges: [(start: Int, end: Int, endpoint: RedisEndpoint)] = []
        var standalone = false
        switch reply {
        case .error(let text) where text.contains("cluster support disabled"):
            standalone = true
            ranges = [(0, RedisClusterSlot.count - 1, endpoint)]
        case .error(let text):
            throw RedisFailure(kind: .server, address: endpoint.description, message: "CLUSTER SLOTS: \(text)")
        case .array(let entries):
            for entry in entries {
                guard case .array(let fields) = entry, fields.count >= 3,
                    case .integer(let start) = fields[0], case .integer(let end) = fields[1],
                    case .array(let master) = fields[2], master.count >= 2, case .integer(let port) = master[1],
                    start >= 0, end < RedisClusterSlot.count, start <= end
                else {
                    throw RedisFailure(kind: .protocolError, address: endpoint.description, message: "unexpected CLUSTER SLOTS entry \(entry)")
                }
                var host = master[0].text ?? ""
                if host.isEmpty || host == "?" { host = endpoint.host }
                ranges.append((start, end, RedisEndpoint(host: host, port: port)))
            }
        default:
            throw RedisFailure(kind: .protocolError, address: endpoint.description, message: "unexpected CLUSTER SLOTS reply \(reply)")
        }
        guard !ranges.isEmpty else {
            throw RedisFailure(kind: .server, address: endpoint.description, message: "the node knows no slot owners (cluster not created yet?)")
        }
        mapLock.withLock {
            var newOwners = [RedisNode?](repeating: nil, count: RedisClusterSlot.count)
            var masters: [RedisNode] = []
            for range in ranges.sorted(by: { $0.start < $1.start }) {
                let owner = nodeLocked(range.endpoint)
                if !masters.contains(where: { $0 === owner }) { masters.append(owner) }
                for slot in range.start...range.end { newOwners[slot] = owner }
            }
            owners = newOwners
            mastersInMap = masters
            isStandalone = standalone
        }
    }

    // MARK: Commands

    /// Sends one command to `node` and returns its reply, copied (error replies as `.error`).
    func command(on node: RedisNode, _ args: [String]) throws(RedisFailure) -> RedisValue {
        let connection = try node.checkout()
        do {
            let value = try connection.command(args)
            node.checkin(connection, failure: nil)
            return value
        } catch {
            node.checkin(connection, failure: error)
            throw error
        }
    }

    /// Pipelines `count` commands for keys of `slot`: `build(i, connection)` appends command `i`,
    /// `handle(i, outcome)` receives its reply or failure, exactly once per command, in order of `i` on
    /// the first attempt. Commands redirected with MOVED or ASK are sent again to the named node (the
    /// slot map is refreshed after MOVED). Never throws: failures reach `handle`.
    func pipeline(
        slot: Int, count: Int,
        build: (Int, RedisConnection) -> Void,
        handle: (Int, RedisOutcome) -> Void
    ) {
        guard count > 0 else { return }
        var target: RedisNode
        if let owner = owner(ofSlot: slot) {
            target = owner
        } else {
            do {
                try refreshSlots(since: DispatchTime.now().uptimeNanoseconds)
            } catch {
                for i in 0..<count { handle(i, .failure(error)) }
                return
            }
            guard let owner = owner(ofSlot: slot) else {
                let failure = RedisFailure(kind: .server, address: "cluster", message: "no node serves slot \(slot)")
                for i in 0..<count { handle(i, .failure(failure)) }
                return
            }
            target = owner
        }
        var pending: [Int]? = nil  // nil: all of 0..<count
        var asking = false
        for attempt in 0...Self.maxRedirects {
            var redirected: [Int] = []
            var redirect: (moved: Bool, slot: Int, endpoint: RedisEndpoint)? = nil
            let observed = DispatchTime.now().uptimeNanoseconds
            send(to: target, pending: pending, count: count, asking: asking, build: build) { i, outcome in
                if case .failure(let failure) = outcome, failure.kind == .server,
                    let parsed = Self.parseRedirect(failure.message, defaultHost: target.endpoint.host)
                {
                    redirected.append(i)
                    redirect = parsed
                } else {
                    handle(i, outcome)
                }
            }
            guard let redirect, !redirected.isEmpty else { return }
            if attempt == Self.maxRedirects {
                let failure = RedisFailure(kind: .server, address: target.address, message: "more than \(Self.maxRedirects) redirections for slot \(slot)")
                for i in redirected { handle(i, .failure(failure)) }
                return
            }
            counters.redirects.add(redirected.count, ordering: .relaxed)
            target = node(redirect.endpoint)
            asking = !redirect.moved
            if redirect.moved {
                mapLock.withLock { owners[redirect.slot] = target }
                // Reload the whole map once (other slots most likely moved too); a failure keeps the
                // single-slot update.
                try? refreshSlots(since: observed)
            }
            pending = redirected
        }
    }

    /// Pipelines `count` commands on `node` without redirections (per-node commands such as SCAN).
    func pipeline(node: RedisNode, count: Int, build: (Int, RedisConnection) -> Void, handle: (Int, RedisOutcome) -> Void) {
        guard count > 0 else { return }
        send(to: node, pending: nil, count: count, asking: false, build: build, handle: handle)
    }

    private static let askingArgument: StaticString = "ASKING"

    /// One round: checkout, append every pending command (each after ASKING when `asking`), read every
    /// reply, checkin.
    private func send(
        to node: RedisNode, pending: [Int]?, count: Int, asking: Bool,
        build: (Int, RedisConnection) -> Void, handle: (Int, RedisOutcome) -> Void
    ) {
        let connection: RedisConnection
        do {
            connection = try node.checkout()
        } catch {
            if let pending { for i in pending { handle(i, .failure(error)) } } else { for i in 0..<count { handle(i, .failure(error)) } }
            return
        }
        func forEachPending(_ body: (Int) -> Void) {
            if let pending { for i in pending { body(i) } } else { for i in 0..<count { body(i) } }
        }
        forEachPending { i in
            if asking {
                connection.append(argc: 1) { argv, lengths in
                    argv[0] = UnsafeRawPointer(Self.askingArgument.utf8Start).assumingMemoryBound(to: CChar.self)
                    lengths[0] = Self.askingArgument.utf8CodeUnitCount
                }
            }
            build(i, connection)
        }
        var broken: RedisFailure? = nil
        forEachPending { i in
            if let broken {
                handle(i, .failure(broken))
                return
            }
            do throws(RedisFailure) {
                if asking { try connection.readReply { _ in () } }
                try connection.readReply { reply in
                    if reply.isError {
                        handle(i, .failure(RedisFailure(kind: .server, address: node.address, message: reply.text)))
                    } else {
                        handle(i, .reply(reply))
                    }
                }
            } catch {
                broken = error
                handle(i, .failure(error))
            }
        }
        node.checkin(connection, failure: broken)
    }

    /// `MOVED <slot> <host:port>` or `ASK <slot> <host:port>` → (moved, slot, endpoint).
    static func parseRedirect(_ message: String, defaultHost: String) -> (moved: Bool, slot: Int, endpoint: RedisEndpoint)? {
        let parts = message.split(separator: " ")
        guard parts.count == 3, parts[0] == "MOVED" || parts[0] == "ASK", let slot = Int(parts[1]),
            (0..<RedisClusterSlot.count).contains(slot), let colon = parts[2].lastIndex(of: ":"),
            let port = Int(parts[2][parts[2].index(after: colon)...])
        else { return nil }
        var host = String(parts[2][..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { host = defaultHost }
        return (parts[0] == "MOVED", slot, RedisEndpoint(host: host, port: port))
    }
}
