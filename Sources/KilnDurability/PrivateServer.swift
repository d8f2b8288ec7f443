import Foundation
import KilnCore
import KilnPostgres
import KilnRedis
import KilnStack

#if canImport(Glibc)
    import Glibc
#endif

public struct DurabilityError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One private server a durability drill owns: started in its own directory on the drill's private address, killed
/// with SIGKILL of every process of it, restarted from the same directory, stopped. Never a server of the shared
/// stack: the caller passes a private address and a directory it created. Not thread-safe: one caller (the drill).
/// Ownership: `stop()` ends every process this object started; the caller calls it on every path (defer).
public final class PrivateServer {
    public enum Flavor: Sendable {
        /// PostgreSQL 15, run as `postgres`; `settings` become `-c name=value` on the postmaster's command line;
        /// `config` is appended to postgresql.conf once, after initdb (restored clusters inherit it).
        case postgres(settings: [(String, String)], config: String = "")
        /// Redis (Debian's redis-server) with extra arguments (`--appendonly yes` …).
        case redis(arguments: [String])
        /// FalkorDB (the wheel's redis-server with the module) with extra arguments.
        case falkordb(arguments: [String])
    }

    public let name: String
    public let flavor: Flavor
    public let endpoint: HostPort
    public let directory: URL
    public var log: URL { directory.appendingPathComponent("server.log") }
    public var postgresData: URL { directory.appendingPathComponent("data") }
    public let database = "postgres"
    private var redisPID: pid_t?

    public init(name: String, flavor: Flavor, endpoint: HostPort, directory: URL) {
        self.name = name
        self.flavor = flavor
        self.endpoint = endpoint
        self.directory = directory
    }

    static let postgresBin = "/usr/lib/postgresql/15/bin/"

    /// Creates the server's files when missing (initdb) and starts it; returns once it answers (PostgreSQL: a
    /// query; Redis: PING without LOADING) or throws after `timeout`.
    public func start(timeout: Duration = .seconds(120), initialize: Bool = true) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        switch flavor {
        case .postgres(let settings, let config):
            let fileManager = FileManager.default
            if initialize && !fileManager.fileExists(atPath: postgresData.appendingPathComponent("PG_VERSION").path) {
                try ServerFiles.giveToPostgres(directory)
                try LocalProcess.run(
                    Self.postgresBin + "initdb",
                    ["-D", postgresData.path, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"],
                    user: "postgres")
                let conf = try FileHandle(forWritingTo: postgresData.appendingPathComponent("postgresql.conf"))
                try conf.seekToEnd()
                try conf.write(contentsOf: Data(("\n" + config + "\n").utf8))
                try conf.close()
            }
            FileManager.default.createFile(atPath: log.path, contents: nil)
            try ServerFiles.giveToPostgres(directory)
            try startPostgres(settings: settings)
        case .redis(let arguments):
            FileManager.default.createFile(atPath: log.path, contents: nil)
            redisPID = try LocalProcess.spawnDetached("/usr/bin/redis-server", Self.redisBase(endpoint, directory) + arguments, log: log)
        case .falkordb(let arguments):
            FileManager.default.createFile(atPath: log.path, contents: nil)
            let paths = KilnPaths.resolve()
            let binary = paths.tools.appendingPathComponent("falkordb-server").path
            let module = paths.libraries.appendingPathComponent("falkordb.so").path
            guard FileManager.default.fileExists(atPath: binary), FileManager.default.fileExists(atPath: module) else {
                throw DurabilityError("FalkorDB is not installed (\(binary)); run scripts/bootstrap")
            }
            redisPID = try LocalProcess.spawnDetached(
                binary, Self.redisBase(endpoint, directory) + arguments + ["--loadmodule", module], log: log)
        }
        try waitReady(timeout: timeout)
    }

    func startPostgres(settings: [(String, String)]) throws {
        var options = "-c listen_addresses=\(endpoint.host) -p \(endpoint.port) -c unix_socket_directories=\(directory.path)"
        for (key, value) in settings { options += " -c \(key)=\(value)" }
        try LocalProcess.run(
            Self.postgresBin + "pg_ctl",
            ["-D", postgresData.path, "-l", log.path, "-w", "-t", "120", "-o", options, "start"], user: "postgres")
    }

    static func redisBase(_ endpoint: HostPort, _ directory: URL) -> [String] {
        [
            "--bind", endpoint.host, "--port", String(endpoint.port), "--protected-mode", "no", "--dir",
            directory.path, "--daemonize", "no",
        ]
    }

    private func waitReady(timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        var last = "no answer"
        while ContinuousClock.now < deadline {
            switch flavor {
            case .postgres:
                do {
                    let connection = try PostgresConnection(postgresEndpoint, connectTimeoutSeconds: 2)
                    defer { connection.close() }
                    _ = try connection.execute("SELECT 1")
                    return
                } catch { last = "\(error)" }
            case .redis, .falkordb:
                guard let pid = redisPID, LocalProcess.isAlive(pid) else {
                    throw DurabilityError("\(name) exited during start-up (log: \(log.path))")
                }
                do {
                    let connection = try RedisConnection(host: endpoint.host, port: endpoint.port, timeoutSeconds: 2)
                    defer { connection.close() }
                    _ = try connection.command("PING")
                    return
                } catch { last = "\(error)" }
            }
            usleep(100_000)
        }
        throw DurabilityError("\(name) did not answer at \(endpoint) within \(timeout) (last: \(last); log: \(log.path))")
    }

    public var postgresEndpoint: PostgresEndpoint {
        PostgresEndpoint(host: endpoint.host, port: endpoint.port, database: database, user: "postgres")
    }

    /// The running server's main pid (PostgreSQL: the postmaster), nil when none runs.
    public func mainPID() -> pid_t? {
        switch flavor {
        case .postgres:
            guard let text = try? String(contentsOf: postgresData.appendingPathComponent("postmaster.pid"), encoding: .utf8),
                let first = text.split(separator: "\n").first, let pid = pid_t(first.trimmingCharacters(in: .whitespaces)),
                LocalProcess.isAlive(pid)
            else { return nil }
            return pid
        case .redis, .falkordb:
            guard let pid = redisPID else { return nil }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid || !LocalProcess.isAlive(pid) { return nil }
            return pid
        }
    }

    /// SIGKILL of every process of the server at once: the whole tree is SIGSTOPped first (so no process runs on
    /// after another died), then every one gets SIGKILL. Returns the kill time (Unix µs, taken just before the
    /// first SIGKILL) and the pids killed; throws when no process runs or one is still alive 10 s later.
    public func crash() throws -> (killedAt: Int64, pids: [pid_t]) {
        guard let root = mainPID() else { throw DurabilityError("\(name) is not running: nothing to kill") }
        let pids = ProcessTree.stop(root: root)
        let killedAt = WallClock.micros()
        for pid in pids { kill(pid, SIGKILL) }
        for pid in ProcessTree.descendants(of: root) { kill(pid, SIGKILL) }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let pid = redisPID { var status: Int32 = 0; _ = waitpid(pid, &status, WNOHANG) }
            if pids.allSatisfy({ !LocalProcess.isAlive($0) }) {
                redisPID = nil
                if case .postgres = flavor { releasePostmasterLock(root) }
                return (killedAt, pids)
            }
            usleep(10_000)
        }
        throw DurabilityError("\(name): pids \(pids) still alive 10 s after SIGKILL")
    }

    /// A killed postmaster stays a zombie until init reaps it, and PostgreSQL's lock-file check (kill(pid, 0)) takes
    /// a zombie for a running server: wait up to 5 s for the reaping, then remove the dead server's lock file.
    private func releasePostmasterLock(_ pid: pid_t) {
        let deadline = ContinuousClock.now + .seconds(5)
        while kill(pid, 0) == 0 && ContinuousClock.now < deadline { usleep(10_000) }
        if kill(pid, 0) == 0 { try? FileManager.default.removeItem(at: postgresData.appendingPathComponent("postmaster.pid")) }
    }

    /// Stops whatever runs (PostgreSQL: `pg_ctl stop -m immediate`, then SIGKILL of the tree if it remains; Redis:
    /// SIGKILL — the drill is done with its data). Idempotent; never throws.
    public func stop() {
        guard let root = mainPID() else { return }
        if case .postgres = flavor {
            _ = try? LocalProcess.run(
                Self.postgresBin + "pg_ctl", ["-D", postgresData.path, "-m", "immediate", "-w", "-t", "20", "stop"],
                user: "postgres")
        }
        if LocalProcess.isAlive(root) {
            let pids = ProcessTree.members(of: root)
            for pid in pids { kill(pid, SIGKILL) }
            if let pid = redisPID { var status: Int32 = 0; _ = waitpid(pid, &status, 0) }
        }
        redisPID = nil
    }
}

/// Files PostgreSQL's processes need to own (it refuses to run as root).
enum ServerFiles {
    static func giveToPostgres(_ url: URL) throws {
        guard geteuid() == 0 else { return }
        guard let account = getpwnam("postgres") else { throw DurabilityError("no `postgres` user; run scripts/bootstrap") }
        let uid = account.pointee.pw_uid
        let gid = account.pointee.pw_gid
        chown(url.path, uid, gid)
        let enumerator = FileManager.default.enumerator(atPath: url.path)
        while let item = enumerator?.nextObject() as? String { chown(url.appendingPathComponent(item).path, uid, gid) }
    }
}
