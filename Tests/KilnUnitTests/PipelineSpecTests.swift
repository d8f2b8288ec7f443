import Foundation
import KilnCore
import KilnBackend
import KilnBackends
import KilnPipeline
import KilnLoad
import KilnScenario
import Testing
import KilnTestSupport

@Suite("pipeline block of a scenario")
struct PipelineSpecTests {
    static func load(_ pipeline: String) throws -> LoadScenario {
        let file = try TestStack.temporaryFile(
            "pipeline.yaml",
            """
            name: p
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 10K}
            pipeline:
            \(pipeline)
            phases:
              - {name: load, executor: bulk, rows: 1K, stores: [kafka]}
            """)
        return try LoadScenario.load(contentsOf: file, knownOperations: ["kafka.bulk", "kafka.produce"])
    }

    static func error(_ pipeline: String) -> SpecError? {
        do {
            _ = try load(pipeline)
            return nil
        } catch let error as SpecError {
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    @Test func aFullBlockParsesAndDefaultsAreThePlatformsSLOs() throws {
        let spec = try #require(
            try Self.load(
                """
                  sinks: [postgres, redis, clickhouse]
                  workers: processes
                  batch: 250
                  crash_every: 4
                  bugs: [stale-cache, commit-before-write]
                  staleness_slo: {redis: 2s}
                """
            ).pipeline)
        #expect(spec.sinks == [.postgres, .redis, .clickhouse])
        #expect(spec.processes)
        #expect(spec.batch == 250 && spec.crashEvery == 4)
        #expect(spec.bugs == [.staleCache, .commitBeforeWrite])
        #expect(spec.staleness[.redis] == .seconds(2))
        #expect(spec.staleness[.clickhouse] == .seconds(30))
        #expect(try #require(try Self.load("  batch: 10").pipeline).staleness[.redis] == .seconds(5))
    }

    @Test func aBugWhoseSinkIsNotRunIsAnErrorAtItsLine() throws {
        let error = try #require(Self.error("  sinks: [postgres]\n  bugs: [reorder]"))
        #expect(error.line == 6)
        #expect(error.field == "pipeline.bugs")
        #expect(error.message.contains("redis sink"))
    }

    @Test func unknownBugsSinksKeysAndValuesAreErrors() throws {
        let bug = try #require(Self.error("  bugs: [lose-everything]"))
        #expect(bug.message.contains("unknown bug 'lose-everything'"))
        #expect(bug.message.contains("commit-before-write"))
        let sink = try #require(Self.error("  sinks: [mongodb]"))
        #expect(sink.message.contains("unknown sink 'mongodb'"))
        let key = try #require(Self.error("  batchsize: 10"))
        #expect(key.field.contains("batchsize"))
        let workers = try #require(Self.error("  workers: fibers"))
        #expect(workers.message.contains("threads or processes"))
        // A crash after every batch would never let a batch's offsets be stored.
        #expect(Self.error("  crash_every: 1") != nil)
    }

    @Test func everyBugNamesTheSinkItLivesIn() {
        #expect(PipelineSpec.Bug.commitBeforeWrite.sink == .clickhouse)
        #expect(PipelineSpec.Bug.phantom.sink == .falkordb)
        #expect(PipelineSpec.Bug.lag.sink == .redis)
        #expect(Pipeline.bugs.count == 8)
    }

    @Test func theTxnIDIsReadFromTheMessagesJSON() {
        #expect(SinkMessage.txnID(Array(#"{"txn_id":12345,"user_id":7}"#.utf8)) == 12345)
        #expect(SinkMessage.txnID(Array(#"{"txn_id": 9}"#.utf8)) == 9)
        #expect(SinkMessage.txnID(Array(#"{"user_id":7}"#.utf8)) == nil)
        #expect(SinkMessage.txnID(Array(#"{"txn_id":"x"}"#.utf8)) == nil)
        #expect(SinkMessage.txnID([]) == nil)
    }
}

@Suite("durations and counts that would overflow")
struct OverflowingValueTests {
    @Test func aDurationBeyondAYearIsAnErrorAtItsFieldNotACrash() throws {
        // `convergence_timeout: 909090909090s` once crashed kiln with SIGILL (Int64 nanoseconds overflowed).
        for text in ["909090909090s", "1e300s", "367d", "9999999h", "-5s", "nan", "infs"] {
            let error = PipelineSpecTests.error(
                """
                  sinks: [postgres]
                  convergence_timeout: \(text)
                """)
            let found = try #require(error, "\(text) was accepted")
            #expect(found.field.contains("convergence_timeout"), "\(text): \(found)")
            #expect(found.line == 6, "\(text): \(found)")
        }
        #expect(DurationText.parse("366d") == nil)  // no day unit; a bare number is seconds
        #expect(DurationText.parse("\(366 * 86_400)") == .seconds(366 * 86_400))
        #expect(DurationText.parse("\(366 * 86_400 + 1)") == nil)
        #expect(DurationText.parse("8784h") == .seconds(8784 * 3600))
    }

    @Test func countsThatOverflowAreRejected() {
        #expect(CountSuffix.parse("9223372036854775807") == Int.max)
        #expect(CountSuffix.parse("9223372036854775808") == nil)
        #expect(CountSuffix.parse("10000000000B") == nil)
        #expect(CountSuffix.parse("-1") == nil)
    }
}

@Suite("threshold values in their unit")
struct ThresholdObservedTextTests {
    static func text(_ expression: String, _ observed: Double?) -> String {
        ThresholdVerdict(phase: "p", scope: "phase", expression: expression, observed: observed, passed: true, source: "")
            .observedText
    }

    @Test func eachMetricPrintsInItsUnit() {
        #expect(Self.text("p99 < 500ms", 0.002526) == "2.53 ms")
        #expect(Self.text("p50 < 1ms", 0.000004) == "4 µs")
        #expect(Self.text("max < 2s", 2.5) == "2.50 s")
        #expect(Self.text("p99.9 < 2s", 0.1426) == "143 ms")
        #expect(Self.text("error_rate < 1%", 0.0012) == "0.12 %")
        #expect(Self.text("throughput > 100", 1234.4) == "1,234/s")
        #expect(Self.text("rows_per_second > 10K", 133_926.2) == "133,926/s")
        #expect(Self.text("errors == 0", 3) == "3")
        #expect(Self.text("p99 < 5ms", nil) == "nothing measured")
    }
}
