import Foundation
import KilnCore
import KilnScenario
import KilnStores
import Testing
import KilnTestSupport

@testable import KilnAudit

/// The audit's listener check lists the stack's servers from the backends (`BackendStack.servers`, then the endpoint
/// of a backend Kiln runs no server for), never by hand. Pure: nothing is asked.
@Suite("audit: the servers of a stack come from the backends")
struct AuditServerListTests {
    static let stacks = TestStack.paths.home.appendingPathComponent("Scenarios/stacks")

    static func rows(_ stack: StackDefinition) -> [String] {
        ListenerCheck.servers(of: stack).map { "\($0.store.rawValue) \($0.server.label)" }
    }

    @Test func theEmbeddedStacksServersAreTheBackendsServersInOrder() throws {
        let stack = try StackDefinition.load(contentsOf: Self.stacks.appendingPathComponent("embedded.yaml"))
        #expect(
            Self.rows(stack) == [
                "postgres postgres-primary 127.0.0.11:15432", "postgres postgres-replica 127.0.0.12:15433",
                "redis redis-primary 127.0.0.21:16379", "redis redis-replica 127.0.0.22:16380",
                "redis sentinel-1 127.0.0.23:26379", "redis sentinel-2 127.0.0.24:26380",
                "redis sentinel-3 127.0.0.25:26381", "kafka kafka 127.0.0.31:19092",
                "falkordb falkordb 127.0.0.41:16390", "clickhouse clickhouse 127.0.0.51:18123",
            ])
    }

    @Test func aRedisClusterNodeIsFiledUnderRedisCluster() throws {
        let stack = try StackDefinition.load(contentsOf: Self.stacks.appendingPathComponent("embedded-redis-cluster.yaml"))
        let rows = Self.rows(stack).filter { $0.hasPrefix("redis-cluster ") }
        #expect(rows.count == 6, "\(Self.rows(stack))")
        #expect(rows.first?.hasPrefix("redis-cluster redis-cluster-1 ") == true)
    }

    @Test func storesKilnRunsNoServerForAreListedByTheirEndpoint() throws {
        let stack = try StackDefinition.parse(
            """
            kind: external
            graph: {kind: neo4j, endpoint: 127.0.9.1:7474, graph: neo4j}
            timeseries: {kind: timescale, endpoint: 127.0.9.2:5432, database: metrics}
            """, file: "serverless.yaml")
        #expect(Self.rows(stack) == ["timescale timescale 127.0.9.2:5432", "neo4j neo4j 127.0.9.1:7474"])
    }

    /// A stack with no PostgreSQL (only Redis Cluster) is audited, not crashed on (it stopped the process with
    /// "no `postgres:` section"): the PostgreSQL checks are `not applicable`, the RESP checks examine the cluster's
    /// nodes. The nodes are on a dead address, so every examined check is `not checked`, never `passed`.
    @Test func aStackWithoutPostgresIsAuditedAndItsClusterNodesExamined() throws {
        let stack = try StackDefinition.parse(
            """
            name: cluster-only
            kind: external
            redis_cluster: {nodes: [127.0.33.249:1, 127.0.33.249:2, 127.0.33.249:3], replicas_per_master: 0}
            """, file: "cluster-only.yaml")
        let context = AuditContext(
            stack: stack, environment: [:], runsDirectories: [], logger: .init(label: "test.audit"), timeoutSeconds: 1)
        let report = AuditChecks.audit(context, stackFile: "cluster-only.yaml")
        let postgres = report.results.filter { $0.id.rawValue.hasPrefix("postgres.") }
        #expect(!postgres.isEmpty)
        #expect(postgres.allSatisfy { if case .notApplicable = $0.outcome { true } else { false } }, "\(postgres)")
        let noPassword = report.results.filter { $0.id == .redisNoPassword }
        #expect(noPassword.map(\.target).sorted() == (1...3).map { "redis-cluster-\($0) 127.0.33.249:\($0)" })
        #expect(!report.results.contains { if case .passed = $0.outcome { true } else { false } }, "\(report.results)")
    }
}
