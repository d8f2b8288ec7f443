import Foundation
import KilnBackend
import KilnCore
import KilnScenario

/// The `redis_cluster:` section of a stack file: the cluster's nodes (every one a seed for the clients; for an
/// embedded stack, the servers to start), the replicas per master and `cluster-node-timeout`.
///
///     redis_cluster:
///       nodes: [127.0.0.91:17001, …, 127.0.0.96:17006]
///       replicas_per_master: 1
///       node_timeout: 2s
public struct RedisClusterStackConfig: StackSection {
    public static let key = "redis_cluster"
    public var settings: RedisClusterSettings

    public var addresses: [StackSectionAddress] { settings.seeds.map { StackSectionAddress("nodes", $0) } }

    public static let parser = StackSectionParser(key: key) { (fields, _) throws(SpecError) in
        let nodes = try fields.hostPorts("nodes", required: true)
        let replicas = try fields.int("replicas_per_master", default: 1, range: 0...5)
        let timeout = try fields.duration("node_timeout", default: .milliseconds(2000))
        guard Set(nodes).count == nodes.count else { throw fields.error("nodes", "a node is listed twice") }
        guard nodes.count >= 3 * (replicas + 1) else {
            throw fields.error("nodes", "\(nodes.count) nodes cannot make 3 masters with \(replicas) replicas each")
        }
        guard timeout >= .milliseconds(100) else { throw fields.error("node_timeout", "at least 100ms") }
        try fields.finish()
        return RedisClusterStackConfig(
            settings: RedisClusterSettings(seeds: nodes, replicasPerMaster: replicas, nodeTimeout: timeout))
    }
}

extension ServerRole {
    public static let redisClusterNode = ServerRole("redis-cluster-node")
}

extension RedisClusterStackConfig {
    /// One `redis-server --cluster-enabled yes` per node, named `redis-cluster-<n>` (n from 1, in file order).
    static func embeddedServers(_ stack: StackDefinition, _ paths: EmbeddedPaths) -> [EmbeddedServerDescription] {
        guard let config = stack.section(RedisClusterStackConfig.self) else { return [] }
        let program = "/usr/bin/redis-server"
        return config.settings.seeds.enumerated().map { index, node in
            EmbeddedServerDescription(
                name: "redis-cluster-\(index + 1)", role: .redisClusterNode, endpoint: node, wire: .resp,
                launch: .process(program: program) { directory in
                    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                    return RedisClusterEmbedded.serverArguments(node, directory: directory.path, settings: config.settings)
                },
                requires: [(what: "Redis", path: program), (what: "redis-cli", path: "/usr/bin/redis-cli")],
                probe: { endpoint, timeout in try RedisClusterEmbedded.probe(endpoint, timeoutSeconds: timeout) })
        }
    }

    /// After every node answers: `redis-cli --cluster create` when no node knows another, then wait until healthy.
    static func afterStart(_ stack: StackDefinition, _ servers: [EmbeddedServerDescription]) throws {
        guard let config = stack.section(RedisClusterStackConfig.self) else { return }
        try RedisClusterEmbedded(settings: config.settings, directory: "").create(timeout: .seconds(30))
    }
}

extension RedisClusterBackend {
    static let stackSide = BackendStack(
        section: RedisClusterStackConfig.parser,
        servers: RedisClusterStackConfig.embeddedServers,
        afterStart: RedisClusterStackConfig.afterStart,
        environment: { stack, _ in
            guard let config = stack.section(RedisClusterStackConfig.self) else { return [] }
            return [(RedisClusterSettings.nodesVariable, config.settings.seeds.map(\.description).joined(separator: ","))]
        })
}
