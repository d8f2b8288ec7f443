import Foundation
import KilnCore
import KilnHTTP
import KilnKafka
import KilnPostgres
import KilnRedis
import KilnScenario

/// Real queries that prove a server answers, and what role it plays now. Each probe opens its own short-lived
/// connection, blocks the calling thread for at most about `timeoutSeconds`, and throws when the server does
/// not answer correctly.
public struct StackProbe: Sendable {
    public var definition: StackDefinition
    public var timeoutSeconds: Int

    public init(definition: StackDefinition, timeoutSeconds: Int = 2) {
        self.definition = definition
        self.timeoutSeconds = timeoutSeconds
    }

    public struct Unexpected: Error, CustomStringConvertible {
        public var description: String
    }

    /// Returns the server's current role (primary, replica, sentinel, broker, graph, timeseries).
    public func role(of server: EmbeddedServer) throws -> String {
        switch server.kind {
        case .postgresPrimary, .postgresReplica:
            let endpoint = PostgresEndpoint(
                host: server.endpoint.host, port: server.endpoint.port, database: "postgres",
                user: definition.postgres.user, password: nil)
            let connection = try PostgresConnection(endpoint, connectTimeoutSeconds: timeoutSeconds)
            let inRecovery = try connection.execute("SELECT pg_is_in_recovery()").value(row: 0, column: 0)
            return inRecovery == "t" ? "replica" : "primary"
        case .redisPrimary, .redisReplica, .sentinel:
            let connection = try RedisConnection(
                host: server.endpoint.host, port: server.endpoint.port, timeoutSeconds: Double(timeoutSeconds))
            let reply = try connection.command(["ROLE"])
            guard let fields = reply.array, let kind = fields.first?.string else {
                throw Unexpected(description: "ROLE returned no role")
            }
            switch kind {
            case "master": return "primary"
            case "slave":
                let link = fields.count > 3 ? fields[3].string ?? "" : ""
                guard link == "connected" else { throw Unexpected(description: "replica link is \(link)") }
                return "replica"
            case "sentinel":
                let master = try connection.command(
                    ["SENTINEL", "get-master-addr-by-name", definition.redis.masterName])
                guard let address = master.array, address.count == 2 else {
                    throw Unexpected(description: "sentinel does not know master \(definition.redis.masterName)")
                }
                return "sentinel"
            default: return kind
            }
        case .kafka:
            let consumer = try KafkaConsumer(bootstrapServers: server.endpoint.description)
            defer { consumer.close() }
            let partitions = try consumer.partitionCount(
                topic: "kiln-health", timeoutMilliseconds: Int32(timeoutSeconds * 1000))
            guard partitions > 0 else { throw Unexpected(description: "metadata shows no partitions") }
            return "broker"
        case .falkordb:
            let connection = try RedisConnection(
                host: server.endpoint.host, port: server.endpoint.port, timeoutSeconds: Double(timeoutSeconds))
            _ = try connection.command(["GRAPH.QUERY", "kiln-health", "RETURN 1"])
            return "graph"
        case .clickhouse:
            let client = try HTTPClient(timeoutSeconds: Double(timeoutSeconds), connectTimeoutSeconds: 1)
            let response = try client.get("http://\(server.endpoint)/?query=SELECT%201").expectOK()
            guard response.text.trimmingCharacters(in: .whitespacesAndNewlines) == "1" else {
                throw Unexpected(description: "SELECT 1 returned something else")
            }
            return "timeseries"
        }
    }
}
