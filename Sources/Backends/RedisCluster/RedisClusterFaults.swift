import KilnCore
import KilnRedis

#if canImport(Glibc)
import Glibc
#endif

/// Faults on one master of an embedded Redis Cluster, proven from what a client sees.
///
/// - `failover`: `CLUSTER FAILOVER` sent to the master's replica (planned: the replica catches up first, no
///   acknowledged write is lost); `heal` leaves the roles swapped (both nodes run).
/// - `killMaster`: SIGKILL of the master; its replica is promoted after `cluster-node-timeout` (plus the election);
///   acknowledged writes not yet replicated are lost (asynchronous replication); `heal` restarts the killed node,
///   which rejoins as a replica of the promoted one.
///
/// The target is the master serving `probeKey`'s slot when the fault starts. `awaitNewMaster` is the evidence: a
/// fresh client's `SET probeKey` is acknowledged by a node other than the old master (a write that a redirect
/// follows to its final node; the router records which node answered). Blocking; one caller at a time.
public struct RedisClusterFault: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        case failover
        case killMaster = "kill-master"
    }

    public let kind: Kind
    public let cluster: RedisClusterEmbedded
    /// The key whose slot's master is the target (and that the verification writes).
    public let probeKey: String

    public init(kind: Kind, cluster: RedisClusterEmbedded, probeKey: String = "kiln:fault:probe") {
        self.kind = kind
        self.cluster = cluster
        self.probeKey = probeKey
    }

    /// What `start` did: the master it acted on, the replica expected to take over, and when.
    public struct Started: Sendable {
        public var oldMaster: HostPort
        public var replica: HostPort
        public var at: ContinuousClock.Instant
    }

    public struct FaultError: Error, CustomStringConvertible {
        public var reason: String
        public var description: String { "redis-cluster fault: \(reason)" }
    }

    /// Acts on the master of `probeKey`'s slot.
    public func start() throws -> Started {
        let router = try RedisClusterRouter(seeds: cluster.nodes, timeoutSeconds: 2)
        defer { router.close() }
        let slot = RedisClusterSlot.of(probeKey)
        guard let master = router.topology.primary(ofSlot: slot) else { throw FaultError(reason: "slot \(slot) unserved") }
        guard let replica = router.topology.replicas(of: master).first else {
            throw FaultError(reason: "master \(master) has no replica in CLUSTER SLOTS")
        }
        let at = ContinuousClock.now
        switch kind {
        case .failover:
            let connection = try RedisConnection(host: replica.host, port: replica.port, timeoutSeconds: 2)
            defer { connection.close() }
            try connection.command(["CLUSTER", "FAILOVER"])
        case .killMaster:
            try cluster.kill(master)
        }
        return Started(oldMaster: master, replica: replica, at: at)
    }

    /// Waits (at most `timeout`) until a fresh client's write of `probeKey` is acknowledged by a node other than
    /// `started.oldMaster`; returns that node and the time since the fault started, nil when it never happened.
    public func awaitNewMaster(
        _ started: Started, timeout: Duration = .seconds(30)
    ) -> (node: HostPort, after: Duration)? {
        let deadline = ContinuousClock.now + timeout
        let key = Array(probeKey.utf8)
        while ContinuousClock.now < deadline {
            if let router = try? RedisClusterRouter(seeds: cluster.nodes, timeoutSeconds: 1) {
                defer { router.close() }
                if let reply = try? router.command(slot: RedisClusterSlot.of(key), [Array("SET".utf8), key, Array("1".utf8)]),
                    reply == .status("OK"), let node = router.lastNode, node != started.oldMaster
                {
                    return (node, ContinuousClock.now - started.at)
                }
            }
            usleep(50_000)
        }
        return nil
    }

    /// Undoes what can be undone: after `killMaster`, restarts the old master and waits until the cluster is healthy
    /// with it as a replica of the node that took over (`timeout`). Returns whether it is (after `failover`: whether
    /// the cluster is healthy).
    public func heal(_ started: Started, timeout: Duration = .seconds(30)) throws -> Bool {
        if kind == .killMaster, !cluster.isRunning(started.oldMaster) {
            try cluster.launch(started.oldMaster)
        }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if cluster.isHealthy(), let router = try? RedisClusterRouter(seeds: cluster.nodes, timeoutSeconds: 1) {
                defer { router.close() }
                let masters = router.topology.primaries
                let rejoined = !masters.contains(started.oldMaster)
                    && masters.contains { router.topology.replicas(of: $0).contains(started.oldMaster) }
                if rejoined { return true }
            }
            usleep(100_000)
        }
        return false
    }
}
