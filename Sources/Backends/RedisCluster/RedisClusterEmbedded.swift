import KilnCore
import KilnRedis

#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// An embedded Redis Cluster on loopback: one `redis-server --cluster-enabled yes` per node (each binding its own
/// address, with `--bind-source-addr` so the cluster bus connects from it too — without it `redis-cli --cluster
/// create` waits forever on a non-default loopback address), created once with `redis-cli --cluster create
/// --cluster-replicas N --cluster-yes`. Each node keeps `nodes.conf`, its pid file and its log in
/// `<directory>/<host>-<port>/`, so a killed node restarted by `launch` rejoins the cluster (as a replica of
/// whoever took over its slots).
///
/// Guarantees: `start` returns only when every node answers `cluster_state:ok` and every master has its replicas in
/// `CLUSTER SLOTS`; `stop` ends every node it finds a pid file for (SIGTERM, SIGKILL after 5 s) and returns when
/// they are gone. Blocking; not for the cooperative pool.
public struct RedisClusterEmbedded: Sendable {
    public let settings: RedisClusterSettings
    /// Where the nodes' directories are (`$KILN_STACK_DIR/redis-cluster`).
    public let directory: String
    public var nodes: [HostPort] { settings.seeds }

    public init(settings: RedisClusterSettings, directory: String) {
        self.settings = settings
        self.directory = directory
    }

    public struct LaunchError: Error, CustomStringConvertible {
        public var node: String
        public var reason: String
        public var description: String { "redis-cluster node \(node): \(reason)" }
    }

    /// Starts every node that is not running, creates the cluster if no node knows another, and waits until it is
    /// healthy (`timeout`).
    public func start(timeout: Duration = .seconds(30)) throws {
        for node in nodes where !isRunning(node) { try launch(node) }
        try create(timeout: timeout)
    }

    /// Once every node answers: `redis-cli --cluster create` when no node knows another (a fresh cluster; a
    /// restarted one keeps its nodes.conf), then waits until the cluster is healthy (`timeout`). Idempotent.
    public func create(timeout: Duration = .seconds(30)) throws {
        let fresh = nodes.allSatisfy { node in
            (try? Self.info(node))?["cluster_known_nodes"] == "1"
        }
        if fresh {
            let status = try Self.run(
                "redis-cli",
                ["--cluster", "create"] + nodes.map(\.description)
                    + ["--cluster-replicas", String(settings.replicasPerMaster), "--cluster-yes"])
            guard status == 0 else { throw LaunchError(node: "all", reason: "redis-cli --cluster create exited \(status)") }
        }
        guard waitUntilHealthy(timeout: timeout) else {
            throw LaunchError(node: "all", reason: "cluster not ok with every master replicated within \(timeout)")
        }
    }

    /// The `redis-server` arguments of one node keeping its files in `directory` (in the foreground; `launch` adds
    /// `--daemonize yes` and a pid file).
    public static func serverArguments(_ node: HostPort, directory: String, settings: RedisClusterSettings) -> [String] {
        let parts = settings.nodeTimeout.components
        let timeoutMillis = Int(parts.seconds) * 1000 + Int(parts.attoseconds / 1_000_000_000_000_000)
        return [
            "--port", String(node.port), "--bind", node.host, "--bind-source-addr", node.host,
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", String(max(100, timeoutMillis)), "--dir", directory,
            "--save", "", "--appendonly", "no", "--protected-mode", "no", "--repl-diskless-sync-delay", "0",
        ]
    }

    /// Starts one node's `redis-server` (daemonized) and waits until it answers PING (5 s).
    public func launch(_ node: HostPort) throws {
        let dir = directory(of: node)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let status = try Self.run(
            "redis-server",
            Self.serverArguments(node, directory: dir, settings: settings)
                + ["--daemonize", "yes", "--pidfile", "\(dir)/redis.pid", "--logfile", "\(dir)/redis.log"])
        guard status == 0 else { throw LaunchError(node: node.description, reason: "redis-server exited \(status)") }
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            if (try? Self.probe(node, timeoutSeconds: 1)) != nil { return }
            usleep(50_000)
        }
        throw LaunchError(node: node.description, reason: "no PING answer within 5 s (see \(dir)/redis.log)")
    }

    /// What a cluster node does now, from its own `ROLE` (`master`, `slave`); throws while it does not answer.
    public static func probe(_ node: HostPort, timeoutSeconds: Int) throws -> String {
        let connection = try RedisConnection(host: node.host, port: node.port, timeoutSeconds: Double(max(1, timeoutSeconds)))
        defer { connection.close() }
        guard let role = try connection.command(["ROLE"]).array?.first?.string else {
            throw LaunchError(node: node.description, reason: "unexpected ROLE reply")
        }
        return role
    }

    /// SIGKILLs one node (a crash: nothing flushed, no goodbye to the cluster) and waits until it is gone.
    public func kill(_ node: HostPort) throws {
        guard let pid = pid(of: node), Glibc.kill(pid, 0) == 0 else {
            throw LaunchError(node: node.description, reason: "not running")
        }
        _ = Glibc.kill(pid, SIGKILL)
        waitGone(pid, for: .seconds(5))
    }

    /// Ends every node (SIGTERM, SIGKILL after 5 s). Never throws: a node already gone is fine.
    public func stop() {
        var pids: [pid_t] = []
        for node in nodes {
            if let pid = pid(of: node), Glibc.kill(pid, 0) == 0, Glibc.kill(pid, SIGTERM) == 0 { pids.append(pid) }
        }
        for pid in pids {
            waitGone(pid, for: .seconds(5))
            if Glibc.kill(pid, 0) == 0 {
                _ = Glibc.kill(pid, SIGKILL)
                waitGone(pid, for: .seconds(2))
            }
        }
    }

    /// Stops every node and deletes their directories (cluster state included): the next `start` creates anew.
    public func destroy() {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public func isRunning(_ node: HostPort) -> Bool {
        guard let pid = pid(of: node) else { return false }
        return Glibc.kill(pid, 0) == 0
    }

    /// The pid in the node's pid file (nil when there is none).
    public func pid(of node: HostPort) -> pid_t? {
        guard let text = try? String(contentsOfFile: "\(directory(of: node))/redis.pid", encoding: .utf8) else {
            return nil
        }
        return pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    public func directory(of node: HostPort) -> String { "\(directory)/\(node.host)-\(node.port)" }

    /// Healthy: every node answers `cluster_state:ok`, and every master has `replicasPerMaster` replicas in the
    /// slot map a node reports.
    public func isHealthy() -> Bool {
        for node in nodes {
            guard (try? Self.info(node))?["cluster_state"] == "ok" else { return false }
        }
        guard let connection = try? RedisConnection(host: nodes[0].host, port: nodes[0].port, timeoutSeconds: 1)
        else { return false }
        defer { connection.close() }
        guard let reply = try? connection.command(["CLUSTER", "SLOTS"]),
            let topology = try? RedisClusterTopology(clusterSlotsReply: reply, askedNode: nodes[0])
        else { return false }
        return topology.coveredSlots == RedisClusterSlot.count
            && topology.ranges.allSatisfy { $0.replicas.count >= settings.replicasPerMaster }
    }

    public func waitUntilHealthy(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if isHealthy() { return true }
            usleep(100_000)
        }
        return isHealthy()
    }

    /// `CLUSTER INFO` of one node as fields.
    public static func info(_ node: HostPort) throws -> [String: String] {
        let connection = try RedisConnection(host: node.host, port: node.port, timeoutSeconds: 1)
        defer { connection.close() }
        let text = try connection.command(["CLUSTER", "INFO"]).string ?? ""
        var fields: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        return fields
    }

    private func waitGone(_ pid: pid_t, for duration: Duration) {
        let deadline = ContinuousClock.now + duration
        while Glibc.kill(pid, 0) == 0, ContinuousClock.now < deadline { usleep(20_000) }
    }

    /// Runs a program found on PATH to its end (posix_spawnp + waitpid: Foundation's `Process` can hang waiting for
    /// a child that daemonizes), with stdin, stdout and stderr on /dev/null; returns its exit status (-1 when
    /// it did not exit normally).
    private static func run(_ program: String, _ arguments: [String]) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for descriptor: Int32 in [0, 1, 2] {
            posix_spawn_file_actions_addopen(&actions, descriptor, "/dev/null", descriptor == 0 ? O_RDONLY : O_WRONLY, 0)
        }
        let argv: [UnsafeMutablePointer<CChar>?] = ([program] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, program, &actions, nil, argv, environ)
        guard spawned == 0 else {
            throw LaunchError(node: "-", reason: "cannot run \(program): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { return -1 }
        }
        // WIFEXITED / WEXITSTATUS
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : -1
    }
}
