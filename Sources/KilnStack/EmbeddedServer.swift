import Foundation
import KilnCore
import KilnScenario

/// One server process of the embedded stack, derived from the embedded stack file: its kind, the loopback
/// address it binds, and where its data and log live in the run directory.
public struct EmbeddedServer: Sendable {
    public enum Kind: String, Sendable {
        case postgresPrimary = "postgres-primary"
        case postgresReplica = "postgres-replica"
        case redisPrimary = "redis-primary"
        case redisReplica = "redis-replica"
        case sentinel
        case kafka
        case falkordb
        case clickhouse
    }

    public var name: String
    public var kind: Kind
    public var endpoint: HostPort
    /// Data, config and sockets of this server; removed by `down`.
    public var directory: URL
    /// Kept after `down` so a failed start can be read.
    public var log: URL

    /// The servers of `definition` in start order (a replica after its primary, Sentinels after Redis).
    public static func catalogue(_ definition: StackDefinition, runDirectory: URL) -> [EmbeddedServer] {
        func server(_ name: String, _ kind: Kind, _ endpoint: HostPort) -> EmbeddedServer {
            EmbeddedServer(
                name: name, kind: kind, endpoint: endpoint,
                directory: runDirectory.appendingPathComponent(name),
                log: runDirectory.appendingPathComponent("logs/\(name).log"))
        }
        var servers = [server("postgres-primary", .postgresPrimary, definition.postgres.primary)]
        servers.append(server("redis-primary", .redisPrimary, definition.redis.primary))
        for (index, replica) in definition.redis.replicas.enumerated() {
            servers.append(server(indexed("redis-replica", index), .redisReplica, replica))
        }
        for (index, sentinel) in definition.redis.sentinels.enumerated() {
            servers.append(server("sentinel-\(index + 1)", .sentinel, sentinel))
        }
        for (index, broker) in definition.kafka.bootstrap.enumerated() {
            servers.append(server(indexed("kafka", index), .kafka, broker))
        }
        servers.append(server("falkordb", .falkordb, definition.graph.endpoint))
        servers.append(server("clickhouse", .clickhouse, definition.timeseries.endpoint))
        for (index, replica) in definition.postgres.replicas.enumerated() {
            servers.append(server(indexed("postgres-replica", index), .postgresReplica, replica))
        }
        return servers
    }

    private static func indexed(_ base: String, _ index: Int) -> String { index == 0 ? base : "\(base)-\(index + 1)" }

    /// ClickHouse's native TCP port, next to the HTTP port of the stack file.
    public var clickhouseNativePort: Int { endpoint.port + 1 }
    var clickhouseInterserverPort: Int { endpoint.port + 2 }

    /// The PostgreSQL data directory (PGDATA) of a postgres server.
    public var postgresData: URL { directory.appendingPathComponent("data") }
}
