import Foundation
import KilnCore
import KilnFaults
import KilnRedis
import KilnScenario
import KilnStack
import KilnStores

/// The faults of a scenario on a scripted external stack (`started_by:`, the hardened stack of `scripts/secure-stack`):
/// which kinds work there, why the others are refused, and how each is built. Every fault that runs is verified by a
/// client that logs in as the stack file says (PostgreSQL with its password, TLS as `PGSSLMODE`/`PGSSLROOTCERT` say;
/// Redis, FalkorDB and the Sentinels with their ACL user or `requirepass`): a server that only answers an
/// unauthenticated handshake proves nothing a client of this stack sees.
///
/// Works: `kill`, `pause`, `restart` and `partition` (`isolate`) of PostgreSQL, Redis (primary, replica), the
/// Sentinels and FalkorDB (pids from the script's `servers.json`, a killed server started again by the script's
/// `up`); `proxy` in front of Redis and FalkorDB; `redis-failover`. Refused (exit 64, before anything starts): every
/// fault on ClickHouse (https only) and Kafka (TLS + SCRAM: no witness speaks it yet), `proxy` for PostgreSQL and ClickHouse (their certificates
/// name 127.0.33.x, not the proxy's address), `pg-failover` and the replication `partition` shapes (no standby),
/// `clock-skew` (no libfaketime), and any fault whose login password is missing from the environment.
struct ScriptedStackFaults {
    let stack: ScriptedStack
    let script: URL
    let environment: [String: String]

    /// Throws `Failure` 69 when the script's `servers.json` is not in `directory` (no stack started there).
    init(_ definition: StackDefinition, directory: URL, home: URL, environment: [String: String]) throws {
        do {
            stack = try ScriptedStack(definition, directory: directory)
        } catch {
            throw Failure(code: .stackUnavailable, message: "faults on stack \(definition.name): \(error)")
        }
        let startedBy = definition.startedBy!
        script = startedBy.hasPrefix("/") ? URL(fileURLWithPath: startedBy) : home.appendingPathComponent(startedBy)
        self.environment = environment
    }

    var name: String { stack.definition.name }

    /// How a client of `server` logs in and proves the server serves it; a reason when no client of Kiln can.
    func login(_ server: ScriptedStack.Server) -> Result<ServerProtocol, Refusal> {
        let definition = stack.definition
        func password(_ variable: String?) -> Result<String?, Refusal> {
            guard let variable else { return .success(nil) }
            guard let value = StackDefinition.secret(variable, in: environment) else {
                return .failure(Refusal("\(variable) is not set: no client can log in to \(server.name) to show the fault"))
            }
            return .success(value)
        }
        func redisLogin(user: String?, _ variable: String?, tls: RedisTLS?) -> Result<ServerProtocol, Refusal> {
            if tls != nil, variable == nil {
                return .failure(Refusal("\(server.name) speaks TLS and the stack names no password to log in with"))
            }
            return password(variable).map { password in
                password.map { .redisLogin(user: user, password: $0, tls: tls) } ?? .redis
            }
        }
        switch server.wire {
        case .postgres:
            guard let pg = definition.section(PostgresStackConfig.self) else { return .failure(Refusal("no postgres section")) }
            return password(pg.passwordEnvironmentVariable).map {
                .postgres(user: pg.user, database: pg.database, password: $0)
            }
        case .resp:
            if server.role == .falkordb, let graph = definition.section(GraphStackConfig.self) {
                return redisLogin(user: graph.user, graph.passwordEnvironmentVariable, tls: graph.tls(in: environment))
            }
            guard let redis = definition.section(RedisStackConfig.self) else {
                return .failure(Refusal("\(server.name): no redis section"))
            }
            if server.role == .sentinel {
                return redisLogin(
                    user: redis.sentinelUser, redis.sentinelPasswordEnvironmentVariable, tls: redis.tls(in: environment))
            }
            return redisLogin(user: redis.user, redis.passwordEnvironmentVariable, tls: redis.tls(in: environment))
        case .http:
            return .failure(Refusal(
                "\(server.name) serves only https at \(server.endpoint); Kiln's fault witness speaks plain HTTP, so no "
                    + "client could show the fault"))
        case .kafka:
            return .failure(Refusal(
                "\(server.name) speaks only TLS with a SCRAM login, and the fault witness has no such Kafka client yet "
                    + "(README, \"The hardened stack\"), so no client could show the fault"))
        }
    }

    struct Refusal: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Why `entry` cannot run on this stack (for an exit-64 message that names the fault); nil: it can.
    func refusal(_ entry: FaultScheduleSpec.Entry) -> String? {
        let fault = "fault '\(entry.name)' (\(entry.kind.rawValue) \(entry.target)) cannot run on stack \(name)"
        func serverLogin() -> String? {
            guard let server = stack.server(named: entry.target) else {
                return "\(fault): '\(entry.target)' is not a server of the stack (servers: "
                    + "\(stack.servers.map(\.name).joined(separator: ", ")))"
            }
            guard server.pidFile != nil else {
                return "\(fault): \(stack.directory.appendingPathComponent(ScriptedStack.serversFile).path) names no "
                    + "pid file for \(server.name)"
            }
            if case .failure(let refusal) = login(server) { return "\(fault): \(refusal)" }
            guard ScriptedStack.listeningPID(server) != nil else {
                return "\(fault): the process of \(server.name)'s pid file does not hold its listening socket "
                    + "\(server.endpoint) (FalkorDB on the hardened stack serves a unix socket behind stunnel): a fault on "
                    + "that pid would not be the server clients reach"
            }
            return nil
        }
        switch entry.kind {
        case .kill, .pause, .restart:
            if entry.target.hasPrefix("sink:") { return nil }  // a pipeline process of Kiln's own
            return serverLogin()
        case .partition:
            if let shape = entry.shape, shape != "isolate" {
                return "\(fault): the \(shape) shape cuts a PostgreSQL primary from its streaming standby; this stack has none"
            }
            return serverLogin()
        case .proxy:
            guard let backend = Backends.backend(named: entry.target), let proxy = backend.stack.proxy else {
                return "\(fault): '\(entry.target)' cannot be proxied"
            }
            switch proxy.wire {
            case .postgres, .http:
                return "\(fault): its clients verify the server's TLS certificate, which names "
                    + "\(proxy.endpoint(stack.definition)?.host ?? "the server's address"), not the fault proxy's address"
            case .resp, .kafka:
                guard let server = stack.servers.first(where: { $0.endpoint == proxy.endpoint(stack.definition) }) else {
                    return nil
                }
                if case .failure(let refusal) = login(server) { return "\(fault): \(refusal)" }
                return nil
            }
        case .redisFailover:
            guard let redis = stack.definition.section(RedisStackConfig.self), !redis.sentinels.isEmpty else {
                return "\(fault): the stack has no Redis Sentinels"
            }
            let missing = [redis.sentinelPasswordEnvironmentVariable, redis.adminPasswordEnvironmentVariable]
                .compactMap { $0 }.filter { StackDefinition.secret($0, in: environment) == nil }
            guard missing.isEmpty else {
                return "\(fault): \(missing.joined(separator: ", ")) not set: the Sentinels and servers refuse the failover's commands"
            }
            return nil
        case .pgFailover:
            return "\(fault): it promotes the embedded stack's PostgreSQL streaming standby; this stack has none"
        case .clockSkew:
            return "\(fault): it steps the clock of a server the embedded stack starts under libfaketime; "
                + "this stack's script starts none that way"
        case .loss, .bandwidth, .latency:
            return "\(fault): it acts between the hosts of a hosts stack (network: hosts)"
        }
    }

    /// The server a fault acts on, for the safety gate (`ChaosSafety`).
    func targetAddress(_ entry: FaultScheduleSpec.Entry) -> HostPort? {
        switch entry.kind {
        case .proxy: FaultRunner.proxiedEndpoint(entry.target, stack: stack.definition)
        case .redisFailover: stack.definition.section(RedisStackConfig.self)?.primary
        default: stack.server(named: entry.target)?.endpoint
        }
    }

    /// Builds the fault of `instance` (refused entries never get here: `refusal` was asked before the run).
    func makeFault(
        _ instance: FaultScheduleSpec.Instance, runID: String, proxies: [String: FaultProxy], primaries: PrimaryDirectory
    ) throws -> any Fault {
        let entry = instance.entry
        if let reason = refusal(entry) { throw FaultSetupError(reason: reason) }
        switch entry.kind {
        case .kill, .pause, .restart:
            let (server, spoken) = try serverAndLogin(entry.target)
            return ProcessFault(
                name: instance.name, action: ProcessFault.Action(rawValue: entry.kind.rawValue)!,
                controller: controller(server, spoken), probe: spoken.newConnectionProbe, witness: spoken,
                recoveryTimeout: .seconds(60))
        case .partition:
            let (server, spoken) = try serverAndLogin(entry.target)
            // The witness logs in before the rules go in: while they hold, its operation must stall and a new login
            // must fail; after, a new login must succeed.
            let clients = try ClientLoginEvidence(spoken, endpoint: server.endpoint)
            let other = stack.servers.first { $0.endpoint.host != server.endpoint.host && $0.pidFile != nil }
            do {
                return try PartitionFault(
                    name: instance.name, shape: .isolate(server.endpoint.host), runID: runID, label: server.name,
                    blocked: [PartitionProbe(from: "127.0.0.99", to: server.endpoint)],
                    control: other.map { [PartitionProbe(from: "127.0.0.99", to: $0.endpoint)] } ?? [],
                    effect: { clients.evidence($0) })
            } catch {
                clients.close()
                throw error
            }
        case .proxy:
            guard let proxy = proxies[entry.target], let text = entry.toxic else {
                throw FaultSetupError(reason: "\(entry.target) is not proxied")
            }
            var toxic = try Toxic.parse(text)
            toxic.name = instance.name
            guard let upstream = stack.servers.first(where: { $0.endpoint == proxy.upstream }),
                case .success(let spoken) = login(upstream)
            else { throw FaultSetupError(reason: "\(entry.target): no server of the stack at \(proxy.upstream)") }
            return ProxyFault(name: instance.name, proxy: proxy, toxic: toxic, probe: .login(spoken))
        case .redisFailover:
            let redis = stack.definition.redis
            let credentials = SentinelCredentials(redis, environment: environment)
            var trigger = RedisSentinelFailover.Trigger.command
            if entry.options["trigger"] == "kill" {
                let current = primaries.primary(of: "redis") ?? redis.primary
                guard let server = stack.servers.first(where: { $0.endpoint == current }) else {
                    throw FaultSetupError(reason: "redis-failover: the current primary \(current) is not a server of the stack")
                }
                let (_, spoken) = try serverAndLogin(server.name)
                trigger = .killPrimary(controller(server, spoken))
            }
            return RedisSentinelFailover(
                name: instance.name, masterName: redis.masterName, sentinels: redis.sentinels, trigger: trigger,
                failBack: true, directory: primaries, sentinelCredentials: credentials.sentinels,
                serverCredentials: credentials.servers)
        case .pgFailover, .clockSkew, .loss, .bandwidth, .latency:
            throw FaultSetupError(reason: "\(entry.kind.rawValue) cannot run on stack \(name)")
        }
    }

    private func serverAndLogin(_ name: String) throws -> (ScriptedStack.Server, ServerProtocol) {
        guard let server = stack.server(named: name) else { throw FaultSetupError(reason: "\(name) is not a server") }
        switch login(server) {
        case .success(let spoken): return (server, spoken)
        case .failure(let refusal): throw FaultSetupError(reason: refusal.description)
        }
    }

    private func controller(_ server: ScriptedStack.Server, _ spoken: ServerProtocol) -> ScriptedProcessController {
        ScriptedProcessController(
            server, script: script, directory: stack.directory, environment: environment, readyProbe: .login(spoken))
    }
}
