import KilnBackend
import KilnCore

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Redis Cluster (3 masters + 3 replicas embedded): its operations, client and places.
public enum RedisClusterBackend {
    public static let descriptor = Backend(
        driver: StoreDriver(RedisClusterClient.self) { context in
            try RedisClusterClient(context: context, settings: try RedisClusterSettings.of(context))
        },
        places: [.redisClusterTxnKeys],
        scanners: [ScannerDriver(place: .redisClusterTxnKeys) { try RedisClusterScanner(context: $0) }],
        sink: SinkDriver(name: RedisClusterSink.name.rawValue, fills: [.redisClusterTxnKeys]) {
            try RedisClusterSink(context: $0, spec: $1)
        })
}

extension RowPlace {
    /// `<ns>:txn:<id>` strings on every master, written by `set` and `bulk-set`.
    public static let redisClusterTxnKeys = RowPlace("txn-keys", writtenBy: [RedisClusterOperation.set, .bulkSet])
}

/// Where the cluster is and how the embedded one is built: the stack file's `redis_cluster:` section.
public struct RedisClusterSettings: Sendable, Hashable {
    /// Nodes a client asks for the slot map (any node of the cluster will do); for an embedded cluster, every node.
    public var seeds: [HostPort]
    /// Replicas per master when the embedded cluster is created (`redis-cli --cluster create --cluster-replicas`).
    public var replicasPerMaster: Int
    /// `cluster-node-timeout` of the embedded nodes: how long a master may be unreachable before its replica is
    /// promoted (the kill-a-master drill's unavailability is about twice this).
    public var nodeTimeout: Duration

    public init(seeds: [HostPort], replicasPerMaster: Int = 1, nodeTimeout: Duration = .milliseconds(2000)) {
        precondition(!seeds.isEmpty, "a Redis Cluster needs at least one node")
        self.seeds = seeds
        self.replicasPerMaster = replicasPerMaster
        self.nodeTimeout = nodeTimeout
    }

    /// Environment variable holding the nodes (`host:port,host:port,…`) while the stack file has no section for
    /// this backend (stopgap until the stack interface carries a config per backend).
    public static let nodesVariable = "KILN_REDIS_CLUSTER_NODES"

    /// The settings a client context names.
    /// - Throws: `RedisClusterError.topology` when it names none or an address does not parse.
    public static func of(_ context: ClientContext) throws -> RedisClusterSettings {
        let text = context.environment[nodesVariable] ?? ProcessInfo.processInfo.environment[nodesVariable] ?? ""
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let nodes = parts.compactMap { HostPort(parsing: $0) }
        guard !nodes.isEmpty, nodes.count == parts.count else {
            throw RedisClusterError.topology("no cluster nodes: set \(nodesVariable) to host:port,host:port,…")
        }
        return RedisClusterSettings(seeds: nodes)
    }
}
