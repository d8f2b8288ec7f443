import Foundation
import KilnLoad
import KilnScenario
import Testing
import KilnTestSupport

/// `kiln run`'s free-space warning (no servers): what the bulk phases are expected to write, per store.
@Suite("Bulk disk estimate (no servers)")
struct BulkDiskEstimateTests {
    static func scenario(_ phases: String) throws -> LoadScenario {
        let file = try TestStack.temporaryFile(
            "disk.yaml",
            """
            name: disk
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), rows: 200M}
            phases:
            \(phases)
            """)
        return try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
    }

    @Test func theNightly100mLoadNeedsWhatItUsedAndWarnsWhereItFailed() throws {
        let scenario = try Self.scenario(
            """
              - {name: ledger, executor: bulk, rows: 100M, stores: [postgres, clickhouse], defer_indexes: true}
              - {name: stream, executor: bulk, rows: 10M, stores: [kafka]}
              - {name: graph, executor: bulk, rows: 10M, stores: [falkordb, redis]}
            """)
        let estimate = BulkDiskEstimate(scenario)
        // The embedded stack: PostgreSQL with one streaming replica (2 × 240 B/row), ClickHouse 40 B/row; Kafka,
        // Redis and FalkorDB keep their data in memory.
        #expect(estimate.bytesByStore.map(\.store) == ["postgres", "clickhouse"])
        #expect(estimate.bytesByStore.map(\.bytes) == [48_000_000_000, 4_000_000_000])
        // n100m-s17b started with 66.5 GB free and its lowest was 16 GB: no warning there; one with 45 GB.
        let warning = try #require(estimate.warning(freeBytes: 45_000_000_000, directory: "/stack"))
        #expect(warning.contains("~52.0 GB") && warning.contains("postgres ~48.0 GB") && warning.contains("45.0 GB"))
        #expect(estimate.warning(freeBytes: 66_500_000_000, directory: "/stack") == nil)
    }

    @Test func rowsAddUpOverPhasesAndHugeCountsSaturateInsteadOfOverflowing() throws {
        let scenario = try Self.scenario(
            """
              - {name: a, executor: bulk, rows: 1M, stores: [postgres]}
              - {name: b, executor: bulk, rows: 2M, stores: [postgres]}
            """)
        #expect(BulkDiskEstimate(scenario).totalBytes == 3_000_000 * 480)
        let huge = BulkDiskEstimate(scenario, stack: scenario.stack) { _, _ in Int.max }
        #expect(huge.totalBytes == .max)
        #expect(huge.warning(freeBytes: .max - 1, directory: "/") != nil)
    }

    @Test func aScenarioWithoutBulkPhasesNeedsNothing() throws {
        let scenario = try Self.scenario("  - {name: m, executor: closed, duration: 1s, mix: {postgres.insert: 1}}")
        #expect(BulkDiskEstimate(scenario).totalBytes == 0)
        #expect(BulkDiskEstimate(scenario).warning(freeBytes: 0, directory: "/") == nil)
        #expect((BulkDiskEstimate.freeBytes(at: URL(fileURLWithPath: "/")) ?? 0) > 0)
        #expect(BulkDiskEstimate.freeBytes(at: URL(fileURLWithPath: "/no/such/directory")) == nil)
    }
}
