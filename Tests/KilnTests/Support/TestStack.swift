import Foundation
@_exported import KilnTestSupport
import KilnPostgres
import KilnScenario
import KilnStack

/// Endpoints of the running embedded stack (`kiln stack up`, started by scripts/test), read from
/// Scenarios/stacks/embedded.yaml. Each store can be overridden for development with a KILN_TEST_* variable.
/// Integration tests connect to these and fail (never skip) when the server does not answer. (`paths`,
/// `definition` and `uniqueName` are in KilnTestSupport, shared with the unit target; the re-export makes them
/// visible in every file of this target.)
extension TestStack {
    static func hostPort(_ variable: String, default fallback: String) -> (host: String, port: Int) {
        let value = ProcessInfo.processInfo.environment[variable] ?? fallback
        let parts = value.split(separator: ":")
        return (String(parts[0]), Int(parts[1])!)
    }

    static var postgres: PostgresEndpoint {
        let pg = definition.postgres
        let (host, port) = hostPort("KILN_TEST_POSTGRES", default: pg.primary.description)
        return PostgresEndpoint(host: host, port: port, database: pg.database, user: pg.user, password: nil)
    }

    static var redisPrimary: (host: String, port: Int) {
        hostPort("KILN_TEST_REDIS", default: definition.redis.primary.description)
    }

    static var kafkaBootstrap: String {
        ProcessInfo.processInfo.environment["KILN_TEST_KAFKA"] ?? definition.kafka.bootstrapServers
    }

    static var clickhouseHTTP: String {
        ProcessInfo.processInfo.environment["KILN_TEST_CLICKHOUSE"] ?? "http://\(definition.timeseries.endpoint)"
    }

    static var falkordb: (host: String, port: Int) {
        hostPort("KILN_TEST_FALKORDB", default: definition.graph.endpoint.description)
    }
}
