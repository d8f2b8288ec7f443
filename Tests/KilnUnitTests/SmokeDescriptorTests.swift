import Foundation
import KilnBackend
import KilnBackends
import KilnCore
import KilnScenario
import KilnStores
import KilnTestSupport
import Testing

/// What `kiln smoke` reads from the backends' descriptors (no server): the operation that fills each place, and
/// whether and where a stack serves each backend.
@Suite("Smoke: the backends' descriptors")
struct SmokeDescriptorTests {
    static let stacks = TestStack.paths.home.appendingPathComponent("Scenarios/stacks")

    /// Every place of every backend has exactly one operation smoke writes it with, one that the place says fills
    /// it; a new backend whose place has no single bulk writer fails here, not at `kiln smoke`.
    @Test func everyPlaceHasOneSmokeWriterThatFillsIt() {
        for backend in Backends.all {
            for place in backend.places {
                let writer = backend.smokeWriter(for: place)
                #expect(writer != nil, "\(place.id): no single bulk operation; list one in smokeWriters")
                if let writer { #expect(place.writtenBy.contains(writer.id), "\(place.id): \(writer.id)") }
            }
        }
        #expect(Backends.backend(named: "postgres")?.smokeWriter(for: .postgresRows)?.id == "postgres.bulk")
        #expect(Backends.backend(named: "redis")?.smokeWriter(for: .redisTxnKeys)?.id == "redis.bulk-set")
        #expect(Backends.backend(named: "kafka")?.smokeWriter(for: .kafkaMessages)?.id == "kafka.bulk")
        #expect(Backends.backend(named: "falkordb")?.smokeWriter(for: .falkordbPaidEdges)?.id == "falkordb.bulk")
        #expect(Backends.backend(named: "clickhouse")?.smokeWriter(for: .clickhouseRows)?.id == "clickhouse.bulk")
    }

    @Test func theEmbeddedStackServesEachStoreAtItsOwnEndpoint() throws {
        let stack = try StackDefinition.load(contentsOf: Self.stacks.appendingPathComponent("embedded.yaml"))
        func endpoint(_ name: String) -> HostPort? { Backends.backend(named: name)!.endpoint(in: stack) }
        #expect(endpoint("postgres") == stack.postgres.primary)
        #expect(endpoint("redis") == stack.redis.primary)
        #expect(endpoint("kafka") == stack.kafka.bootstrap.first)
        #expect(endpoint("falkordb") == stack.graph.endpoint)
        #expect(endpoint("clickhouse") == stack.timeseries.endpoint)
        // graph: and timeseries: name FalkorDB and ClickHouse: no Neo4j; TimescaleDB runs on the PostgreSQL primary.
        #expect(endpoint("neo4j") == nil)
        #expect(endpoint("timescale") == stack.postgres.primary)
    }

    @Test func aSharedSectionOfAnotherKindServesNoBackendOfThisOne() throws {
        let stack = try StackDefinition.load(contentsOf: Self.stacks.appendingPathComponent("compose.yaml"))
        #expect(stack.graph.kind == .neo4j)
        #expect(Backends.backend(named: "falkordb")!.endpoint(in: stack) == nil)
        #expect(Backends.backend(named: "neo4j")!.endpoint(in: stack) == stack.graph.endpoint)
    }
}
