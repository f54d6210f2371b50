import Dispatch
import HPS
import HPSRedis
import Synchronization

/// A throw-away Redis Cluster on 127.0.0.1 for tests and benchmarks: `nodes` `redis-server` processes
/// (masters, no replicas) on free ports, joined with `redis-cli --cluster create`, data in memory only.
///
/// ```swift
/// let cluster = try LocalRedisCluster()
/// defer { cluster.shutdown() }
/// var config = VolatileDatabaseConfig()
/// config.type = .redisCluster
/// config.address = cluster.address
/// ```
///
/// Each node runs with `--cluster-require-full-coverage no`, so when one node is stopped the others go on
/// serving their slots (as a production cluster with that setting would). A stopped node can be
/// restarted on the same port and directory; its `nodes-<port>.conf` keeps its identity and slots.
/// Needs `redis-server` and `redis-cli` on `PATH` (Debian: `redis-server`, which pulls in `redis-tools`).
public final class LocalRedisCluster: @unchecked Sendable {
    // @unchecked Sendable: `lock` guards `pids` and `stopped`; `ports` changes only while `init` and `restart` run,
    // which the owner (a test) calls from one thread; the rest is immutable after init.
    /// The nodes' ports, in order.
    public private(set) var ports: [Int]
    /// The temporary directory holding each node's `nodes-<port>.conf` and `redis-<port>.log`.
    public let directory: String
    /// The seed list for `volatile_db.address`: every node, comma-separated.
    public var address: String { ports.map { "127.0.0.1:\($0)" }.joined(separator: ",") }
    private let password: String
    private let extraArguments: [String]
    private let lock = Lock()
    private var pids: [Int32?]
    private var stopped = false

    /// Whether `redis-server` and `redis-cli` are on `PATH`.
    public static var isAvailable: Bool { ProcessNative.isOnPath("redis-server") && ProcessNative.isOnPath("redis-cli") }

    /// Starts the nodes, creates the cluster and waits until every node reports `cluster_state:ok`.
    ///
    /// - Parameters:
    ///   - nodes: masters to start (at least 3, Redis Cluster's minimum for `--cluster create`).
    ///   - password: when not empty, `requirepass` for every node.
    ///   - extraArguments: more `redis-server` options (e.g. `["--maxmemory", "1gb"]`).
    ///   - timeoutMs: how long to wait for the cluster to form.
    /// - Throws: ``HPSError`` `.unsupported` when the binaries are missing; `.database` with the tail of
    ///   the failing process's log otherwise. Nothing is left running when it throws.
    public init(nodes: Int = 3, password: String = "", extraArguments: [String] = [], timeoutMs: Int = 30_000) throws {
        guard Self.isAvailable else {
            throw HPSError(.unsupported, subject: "redis-server", "redis-server and redis-cli must be on PATH (Debian package redis-server)")
        }
        guard nodes >= 3 else { throw HPSError(.invalidArgument, subject: "nodes", "a Redis Cluster needs at least 3 masters, not \(nodes)") }
        self.password = password
        self.extraArguments = extraArguments
        do {
            directory = try ProcessNative.makeTemporaryDirectory(base: SystemInfo.temporaryDirectory, prefix: "hps-redis-")
        } catch {
            throw HPSError(.io, subject: SystemInfo.temporaryDirectory, "cannot create a directory for the Redis nodes", cause: error)
        }
        ports = Self.freePorts(nodes)
        pids = Array(repeating: nil, count: nodes)
        // Another process may take a port between the check and the server's bind: then start over on
        // other ports (a node that cannot bind exits at once).
        for attempt in 1...3 {
            do {
                for i in 0..<nodes { try start(i) }
                for i in 0..<nodes { try waitForPing(i, timeoutMs: timeoutMs) }
                try createCluster(timeoutMs: timeoutMs)
                try waitUntilReady(timeoutMs: timeoutMs)
                return
            } catch let error as HPSError {
                stopNodes()
                let portTaken = error.underlying?.contains("Address already in use") == true
                if attempt == 3 || !portTaken {
                    shutdown()
                    throw error
                }
                for name in ProcessNative.listDirectory(directory) { FileTree.remove("\(directory)/\(name)") }
                ports = Self.freePorts(nodes)
            }
        }
    }

    deinit { shutdown() }

    /// `127.0.0.1:<port>` of node `i`.
    public func address(ofNode i: Int) -> String { "127.0.0.1:\(ports[i])" }

    /// The process id of node `i` while it runs.
    public func pid(ofNode i: Int) -> Int32? { lock.withLock { pids[i] } }

    // MARK: Node control

    /// Kills node `i` at once (SIGKILL), as a crash would.
    public func kill(node i: Int) {
        guard let pid = lock.withLock({ pids[i] }) else { return }
        ProcessNative.signal(pid, ProcessNative.killSignal)
        reap(pid, graceMs: 5000)
        lock.withLock { pids[i] = nil }
    }

    /// Freezes node `i` (SIGSTOP): it keeps its connections but answers nothing, as a hung host would.
    public func pause(node i: Int) {
        if let pid = lock.withLock({ pids[i] }) { ProcessNative.signal(pid, ProcessNative.stopSignal) }
    }

    /// Resumes a paused node (SIGCONT).
    public func resume(node i: Int) {
        if let pid = lock.withLock({ pids[i] }) { ProcessNative.signal(pid, ProcessNative.continueSignal) }
    }

    /// Starts node `i` again on its port and directory (after ``kill(node:)``); it rejoins with the
    /// slots its `nodes.conf` records, with no data. Waits until every node reports `cluster_state:ok`.
    /// - Throws: ``HPSError`` `.database` with the tail of the node's log when it does not start or the cluster does
    ///   not become ready within `timeoutMs`.
    public func restart(node i: Int, timeoutMs: Int = 30_000) throws {
        try start(i)
        try waitForPing(i, timeoutMs: timeoutMs)
        try waitUntilReady(timeoutMs: timeoutMs)
    }

    /// Sends one command to node `i` (no redirections) and returns its reply.
    /// - Throws: ``HPSError`` `.database` naming the node when the command cannot be sent or answered (the
    ///   connection's error as `cause`).
    public func command(node i: Int, _ args: [String]) throws -> RedisValue {
        do {
            let connection = try RedisConnection.connect(
                host: "127.0.0.1", port: ports[i], connectTimeoutMs: 2000, commandTimeoutMs: 10_000, password: password)
            return try connection.command(args)
        } catch {
            throw HPSError(.database, subject: address(ofNode: i), "command \(args.first ?? "") failed", cause: error)
        }
    }

    /// Sends one command of binary arguments to node `i` and returns its reply.
    /// - Throws: ``HPSError`` `.database` naming the node when the command cannot be sent or answered (the
    ///   connection's error as `cause`).
    public func command(node i: Int, bytes args: [[UInt8]]) throws -> RedisValue {
        do {
            let connection = try RedisConnection.connect(
                host: "127.0.0.1", port: ports[i], connectTimeoutMs: 2000, commandTimeoutMs: 10_000, password: password)
            return try connection.command(bytes: args)
        } catch {
            throw HPSError(.database, subject: address(ofNode: i), "command failed", cause: error)
        }
    }

    /// `FLUSHALL` on every running node.
    /// - Throws: ``HPSError`` `.database` naming the first node that fails.
    public func flushAll() throws {
        for i in ports.indices where pid(ofNode: i) != nil { _ = try command(node: i, ["FLUSHALL"]) }
    }

    /// The cluster node id of node `i`.
    /// - Throws: ``HPSError`` `.database` naming the node when `CLUSTER MYID` fails or returns no id.
    public func nodeID(_ i: Int) throws -> String {
        guard let id = try command(node: i, ["CLUSTER", "MYID"]).text else {
            throw HPSError(.database, subject: address(ofNode: i), "CLUSTER MYID returned no id")
        }
        return id
    }

    /// Waits until every running node reports `cluster_state:ok`, knows all nodes, and has every slot
    /// assigned.
    /// - Throws: ``HPSError`` `.database` saying what was missing when the cluster is not ready within `timeoutMs`.
    public func waitUntilReady(timeoutMs: Int = 30_000) throws {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutMs) * 1_000_000
        var last = ""
        while true {
            var ready = true
            for i in ports.indices where pid(ofNode: i) != nil {
                let info = (try? command(node: i, ["CLUSTER", "INFO"]))?.text ?? ""
                if !(info.contains("cluster_state:ok") && info.contains("cluster_slots_assigned:16384")
                    && info.contains("cluster_known_nodes:\(ports.count)"))
                {
                    ready = false
                    last = "\(address(ofNode: i)): " + info.split(separator: "\r\n").prefix(3).joined(separator: " ")
                    break
                }
            }
            if ready { return }
            if DispatchTime.now().uptimeNanoseconds > deadline {
                throw HPSError(.database, subject: "redis cluster", "not ready within \(timeoutMs) ms", underlying: last)
            }
            ProcessNative.sleep(milliseconds: 50)
        }
    }

    /// Stops every node (SIGTERM, then SIGKILL after 5 s) and removes the directory. Safe to call twice.
    public func shutdown() {
        let first: Bool = lock.withLock {
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        stopNodes()
        FileTree.remove(directory)
    }

    /// Stops every running node (SIGTERM, then SIGKILL after 5 s).
    private func stopNodes() {
        let running: [Int32] = lock.withLock {
            let list = pids.compactMap { $0 }
            pids = pids.map { _ in nil }
            return list
        }
        for pid in running {
            ProcessNative.signal(pid, ProcessNative.continueSignal)
            ProcessNative.signal(pid, ProcessNative.terminate)
        }
        for pid in running { reap(pid, graceMs: 5000) }
    }

    // MARK: Helpers

    private func start(_ i: Int) throws {
        let port = ports[i]
        var arguments = [
            "redis-server", "--port", "\(port)", "--bind", "127.0.0.1", "--daemonize", "no",
            "--cluster-enabled", "yes", "--cluster-config-file", "\(directory)/nodes-\(port).conf",
            "--cluster-require-full-coverage", "no", "--cluster-node-timeout", "5000",
            "--dir", directory, "--save", "", "--appendonly", "no", "--protected-mode", "no",
        ]
        if !password.isEmpty { arguments += ["--requirepass", password, "--masterauth", password] }
        arguments += extraArguments
        do {
            let pid = try ProcessNative.spawn(arguments, logPath: "\(directory)/redis-\(port).log")
            lock.withLock { pids[i] = pid }
        } catch {
            throw HPSError(.database, subject: "redis-server", "cannot start a node on port \(port)", cause: error)
        }
    }

    private func waitForPing(_ i: Int, timeoutMs: Int) throws {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutMs) * 1_000_000
        while true {
            // The answer must come from our process (not another server that took the port first).
            if let reply = try? command(node: i, ["CONFIG", "GET", "cluster-config-file"]),
                case .array(let items) = reply, items.count == 2
            {
                guard items[1].text == "\(directory)/nodes-\(ports[i]).conf" else {
                    throw HPSError(.database, subject: address(ofNode: i), "another Redis server answers on this port",
                                   underlying: "Address already in use")
                }
                return
            }
            if let pid = pid(ofNode: i), ProcessNative.poll(pid) != nil {
                lock.withLock { pids[i] = nil }
                throw HPSError(.database, subject: address(ofNode: i), "redis-server exited at start",
                               underlying: ProcessNative.readTail("\(directory)/redis-\(ports[i]).log"))
            }
            if DispatchTime.now().uptimeNanoseconds > deadline {
                throw HPSError(.database, subject: address(ofNode: i), "redis-server did not answer within \(timeoutMs) ms",
                               underlying: ProcessNative.readTail("\(directory)/redis-\(ports[i]).log"))
            }
            ProcessNative.sleep(milliseconds: 20)
        }
    }

    private func createCluster(timeoutMs: Int) throws {
        var arguments = ["redis-cli", "--cluster", "create"] + ports.map { "127.0.0.1:\($0)" } + ["--cluster-replicas", "0", "--cluster-yes"]
        if !password.isEmpty { arguments += ["-a", password, "--no-auth-warning"] }
        let log = "\(directory)/cluster-create.log"
        let pid: Int32
        do {
            pid = try ProcessNative.spawn(arguments, logPath: log)
        } catch {
            throw HPSError(.database, subject: "redis-cli", "cannot run redis-cli --cluster create", cause: error)
        }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutMs) * 1_000_000
        while true {
            if let status = ProcessNative.poll(pid) {
                guard status == 0 else {
                    throw HPSError(.database, subject: "redis-cli --cluster create", "exited with status \(status)", underlying: ProcessNative.readTail(log))
                }
                return
            }
            if DispatchTime.now().uptimeNanoseconds > deadline {
                ProcessNative.signal(pid, ProcessNative.killSignal)
                reap(pid, graceMs: 2000)
                throw HPSError(.database, subject: "redis-cli --cluster create", "did not finish within \(timeoutMs) ms", underlying: ProcessNative.readTail(log))
            }
            ProcessNative.sleep(milliseconds: 20)
        }
    }

    /// Waits for `pid` to exit, escalating to SIGKILL after `graceMs`.
    private func reap(_ pid: Int32, graceMs: Int) {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(graceMs) * 1_000_000
        var killed = false
        while ProcessNative.poll(pid) == nil {
            if !killed && DispatchTime.now().uptimeNanoseconds > deadline {
                ProcessNative.signal(pid, ProcessNative.killSignal)
                killed = true
            }
            ProcessNative.sleep(milliseconds: 5)
        }
    }

    /// `count` ports whose cluster bus ports (+10000) are free too, from 20000…39999, starting at a point
    /// that differs per process; clusters of one process never share a candidate.
    private static func freePorts(_ count: Int) -> [Int] {
        var ports: [Int] = []
        while ports.count < count {
            let candidate = 20000 + (nextPort.add(1, ordering: .relaxed).newValue % 20000)
            if ProcessNative.canBind(port: candidate) && ProcessNative.canBind(port: candidate + 10000) { ports.append(candidate) }
        }
        return ports
    }

    private static let nextPort = Atomic<Int>(Int((DispatchTime.now().uptimeNanoseconds / 1000 &+ UInt64(ProcessNative.processID) &* 7919) % 20000))
}
