import Foundation
import KilnBackend
import KilnCore
import KilnScenario
import KilnStores
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Starts, inspects and stops the embedded stack: the servers the backends describe (`Backend.stack.servers`, see
/// Sources/Backends/README.md), as local processes on loopback addresses (or, with
/// `network: hosts`, each in its own network namespace on 10.213.7.0/24, see `HostNetwork`), with data,
/// logs and the pids Kiln started under one run directory. `up` is idempotent; `down` stops only processes
/// recorded in the run directory whose command line still names this stack (a recycled pid is left alone).
/// Not thread-safe: one controller per command. No store is named here: a server is started by its description's
/// launch (a detached process, or PostgreSQL's pg_ctl life cycle), probed by its description's probe, and each
/// backend's `afterStart` runs once its servers answer.
public final class EmbeddedStack {
    public let definition: StackDefinition
    public let paths: KilnPaths
    public let servers: [EmbeddedServer]
    private let logger: Logger
    private let state: StackState
    private let binaries: ServerBinaries
    /// The host of each server and client group (by name) in a hosts stack; empty on loopback.
    public let hosts: [String: NetworkHost]
    /// Who owns this stack's hosts: the stack (`kiln stack up`), or a test process (its private stacks are swept
    /// when it dies).
    public let hostOwner: HostOwner
    private let network: HostNetwork

    /// `hostOwner` defaults to the stack itself (`.stack(definition.name)`); only tests give another.
    private let backends: [Backend]

    /// `backends`: whose servers run (default: every backend; a stack that does not list a backend's section gets
    /// none of its servers).
    public init(
        definition: StackDefinition, paths: KilnPaths, logger: Logger, hostOwner: HostOwner? = nil,
        backends: [Backend] = Backends.all
    ) throws {
        guard definition.kind == .embedded else {
            throw StackError(
                server: definition.name,
                message: "\(definition.source) is a \(definition.kind.rawValue) stack; `kiln stack` manages only "
                    + "embedded stacks (start a compose stack with docker-compose)")
        }
        self.definition = definition
        self.paths = paths
        self.logger = logger
        self.backends = backends
        self.servers = EmbeddedServer.catalogue(
            definition, runDirectory: paths.stack, tools: paths.tools, libraries: paths.libraries, backends: backends)
        self.state = StackState(file: paths.stack.appendingPathComponent("state.json"))
        self.binaries = ServerBinaries(paths: paths)
        let owner = hostOwner ?? .stack(definition.name)
        self.hostOwner = owner
        self.network = HostNetwork(logger: logger)
        var hosts: [String: NetworkHost] = [:]
        if definition.network == .hosts {
            for server in servers {
                guard let address = HostAddress(server.endpoint.host) else { continue }  // the stack file was validated
                hosts[server.name] = NetworkHost(name: server.name, address: address, owner: owner)
            }
            for group in definition.clientGroups + definition.sinkHosts {
                hosts[group.name] = NetworkHost(name: group.name, address: group.address, owner: owner)
            }
        }
        self.hosts = hosts
    }

    /// The hosts of this stack, by address.
    public var hostList: [NetworkHost] { hosts.values.sorted { $0.address < $1.address } }

    /// Removes what a killed Kiln left behind: hosts of processes that are gone (`HostNetwork.sweep`), and on this
    /// stack's own hosts (which stay) stopped processes, qdiscs and iptables rules (`HostNetwork.clearFaults`); on any
    /// embedded stack, every stopped process of a running server's tree is continued. Returns one line per thing
    /// removed; empty when nothing was left.
    public func removeLeftovers() -> [String] {
        var removed: [String] = []
        do {
            removed += try network.sweep()
        } catch {
            logger.warning("could not sweep leftover hosts", metadata: ["kiln.error": "\(error)"])
        }
        let existing = Set((try? network.hosts()) ?? [])
        removed += network.clearFaults(in: hostList.filter { existing.contains($0) })
        // A pause reaches a server's whole tree (the postmaster and every backend): continue all of it.
        for server in servers {
            guard let pid = runningPID(server) else { continue }
            let stopped = ([pid] + LocalProcess.descendants(of: pid)).filter { LocalProcess.isStopped($0) }
            for process in stopped { kill(process, SIGCONT) }
            if !stopped.isEmpty { removed.append("continued \(stopped.count) stopped process(es) of \(server.name)") }
        }
        return removed
    }

    private var probe: StackProbe { StackProbe(definition: definition) }

    // MARK: up

    /// Starts every server that is not already running, waits until each answers a real query, and creates the
    /// `kiln` databases. Throws `StackError` naming the first server that did not come up, with its log.
    @discardableResult
    public func up(readyTimeout: Duration = .seconds(90)) throws -> [ServerStatus] {
        try binaries.checkInstalled(servers)
        if let refusal = StackDirectoryGuard.refusal(definition, paths: paths) {
            throw StackError(server: definition.name, message: refusal)
        }
        try FileManager.default.createDirectory(
            at: paths.stack.appendingPathComponent("logs"), withIntermediateDirectories: true)
        // Which stack this directory's state.json belongs to (StackDirectoryGuard reads it).
        try? StackDirectoryOwner(definition).write(paths.stack)
        for host in hostList {
            do {
                try network.addHost(host)
            } catch {
                throw StackError(server: host.name, message: "cannot create its host \(host): \(error)")
            }
        }
        // Every address is checked before anything starts, so a conflict leaves nothing half-started.
        // A run killed during a clock-skew fault leaves its offset behind: every clock starts the session at +0.
        // (Whatever stack file started them: the file says which servers run under libfaketime.)
        for server in servers {
            let clock = FaketimeClock(serverDirectory: server.directory)
            if clock.isEnabled, clock.offsetSeconds != 0 {
                logger.info("resetting a skewed clock", metadata: ["kiln.server": "\(server.name)"])
                try clock.set(offsetSeconds: 0)
            }
        }
        let toStart = servers.filter { server in
            if let pid = runningPID(server) {
                // A server a crashed drill left paused (SIGSTOP of its whole process tree) must not stay paused:
                // SIGCONT of every process of it, harmless on running ones.
                ProcessTree.resume([pid], root: pid)
                logger.debug("already running", metadata: ["kiln.server": "\(server.name)", "kiln.pid": "\(pid)"])
                return false
            }
            return true
        }
        for server in toStart where LocalProcess.isListening(host: server.endpoint.host, port: server.endpoint.port) {
            throw StackError(
                server: server.name,
                message: "\(server.endpoint) is already in use by a process this stack did not start; "
                    + "stop it or change the address in \(definition.source)")
        }
        var started: [String: ContinuousClock.Instant] = [:]
        for server in toStart {
            // e.g. pg_basebackup needs a primary that answers, with the kiln database in place.
            for name in server.description.startsAfter {
                guard let earlier = servers.first(where: { $0.name == name }) else { continue }
                try waitReady(earlier, timeout: readyTimeout)
                try afterReady(earlier)
            }
            FileManager.default.createFile(atPath: server.log.path, contents: nil)
            logger.info("starting", metadata: ["kiln.server": "\(server.name)", "kiln.endpoint": "\(server.endpoint)"])
            do {
                try start(server)
            } catch let error as StackError {
                throw error
            } catch {
                throw StackError(server: server.name, message: "could not start: \(error)", log: server.log.path)
            }
            started[server.name] = .now
        }
        for server in servers {
            try waitReady(server, timeout: readyTimeout)
            if let since = started[server.name] {
                logger.info(
                    "ready", metadata: ["kiln.server": "\(server.name)", "kiln.seconds": "\(since.duration(to: .now).roundedSeconds)"])
            }
        }
        for server in servers { try afterReady(server) }
        for backend in backends {
            guard let afterStart = backend.stack.afterStart else { continue }
            let own = Set(backend.stack.servers(definition, embeddedPaths).map(\.name))
            let described = servers.filter { own.contains($0.name) }.map(\.description)
            guard !described.isEmpty else { continue }
            do {
                try afterStart(definition, described)
            } catch {
                throw StackError(server: backend.name, message: "after start: \(error)")
            }
        }
        return status()
    }

    private var embeddedPaths: EmbeddedPaths {
        EmbeddedPaths(
            runDirectory: paths.stack, tools: paths.tools, libraries: paths.libraries, network: definition.network)
    }

    /// The server's `afterReady` step (idempotent), as a `StackError` naming it.
    private func afterReady(_ server: EmbeddedServer) throws {
        guard let step = server.description.afterReady else { return }
        do {
            try step()
        } catch {
            throw StackError(server: server.name, message: "\(error)")
        }
    }

    private func waitReady(_ server: EmbeddedServer, timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        var lastError = "no answer"
        while true {
            do {
                _ = try probe.role(of: server)
                return
            } catch {
                lastError = "\(error)"
            }
            guard let pid = state.pid(of: server.name), LocalProcess.isAlive(pid) || server.isPostgres else {
                throw StackError(server: server.name, message: "exited during start-up", log: server.log.path)
            }
            if ContinuousClock.now >= deadline {
                throw StackError(
                    server: server.name,
                    message: "did not answer at \(server.endpoint) within \(timeout) (last probe: \(lastError))",
                    log: server.log.path)
            }
            usleep(200_000)
        }
    }

    // MARK: starting a server

    private func start(_ server: EmbeddedServer) throws {
        switch server.description.launch {
        case .postgres(let replicaOf, let user):
            try startPostgres(server, replicaOf: replicaOf, user: user)
        case .process(let program, let prepare):
            let arguments = try prepare(server.directory)
            record(
                server, try LocalProcess.spawnDetached(program, arguments, log: server.log, host: hosts[server.name]))
        }
    }

    private func startPostgres(_ server: EmbeddedServer, replicaOf primary: HostPort?, user: String) throws {
        let fileManager = FileManager.default
        let data = server.postgresData
        if !fileManager.fileExists(atPath: data.appendingPathComponent("PG_VERSION").path) {
            try? fileManager.removeItem(at: server.directory)
            try fileManager.createDirectory(at: server.directory, withIntermediateDirectories: true)
            try ServerBinaries.giveToPostgres(server.directory)
            if primary == nil {
                try LocalProcess.run(
                    binaries.postgres("initdb"),
                    ["-D", data.path, "-A", "trust", "-U", user, "-E", "UTF8", "--locale=C", "--no-sync"], user: user)
                var access = "host all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n"
                if definition.network == .hosts {
                    access += "host all all \(HostAddress.subnet) trust\n"
                        + "host replication all \(HostAddress.subnet) trust\n"
                }
                try ServerBinaries.append(access, to: data.appendingPathComponent("pg_hba.conf"))
                try ServerBinaries.append(
                    "max_connections = 200\nshared_buffers = 256MB\nwal_keep_size = 512MB\n",
                    to: data.appendingPathComponent("postgresql.conf"))
            } else if let primary {
                try LocalProcess.run(
                    binaries.postgres("pg_basebackup"),
                    [
                        "-h", primary.host, "-p", String(primary.port), "-U", user, "-D", data.path, "-R",
                        "-X", "stream", "-c", "fast",
                    ], user: user, host: hosts[server.name])
            }
        }
        try ServerBinaries.giveToPostgres(server.log)
        let clock = FaketimeClock(serverDirectory: server.directory)
        if definition.faketime.contains(server.name) {
            try clock.set(offsetSeconds: 0)
        } else if clock.isEnabled {
            try FileManager.default.removeItem(at: clock.file)
        }
        // Address and port go on the command line so that a replica cloned from the primary does not inherit them.
        // Checkpoints at most every 15 min or 4 GB of WAL: a 100M-row bulk load otherwise checkpoints every few
        // seconds and writes each page again in full.
        // 6 GB of shared buffers keep the ledger's indexes of a 100M-row run resident: this machine has no swap, so
        // shared memory is never reclaimed, while its page cache is (DAMON reclaim evicts cold pages within minutes
        // and every index probe then reads from disk). Touched pages only are allocated, so small runs pay nothing.
        let options = "-c listen_addresses=\(server.endpoint.host) -p \(server.endpoint.port) -c unix_socket_directories=''"
            + " -c max_wal_size=4GB -c checkpoint_timeout=15min -c shared_buffers=6GB"
        // A killed postmaster stays a zombie until init reaps it, and PostgreSQL's lock-file check (kill(pid, 0))
        // takes a zombie for a running server: wait up to 5 s for the reaping (a process fault kills the whole
        // tree at once, so the restart comes right after).
        if let old = postmasterPID(server), !LocalProcess.isAlive(old) {
            let deadline = ContinuousClock.now + .seconds(5)
            while kill(old, 0) == 0 && ContinuousClock.now < deadline { usleep(10_000) }
        }
        try LocalProcess.run(
            binaries.postgres("pg_ctl"),
            ["-D", data.path, "-l", server.log.path, "-w", "-t", "60", "-o", options, "start"], user: user,
            environment: clock.environment, host: hosts[server.name])
        guard let pid = postmasterPID(server) else {
            throw StackError(server: server.name, message: "pg_ctl started no postmaster", log: server.log.path)
        }
        record(server, pid)
    }

    private func postmasterPID(_ server: EmbeddedServer) -> pid_t? {
        let file = server.postgresData.appendingPathComponent("postmaster.pid")
        guard let text = try? String(contentsOf: file, encoding: .utf8),
            let first = text.split(separator: "\n").first
        else { return nil }
        return pid_t(first.trimmingCharacters(in: .whitespaces))
    }

    private func record(_ server: EmbeddedServer, _ pid: pid_t) {
        state.set(server.name, pid: pid)
    }

    /// The pid of this server when a process Kiln started for it is still alive.
    private func runningPID(_ server: EmbeddedServer) -> pid_t? {
        let pid = server.isPostgres ? (postmasterPID(server) ?? state.pid(of: server.name)) : state.pid(of: server.name)
        guard let pid, LocalProcess.isAlive(pid), let command = LocalProcess.commandLine(pid) else { return nil }
        // The command line names the server's address or directory; anything else is a recycled pid.
        // (The directory as given and with symlinks resolved: a worktree's `.kiln` may link to another checkout's.)
        let owned = command.contains(server.endpoint.description) || command.contains(server.directory.path)
            || command.contains(server.directory.resolvingSymlinksInPath().path)
            || command.contains("\(server.endpoint.host) ") && command.contains("\(server.endpoint.port)")
        return owned ? pid : nil
    }

    // MARK: status

    /// Each host of this stack and whether its namespace exists now (hosts stack; empty on loopback).
    public func hostStatus() -> [(host: NetworkHost, present: Bool)] {
        let existing = Set((try? network.hosts()) ?? [])
        return hostList.map { ($0, existing.contains($0)) }
    }

    public func status() -> [ServerStatus] {
        servers.map { server in
            let pid = runningPID(server)
            var status = ServerStatus(
                name: server.name, endpoint: server.endpoint, pid: pid, role: nil, health: .down, log: server.log.path)
            status.namespace = hosts[server.name]?.namespace
            guard pid != nil else { return status }
            do {
                status.role = try probe.role(of: server)
                status.health = .up
            } catch {
                status.health = .unhealthy("\(error)")
            }
            return status
        }
    }

    // MARK: down

    public struct DownReport: Sendable {
        public var stopped: [String] = []
        /// Servers whose address still accepted connections after stopping (something else listens there).
        public var stillListening: [String] = []
        public var failures: [String] = []
        /// Namespaces, veths and the bridge removed (hosts stack).
        public var removedHosts: [String] = []
    }

    /// Stops every process this stack started, newest first, waits until its address stops answering, and
    /// removes the data directories (logs stay). Never signals a process whose command line does not name
    /// this stack.
    @discardableResult
    public func down(keepData: Bool = false) -> DownReport {
        var report = DownReport()
        for server in servers.reversed() {
            guard let pid = runningPID(server) else { continue }
            logger.info("stopping", metadata: ["kiln.server": "\(server.name)", "kiln.pid": "\(pid)"])
            if server.isPostgres {
                _ = try? LocalProcess.run(
                    binaries.postgres("pg_ctl"), ["-D", server.postgresData.path, "-m", "fast", "-w", "-t", "30", "stop"],
                    user: "postgres")
            }
            if LocalProcess.terminate(pid) {
                report.stopped.append(server.name)
            } else {
                report.failures.append("\(server.name): pid \(pid) did not exit after SIGKILL")
            }
        }
        for server in servers {
            let deadline = ContinuousClock.now + .seconds(5)
            while LocalProcess.isListening(host: server.endpoint.host, port: server.endpoint.port) {
                if ContinuousClock.now >= deadline {
                    report.stillListening.append("\(server.name) (\(server.endpoint))")
                    break
                }
                usleep(100_000)
            }
        }
        state.clear()
        // Nothing of this stack runs from the directory any more: another stack may use it.
        try? FileManager.default.removeItem(at: paths.stack.appendingPathComponent(StackDirectoryOwner.fileName))
        if !hosts.isEmpty {
            do {
                report.removedHosts = try network.removeHosts(hostList)
            } catch {
                report.failures.append("removing hosts: \(error)")
            }
        }
        if !keepData {
            for server in servers { try? FileManager.default.removeItem(at: server.directory) }
        }
        return report
    }
}
