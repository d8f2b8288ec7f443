import Foundation
import KilnCore
import KilnPostgres
import KilnScenario
import KilnStack
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// The faults of a Patroni HA drill (`PatroniDrillSpec.FaultKind`), each aimed at the hosts of one Patroni stack and
/// verified the way a client sees it: a PostgreSQL connection opened before the fault, TCP connects from inside the
/// hosts, Patroni's REST API and etcd's own health answer — never the state Kiln set.
///
/// Guarantees: every process signal goes only to processes inside the stack's own namespaces; iptables rules go only
/// into those namespaces, tagged `kiln-fault:<run-id>`, and are deleted at `stop`/`teardown` (and vanish with the
/// namespace at `kiln stack down`); `teardown` continues every stopped process of the targeted hosts.
public final class PatroniFault: Fault {
    public let name: String
    public let kind: String
    public let target: String
    private let fault: PatroniDrillSpec.FaultKind
    private let cluster: PatroniCluster
    private let network: HostNetwork
    private let runID: String
    private let logger: Logger
    /// The leader when the fault starts (node index).
    public let leader: Int
    /// The etcd members a kill/quorum fault acts on.
    private let etcdTargets: [Int]
    private var witness: PostgresConnection?
    private var rules: [(host: NetworkHost, rule: [String])] = []
    private var stoppedPIDs: [pid_t] = []

    public init(
        _ fault: PatroniDrillSpec.FaultKind, cluster: PatroniCluster, leader: Int, runID: String, logger: Logger
    ) {
        self.fault = fault
        self.cluster = cluster
        self.leader = leader
        self.runID = runID
        self.logger = logger
        self.network = HostNetwork(logger: logger)
        self.kind = "patroni:\(fault.rawValue)"
        self.name = fault.rawValue
        let members = cluster.etcdHosts.indices
        switch fault {
        case .killEtcdMember:
            // One member that is not the Raft leader: its loss must not stop the cluster (the drill's claim).
            let raftLeader = cluster.etcdStatus().firstIndex(where: \.isLeader) ?? 0
            etcdTargets = [members.first { $0 != raftLeader } ?? 0]
        case .loseEtcdQuorum:
            etcdTargets = Array(members.prefix(members.count / 2 + 1))
        default:
            etcdTargets = []
        }
        switch fault {
        case .killEtcdMember, .loseEtcdQuorum:
            target = etcdTargets.map { cluster.etcdHosts[$0].name }.joined(separator: ",")
        default:
            target = cluster.nodeHosts[leader].name
        }
    }

    private var leaderHost: NetworkHost { cluster.nodeHosts[leader] }
    private var leaderEndpoint: HostPort { cluster.spec.nodes[leader] }

    public func setup() throws {
        switch fault {
        case .killLeader, .pauseLeader:
            // Evidence is what a client sees: this connection, opened before the fault, must stop answering.
            witness = try PostgresConnection(
                PostgresEndpoint(host: leaderEndpoint.host, port: leaderEndpoint.port, database: "postgres", user: cluster.spec.user),
                connectTimeoutSeconds: 2, networkTimeoutMilliseconds: 2000)
        default: break
        }
    }

    public func start() throws {
        switch fault {
        case .killLeader:
            try killAll(in: leaderHost)
        case .pauseLeader:
            stoppedPIDs = try signalAll(in: leaderHost, SIGSTOP)
        case .partitionLeaderFromEtcd:
            for member in cluster.spec.etcdMembers {
                try addRule(in: leaderHost, ["INPUT", "-s", member.host, "-j", "DROP"])
                try addRule(in: leaderHost, ["OUTPUT", "-d", member.host, "-j", "DROP"])
            }
        case .partitionLeader:
            // Side A: the leader and clients-a. Side B: the replicas, etcd and clients-b. Kiln's host sees both.
            let sideA = [leaderHost] + cluster.clientGroupHosts.prefix(1)
            let sideB = cluster.nodeHosts.filter { $0 != leaderHost } + cluster.etcdHosts + cluster.clientGroupHosts.dropFirst()
            for host in sideA {
                for other in sideB {
                    try addRule(in: host, ["INPUT", "-s", other.address.description, "-j", "DROP"])
                    try addRule(in: host, ["OUTPUT", "-d", other.address.description, "-j", "DROP"])
                }
            }
        case .killEtcdMember, .loseEtcdQuorum:
            for index in etcdTargets { try killAll(in: cluster.etcdHosts[index]) }
        case .switchover:
            let candidate = cluster.nodeHosts.indices.first { $0 != leader }!
            try cluster.switchover(from: leader, to: candidate)
        }
    }

    public func stop() throws {
        switch fault {
        case .killLeader:
            try cluster.startPatroni(leader)
        case .pauseLeader:
            resume()
        case .partitionLeaderFromEtcd, .partitionLeader:
            removeRules()
        case .killEtcdMember, .loseEtcdQuorum:
            for index in etcdTargets { try cluster.startEtcd(index) }
        case .switchover:
            break
        }
    }

    public func teardown() {
        resume()
        removeRules()
        witness?.close()
        witness = nil
    }

    // MARK: evidence

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        switch (fault, phase) {
        case (.killLeader, .active), (.pauseLeader, .active):
            return witnessStalls()
        case (.killLeader, .healed), (.pauseLeader, .healed):
            return nodeRejoins(leader, within: .seconds(90))
        case (.partitionLeaderFromEtcd, .active):
            return probes(from: leaderHost, to: cluster.spec.etcdMembers, expectBlocked: true)
                .and(connects(from: nil, to: leaderEndpoint))
        case (.partitionLeaderFromEtcd, .healed):
            return probes(from: leaderHost, to: cluster.spec.etcdMembers, expectBlocked: false)
        case (.partitionLeader, .active):
            let others = cluster.nodeHosts.indices.filter { $0 != leader }.map { cluster.spec.nodes[$0] }
            return probes(from: leaderHost, to: others + cluster.spec.etcdMembers, expectBlocked: true)
                .and(connects(from: nil, to: leaderEndpoint))
        case (.partitionLeader, .healed):
            let others = cluster.nodeHosts.indices.filter { $0 != leader }.map { cluster.spec.nodes[$0] }
            return probes(from: leaderHost, to: others + cluster.spec.etcdMembers, expectBlocked: false)
        case (.killEtcdMember, .active), (.loseEtcdQuorum, .active):
            let members = cluster.etcdStatus()
            let down = etcdTargets.filter { !members[$0].healthy }
            let upOthers = members.indices.filter { !etcdTargets.contains($0) && members[$0].healthy }
            let text = "etcd endpoint health: \(members.map { "\($0.name) \($0.healthy ? "healthy" : "unhealthy")" }.joined(separator: ", "))"
            if down.count == etcdTargets.count {
                return fault == .killEtcdMember && upOthers.count * 2 <= members.count
                    ? .unknown("\(text): the survivors have no majority either") : .yes(text)
            }
            return .no(text)
        case (.killEtcdMember, .healed), (.loseEtcdQuorum, .healed):
            let deadline = ContinuousClock.now + .seconds(30)
            var members = cluster.etcdStatus()
            while !members.allSatisfy(\.healthy), ContinuousClock.now < deadline {
                usleep(500_000)
                members = cluster.etcdStatus()
            }
            let text = "etcd endpoint health: \(members.map { "\($0.name) \($0.healthy ? "healthy" : "unhealthy")" }.joined(separator: ", "))"
            return members.allSatisfy(\.healthy) ? .yes(text) : .no(text)
        case (.switchover, .active):
            let leaders = cluster.leadersByREST()
            let names = leaders.map { cluster.nodeHosts[$0].name }.joined(separator: ",")
            return leaders.count == 1 && leaders[0] != leader
                ? .yes("GET /leader answers 200 on \(names) only (was \(leaderHost.name))")
                : .no("GET /leader answers 200 on [\(names)] (switchover from \(leaderHost.name))")
        case (.switchover, .healed):
            return nodeRejoins(leader, within: .seconds(90))
        }
    }

    /// `SELECT 1` on the connection opened before the fault must fail or get no reply within 300 ms, and a new
    /// connection must not be served.
    private func witnessStalls() -> FaultEvidence {
        guard let witness else { return .unknown("no witness connection") }
        var old = ""
        do {
            try witness.send("SELECT 1")
            if try witness.awaitReply(within: .milliseconds(300)) {
                return .no("SELECT 1 on a connection to \(leaderEndpoint) opened before the fault still answered")
            }
            old = "SELECT 1 on the connection opened before got no reply within 300 ms"
        } catch {
            old = "SELECT 1 on the connection opened before failed (\(error.kind))"
        }
        let fresh = LocalProcess.isListening(host: leaderEndpoint.host, port: leaderEndpoint.port, timeout: .milliseconds(300))
        if fresh, fault == .killLeader {
            return .no("\(old), but \(leaderEndpoint) still accepts connections")
        }
        return .yes("\(old); a new connection \(fresh ? "is accepted by the paused kernel socket but not served" : "is refused or times out")")
    }

    /// The node answers again through its REST API as a replica streaming from the leader.
    private func nodeRejoins(_ index: Int, within limit: Duration) -> FaultEvidence {
        let deadline = ContinuousClock.now + limit
        var last = PatroniNodeStatus(name: cluster.nodeHosts[index].name, endpoint: cluster.spec.nodes[index])
        while ContinuousClock.now < deadline {
            let status = cluster.status()
            last = status.nodes[index]
            if status.isHealthy {
                return .yes("\(last.name) is \(last.role ?? "-")/\(last.state ?? "-") in /cluster; one leader, all streaming")
            }
            usleep(500_000)
        }
        return .no("\(last.name) is \(last.role ?? "-")/\(last.state ?? "unreachable") after \(limit)")
    }

    private func probes(from host: NetworkHost, to endpoints: [HostPort], expectBlocked: Bool) -> FaultEvidence {
        var wrong: [String] = []
        for endpoint in endpoints {
            let reached = (try? HostNetwork.withNamespace(of: host) {
                LocalProcess.isListening(host: endpoint.host, port: endpoint.port, timeout: .milliseconds(500))
            }) ?? false
            if reached == expectBlocked { wrong.append("\(endpoint) \(reached ? "connected" : "timed out")") }
        }
        let what = "TCP connects from \(host.name) to \(endpoints.map(\.description).joined(separator: ", "))"
        return wrong.isEmpty
            ? .yes("\(what) \(expectBlocked ? "all time out" : "all connect")") : .no("\(what): \(wrong.joined(separator: "; "))")
    }

    /// A control probe: Kiln's host (nil) or `host` still reaches `endpoint`.
    private func connects(from host: NetworkHost?, to endpoint: HostPort) -> FaultEvidence {
        let reached = LocalProcess.isListening(host: endpoint.host, port: endpoint.port, timeout: .milliseconds(500))
        return reached ? .yes("Kiln's host still connects to \(endpoint)") : .no("Kiln's host cannot connect to \(endpoint)")
    }

    // MARK: acting

    /// Signals every process in `host`'s namespace, re-scanning until no new one appears (a pause must catch
    /// children forked meanwhile). Returns the signalled pids.
    @discardableResult
    private func signalAll(in host: NetworkHost, _ signal: Int32) throws -> [pid_t] {
        var signalled = Set<pid_t>()
        for _ in 0..<10 {
            let fresh = network.processes(in: host).filter { !signalled.contains($0) }
            if fresh.isEmpty { break }
            for pid in fresh { kill(pid, signal) }
            signalled.formUnion(fresh)
        }
        guard !signalled.isEmpty else { throw StackError(server: host.name, message: "no process runs in \(host.namespace)") }
        logger.info("signalled", metadata: ["kiln.host": "\(host.name)", "kiln.signal": "\(signal)", "kiln.pids": "\(signalled.count)"])
        return Array(signalled)
    }

    /// SIGKILLs every process in `host` and returns once each has exited. kill(2) returns before the process is
    /// gone: a postmaster tearing down its shared memory still holds its listening socket, and the kernel keeps
    /// completing connects on it, so the fault has started only when every process has exited (a zombie has closed
    /// its sockets). Throws when one outlives 10 s.
    private func killAll(in host: NetworkHost) throws {
        let alive = try signalAll(in: host, SIGKILL).filter { !LocalProcess.waitForExit($0, within: .seconds(10)) }
        guard alive.isEmpty else {
            throw StackError(server: host.name, message: "pids \(alive.sorted()) still alive 10 s after SIGKILL")
        }
    }

    private func resume() {
        for pid in stoppedPIDs { kill(pid, SIGCONT) }
        stoppedPIDs = []
    }

    private func addRule(in host: NetworkHost, _ rule: [String]) throws {
        let tagged = rule + ["-m", "comment", "--comment", "kiln-fault:\(runID)"]
        try HostNetwork.run(in: host, "/usr/sbin/iptables", ["-w", "5", "-A"] + tagged)
        rules.append((host, tagged))
    }

    private func removeRules() {
        for (host, rule) in rules.reversed() {
            _ = try? HostNetwork.run(in: host, "/usr/sbin/iptables", ["-w", "5", "-D"] + rule)
        }
        rules = []
    }
}

extension FaultEvidence {
    /// Both pieces of evidence: `yes` only when both are, the texts joined.
    func and(_ other: FaultEvidence) -> FaultEvidence {
        FaultEvidence(verified.and(other.verified), "\(text); \(other.text)")
    }
}
