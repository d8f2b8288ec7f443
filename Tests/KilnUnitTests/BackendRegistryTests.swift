import Foundation
import KilnBackend
import KilnBackends
import KilnCore
import KilnPipeline
import KilnReport
import KilnScenario
import KilnStores
import Testing
import KilnTestSupport

/// The registries that used to name stores outside Sources/Backends (planted bugs, default staleness SLOs, the sink
/// hosts of a hosts stack, the failover drills' primaries, fault target → store) are derived from `Backends.all`.
/// Pure: no server is asked (the stacks' PostgreSQL sections are left out where a lookup would connect).
@Suite("registries derived from the backends' descriptors")
struct BackendRegistryTests {
    static let stacks = TestStack.paths.home.appendingPathComponent("Scenarios/stacks")

    @Test func theBugsAcceptedAreTheUnionOfTheSinksBugs() throws {
        let declared = Backends.all.compactMap(\.sink).flatMap(\.bugs)
        #expect(Pipeline.bugs == declared)
        #expect(
            Set(declared.map(\.name)) == [
                "commit-before-write", "non-idempotent", "drop-every-n", "wrong-rounding", "phantom", "stale-cache",
                "reorder", "lag",
            ])
        #expect(Set(declared.map(\.name)).count == declared.count, "two sinks declare a bug of the same name")
        for driver in Pipeline.sinkDrivers {
            #expect(driver.bugs.allSatisfy { $0.sink.rawValue == driver.name }, "\(driver.name)")
        }
        // Every declared bug parses (with its sink run), and is the very bug its sink declares.
        for bug in declared {
            let spec = try #require(
                try PipelineSpecTests.load("  sinks: [\(bug.sink.rawValue)]\n  bugs: [\(bug.name)]").pipeline)
            #expect(spec.bugs == [bug])
        }
        // A name no sink declares is refused, and the message lists exactly the declared ones.
        let error = try #require(PipelineSpecTests.error("  bugs: [lose-everything]"))
        #expect(error.message.hasSuffix("(bugs: \(declared.map(\.name).joined(separator: ", ")))"))
    }

    @Test func theDefaultSinksAndStalenessSLOsComeFromTheSinkDrivers() throws {
        let spec = try #require(try PipelineSpecTests.load("  batch: 10").pipeline)
        #expect(spec.sinks == Pipeline.knownSinks.filter(\.isDefault).map(\.sink))
        #expect(spec.sinks == [.postgres, .redis, .falkordb, .clickhouse])
        for known in Pipeline.knownSinks {
            #expect(spec.staleness[known.sink] == known.defaultStaleness, "\(known.sink)")
            #expect(spec.stalenessSLO(of: known.sink) == known.defaultStaleness)
        }
        #expect(spec.staleness[.redis] == .seconds(5))
        #expect(spec.staleness[.clickhouse] == .seconds(30))
        #expect(spec.stalenessSLO(of: PipelineSpec.Sink(rawValue: "redis-cluster")) == .seconds(30))
    }

    @Test func aHostsStacksSinkHostsAreTheDefaultSinks() throws {
        let stack = try StackDefinition.load(contentsOf: Self.stacks.appendingPathComponent("embedded-hosts.yaml"))
        #expect(stack.sinkHosts.map(\.name) == BackendVocabulary.all.defaultSinks.map { "sink-\($0)" })
        #expect(stack.sinkHosts.map(\.name) == ["sink-postgres", "sink-redis", "sink-falkordb", "sink-clickhouse"])
        #expect(stack.sinkHosts.map(\.address.description) == (61...64).map { "10.213.7.\($0)" })
    }

    @Test func faultTargetsMapToStoresThroughTheDescriptors() throws {
        func store(_ target: String) -> String? {
            DrillMetrics.store(of: RunReport.Fault(name: "f", kind: "pause", target: target, verified: .yes))
        }
        #expect(RedisBackend.descriptor.serverNamePrefixes == ["redis", "sentinel"])
        #expect(store("sentinel-2") == "redis")
        #expect(store("redis-replica") == "redis")
        #expect(store("redis-cluster-3") == "redis-cluster")
        #expect(store("kafka-2") == "kafka")
        #expect(store("mainframe") == nil)
        // Every server a backend runs maps back to that backend.
        let paths = EmbeddedPaths(
            runDirectory: URL(fileURLWithPath: "/nonexistent"), tools: URL(fileURLWithPath: "/nonexistent"),
            libraries: URL(fileURLWithPath: "/nonexistent"), network: .loopback)
        for file in ["embedded.yaml", "embedded-redis-cluster.yaml"] {
            let stack = try StackDefinition.load(contentsOf: Self.stacks.appendingPathComponent(file))
            for backend in Backends.all {
                for server in backend.stack.servers(stack, paths) {
                    #expect(store(server.name) == backend.name, "\(file): \(server.name)")
                }
            }
        }
    }

    @Test func theFailoverPrimariesComeFromTheStackSides() throws {
        #expect(Backends.all.filter { $0.stack.currentPrimary != nil }.map(\.name) == ["postgres", "redis"])
        let stack = try StackDefinition.parse(
            """
            kind: embedded
            redis: {primary: 127.0.0.21:16379, replicas: [127.0.0.22:16380], sentinels: [127.0.0.23:26379], master_name: kiln}
            kafka: {bootstrap: [127.0.0.31:19092]}
            """, file: "primaries.yaml")
        #expect(RedisBackend.descriptor.stack.currentPrimary?(stack) == HostPort(host: "127.0.0.21", port: 16379))
        // A stack without the section has no primary for the store (and asks no server).
        #expect(PostgresBackend.descriptor.stack.currentPrimary?(stack) == nil)
    }
}
