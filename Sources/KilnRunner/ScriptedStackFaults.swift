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
/// Sentinels, FalkorDB and ClickHouse (pids from the script's `servers.json`, a killed server started again by the
/// script's `up`; FalkorDB's pid is checked to hold the unix socket it listens on behind stunnel, as `servers.json`
/// says; ClickHouse's witness is `SELECT 1` over HTTPS with the stack's CA and password); `kill`, `pause` and
/// `restart` of Kafka (Tansu's pid, checked to hold its listening socket in its own network namespace, as
/// `servers.json` says; the witness is a librdkafka metadata request over TLS after the stack's SCRAM login);
/// `partition` of Kafka cuts its bootstrap (stunnel's address; the witness's login before the rules and a new one
/// must both get nothing); `proxy` in front of Redis and FalkorDB; `redis-failover`. Refused (exit 64, before
/// anything starts): `proxy` for PostgreSQL and
/// ClickHouse (their certificates name 127.0.33.x, not the proxy's address; Kafka is never proxiable),
/// `pg-failover` and the replication `partition` shapes (no standby), `clock-skew` (no libfaketime), and any fault
/// whose login password (or, for ClickHouse and Kafka, CA file) is missing from the environment. `kiln validate` asks the same
/// refusals in `planned` mode: everything but the environment and the pids.
struct ScriptedStackFaults {
    let stack: ScriptedStack
    let script: URL
    let environment: [String: String]
    /// What the refusals may look at: a started stack and the environment (`kiln run`), or the files only
    /// (`kiln validate`: nothing is started and no secret is read).
    let secrets: Secrets

    enum Secrets {
        /// `kiln run`: the passwords and CA files come from `environment`, the pids from the script's directory.
        case live
        /// `kiln validate`: only what the stack and scenario files say; see `notChecked`.
        case planned
    }

    /// What a planned check (`kiln validate`) cannot decide, for its output: `kiln run` checks it before anything
    /// starts.
    static let notChecked =
        "not checked by validate: the passwords and CA files in the environment, and that each target's pid file "
            + "names the process listening on its address (kiln run checks both before anything starts)"

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
        secrets = .live
    }

    /// The faults of a scenario on `definition` as far as the files decide them (`kiln validate`): no stack is read
    /// from disk, no secret from the environment.
    init(planning definition: StackDefinition, home: URL) {
        stack = ScriptedStack(planning: definition)
        let startedBy = definition.startedBy ?? ""
        script = startedBy.hasPrefix("/") ? URL(fileURLWithPath: startedBy) : home.appendingPathComponent(startedBy)
        environment = [:]
        secrets = .planned
    }

    var name: String { stack.definition.name }

    /// How a client of `server` logs in and proves the server serves it; a reason when no client of Kiln can.
    func login(_ server: ScriptedStack.Server) -> Result<ServerProtocol, Refusal> {
        let definition = stack.definition
        func password(_ variable: String?) -> Result<String?, Refusal> {
            guard let variable else { return .success(nil) }
            if case .planned = secrets { return .success("") }
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
            guard let timeseries = definition.section(TimeSeriesStackConfig.self), timeseries.kind == .clickhouse else {
                return .failure(Refusal("\(server.name): no ClickHouse timeseries section"))
            }
            guard timeseries.caFileEnvironmentVariable != nil else {
                return .failure(Refusal(
                    "\(server.name) has no ca_file_env: this stack's ClickHouse serves only https and the witness "
                        + "verifies its certificate against the stack's CA"))
            }
            guard let user = timeseries.user, timeseries.passwordEnvironmentVariable != nil else {
                return .failure(Refusal(
                    "\(server.name) speaks HTTPS and the stack names no user and password_env to log in with"))
            }
            if case .planned = secrets { return .success(.clickhouseHTTPS(user: user, password: "", caFile: nil)) }
            guard let caFile = timeseries.caFile(in: environment) else {
                return .failure(Refusal(
                    "\(timeseries.caFileEnvironmentVariable!) is not set: no client can verify \(server.name)'s "
                        + "certificate to show the fault"))
            }
            return password(timeseries.passwordEnvironmentVariable).map {
                .clickhouseHTTPS(user: user, password: $0 ?? "", caFile: caFile)
            }
        case .kafka:
            guard let kafka = definition.section(KafkaStackConfig.self) else {
                return .failure(Refusal("\(server.name): no kafka section"))
            }
            guard kafka.caFileEnvironmentVariable != nil, kafka.saslMechanism != nil else {
                // Not this stack's shape (a plaintext broker of a scripted stack): its witness would prove no login.
                return .failure(Refusal(
                    "\(server.name): the stack names no ca_file_env and sasl_mechanism: the fault witness logs in to "
                        + "Kafka only over TLS with a SASL login"))
            }
            if case .planned = secrets {
                return .success(.kafkaLogin(properties: [
                    "security.protocol": "sasl_ssl", "sasl.mechanisms": kafka.saslMechanism!.librdkafkaName,
                    "sasl.username": kafka.user ?? "",
                ]))
            }
            do {
                return .success(.kafkaLogin(properties: try kafka.clientProperties(in: environment)))
            } catch {
                // "kafka: VARIABLE (…) is not set": names the variable, never a value.
                return .failure(Refusal("\(error): no client can log in to \(server.name) to show the fault"))
            }
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
            if case .failure(let refusal) = login(server) { return "\(fault): \(refusal)" }
            if case .planned = secrets { return nil }
            guard server.pidFile != nil else {
                return "\(fault): \(stack.directory.appendingPathComponent(ScriptedStack.serversFile).path) names no "
                    + "pid file for \(server.name)"
            }
            guard ScriptedStack.listeningPID(server) != nil else {
                let listens = server.listener.map { "\($0.endpoint) in network namespace \($0.namespace)" }
                return "\(fault): the process of \(server.name)'s pid file does not hold its listening socket "
                    + "\(listens ?? server.endpoint.description) (FalkorDB on the hardened stack serves a unix socket behind stunnel): a fault on "
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
            guard missing.isEmpty || secrets == .planned else {
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

/// `kiln validate` of a scenario on a scripted stack: the refusals `kiln run` would give its faults, as far as the
/// files decide them (kinds, targets, the protocols and logins the stack file names), without starting or reading
/// anything else.
public enum ScriptedStackFaultPlan {
    /// Throws the first fault `kiln run` would refuse, at its entry's place (FILE:LINE:COL, field `faults`, the same
    /// reason `kiln run` gives). Returns what could not be checked without a started stack and its environment; nil
    /// when the scenario has no fault on a scripted stack.
    public static func check(_ scenario: LoadScenario, home: URL) throws(SpecError) -> String? {
        guard let spec = scenario.faults, !spec.entries.isEmpty, scenario.stack.kind == .external,
            scenario.stack.startedBy != nil
        else { return nil }
        let planned = ScriptedStackFaults(planning: scenario.stack, home: home)
        for entry in spec.entries {
            if let reason = planned.refusal(entry) {
                throw SpecError(at: entry.source, field: "faults", message: reason)
            }
        }
        return ScriptedStackFaults.notChecked
    }
}
