import Foundation
import KilnCore
import KilnFaults
import KilnLoad
import KilnReport
import KilnStack
import Logging
import Testing

/// Drill rows of failover faults: the typed fault kind maps `redis-failover:kill` to its store, and a scenario's
/// fault name reaches the fault and its drill row.
@Suite("drill rows: fault kinds and names")
struct DrillRowTests {
    @Test func everyRecordedKindReadsBackAndNothingElseDoes() {
        let kinds: [RecordedFaultKind] =
            RecordedFaultKind.ProcessAction.allCases.map { .process($0) }
            + [.kafkaBroker(.kill), .kafkaBroker(.pause), .proxy(toxic: "latency"), .partition, .pgFailover]
            + RecordedFaultKind.RedisFailoverTrigger.allCases.map { .redisFailover($0) } + [.clockSkew]
        for kind in kinds { #expect(RecordedFaultKind(recorded: kind.recorded) == kind, "\(kind.recorded)") }
        for text in [
            "", "Kill", "redis-failover:", "redis-failover:command", "redis-failoverx", "kafka:restart",
            "proxy:", "pg-failover:kill", "partition:isolate", ":", "kill:kill",
        ] {
            #expect(RecordedFaultKind(recorded: text) == nil, "\(text)")
        }
        #expect(RecordedFaultKind.redisFailover(.kill).failoverStore == "redis")
        #expect(RecordedFaultKind.pgFailover.failoverStore == "postgres")
        #expect(RecordedFaultKind.process(.pause).failoverStore == nil)
    }

    @Test func aRedisFailoverTriggeredByAKillHasADrillRowUnderItsScenarioName() throws {
        let target = "kiln via sentinels 127.0.0.23:26379,127.0.0.24:26380"
        for kind in ["redis-failover:kill", "redis-failover"] {
            let fault = RunReport.Fault(name: "kill-the-primary", kind: kind, target: target, verified: .yes)
            #expect(DrillMetrics.store(of: fault) == "redis", "\(kind)")
        }
        // A failover fault that never started still gets its row, under the scenario's name.
        let refused = RunReport.Fault(
            name: "kill-the-primary", kind: "redis-failover:kill", target: target, verified: .no, note: "no quorum")
        let root = try ReportTests.root()
        defer { try? FileManager.default.removeItem(at: root) }
        let report = try #require(try RunData.load(RunFixture.make(in: root, id: "k", seed: 1, seconds: 5)).report)
        let drill = try #require(DrillMetrics.compute(faults: [refused], report: report, timeline: []).first)
        #expect(drill.fault == "kill-the-primary")
        #expect(drill.store == "redis")
        #expect(drill.verdict == .failed)
    }

    /// Read-only on the shared stack: builds the failovers (asking the Sentinels and PostgreSQL their roles) and
    /// never starts them.
    @Test func failoverFaultsBuiltForTheEmbeddedStackKeepTheScenariosName() throws {
        let stack = try EmbeddedStack(
            definition: TestStack.definition, paths: TestStack.paths, logger: Logger(label: "t"))
        let redis = try RedisSentinelFailover.embedded(stack, name: "sentinel-drill", killPrimary: true)
        #expect(redis.name == "sentinel-drill")
        #expect(redis.kind == "redis-failover:kill")
        #expect(try RedisSentinelFailover.embedded(stack).name == "redis-failover-kiln")
        let postgres = try PostgresFailover.embedded(stack, name: "promote-drill")
        #expect(postgres.name == "promote-drill")
        #expect(FaultDriver(postgres).record.name == "promote-drill")
    }
}
