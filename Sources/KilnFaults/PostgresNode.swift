import Foundation
import KilnStores
import KilnCore
import KilnPostgres
import KilnStack

#if canImport(Glibc)
    import Glibc
#endif

/// One PostgreSQL server on this machine: its data directory, address and log, and the pg_ctl calls a failover
/// needs. The server programs run as the `postgres` user (PostgreSQL refuses root), like `kiln stack up` runs them.
/// Every call blocks the calling thread (pg_ctl waits, libpq connects) — never call from Swift's cooperative pool.
public struct PostgresNode: Sendable {
    public var name: String
    public var endpoint: HostPort
    public var dataDirectory: URL
    public var log: URL
    /// The database probes connect to (they write only to `kiln_fault_probe` there).
    public var probeDatabase: String
    public var user: String
    /// Server options after address and port, e.g. `-c max_wal_size=4GB`.
    public var extraOptions: String
    public var binDirectory: String
    /// The libfaketime offset file the server starts with when it exists (`FaketimeClock`); nil: never.
    public var clock: FaketimeClock?
    /// The network namespace the server runs in on a hosts stack (its address exists only there): pg_ctl and
    /// pg_basebackup run inside it. Nil on the loopback stack.
    public var host: NetworkHost?

    public init(
        name: String, endpoint: HostPort, dataDirectory: URL, log: URL, probeDatabase: String = "postgres",
        user: String = "postgres", extraOptions: String = "", binDirectory: String = "/usr/lib/postgresql/15/bin"
    ) {
        self.name = name
        self.endpoint = endpoint
        self.dataDirectory = dataDirectory
        self.log = log
        self.probeDatabase = probeDatabase
        self.user = user
        self.extraOptions = extraOptions
        self.binDirectory = binDirectory
    }

    /// Server `name` (`postgres-primary`, `postgres-replica`) of the embedded stack, started with the same options
    /// as `kiln stack up` starts it.
    public static func embedded(_ name: String, of stack: EmbeddedStack) throws -> PostgresNode {
        guard let server = stack.servers.first(where: { $0.name == name }),
            server.kind == .postgresPrimary || server.kind == .postgresReplica
        else {
            throw ProcessFaultError("the embedded stack has no PostgreSQL server \(name)")
        }
        var node = PostgresNode(
            name: name, endpoint: server.endpoint, dataDirectory: server.postgresData, log: server.log,
            user: stack.definition.postgres.user,
            extraOptions: "-c max_wal_size=4GB -c checkpoint_timeout=15min -c shared_buffers=6GB")
        node.clock = FaketimeClock(serverDirectory: server.directory)
        node.host = stack.hosts[name]
        return node
    }

    public func program(_ name: String) -> String { "\(binDirectory)/\(name)" }

    /// Address, port and no Unix socket on the command line, so a copy of another node's data directory serves
    /// this node's address.
    var serverOptions: String {
        "-c listen_addresses=\(endpoint.host) -p \(endpoint.port) -c unix_socket_directories='' \(extraOptions)"
    }

    /// `pg_ctl start -w`: returns once the server accepts connections (a standby once it is consistent).
    public func start(timeout: Duration = .seconds(60)) throws {
        // A crashed postmaster stays a zombie until its parent (init) reaps it, and PostgreSQL's lock-file check
        // (kill(pid, 0)) would take it for a running server: wait up to 5 s for the reaping.
        if let text = try? String(contentsOf: dataDirectory.appendingPathComponent("postmaster.pid"), encoding: .utf8),
            let first = text.split(separator: "\n").first, let old = pid_t(first.trimmingCharacters(in: .whitespaces)),
            !LocalProcess.isAlive(old)
        {
            let deadline = ContinuousClock.now + .seconds(5)
            while kill(old, 0) == 0 && ContinuousClock.now < deadline { usleep(10_000) }
        }
        try LocalProcess.run(
            program("pg_ctl"),
            [
                "-D", dataDirectory.path, "-l", log.path, "-w", "-t", String(timeout.components.seconds), "-o",
                serverOptions, "start",
            ], user: "postgres", environment: clock?.environment ?? [], host: host)
    }

    /// `pg_ctl stop -m fast`: a clean shutdown; a primary first sends all its WAL to connected standbys.
    public func stopGracefully(timeout: Duration = .seconds(30)) throws {
        try LocalProcess.run(
            program("pg_ctl"),
            ["-D", dataDirectory.path, "-m", "fast", "-w", "-t", String(timeout.components.seconds), "stop"],
            user: "postgres", host: host)
    }

    /// SIGKILL of the postmaster and every child (backends, walsenders) in one pass: a crash, nothing flushed or
    /// sent after it. Returns once all of them are gone (false when one survived 5 s).
    @discardableResult
    public func crash() -> Bool {
        guard let pid = postmasterPID() else { return true }
        // Stopped first, so it forks no child between the listing and the kill.
        kill(pid, SIGSTOP)
        let children = Self.childPIDs(of: pid)
        kill(pid, SIGKILL)
        for child in children { kill(child, SIGKILL) }
        return ([pid] + children).allSatisfy { LocalProcess.waitForExit($0, within: .seconds(5)) }
    }

    /// `pg_ctl promote -w`: returns once the standby has left recovery.
    public func promote(timeout: Duration = .seconds(60)) throws {
        try LocalProcess.run(
            program("pg_ctl"), ["-D", dataDirectory.path, "-w", "-t", String(timeout.components.seconds), "promote"],
            user: "postgres", host: host)
    }

    /// The live postmaster's pid from `postmaster.pid`, nil when none runs.
    public func postmasterPID() -> pid_t? {
        let file = dataDirectory.appendingPathComponent("postmaster.pid")
        guard let text = try? String(contentsOf: file, encoding: .utf8),
            let first = text.split(separator: "\n").first, let pid = pid_t(first.trimmingCharacters(in: .whitespaces)),
            LocalProcess.isAlive(pid)
        else { return nil }
        return pid
    }

    /// The postmaster's children whose title contains `title` (e.g. `walsender`).
    public func children(titled title: String) -> [pid_t] {
        guard let pid = postmasterPID() else { return [] }
        return Self.childPIDs(of: pid).filter { LocalProcess.commandLine($0)?.contains(title) == true }
    }

    static func childPIDs(of parent: pid_t) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { pid_t($0) }.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && pid_t(fields[1]) == parent
        }
    }

    /// `standby.signal` in the data directory: were this server restarted it would come up read-only.
    public var isFenced: Bool {
        FileManager.default.fileExists(atPath: dataDirectory.appendingPathComponent("standby.signal").path)
    }

    /// Writes `standby.signal` (as the postgres user), so no restart of this data directory — by a fault's
    /// teardown, `kiln stack up` or a person — makes it a second writable primary.
    public func fence() throws {
        try LocalProcess.run(
            "/usr/bin/touch", [dataDirectory.appendingPathComponent("standby.signal").path],
            user: "postgres", host: host)
    }

    public func unfence() throws {
        let signal = dataDirectory.appendingPathComponent("standby.signal")
        if FileManager.default.fileExists(atPath: signal.path) { try FileManager.default.removeItem(at: signal) }
    }

    /// Replaces the data directory with a `pg_basebackup -R` of `source` and starts it: a streaming replica of
    /// `source` on this node's address. The old data (a fenced former primary) is deleted.
    public func rebuild(asReplicaOf source: PostgresNode, timeout: Duration = .seconds(120)) throws {
        if postmasterPID() != nil { try stopGracefully() }
        try? FileManager.default.removeItem(at: dataDirectory)
        try LocalProcess.run(
            program("pg_basebackup"),
            [
                "-h", source.endpoint.host, "-p", String(source.endpoint.port), "-U", user, "-D", dataDirectory.path,
                "-R", "-X", "stream", "-c", "fast",
            ], user: "postgres", host: host)
        try start(timeout: timeout)
    }

    /// A new connection to the probe database (connect timeout 2 s).
    public func connect(database: String? = nil) throws(PostgresError) -> PostgresConnection {
        try PostgresConnection(
            PostgresEndpoint(host: endpoint.host, port: endpoint.port, database: database ?? probeDatabase, user: user),
            connectTimeoutSeconds: 2)
    }

    /// `pg_is_in_recovery()`: true on a standby, false on a primary; throws when the server does not answer.
    public func isInRecovery() throws -> Bool {
        let connection = try connect()
        defer { connection.close() }
        return try connection.execute("SELECT pg_is_in_recovery()").value(row: 0, column: 0) == "t"
    }

    /// Upserts row `key` of `kiln_fault_probe` (created when missing): proves the server accepts writes.
    public func probeWrite(_ key: String) throws {
        let connection = try connect()
        defer { connection.close() }
        try connection.execute("SET statement_timeout = 5000")
        try connection.execute(
            "CREATE TABLE IF NOT EXISTS kiln_fault_probe (key text PRIMARY KEY, at timestamptz NOT NULL)")
        try connection.execute(
            "INSERT INTO kiln_fault_probe VALUES ($1, now()) ON CONFLICT (key) DO UPDATE SET at = now()", [key])
    }

    /// Whether row `key` of `kiln_fault_probe` exists here (a standby shows a write of its primary).
    public func probeHas(_ key: String) throws -> Bool {
        let connection = try connect()
        defer { connection.close() }
        let exists = try connection.execute("SELECT to_regclass('kiln_fault_probe') IS NOT NULL")
        guard exists.value(row: 0, column: 0) == "t" else { return false }
        return try connection.execute("SELECT 1 FROM kiln_fault_probe WHERE key = $1", [key]).rowCount == 1
    }

    /// Sets (`value` non-nil, `ALTER SYSTEM`) or resets `synchronous_standby_names` and reloads the configuration.
    public func setSynchronousStandbys(_ value: String?) throws {
        let connection = try connect()
        defer { connection.close() }
        if let value {
            let quoted = value.replacingOccurrences(of: "'", with: "''")
            try connection.execute("ALTER SYSTEM SET synchronous_standby_names = '\(quoted)'")
        } else {
            try connection.execute("ALTER SYSTEM RESET synchronous_standby_names")
        }
        try connection.execute("SELECT pg_reload_conf()")
    }

    /// `(state, sync_state)` of each standby connected to this server (`pg_stat_replication`).
    public func standbys() throws -> [(state: String, syncState: String)] {
        let connection = try connect()
        defer { connection.close() }
        let result = try connection.execute("SELECT state, sync_state FROM pg_stat_replication")
        return (0..<result.rowCount).map {
            (result.value(row: $0, column: 0) ?? "?", result.value(row: $0, column: 1) ?? "?")
        }
    }
}

/// A `PostgresNode` as a process fault's target: its postmaster (from `postmaster.pid`) and, through the default
/// `stopServerProcesses`, every backend and auxiliary process under it; `start` is `pg_ctl start -w`.
/// Not thread-safe: one caller at a time (the fault driver).
public final class PostgresNodeController: ProcessController {
    public let node: PostgresNode
    public var name: String { node.name }
    public var endpoint: HostPort { node.endpoint }

    public init(_ node: PostgresNode) { self.node = node }

    /// Fast shutdown: SIGTERM ("smart") would wait for every client to disconnect.
    public var gracefulStopSignal: Int32 { SIGINT }

    public func currentPID() -> pid_t? { node.postmasterPID() }

    public func send(_ signal: Int32) throws {
        guard let pid = currentPID() else { throw ProcessFaultError("\(name) is not running") }
        guard kill(pid, signal) == 0 else {
            throw ProcessFaultError("kill(\(pid), \(signal)) failed: \(String(cString: strerror(errno)))")
        }
    }

    public func start(timeout: Duration) throws {
        guard currentPID() == nil else { return }
        try node.start(timeout: timeout)
    }
}
