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
        },
        stack: stackSide,
        writePrimaries: .partitionedByKey)
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

    /// The variable `kiln stack env` prints the nodes in (`host:port,host:port,…`), for scripts and redis-cli.
    public static let nodesVariable = "KILN_REDIS_CLUSTER_NODES"

    /// The settings of the stack a client context names (its `redis_cluster:` section).
    /// - Throws: `RedisClusterError.topology` when the stack has no such section.
    public static func of(_ context: ClientContext) throws -> RedisClusterSettings {
        guard let config = context.stack.section(RedisClusterStackConfig.self) else {
            throw RedisClusterError.topology(
                "the stack \(context.stack.name) has no `\(RedisClusterStackConfig.key):` section")
        }
        return config.settings
    }
}
