import Foundation
import KilnStores
import KilnCore
import KilnRedis
import KilnScenario
import KilnStack

#if canImport(Glibc)
    import Glibc
#endif

/// Redis Sentinel failover: `SENTINEL FAILOVER <master>` (a switchover), or SIGKILL of the primary so that the
/// Sentinels detect it (`down-after-milliseconds`) and elect a replica. `start` returns once a majority of the
/// Sentinels name a new primary and that server's `ROLE` is `master`; `electionTime` is the time from the trigger to
/// that moment. The `PrimaryDirectory` (when given) is pointed at the new primary.
///
/// Sentinel itself demotes a reachable old primary only 8–20 s after the election (`+convert-to-slave`); until then
/// it still takes writes that the resync will drop. With `fenceOldPrimary` (default) Kiln closes that window right
/// after the election: `REPLICAOF <new>` and `CLIENT KILL TYPE normal` on the old primary, as an operator would.
///
/// Heal (`stop`): a killed primary is started again and made a replica of the new primary (by Kiln when fencing,
/// else by the Sentinels);
/// with `failBack` a second `SENTINEL FAILOVER` then makes the original primary the primary again. Verified healed:
/// every Sentinel names the same primary, its `ROLE` is `master` and the other server is its connected replica.
///
/// `setup` refuses to start unless the Sentinels are ready to fail over (`SENTINEL CKQUORUM` and a replica not
/// down): a failover that cannot happen would otherwise look like a slow one.
/// Sentinels are asked with `sentinelCredentials` (`requirepass` / an ACL user of sentinel.conf), the Redis servers
/// (`ROLE`, `REPLICAOF`, `CLIENT KILL`) with `serverCredentials`, which must be allowed those admin commands.
/// Not thread-safe: driven by one caller; every call blocks (TCP to the Sentinels and servers).
public final class RedisSentinelFailover: Fault {
    public enum Trigger {
        case command
        /// SIGKILL of the primary through its controller (which also restarts it on `stop`).
        case killPrimary(any ProcessController)
    }

    public let name: String
    public var kind: String {
        if case .command = trigger { return RecordedFaultKind.redisFailover(.command).recorded }
        return RecordedFaultKind.redisFailover(.kill).recorded
    }
    public var target: String { "\(masterName) via sentinels \(sentinels.map(\.description).joined(separator: ","))" }
    public let masterName: String
    public let sentinels: [HostPort]
    public let trigger: Trigger
    public let failBack: Bool
    public let fenceOldPrimary: Bool
    public let directory: PrimaryDirectory?
    public let timeout: Duration
    public let sentinelCredentials: RedisCredentials
    public let serverCredentials: RedisCredentials

    /// Trigger → a majority of Sentinels name the new primary and it answers `ROLE` master.
    public private(set) var electionTime: Duration?
    public private(set) var oldPrimary: HostPort?
    public private(set) var newPrimary: HostPort?
    private var killed = false

    public init(
        name: String? = nil, masterName: String, sentinels: [HostPort], trigger: Trigger = .command,
        failBack: Bool = false, fenceOldPrimary: Bool = true, directory: PrimaryDirectory? = nil,
        timeout: Duration = .seconds(60), sentinelCredentials: RedisCredentials = .none,
        serverCredentials: RedisCredentials = .none
    ) {
        self.sentinelCredentials = sentinelCredentials
        self.serverCredentials = serverCredentials
        self.fenceOldPrimary = fenceOldPrimary
        self.name = name ?? "redis-failover-\(masterName)"
        self.masterName = masterName
        self.sentinels = sentinels
        self.trigger = trigger
        self.failBack = failBack
        self.directory = directory
        self.timeout = timeout
    }

    public func setup() throws {
        guard !sentinels.isEmpty else { throw ProcessFaultError("no sentinels listed for \(masterName)") }
        var lastProblem = ""
        let ready = PostgresFailover.poll(within: timeout) { () -> Bool? in
            do {
                try readiness()
                return true
            } catch {
                lastProblem = "\(error)"
                return nil
            }
        }
        guard ready == true else { throw ProcessFaultError("sentinels not ready to fail over: \(lastProblem)") }
    }

    private func readiness() throws {
        for sentinel in sentinels {
            let reply = try Self.ask(sentinel, ["SENTINEL", "CKQUORUM", masterName], credentials: sentinelCredentials)
            guard reply.string?.hasPrefix("OK") == true else { throw ProcessFaultError("\(sentinel): no quorum") }
            let replicas = try Self.ask(sentinel, ["SENTINEL", "REPLICAS", masterName], credentials: sentinelCredentials).array ?? []
            let usable = replicas.contains { replica in
                let flags = Self.field("flags", in: replica) ?? ""
                return !flags.contains("down") && !flags.contains("disconnected")
            }
            guard usable else { throw ProcessFaultError("\(sentinel) knows no replica that is up") }
        }
    }

    public func start() throws {
        guard let old = majorityPrimary() else { throw ProcessFaultError("the sentinels do not agree on a primary") }
        oldPrimary = old
        let began = ContinuousClock.now
        switch trigger {
        case .command:
            try command(["SENTINEL", "FAILOVER", masterName])
        case .killPrimary(let controller):
            guard controller.endpoint == old else {
                throw ProcessFaultError(
                    "the sentinels' primary is \(old), not \(controller.name) (\(controller.endpoint))")
            }
            guard let pid = controller.currentPID() else {
                throw ProcessFaultError("\(controller.name) is not running")
            }
            // The whole server (a BGSAVE or AOF-rewrite child too), stopped first so nothing forks meanwhile.
            let processes = controller.stopServerProcesses(root: pid)
            for process in processes { kill(process, SIGKILL) }
            killed = true
            let alive = processes.filter { !LocalProcess.waitForExit($0, within: .seconds(5)) }
            guard alive.isEmpty else { throw ProcessFaultError("pids \(alive) still alive 5 s after SIGKILL") }
        }
        guard let elected = waitForPrimary(where: { $0 != old }) else {
            throw ProcessFaultError("no new primary elected within \(timeout)")
        }
        electionTime = began.duration(to: .now)
        newPrimary = elected
        directory?.promote("redis", to: elected)
        if fenceOldPrimary, case .command = trigger {
            try Self.demote(old, to: elected, credentials: serverCredentials)
        }
    }

    /// The first answering Sentinel's `flags` for the master (`master`, `master,failover_in_progress`, `o_down`…):
    /// evidence of a second failover when a fenced server keeps turning primary.
    func sentinelFlags() -> String {
        for sentinel in sentinels {
            guard let parts = (try? Self.ask(sentinel, ["SENTINEL", "MASTER", masterName], credentials: sentinelCredentials))?.array else { continue }
            let strings = parts.map { $0.string ?? "" }
            if let index = strings.firstIndex(of: "flags"), index + 1 < strings.count { return strings[index + 1] }
        }
        return "no Sentinel answered"
    }

    /// `REPLICAOF <primary>` on `server`, then drops its normal clients so they reconnect (and rediscover).
    static func demote(_ server: HostPort, to primary: HostPort, credentials: RedisCredentials = .none) throws {
        _ = try ask(server, ["REPLICAOF", primary.host, String(primary.port)], credentials: credentials)
        _ = try? ask(server, ["CLIENT", "KILL", "TYPE", "normal"], credentials: credentials)
    }

    public func stop() throws {
        guard let old = oldPrimary, let new = newPrimary else { return }
        if case .killPrimary(let controller) = trigger {
            try controller.start(timeout: timeout)
            killed = false
            // It restarts as an empty primary; Sentinel would demote it only seconds later.
            if fenceOldPrimary {
                try Self.demote(old, to: new, credentials: serverCredentials)
                // Under load (CI) the restarted server was once still ROLE master a full timeout after the
                // REPLICAOF; it is repeated until the server reports itself a replica, for at most `timeout`.
                _ = PostgresFailover.poll(within: timeout) { () -> Bool? in
                    guard let role = Self.role(old, credentials: serverCredentials), role.role != "slave" else { return true }
                    _ = try? Self.ask(old, ["REPLICAOF", new.host, String(new.port)], credentials: serverCredentials)
                    usleep(450_000)
                    return nil
                }
            }
        }
        guard failBack else { return }
        // Sentinel refuses a failover until the old primary is a connected replica of the new one.
        guard waitForReplica(old, of: new) else {
            throw ProcessFaultError("\(old) did not become a replica of \(new) within \(timeout)")
        }
        try command(["SENTINEL", "FAILOVER", masterName])
        guard waitForPrimary(where: { $0 == old }) != nil else {
            throw ProcessFaultError("failing back to \(old) did not finish within \(timeout)")
        }
        directory?.promote("redis", to: old)
        if fenceOldPrimary { try Self.demote(new, to: old, credentials: serverCredentials) }
    }

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        guard let old = oldPrimary, let new = newPrimary else { return .unknown("no failover happened") }
        switch phase {
        case .active:
            let election = "elected \(new) in \(electionTime?.milliseconds ?? -1) ms"
            guard Self.role(new, credentials: serverCredentials)?.role == "master" else { return .no("\(election) but ROLE of \(new) is not master") }
            let agreeing = sentinels.count { (try? primary(from: $0)) == new }
            guard agreeing * 2 > sentinels.count else {
                return .no("\(election) but only \(agreeing)/\(sentinels.count) sentinels name it")
            }
            switch trigger {
            case .command:
                let waited = ContinuousClock.now
                let demoted = waitForReplica(old, of: new)
                let how = fenceOldPrimary ? "fenced by Kiln right after the election" : "converted by Sentinel"
                return demoted
                    ? .yes(
                        "\(election); \(agreeing)/\(sentinels.count) sentinels agree; \(old) is its replica "
                            + "(\(how); its link up and synced \(waited.duration(to: .now).milliseconds) ms later)")
                    : .no("\(election) but \(old) did not become its replica (ROLE \(Self.describeRole(old, credentials: serverCredentials)))")
            case .killPrimary:
                let probe = TCPProbe.redisPing(old, timeout: .milliseconds(300))
                return probe.answered
                    ? .no("\(election) but killed \(old) still answers")
                    : .yes("\(old) killed; \(election); \(agreeing)/\(sentinels.count) sentinels agree")
            }
        case .healed:
            let (primary, replica) = failBack ? (old, new) : (new, old)
            guard waitForPrimary(where: { $0 == primary }, everySentinel: true) != nil else {
                return .no("not every sentinel names \(primary)")
            }
            guard Self.role(primary, credentials: serverCredentials)?.role == "master" else { return .no("ROLE of \(primary) is not master") }
            guard waitForReplica(replica, of: primary) else {
                return .no(
                    "\(replica) is not a connected replica of \(primary) (ROLE \(Self.describeRole(replica, credentials: serverCredentials)); Sentinel's "
                        + "flags for \(masterName): \(sentinelFlags()))")
            }
            return .yes("all sentinels name \(primary) (master); \(replica) is its connected replica")
        }
    }

    public func teardown() {
        if killed, case .killPrimary(let controller) = trigger, controller.currentPID() == nil {
            try? controller.start(timeout: timeout)
            killed = false
        }
    }

    // MARK: sentinel and server queries

    /// Sends `arguments` to the first Sentinel that answers without an error.
    private func command(_ arguments: [String]) throws {
        var errors: [String] = []
        for sentinel in sentinels {
            do {
                _ = try Self.ask(sentinel, arguments, credentials: sentinelCredentials)
                return
            } catch {
                errors.append("\(error)")
            }
        }
        throw ProcessFaultError(
            "\(arguments.prefix(2).joined(separator: " ")) failed: \(errors.joined(separator: "; "))")
    }

    private func primary(from sentinel: HostPort) throws -> HostPort? {
        let reply = try Self.ask(
            sentinel, ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName], credentials: sentinelCredentials)
        guard let parts = reply.array, parts.count == 2, let host = parts[0].string,
            let port = parts[1].string.flatMap(Int.init)
        else { return nil }
        return HostPort(host: host, port: port)
    }

    /// The primary a majority of the Sentinels name, nil when there is none.
    private func majorityPrimary(everySentinel: Bool = false) -> HostPort? {
        var votes: [HostPort: Int] = [:]
        for sentinel in sentinels {
            if let answer = try? primary(from: sentinel) { votes[answer, default: 0] += 1 }
        }
        guard let (winner, count) = votes.max(by: { $0.value < $1.value }) else { return nil }
        let needed = everySentinel ? sentinels.count : sentinels.count / 2 + 1
        return count >= needed ? winner : nil
    }

    /// Polls until the Sentinels' primary satisfies `accept` and answers `ROLE` master.
    private func waitForPrimary(where accept: (HostPort) -> Bool, everySentinel: Bool = false) -> HostPort? {
        PostgresFailover.poll(within: timeout) { () -> HostPort? in
            guard let candidate = majorityPrimary(everySentinel: everySentinel), accept(candidate),
                Self.role(candidate, credentials: serverCredentials)?.role == "master"
            else { return nil }
            return candidate
        }
    }

    private func waitForReplica(_ replica: HostPort, of primary: HostPort, within limit: Duration? = nil) -> Bool {
        PostgresFailover.poll(within: limit ?? timeout) { () -> Bool? in
            guard let role = Self.role(replica, credentials: serverCredentials), role.role == "slave", role.master == primary,
                role.state == "connected"
            else { return nil }
            return true
        } == true
    }

    /// `ROLE` of a server: `master`, or `slave` with its primary and link state; nil when it does not answer.
    static func role(
        _ server: HostPort, credentials: RedisCredentials = .none
    ) -> (role: String, master: HostPort?, state: String?)? {
        guard let parts = (try? ask(server, ["ROLE"], credentials: credentials))?.array, let role = parts.first?.string else { return nil }
        guard role == "slave", parts.count >= 4, let host = parts[1].string, let port = parts[2].integer else {
            return (role, nil, nil)
        }
        return (role, HostPort(host: host, port: Int(port)), parts[3].string)
    }

    static func describeRole(_ server: HostPort, credentials: RedisCredentials = .none) -> String {
        guard let role = role(server, credentials: credentials) else { return "no answer" }
        return [role.role, role.master?.description, role.state].compactMap { $0 }.joined(separator: " ")
    }

    /// One command on a fresh connection (1 s timeout, authenticated with `credentials`), closed before returning.
    static func ask(_ server: HostPort, _ arguments: [String], credentials: RedisCredentials = .none) throws -> RedisReply {
        let connection = try credentials.connect(host: server.host, port: server.port, timeoutSeconds: 1)
        defer { connection.close() }
        return try connection.command(arguments)
    }

    /// Value of `name` in a Sentinel reply's flat field list `[name, value, ...]`.
    static func field(_ name: String, in reply: RedisReply) -> String? {
        guard let items = reply.array else { return nil }
        var index = 0
        while index + 1 < items.count {
            if items[index].string == name { return items[index + 1].string }
            index += 2
        }
        return nil
    }
}

extension RedisSentinelFailover {
    /// A failover of the embedded stack's Redis through its Sentinels. `killPrimary` kills whichever embedded
    /// server the Sentinels currently name (restarted by `kiln stack up`'s start logic on `stop`). `name`: the
    /// scenario's fault name (default `redis-failover-<master>`).
    public static func embedded(
        _ stack: EmbeddedStack, name: String? = nil, killPrimary: Bool = false, failBack: Bool = true,
        directory: PrimaryDirectory? = nil
    ) throws -> RedisSentinelFailover {
        let redis = stack.definition.redis
        let credentials = SentinelCredentials(redis)
        var trigger = Trigger.command
        if killPrimary {
            guard
                let current = SentinelQuery.primary(
                    sentinels: redis.sentinels, masterName: redis.masterName, credentials: credentials.sentinels),
                let server = stack.servers.first(where: { $0.endpoint == current })
            else { throw ProcessFaultError("the embedded Sentinels name no server of the stack as primary") }
            trigger = .killPrimary(
                LocalProcessController(
                    name: server.name, endpoint: server.endpoint, launch: .embedded(stack), readyProbe: .redisPing))
        }
        return RedisSentinelFailover(
            name: name, masterName: redis.masterName, sentinels: redis.sentinels, trigger: trigger, failBack: failBack,
            directory: directory, sentinelCredentials: credentials.sentinels, serverCredentials: credentials.servers)
    }
}

/// What the Sentinels say, outside a fault.
enum SentinelQuery {
    static func primary(sentinels: [HostPort], masterName: String, credentials: RedisCredentials = .none) -> HostPort? {
        for sentinel in sentinels {
            guard
                let reply = try? RedisSentinelFailover.ask(
                    sentinel, ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName], credentials: credentials),
                let parts = reply.array, parts.count == 2, let host = parts[0].string,
                let port = parts[1].string.flatMap(Int.init)
            else { continue }
            return HostPort(host: host, port: port)
        }
        return nil
    }
}

/// The credentials a Sentinel failover of a stack's Redis uses, from its stack file and the environment: the
/// Sentinels' (`sentinel_user`, `sentinel_password_env`) and the servers' for the admin commands (`admin_user`,
/// `admin_password_env`; without them the application's `user` and `password_env`).
public struct SentinelCredentials: Sendable, Equatable {
    public var sentinels: RedisCredentials
    public var servers: RedisCredentials

    /// Both carry the stack's TLS (`ca_file_env`): Sentinels and servers alike speak only TLS then.
    public init(_ redis: StackDefinition.Redis, environment: [String: String] = ProcessInfo.processInfo.environment) {
        let tls = redis.tls(in: environment)
        sentinels = RedisCredentials(
            user: redis.sentinelUser,
            password: StackDefinition.secret(redis.sentinelPasswordEnvironmentVariable, in: environment), tls: tls)
        if let variable = redis.adminPasswordEnvironmentVariable {
            servers = RedisCredentials(user: redis.adminUser, password: StackDefinition.secret(variable, in: environment), tls: tls)
        } else {
            servers = redis.credentials(in: environment)
        }
    }
}
