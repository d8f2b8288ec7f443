import Foundation
import KilnCore
import KilnHTTP
import KilnPostgres
import KilnScenario
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A Patroni cluster on Kiln's host network: etcd members and PostgreSQL nodes managed by Patroni, each in its own
/// network namespace (`kiln.s-<stack>.etcd-N`, `kiln.s-<stack>.pg-N`). Patroni decides who leads; Kiln only starts
/// processes, asks the REST API and etcd what a client sees, and removes everything at `down`.
///
/// Guarantees: `up` is idempotent (a running member is left alone, a missing one is started) and returns only once
/// etcd has a healthy majority and Patroni names one leader with every other node streaming; `down` kills every
/// process in the stack's namespaces (the namespace is the boundary: nothing of the stack runs outside it), deletes
/// the namespaces and their veths, and removes the data directories (logs stay). Not thread-safe: one per command.
public final class PatroniCluster {
    public let spec: PatroniStackSpec
    /// Data, configs and logs: `.kiln/stack-<name>` by default.
    public let runDirectory: URL
    public let owner: HostOwner
    public let etcdHosts: [NetworkHost]
    public let nodeHosts: [NetworkHost]
    public let clientGroupHosts: [NetworkHost]
    private let network: HostNetwork
    private let logger: Logger
    /// Debian's etcd and the Patroni venv scripts/bootstrap creates (`.kiln/patroni-venv`, Debian's python, so the
    /// `postgres` user can run it).
    public let patroniExecutable: URL
    public static let postgresBinaries = "/usr/lib/postgresql/15/bin"

    public init(spec: PatroniStackSpec, home: URL, logger: Logger, owner: HostOwner? = nil, runDirectory: URL? = nil)
        throws
    {
        self.spec = spec
        self.logger = logger
        self.runDirectory = runDirectory ?? home.appendingPathComponent(".kiln/stack-\(spec.name)")
        self.patroniExecutable = home.appendingPathComponent(".kiln/patroni-venv/bin/patroni")
        let owner = owner ?? .stack(spec.name)
        self.owner = owner
        self.network = HostNetwork(logger: logger)
        func host(_ name: String, _ text: String) throws -> NetworkHost {
            guard let address = HostAddress(text) else { throw StackError(server: name, message: "\(text) is not a host address") }
            return NetworkHost(name: name, address: address, owner: owner)
        }
        etcdHosts = try spec.etcdMembers.indices.map { try host(PatroniStackSpec.etcdHostName($0), spec.etcdMembers[$0].host) }
        nodeHosts = try spec.nodes.indices.map { try host(PatroniStackSpec.nodeHostName($0), spec.nodes[$0].host) }
        clientGroupHosts = try spec.clientGroups.map { try host($0.name, $0.address.description) }
    }

    public var allHosts: [NetworkHost] { etcdHosts + nodeHosts + clientGroupHosts }

    func directory(_ host: NetworkHost) -> URL { runDirectory.appendingPathComponent(host.name) }
    func log(_ host: NetworkHost) -> URL { runDirectory.appendingPathComponent("logs/\(host.name).log") }
    /// The venv's own python, which runs its scripts: their `#!` names the directory the venv was created in, which
    /// a venv shared between checkouts (`.kiln` → /work/main/.kiln) may no longer have.
    var venvPython: String { patroniExecutable.deletingLastPathComponent().appendingPathComponent("python3").path }

    public func configFile(ofNode index: Int) -> URL {
        directory(nodeHosts[index]).appendingPathComponent("patroni.yml")
    }

    /// Node index by its Patroni member name (`pg-2`) or its address.
    public func nodeIndex(_ nameOrHost: String) -> Int? {
        nodeHosts.firstIndex { $0.name == nameOrHost || $0.address.description == nameOrHost }
    }

    // MARK: up

    public func up(readyTimeout: Duration = .seconds(120)) throws -> PatroniClusterStatus {
        for tool in ["/usr/bin/etcd", "/usr/bin/etcdctl", patroniExecutable.path, Self.postgresBinaries + "/postgres"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            throw StackError(server: spec.name, message: "\(tool) is missing: run scripts/bootstrap")
        }
        for line in (try? network.sweep()) ?? [] { logger.info("removed leftover", metadata: ["kiln.removed": "\(line)"]) }
        try FileManager.default.createDirectory(
            at: runDirectory.appendingPathComponent("logs"), withIntermediateDirectories: true)
        for host in allHosts {
            do {
                try network.addHost(host)
            } catch {
                throw StackError(server: host.name, message: "cannot create its host \(host): \(error)")
            }
        }
        // A crashed drill may have left processes stopped or rules in the namespaces.
        for line in network.clearFaults(in: allHosts) { logger.info("removed leftover", metadata: ["kiln.removed": "\(line)"]) }
        for index in etcdHosts.indices where !isListening(spec.etcdMembers[index]) {
            try startEtcd(index)
        }
        try waitEtcdHealthy(timeout: readyTimeout)
        for index in nodeHosts.indices where !isListening(spec.restEndpoint(ofNode: index)) {
            try startPatroni(index)
        }
        let status = try waitClusterReady(timeout: readyTimeout)
        try createDatabase(on: status)
        return status
    }

    private func isListening(_ endpoint: HostPort) -> Bool {
        LocalProcess.isListening(host: endpoint.host, port: endpoint.port, timeout: .milliseconds(300))
    }

    public func startEtcd(_ index: Int) throws {
        let host = etcdHosts[index]
        let member = spec.etcdMembers[index]
        let data = directory(host).appendingPathComponent("data")
        try FileManager.default.createDirectory(at: directory(host), withIntermediateDirectories: true)
        let initial = etcdHosts.indices.map {
            "\(etcdHosts[$0].name)=http://\(spec.etcdMembers[$0].host):\(spec.peerPort(ofMember: $0))"
        }.joined(separator: ",")
        // A member whose data directory exists rejoins with what it holds (`initial-cluster-state` is ignored then).
        let arguments = [
            "--name", host.name, "--data-dir", data.path,
            "--listen-client-urls", "http://\(member.host):\(member.port)",
            "--advertise-client-urls", "http://\(member.host):\(member.port)",
            "--listen-peer-urls", "http://\(member.host):\(spec.peerPort(ofMember: index))",
            "--initial-advertise-peer-urls", "http://\(member.host):\(spec.peerPort(ofMember: index))",
            "--initial-cluster", initial, "--initial-cluster-token", "kiln-\(spec.name)",
            "--initial-cluster-state", "new", "--heartbeat-interval", "100", "--election-timeout", "1000",
        ]
        logger.info("starting", metadata: ["kiln.server": "\(host.name)", "kiln.endpoint": "\(member)"])
        let pid = try LocalProcess.spawnDetached("/usr/bin/etcd", arguments, log: log(host), host: host)
        try String(pid).write(to: directory(host).appendingPathComponent("pid"), atomically: true, encoding: .utf8)
    }

    public func startPatroni(_ index: Int) throws {
        let host = nodeHosts[index]
        let dir = directory(host)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try writePatroniConfig(index)
        _ = try? LocalProcess.run("/bin/chown", ["-R", "postgres:postgres", dir.path])
        chmod(dir.path, 0o700)
        FileManager.default.createFile(atPath: log(host).path, contents: nil)
        _ = try? LocalProcess.run("/bin/chown", ["postgres:postgres", log(host).path])
        logger.info("starting", metadata: ["kiln.server": "\(host.name)", "kiln.endpoint": "\(spec.nodes[index])"])
        // runuser inside the namespace wrapper: only root may enter a namespace; PostgreSQL refuses root.
        let pid = try LocalProcess.spawnDetached(
            "/usr/sbin/runuser", ["-u", "postgres", "--", venvPython, patroniExecutable.path, configFile(ofNode: index).path],
            log: log(host), host: host)
        try? String(pid).write(to: dir.appendingPathComponent("pid"), atomically: true, encoding: .utf8)
    }

    private func writePatroniConfig(_ index: Int) throws {
        let host = nodeHosts[index]
        let node = spec.nodes[index]
        let dir = directory(host).path
        let etcd = spec.etcdMembers.map(\.description).joined(separator: ",")
        let seconds = { (duration: Duration) in duration.components.seconds }
        let text = """
            scope: \(spec.scope)
            namespace: /kiln/
            name: \(host.name)
            restapi:
              listen: \(node.host):\(spec.restPort)
              connect_address: \(node.host):\(spec.restPort)
            etcd3:
              hosts: \(etcd)
            bootstrap:
              dcs:
                ttl: \(seconds(spec.ttl))
                loop_wait: \(seconds(spec.loopWait))
                retry_timeout: \(seconds(spec.retryTimeout))
                maximum_lag_on_failover: \(spec.maximumLagOnFailover)
                synchronous_mode: \(spec.synchronousMode)
                postgresql:
                  use_pg_rewind: true
                  use_slots: true
                  parameters:
                    wal_level: replica
                    hot_standby: "on"
                    max_wal_senders: 10
                    max_replication_slots: 10
                    wal_log_hints: "on"
              initdb:
                - encoding: UTF8
              pg_hba:
                - local all all trust
                - host replication replicator \(HostAddress.subnet) trust
                - host all all \(HostAddress.subnet) trust
            postgresql:
              listen: \(node.host):\(node.port)
              connect_address: \(node.host):\(node.port)
              data_dir: \(dir)/data
              bin_dir: \(Self.postgresBinaries)
              pgpass: \(dir)/pgpass
              authentication:
                replication: {username: replicator, password: kiln}
                superuser: {username: \(spec.user), password: kiln}
              parameters:
                unix_socket_directories: \(dir)

            """
        try text.write(to: configFile(ofNode: index), atomically: true, encoding: .utf8)
    }

    private func waitEtcdHealthy(timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let members = etcdStatus()
            if members.filter(\.healthy).count * 2 > members.count { return }
            if ContinuousClock.now >= deadline {
                throw StackError(
                    server: etcdHosts[0].name, message: "etcd has no healthy majority within \(timeout)",
                    log: log(etcdHosts[0]).path)
            }
            usleep(300_000)
        }
    }

    /// Waits until one node is the leader and every other streams from it.
    private func waitClusterReady(timeout: Duration) throws -> PatroniClusterStatus {
        let deadline = ContinuousClock.now + timeout
        var last = "no answer"
        while true {
            let status = self.status()
            let leaders = status.nodes.filter { $0.role == "leader" }
            let streaming = status.nodes.filter { $0.role != "leader" && $0.state == "streaming" }
            if leaders.count == 1, streaming.count == nodeHosts.count - 1 { return status }
            last = status.nodes.map { "\($0.name) \($0.role ?? "-")/\($0.state ?? "-")" }.joined(separator: ", ")
            if ContinuousClock.now >= deadline {
                throw StackError(
                    server: nodeHosts[0].name, message: "no leader with streaming replicas within \(timeout) (\(last))",
                    log: log(nodeHosts[0]).path)
            }
            usleep(500_000)
        }
    }

    private func createDatabase(on status: PatroniClusterStatus) throws {
        guard let leader = status.leaderIndex else { return }
        let endpoint = PostgresEndpoint(
            host: spec.nodes[leader].host, port: spec.nodes[leader].port, database: "postgres", user: spec.user)
        do {
            let connection = try PostgresConnection(endpoint, connectTimeoutSeconds: 5)
            if try connection.execute("SELECT 1 FROM pg_database WHERE datname = $1", [spec.database]).rowCount == 0 {
                try connection.execute("CREATE DATABASE \"\(spec.database)\"")
            }
        } catch {
            throw StackError(server: nodeHosts[leader].name, message: "could not create database \(spec.database): \(error)")
        }
    }

    // MARK: down

    public struct DownReport: Sendable {
        public var removed: [String]
        public var failures: [String]
    }

    /// Kills everything in the stack's namespaces, removes them (and the bridge when no other stack uses it), and the
    /// data directories unless `keepData`.
    public func down(keepData: Bool = false) -> DownReport {
        var removed: [String] = []
        var failures: [String] = []
        do {
            removed += try network.removeHosts(allHosts)
        } catch {
            failures.append("removing hosts: \(error)")
        }
        if !keepData {
            for host in etcdHosts + nodeHosts {
                let dir = directory(host)
                if FileManager.default.fileExists(atPath: dir.path) {
                    do {
                        try FileManager.default.removeItem(at: dir)
                        removed.append("data \(dir.path)")
                    } catch {
                        failures.append("removing \(dir.path): \(error)")
                    }
                }
            }
        }
        return DownReport(removed: removed, failures: failures)
    }

    // MARK: status (what a client sees)

    /// Patroni's `/cluster` from the first node that answers, and etcd's member list and health.
    public func status() -> PatroniClusterStatus {
        var nodes = nodeHosts.enumerated().map { index, host in
            PatroniNodeStatus(name: host.name, endpoint: spec.nodes[index], role: nil, state: nil, lagBytes: nil, timeline: nil)
        }
        var answeredBy: String?
        for index in nodeHosts.indices {
            guard let members = clusterMembers(askingNode: index) else { continue }
            answeredBy = nodeHosts[index].name
            for member in members {
                guard let i = nodes.firstIndex(where: { $0.name == member.name }) else { continue }
                nodes[i].role = member.role
                nodes[i].state = member.state
                nodes[i].lagBytes = member.lag
                nodes[i].timeline = member.timeline
            }
            break
        }
        return PatroniClusterStatus(nodes: nodes, etcd: etcdStatus(), answeredBy: answeredBy)
    }

    struct ClusterMember: Decodable {
        var name: String
        var role: String?
        var state: String?
        var timeline: Int?
        var lag: Int?

        enum CodingKeys: String, CodingKey { case name, role, state, timeline, lag }
        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            role = try c.decodeIfPresent(String.self, forKey: .role)
            state = try c.decodeIfPresent(String.self, forKey: .state)
            timeline = try? c.decodeIfPresent(Int.self, forKey: .timeline)
            lag = try? c.decodeIfPresent(Int.self, forKey: .lag)  // "unknown" when Patroni cannot tell
        }
    }

    func clusterMembers(askingNode index: Int) -> [ClusterMember]? {
        struct Cluster: Decodable { var members: [ClusterMember] }
        guard let client = try? HTTPClient(timeoutSeconds: 2, connectTimeoutSeconds: 1),
            let response = try? client.get("http://\(spec.restEndpoint(ofNode: index))/cluster"), response.status == 200,
            let cluster = try? JSONDecoder().decode(Cluster.self, from: Data(response.body))
        else { return nil }
        return cluster.members
    }

    /// etcd members as etcd itself reports them (`etcdctl member list`, `endpoint health`, `endpoint status`).
    public func etcdStatus() -> [EtcdMemberStatus] {
        spec.etcdMembers.enumerated().map { index, member in
            let endpoint = "http://\(member)"
            let health = try? LocalProcess.run(
                "/usr/bin/etcdctl", ["--endpoints", endpoint, "--dial-timeout", "1s", "--command-timeout", "2s", "endpoint", "health"],
                environment: ["ETCDCTL_API=3"])
            var isLeader = false
            if let status = try? LocalProcess.run(
                "/usr/bin/etcdctl", ["--endpoints", endpoint, "--dial-timeout", "1s", "--command-timeout", "2s", "endpoint", "status", "-w", "json"],
                environment: ["ETCDCTL_API=3"]),
                let data = status.data(using: .utf8),
                let json = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]],
                let first = json.first?["Status"] as? [String: Any],
                let header = first["header"] as? [String: Any]
            {
                isLeader = "\(header["member_id"] ?? "a")" == "\(first["leader"] ?? "b")"
            }
            return EtcdMemberStatus(
                name: etcdHosts[index].name, endpoint: member, healthy: health?.contains("is healthy") == true,
                isLeader: isLeader)
        }
    }

    // MARK: REST API

    /// The node whose REST API answers 200 to `GET /leader` (Patroni answers 200 only on the leader holding the
    /// lock), asked of every node; nil when none does. Several answering 200 are all returned.
    public func leadersByREST(timeout: Double = 1) -> [Int] {
        nodeHosts.indices.filter { index in
            guard let client = try? HTTPClient(timeoutSeconds: timeout, connectTimeoutSeconds: timeout) else { return false }
            return (try? client.get("http://\(spec.restEndpoint(ofNode: index))/leader"))?.status == 200
        }
    }

    /// A planned switchover through the leader's REST API (`POST /switchover`); Patroni answers once it is done.
    public func switchover(from leader: Int, to candidate: Int?) throws {
        var body = "{\"leader\": \"\(nodeHosts[leader].name)\""
        if let candidate { body += ", \"candidate\": \"\(nodeHosts[candidate].name)\"" }
        body += "}"
        let client = try HTTPClient(timeoutSeconds: 60, connectTimeoutSeconds: 2)
        let response = try client.post(
            "http://\(spec.restEndpoint(ofNode: leader))/switchover", body: Array(body.utf8), contentType: "application/json")
        guard response.status == 200 else {
            throw StackError(server: nodeHosts[leader].name, message: "switchover refused: \(response.status) \(response.text)")
        }
    }

    /// Changes `synchronous_mode` in the DCS (`patronictl edit-config`), then waits until `/cluster` shows a
    /// `sync_standby` (on) or none (off).
    public func setSynchronousMode(_ on: Bool, timeout: Duration = .seconds(60)) throws {
        let patronictl = patroniExecutable.deletingLastPathComponent().appendingPathComponent("patronictl").path
        try LocalProcess.run(
            venvPython, [patronictl, "-c", configFile(ofNode: 0).path, "edit-config", "--force", "-s", "synchronous_mode=\(on)"])
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let roles = status().nodes.compactMap(\.role)
            if roles.contains("sync_standby") == on, roles.contains("leader") { return }
            usleep(300_000)
        }
        throw StackError(server: spec.name, message: "synchronous_mode=\(on) not in effect within \(timeout)")
    }
}

public struct PatroniNodeStatus: Sendable, Equatable {
    public var name: String
    public var endpoint: HostPort
    /// Patroni's role: `leader`, `replica`, `sync_standby`, …; nil when no node's REST API answered for it.
    public var role: String?
    public var state: String?
    public var lagBytes: Int?
    public var timeline: Int?

    public init(
        name: String, endpoint: HostPort, role: String? = nil, state: String? = nil, lagBytes: Int? = nil, timeline: Int? = nil
    ) {
        self.name = name
        self.endpoint = endpoint
        self.role = role
        self.state = state
        self.lagBytes = lagBytes
        self.timeline = timeline
    }
}

public struct EtcdMemberStatus: Sendable, Equatable {
    public var name: String
    public var endpoint: HostPort
    public var healthy: Bool
    public var isLeader: Bool
}

public struct PatroniClusterStatus: Sendable {
    public var nodes: [PatroniNodeStatus]
    public var etcd: [EtcdMemberStatus]
    /// The node whose `/cluster` answered; nil when none did.
    public var answeredBy: String?

    public var leaderIndex: Int? { nodes.firstIndex { $0.role == "leader" } }
    public var isHealthy: Bool {
        nodes.filter { $0.role == "leader" }.count == 1
            && nodes.allSatisfy { $0.role == "leader" || $0.state == "streaming" }
            && etcd.filter(\.healthy).count * 2 > etcd.count
    }
}
