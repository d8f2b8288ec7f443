import Dispatch
import Foundation
import KilnCore
import KilnFaults
import KilnLoad
import KilnScenario
import KilnStack
import KilnStores
import Logging

/// Runs a scenario's fault schedule beside its phases (`RunCompanion`): one thread per planned fault instance
/// sleeps until its start, starts and verifies the fault (`FaultDriver`), holds it for its duration, then stops
/// and verifies the heal. `phasesEnded` (the last phase ended, or the run was stopped by a signal) stops every
/// active fault at once, cancels those not yet started (recorded as such) and returns when all are healed, so the
/// pipeline's convergence wait and the checkers see a healed stack.
final class FaultRunner: RunCompanion, @unchecked Sendable {
    // @unchecked: `records`, `ended` and `startedAt` are only touched under `condition`'s lock; the rest is
    // immutable after init.
    let spec: FaultScheduleSpec
    let plan: [FaultScheduleSpec.Instance]
    let stack: StackDefinition
    let embedded: EmbeddedStack?
    /// The faults of a stack started by its own script (nil for every other stack).
    let scripted: ScriptedStackFaults?
    let proxies: [String: FaultProxy]
    let runID: String
    let seed: UInt64
    let logger: Logger
    /// Where clients find the current primary of each store with one (`BackendStack.currentPrimary`: PostgreSQL,
    /// Redis), by backend name; failover faults move them.
    let primaries: PrimaryDirectory
    private let condition = NSCondition()
    private var records: [Int: RunReport.Fault] = [:]
    private var ended = false
    private var startedAt: Date?
    private let group = DispatchGroup()

    init(
        spec: FaultScheduleSpec, seed: UInt64, stack: StackDefinition, embedded: EmbeddedStack?,
        scripted: ScriptedStackFaults? = nil, proxies: [String: FaultProxy], runID: String, logger: Logger
    ) {
        self.spec = spec
        self.plan = spec.plan(seed: seed)
        self.seed = seed
        self.stack = stack
        self.embedded = embedded
        self.scripted = scripted
        self.proxies = proxies
        self.runID = runID
        self.logger = logger
        // The failover drills' current primaries, of the stores the stack lists, from the backends' stack sides.
        var initial: [String: HostPort] = [:]
        for backend in Backends.all {
            if let primary = backend.stack.currentPrimary?(stack) { initial[backend.name] = primary }
        }
        primaries = PrimaryDirectory(initial)
    }

    var faultTimeline: [RunReport.Fault] {
        condition.lock()
        defer { condition.unlock() }
        return plan.indices.compactMap { records[$0] }
    }

    func phasesStarting(sinkProcesses: SinkProcessControl?) {
        let start = Date()
        condition.lock()
        startedAt = start
        condition.unlock()
        for (index, instance) in plan.enumerated() {
            group.enter()
            let thread = Thread { [self] in
                run(index, instance, from: start, sinks: sinkProcesses)
                group.leave()
            }
            thread.name = "kiln-fault-\(instance.name)"
            thread.start()
        }
        logger.info("faults: \(plan.count) planned (\(plan.map { "\($0.name) at \(Self.seconds($0.start))" }.joined(separator: ", ")))")
    }

    func phasesEnded() {
        condition.lock()
        ended = true
        condition.broadcast()
        condition.unlock()
        group.wait()
        if spec.healWait > .zero {
            logger.info("faults: all healed; waiting \(spec.healWait) before the checks")
            Thread.sleep(forTimeInterval: Self.interval(spec.healWait))
        }
    }

    /// Waits until `date` or the end of the phases; true when `date` was reached.
    private func wait(until date: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !ended && Date() < date { _ = condition.wait(until: date) }
        return !ended
    }

    private func run(_ index: Int, _ instance: FaultScheduleSpec.Instance, from start: Date, sinks: SinkProcessControl?) {
        let plannedStart = start.addingTimeInterval(Self.interval(instance.start))
        let plannedStop = start.addingTimeInterval(Self.interval(instance.stop))
        let planned = Int64(plannedStart.timeIntervalSince1970 * 1000)
        guard wait(until: plannedStart) else {
            store(index, RunReport.Fault(
                name: instance.name, kind: instance.entry.kind.rawValue, target: instance.entry.target,
                plannedStart: planned, verified: .unknown, note: "not started: the phases ended first"))
            return
        }
        let fault: any Fault
        do {
            fault = try makeFault(instance, sinks: sinks)
        } catch {
            logger.error("fault \(instance.name): cannot be built: \(error)")
            store(index, RunReport.Fault(
                name: instance.name, kind: instance.entry.kind.rawValue, target: instance.entry.target,
                plannedStart: planned, verified: .no, note: "not started: \(error)"))
            return
        }
        let driver = FaultDriver(fault, plannedStart: planned, plannedStop: Int64(plannedStop.timeIntervalSince1970 * 1000))
        logger.info("fault \(instance.name): starting \(fault.kind) on \(fault.target)")
        var record = driver.start()
        store(index, Self.reportFault(record))
        _ = wait(until: plannedStop)
        record = driver.stop()
        store(index, Self.reportFault(record))
        logger.info("fault \(instance.name): stopped; verified \(record.verified.rawValue) (\(record.note))")
    }

    private func store(_ index: Int, _ fault: RunReport.Fault) {
        condition.lock()
        records[index] = fault
        condition.unlock()
    }

    static func reportFault(_ record: FaultRecord) -> RunReport.Fault {
        RunReport.Fault(
            name: record.name, kind: record.kind, target: record.target, plannedStart: record.plannedStart,
            startedAt: record.startedAt, stoppedAt: record.stoppedAt, verified: record.verified,
            note: record.note)
    }

    private func makeFault(_ instance: FaultScheduleSpec.Instance, sinks: SinkProcessControl?) throws -> any Fault {
        let entry = instance.entry
        if let scripted, !entry.target.hasPrefix("sink:") {
            return try scripted.makeFault(instance, runID: runID, proxies: proxies, primaries: primaries)
        }
        if let hostFault = entry.hostFault, stack.network == .hosts {
            guard let embedded else {
                throw FaultSetupError(reason: "\(entry.kind.rawValue) between hosts needs the embedded hosts stack")
            }
            return try Self.hostFault(hostFault, instance: instance, embedded: embedded, seed: seed, runID: runID)
        }
        switch entry.kind {
        case .kill, .pause, .restart:
            let action = ProcessFault.Action(rawValue: entry.kind.rawValue)!
            if entry.target.hasPrefix("sink:") {
                guard let sinks else {
                    throw FaultSetupError(reason: "\(entry.target): the scenario's pipeline does not run as processes (pipeline.workers: processes)")
                }
                return SinkProcessFault(name: instance.name, action: action, sink: String(entry.target.dropFirst(5)), sinks: sinks)
            }
            guard let embedded else {
                throw FaultSetupError(reason: "\(entry.target): process faults need the embedded stack")
            }
            let controller = try LocalProcessController.embedded(entry.target, of: embedded)
            guard let server = embedded.servers.first(where: { $0.name == entry.target }) else {
                throw FaultSetupError(reason: "\(entry.target) is not a server of the embedded stack")
            }
            return ProcessFault(
                name: instance.name, action: action, controller: controller,
                speaking: .of(
                    server.wire, postgresUser: stack.section(PostgresStackConfig.self)?.user ?? "postgres",
                    database: stack.section(PostgresStackConfig.self)?.database ?? "postgres"),
                recoveryTimeout: .seconds(60))
        case .proxy:
            guard let proxy = proxies[entry.target], let text = entry.toxic else {
                throw FaultSetupError(reason: "\(entry.target) is not proxied")
            }
            var toxic = try Toxic.parse(text)
            toxic.name = instance.name
            return ProxyFault(name: instance.name, proxy: proxy, toxic: toxic, probe: Self.probe(forStore: entry.target))  // proxy: the backend's wire protocol
        case .pgFailover:
            guard let embedded else { throw FaultSetupError(reason: "pg-failover needs the embedded stack") }
            let options = entry.options
            return try PostgresFailover.embedded(
                embedded, name: instance.name, fence: options["fence"] == "kill" ? .kill : options["fence"] == "none" ? .none : .stop,
                replication: options["replication"] == "sync" ? .synchronous : .asynchronous,
                heal: options["heal"] == "leave-fenced" ? .leaveFenced : .rebuildAsReplica, directory: primaries,
                lag: .milliseconds(Int(options["lag_ms"] ?? "") ?? 0))
        case .redisFailover:
            guard let embedded else { throw FaultSetupError(reason: "redis-failover needs the embedded stack") }
            return try RedisSentinelFailover.embedded(
                embedded, name: instance.name, killPrimary: entry.options["trigger"] == "kill", directory: primaries)
        case .loss, .bandwidth, .latency:
            throw FaultSetupError(reason: Self.needsHosts(entry) ?? "\(entry.kind.rawValue) needs the hosts stack")
        case .partition:
            if let reason = Self.needsHosts(entry) { throw FaultSetupError(reason: reason) }
            guard let embedded, let server = embedded.servers.first(where: { $0.name == entry.target }) else {
                throw FaultSetupError(reason: "\(entry.target) is not a server of the embedded stack")
            }
            if let shape = entry.shape, shape != "isolate" {
                return try replicationPartition(instance, shape: shape, primary: server, of: embedded)
            }
            let other = embedded.servers.first { $0.endpoint.host != server.endpoint.host }
            return try PartitionFault(
                name: instance.name, shape: .isolate(server.endpoint.host), runID: runID, label: server.name,
                blocked: [PartitionProbe(from: "127.0.0.99", to: server.endpoint)],
                control: other.map { [PartitionProbe(from: "127.0.0.99", to: $0.endpoint)] } ?? [])
        case .clockSkew:
            guard let embedded else { throw FaultSetupError(reason: "clock-skew needs the embedded stack") }
            guard let offset = Int64(entry.options["offset_s"] ?? "") else {
                throw FaultSetupError(reason: "clock-skew: no offset")
            }
            return try ClockSkewFault(
                name: instance.name, node: PostgresNode.embedded(entry.target, of: embedded), offsetSeconds: offset)
        }
    }

    /// A partition of the replication link of PostgreSQL primary `server`; the stack's other PostgreSQL server is
    /// its standby (`PartitionFault.replication`).
    private func replicationPartition(
        _ instance: FaultScheduleSpec.Instance, shape: String, primary server: EmbeddedServer, of embedded: EmbeddedStack
    ) throws -> PartitionFault {
        guard let cut = ReplicationCut(rawValue: shape) else { throw FaultSetupError(reason: "unknown shape \(shape)") }
        guard let standbyServer = embedded.servers.first(where: { $0.isPostgres && $0.name != server.name }) else {
            throw FaultSetupError(reason: "\(shape): the stack has no PostgreSQL standby beside \(server.name)")
        }
        let primary = try PostgresNode.embedded(server.name, of: embedded)
        guard try primary.isInRecovery() == false else {
            throw FaultSetupError(reason: "\(shape): \(server.name) is a standby now (a failover swapped the roles); target the primary")
        }
        return try PartitionFault.replication(
            cut, link: ReplicationLink(primary: primary, standby: try PostgresNode.embedded(standbyServer.name, of: embedded)),
            runID: runID, name: instance.name)
    }

    /// A fault between the hosts of a hosts stack. Drawn partitions draw among `among`, or every server host; the
    /// probe matrix spans those plus every host the shape names (client groups and `kiln` are probed from only).
    /// The draw's seed mixes the run's seed with the entry and instance, so each repeat draws anew, reproducibly.
    static func hostFault(
        _ hostFault: FaultScheduleSpec.HostFault, instance: FaultScheduleSpec.Instance, embedded: EmbeddedStack,
        seed: UInt64, runID: String
    ) throws -> any Fault {
        func host(_ name: String) throws -> FaultHost {
            if name == FaultHost.kiln.name { return .kiln }
            guard let network = embedded.hosts[name] else {
                throw FaultSetupError(reason: "\(name) is not a host of stack \(embedded.definition.name) (hosts: "
                    + "\(embedded.hostList.map(\.name).joined(separator: ", ")), kiln)")
            }
            return FaultHost(network)
        }
        switch hostFault {
        case .partition(let shape, let among):
            let servers = embedded.servers.filter { embedded.hosts[$0.name] != nil }
            var universe = among.isEmpty ? servers.map(\.name) : among
            for named in shape.namedHosts where !universe.contains(named) { universe.append(named) }
            var hosts: [String: FaultHost] = [:]
            for name in universe { hosts[name] = try host(name) }
            var ports: [String: Int] = [:]
            for server in servers where hosts[server.name] != nil { ports[server.name] = server.endpoint.port }
            let drawSeed = SplitMix64.value(
                seed: seed, index: UInt64(instance.number), stream: stableHash(instance.entry.name))
            let grudge = try PartitionGrudge(shape: shape, hosts: universe, seed: drawSeed)
            return try HostPartitionFault(name: instance.name, grudge: grudge, hosts: hosts, ports: ports, runID: runID)
        case .loss(let a, let b, let probability):
            return try LinkLossFault(
                name: instance.name, between: host(a), and: host(b), probability: probability, runID: runID)
        case .bandwidth(let name, let rate):
            return try BandwidthFault(name: instance.name, host: host(name), bytesPerSecond: rate)
        case .latency(let client, let serverName, let latency, let jitter):
            guard let server = embedded.servers.first(where: { $0.name == serverName }),
                embedded.hosts[serverName] != nil
            else {
                throw FaultSetupError(
                    reason: "latency: \(serverName) is not a server host of stack \(embedded.definition.name)")
            }
            return try linkLatency(
                name: instance.name, client: host(client), server: server.endpoint,
                request: Self.request(for: server.wire), latency: latency, jitter: jitter, runID: runID)
        }
    }

    /// A latency fault on the link from `client` to `server`: a fault proxy on Kiln's bridge address forwards to the
    /// server, and the client's new connections to it are redirected there (`LinkLatencyFault` with `redirect`). The
    /// fault owns the proxy: its teardown stops it.
    static func linkLatency(
        name: String, client: FaultHost, server: HostPort, request: [UInt8], latency: Duration, jitter: Duration,
        runID: String
    ) throws -> LinkLatencyFault {
        let proxy = FaultProxy(listen: HostPort(host: HostFaultRules.rootAddress, port: 0), upstream: server)
        try proxy.start()
        do {
            return try LinkLatencyFault(
                name: name, client: client, proxy: proxy, latency: latency, jitter: jitter, request: request,
                redirect: server, runID: runID, ownsProxy: true)
        } catch {
            proxy.stop()
            throw error
        }
    }

    /// Request bytes each server answers at once, for round trips (`probe(for:)` as bytes).
    static func request(for wire: WireProtocol) -> [UInt8] {
        switch probe(for: wire) {
        case .redisPing: Array("PING\r\n".utf8)
        case .request(let bytes): bytes
        case .connect, .login: Array("\r\n".utf8)
        }
    }

    /// FNV-1a of `text`: a hash that is the same in every process (Swift's `hashValue` is seeded per process).
    static func stableHash(_ text: String) -> UInt64 {
        text.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    /// Why `entry` cannot run on the loopback stack (nil: it can); the rule is `HostsRequirement`'s.
    static func needsHosts(_ entry: FaultScheduleSpec.Entry) -> String? { HostsRequirement.reason(entry) }

    /// A request each server speaking `wire` answers while it runs and does not while paused.
    static func probe(for wire: WireProtocol) -> ServiceProbe {
        switch wire {
        case .resp: .redisPing
        case .postgres: .request([0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F])  // SSLRequest: 'N'/'S'
        case .http: .request(Array("GET /ping HTTP/1.0\r\n\r\n".utf8))
        case .kafka: .request(KafkaBrokerFault.apiVersionsRequest)
        }
    }

    /// The probe of a proxied store, by the wire protocol its backend's proxy carries (`Backend.stack.proxy`).
    static func probe(forStore store: String) -> ServiceProbe {
        Backends.backend(named: store)?.stack.proxy.map { probe(for: $0.wire) } ?? .connect
    }

    /// The servers a schedule's entries act on, for the safety gate.
    static func targetAddresses(_ spec: FaultScheduleSpec, stack: StackDefinition, embedded: EmbeddedStack?) -> [HostPort] {
        spec.entries.compactMap { entry -> HostPort? in
            switch entry.kind {
            case .proxy:
                return proxiedEndpoint(entry.target, stack: stack)
            case .pgFailover:
                return stack.section(PostgresStackConfig.self)?.primary
            case .redisFailover:
                return stack.section(RedisStackConfig.self)?.primary
            case .loss, .bandwidth, .latency:
                return nil  // between Kiln's own namespaces only (HostFaultRules refuses any other address)
            case .kill, .pause, .restart, .partition, .clockSkew:
                if entry.target.hasPrefix("sink:") || needsHosts(entry) != nil { return nil }
                return embedded?.servers.first { $0.name == entry.target }?.endpoint
            }
        }
    }

    /// The endpoint a fault proxy for `store` stands in front of (`Backend.stack.proxy`); nil: not proxiable, or
    /// the stack does not list it.
    static func proxiedEndpoint(_ store: String, stack: StackDefinition) -> HostPort? {
        Backends.backend(named: store)?.stack.proxy?.endpoint(stack)
    }

    static func interval(_ duration: Duration) -> TimeInterval {
        duration.seconds
    }

    static func seconds(_ duration: Duration) -> String { String(format: "%.1fs", interval(duration)) }
}

struct FaultSetupError: Error, CustomStringConvertible {
    var reason: String
    var description: String { reason }
}

/// Kill, pause or restart of a reference-pipeline sink process (`sink:<store>` targets). Evidence: the pid is gone
/// (kill/restart) or stopped (state `T` in /proc) while active; afterwards a new pid runs (kill/restart) or the
/// same one runs again, and is still alive a second later. A pause adds what a client of the sink's store sees: the
/// offsets the sink stored as applied do not move for `stallWindow` while paused (a sink that keeps applying makes
/// it `no`), and move past that value within `resumeTimeout` after the heal (not moving: `unknown` when nothing new
/// may have been produced, since a caught-up sink has nothing to apply).
final class SinkProcessFault: Fault {
    let name: String
    let action: ProcessFault.Action
    let sink: String
    let sinks: SinkProcessControl
    let stallWindow: TimeInterval
    let resumeTimeout: TimeInterval
    private var faultedPID: pid_t?
    /// The applied offset read at the end of the active verification.
    private var pausedOffset: Int64?

    var kind: String { action.rawValue }
    var target: String { "sink:\(sink)" }

    init(
        name: String, action: ProcessFault.Action, sink: String, sinks: SinkProcessControl,
        stallWindow: TimeInterval = 1.5, resumeTimeout: TimeInterval = 15
    ) {
        self.name = name
        self.action = action
        self.sink = sink
        self.sinks = sinks
        self.stallWindow = stallWindow
        self.resumeTimeout = resumeTimeout
    }

    func start() throws {
        guard let pid = sinks.pid(of: sink) else { throw FaultSetupError(reason: "sink \(sink) is not running") }
        faultedPID = pid
        switch action {
        case .kill: kill(pid, SIGKILL)
        case .pause: kill(pid, SIGSTOP)
        case .restart: kill(pid, SIGTERM)
        }
        if action != .pause {
            let deadline = Date().addingTimeInterval(10)
            while sinks.pid(of: sink) == pid && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        }
    }

    func stop() throws {
        switch action {
        case .pause:
            if let pid = faultedPID { kill(pid, SIGCONT) }
        case .kill, .restart:
            try sinks.restart(sink)
        }
    }

    func verify(_ phase: FaultPhase) -> FaultEvidence {
        guard let pid = faultedPID else { return .unknown("no pid was faulted") }
        switch (phase, action) {
        case (.active, .pause):
            Thread.sleep(forTimeInterval: 0.05)
            let state = ProcessFault.processState(pid).map(String.init)
            guard state == "T" else { return .no("pid \(pid) state \(state ?? "gone")") }
            return stalled(pid)
        case (.active, _):
            return sinks.pid(of: sink) == nil ? .yes("pid \(pid) gone") : .no("pid \(pid) still running")
        case (.healed, .pause):
            Thread.sleep(forTimeInterval: 0.05)
            let state = ProcessFault.processState(pid).map(String.init)
            guard let state, state != "T" else { return .no("pid \(pid) state \(state ?? "gone")") }
            return resumed(pid, state: state)
        case (.healed, _):
            Thread.sleep(forTimeInterval: 1)
            guard let now = sinks.pid(of: sink), now != pid else { return .no("no new process for sink \(sink)") }
            return .yes("new pid \(now) alive after 1 s")
        }
    }

    /// While paused: the applied offset read twice, `stallWindow` apart, must not move.
    private func stalled(_ pid: pid_t) -> FaultEvidence {
        let first: Int64
        let second: Int64
        do {
            first = try sinks.appliedOffset(of: sink)
            Thread.sleep(forTimeInterval: stallWindow)
            second = try sinks.appliedOffset(of: sink)
        } catch {
            return .unknown("pid \(pid) stopped (state T); cannot read the applied offsets: \(error)")
        }
        pausedOffset = second
        let window = String(format: "%.1f s", stallWindow)
        guard first == second else {
            return .no("pid \(pid) stopped (state T), yet the applied offset moved \(first) -> \(second) in \(window)")
        }
        return .yes("pid \(pid) stopped (state T); applied offset held at \(second) for \(window)")
    }

    /// After the pause: the applied offset must move past the one read while paused.
    private func resumed(_ pid: pid_t, state: String) -> FaultEvidence {
        let running = "pid \(pid) running again (state \(state))"
        guard let paused = pausedOffset else { return .yes(running + "; no applied offset read while paused") }
        let deadline = Date().addingTimeInterval(resumeTimeout)
        var latest = paused
        while Date() < deadline {
            if let now = try? sinks.appliedOffset(of: sink) {
                latest = now
                if now > paused {
                    return .yes(running + "; applied offset moved \(paused) -> \(now)")
                }
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        let still = String(
            format: "; applied offset still %lld after %.0f s (nothing new to apply?)", latest, resumeTimeout)
        return .unknown(running + still)
    }

    func teardown() {
        if let pid = faultedPID { kill(pid, SIGCONT) }
        if action != .pause, sinks.pid(of: sink) == nil { try? sinks.restart(sink) }
    }
}
