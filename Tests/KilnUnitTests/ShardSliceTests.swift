import Foundation
import Histogram
import KilnCore
import KilnLoad
import KilnReport
import KilnScenario
import Testing
import KilnTestSupport

/// Shards without servers: the slices tile every phase exactly, and `ShardMerge` adds histograms exactly and refuses
/// shards that do not belong together.
@Suite("Shard slices and merge (no servers)")
struct ShardSliceTests {
    @Test(arguments: [(0, 1), (7, 2), (2_001, 3), (10, 4), (3, 4), (1, 7), (100_003, 16)])
    func openModelSharesAddUpAndTheRemainderGoesToTheLowestIndexes(total: Int, count: Int) throws {
        let shares = try (0..<count).map { try ShardSlice(index: $0, count: count).share(ofOps: Int64(total)) }
        #expect(shares.reduce(0, +) == Int64(total))
        let base = Int64(total / count)
        for (index, share) in shares.enumerated() {
            #expect(share == base + (index < total % count ? 1 : 0), "shard \(index)/\(count)")
        }
    }

    @Test(arguments: [(20_000, 1, 1_000), (20_000, 3, 1_000), (10_000, 4, 1_000), (7, 4, 1), (2, 5, 10), (1_000_003, 8, 20_000)])
    func bulkSlicesAreWholeBatchesThatTileTheRange(rows: Int, count: Int, batch: Int) throws {
        var next: Int64 = 500
        var batches = 0
        for index in 0..<count {
            let slice = try ShardSlice(index: index, count: count).bulkSlice(first: 500, rows: Int64(rows), batch: Int64(batch))
            #expect(slice.lowerBound == next, "shard \(index) starts where \(index - 1) ended")
            #expect((slice.lowerBound - 500) % Int64(batch) == 0, "shard \(index) starts on a batch boundary")
            batches += (slice.count + batch - 1) / batch
            next = slice.upperBound
        }
        #expect(next == 500 + Int64(rows))
        #expect(batches == (rows + batch - 1) / batch, "the shards run exactly the unsharded run's bulk ops")
    }

    @Test func huge_bulkRowsDoNotOverflow() throws {
        let slice = try ShardSlice(index: 3, count: 4).bulkSlice(first: 0, rows: Int64.max / 2, batch: 20_000)
        #expect(slice.upperBound == Int64.max / 2)
    }

    @Test func closedWorkersSplitExactly() throws {
        for (total, count) in [(48, 5), (4, 4), (7, 3)] {
            let workers = try (0..<count).map { try ShardSlice(index: $0, count: count).workers(total) }
            #expect(workers.reduce(0, +) == total)
            #expect(workers.allSatisfy { $0 >= 1 })
        }
    }

    @Test(arguments: ["3/2", "-1/2", "a/b", "0/0", "1", "", "0/99999", "1/2/3", "9223372036854775807/2"])
    func malformedShardsAreRefused(text: String) {
        #expect(throws: ShardSlice.Invalid.self) { try ShardSlice.parse(text) }
    }

    @Test func scenariosThatCannotBeShardedAreRefusedNamingThePhase() throws {
        let file = try TestStack.temporaryFile(
            "closed.yaml",
            """
            name: closed
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), rows: 10K}
            phases:
              - {name: writes, executor: closed, duration: 1s, workers: 3, mix: {postgres.insert: 1}}
              - {name: more, executor: bulk, rows: 1K, stores: [postgres]}
            """)
        let scenario = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
        let writes: Set<String> = ["postgres.insert"]
        #expect(ShardSlice.refusal(scenario, count: 4, knownWrites: writes)?.contains("phase 'writes': a closed phase of 3 workers") == true)
        #expect(ShardSlice.refusal(scenario, count: 2, knownWrites: writes)?.contains("phase 'more': a bulk load of postgres after a closed phase") == true)
        var readsOnly = scenario
        readsOnly.phases.removeLast()
        #expect(ShardSlice.refusal(readsOnly, count: 3, knownWrites: writes) == nil)
    }

    // MARK: merge

    /// A scenario file with one open-model phase, written to a scratch directory.
    static func scenario(seed: Int = 5, name: String = "merge-unit") throws -> URL {
        try TestStack.temporaryFile(
            "scenario.yaml",
            """
            name: \(name)
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: \(seed), rows: 10K}
            namespace: merge_unit
            phases:
              - name: open
                executor: constant-arrival-rate
                rate: 100
                duration: 1s
                mix: {redis.feature-read: 1}
                thresholds:
                  redis.feature-read: ["p99 < 50ms", "ok == 100"]
            """)
    }

    /// A hand-made shard run directory holding `samples` (µs) of `redis.feature-read`.
    static func shard(
        _ index: Int, of count: Int, samples: [UInt64], scenario: URL, seed: UInt64 = 5, root: URL, complete: Bool = true,
        faultShard: Int = 0, faults: String = "", phaseStart: Int64 = 1000, tag: String = ""
    ) throws -> URL {
        let directory = root.appendingPathComponent("shard-\(index)-of-\(count)-seed-\(seed)-\(complete)\(tag)")
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("histograms/open"), withIntermediateDirectories: true)
        try Data(contentsOf: scenario).write(to: directory.appendingPathComponent("scenario.yaml"))
        try ShardHeader(
            slice: ShardSlice(index: index, count: count), scenario: "merge-unit", seed: seed, datasetRows: 10_000,
            namespace: "merge_unit", faultShard: faultShard, phases: ["open"]
        ).write(to: directory)
        var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        for sample in samples { _ = histogram.record(sample) }
        try JSONEncoder().encode(histogram).write(
            to: directory.appendingPathComponent("histograms/open/redis.feature-read.json"))
        let report = """
            {"schema":"kiln.report/1","identity":{"id":"s\(index)","scenario":"merge-unit","scenario_file":"\(scenario.path)",
            "dataset_spec":"x","seed":\(seed),"dataset_rows":10000,"stack":"embedded","namespace":"merge_unit","host":"h","cores":2},
            "started_at":\(1_000 + index),"ended_at":\(3_000 + index),"complete":\(complete),"interrupted":\(!complete),
            "verdict":"\(complete ? "passed" : "interrupted")","exit_code":\(complete ? 0 : 3),
            "store_rows":{"redis":\(index)}\(faults),"phases":[{"name":"open","executor":"constant-arrival-rate","workers":2,"started_at":\(phaseStart),
            "seconds":1.0,"complete":\(complete),"planned_ops":\(samples.count),"thresholds":[],"operations":[{"name":"redis.feature-read",
            "store":"redis","kind":"read","ok":\(samples.count),"fail":0,"info":0,"errors":{},"dropped":0,"late":0,"rows":0,
            "throughput":\(samples.count),"latency_ms":{},"service_ms":{}}]}]}
            """
        try Data(report.utf8).write(to: directory.appendingPathComponent("report.json"))
        try Data(#"{"phase":"open","op":"redis.feature-read","worker":0,"row":1,"rows":1,"outcome":"ok","intended_ns":5,"start_ns":6,"end_ns":7}"#.utf8 + [0x0A])
            .write(to: directory.appendingPathComponent("history.jsonl"))
        try Data(#"{"phase":"open","second":1,"ops":{"redis.feature-read":{"ok":\#(samples.count),"fail":0,"info":0,"dropped":0,"late":0,"rows":0,"p50_ms":1.0,"p99_ms":\#(index + 2).0,"max_ms":9.0}}}"#.utf8 + [0x0A])
            .write(to: directory.appendingPathComponent("timeline.jsonl"))
        return directory
    }

    static func scratch() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("shard-merge"))
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        return root
    }

    @Test func mergedPercentilesAreThoseOfAllSamplesNotAveraged() throws {
        let root = try Self.scratch()
        let file = try Self.scenario()
        let loaded = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
        // Shard 0 fast, shard 1 slow: averaging their p99s would be far from the p99 of all samples.
        let fast = (0..<60).map { UInt64(100 + $0) }
        let slow = (0..<40).map { UInt64(20_000 + 1_000 * $0) }
        let shards = try [
            Self.shard(0, of: 2, samples: fast, scenario: file, root: root),
            Self.shard(1, of: 2, samples: slow, scenario: file, root: root),
        ]
        let output = root.appendingPathComponent("merged")
        let report = try ShardMerge.merge(shards, into: output, scenario: loaded)
        var all = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        for sample in fast + slow { _ = all.record(sample) }
        let merged = try JSONDecoder().decode(
            Histogram<UInt64>.self,
            from: Data(contentsOf: output.appendingPathComponent("histograms/open/redis.feature-read.json")))
        #expect(merged.totalCount == 100)
        for percentile in [50.0, 90, 99, 99.9] {
            #expect(merged.valueAtPercentile(percentile) == all.valueAtPercentile(percentile), "p\(percentile)")
        }
        let operation = try #require(report.phases.first?.operations.first)
        #expect(operation.ok == 100)
        #expect(operation.latencyMs.p99 == Double(all.valueAtPercentile(99)) / 1000)
        // Thresholds are re-evaluated on the merged data: p99 ≈ 58 ms fails "p99 < 50ms"; ok == 100 holds.
        let verdicts = report.phases[0].thresholds
        #expect(verdicts.first { $0.expression == "p99 < 50ms" }?.passed == false)
        #expect(verdicts.first { $0.expression == "ok == 100" }?.passed == true)
        #expect(report.verdict == .thresholdsFailed && report.exitCode == 2)
        #expect(report.storeRows["redis"] == 1)
        // Timelines summed; histories concatenated with their shard.
        let timeline = try String(contentsOf: output.appendingPathComponent("timeline.jsonl"), encoding: .utf8)
        #expect(timeline.contains(#""ok":100"#) && timeline.contains(#""p99_ms":3.000"#))
        let history = try String(contentsOf: output.appendingPathComponent("history.jsonl"), encoding: .utf8)
        #expect(history.contains(#""shard":0}"#) && history.contains(#""shard":1}"#))
        #expect(history.contains(#""intended_ns":1000005,"#), "shard 1 started 1 ms later: its times move by 1 ms")
    }

    @Test func anInterruptedShardMakesTheMergedRunInterruptedNeverPassed() throws {
        let root = try Self.scratch()
        let file = try Self.scenario()
        let loaded = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
        let samples = (0..<50).map { UInt64(100 + $0) }
        let shards = try [
            Self.shard(0, of: 2, samples: samples, scenario: file, root: root),
            Self.shard(1, of: 2, samples: samples, scenario: file, root: root, complete: false),
        ]
        let report = try ShardMerge.merge(shards, into: root.appendingPathComponent("merged"), scenario: loaded)
        #expect(report.verdict == .interrupted && report.exitCode == 3, "\(report.verdict)")
        #expect(!report.complete && report.interrupted)
    }

    @Test func shardsThatDoNotBelongTogetherAreRefusedByName() throws {
        let root = try Self.scratch()
        let file = try Self.scenario()
        let other = try Self.scenario()  // the same bytes: only the header's seed differs
        let loaded = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
        let a0 = try Self.shard(0, of: 2, samples: [1], scenario: file, root: root)
        let a1 = try Self.shard(1, of: 2, samples: [1], scenario: file, root: root)
        let b1 = try Self.shard(1, of: 3, samples: [1], scenario: file, root: root)
        let seed9 = try Self.shard(1, of: 2, samples: [1], scenario: other, seed: 9, root: root)
        let otherText = try Self.scenario(seed: 6)
        let c1 = root.appendingPathComponent("c1")
        try FileManager.default.copyItem(at: a1, to: c1)
        try Data(contentsOf: otherText).write(to: c1.appendingPathComponent("scenario.yaml"))
        let cases: [([URL], String)] = [
            ([a0, a0], "given twice"),
            ([a0], "missing shard 1/2"),
            ([a0, b1], "different shard counts overlap"),
            ([a0, seed9], "seed 9 vs 5"),
            ([a0, c1], "scenario file"),
            ([a0, root], "not a shard run directory"),
        ]
        for (index, (directories, expected)) in cases.enumerated() {
            let output = root.appendingPathComponent("out-\(index)")
            do {
                _ = try ShardMerge.merge(directories, into: output, scenario: loaded)
                Issue.record("merged \(directories.map(\.lastPathComponent)) (expected: \(expected))")
            } catch {
                #expect("\(error)".contains(expected), "\(error)")
            }
            #expect(!FileManager.default.fileExists(atPath: output.path), "a refused merge writes nothing")
        }
        // A histogram that cannot be read, or that holds fewer samples than the report counts: refused, never skipped.
        let d0 = root.appendingPathComponent("d0")
        try FileManager.default.copyItem(at: a0, to: d0)
        try Data("{".utf8).write(to: d0.appendingPathComponent("histograms/open/redis.feature-read.json"))
        let lost = try Self.shard(0, of: 2, samples: [1], scenario: file, seed: 5, root: root.appendingPathComponent("lost"))
        let report = lost.appendingPathComponent("report.json")
        try Data(String(contentsOf: report, encoding: .utf8).replacingOccurrences(of: #""ok":1,"#, with: #""ok":2,"#).utf8)
            .write(to: report)
        for (directories, expected) in [([d0, a1], "not a readable HDR histogram"), ([lost, a1], "hold 2 samples, their reports count 3")] {
            do {
                _ = try ShardMerge.merge(directories, into: root.appendingPathComponent("out-h"), scenario: loaded)
                Issue.record("merged \(directories.map(\.lastPathComponent)) (expected: \(expected))")
            } catch {
                #expect("\(error)".contains(expected), "\(error)")
            }
            #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("out-h").path))
        }
        // The pair that belongs together merges.
        _ = try ShardMerge.merge([a1, a0], into: root.appendingPathComponent("ok"), scenario: loaded)
    }

    // MARK: faults of a sharded run

    /// report.json `faults` of a shard: `ran` (started, verified yes) or planned only, run by `by`.
    static func faults(ran: Bool, by: Int, start: Int64 = 5_000) -> String {
        ran
            ? #","faults":[{"name":"freeze","kind":"pause","target":"redis-primary","planned_start":\#(start),"started_at":\#(start),"stopped_at":\#(start + 2_000),"verified":"yes","note":"held","run_by_shard":\#(by)}]"#
            : #","faults":[{"name":"freeze","kind":"pause","target":"redis-primary","planned_start":\#(start),"verified":"unknown","note":"planned only","run_by_shard":\#(by),"planned_only":true}]"#
    }

    @Test func faultShardMustBeAShardOfTheRunAndIsParsedWithItsLocation() throws {
        let text = { (value: String) in
            """
            name: fault-shard
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), rows: 10K}
            fault_shard: \(value)
            phases:
              - {name: open, executor: constant-arrival-rate, rate: 10, duration: 1s, mix: {redis.feature-read: 1}}
            """
        }
        let one = try TestStack.temporaryFile("fault-shard.yaml", text("1"))
        let scenario = try LoadScenario.load(contentsOf: one, knownOperations: LoadRun.knownOperations())
        #expect(scenario.faultShard == 1)
        #expect(scenario.faultShardSource.hasPrefix("\(one.path):4:"), "\(scenario.faultShardSource)")
        #expect(ShardSlice.faultShardRefusal(scenario, count: 2) == nil)
        let refusal = try #require(ShardSlice.faultShardRefusal(scenario, count: 1))
        #expect(refusal.hasPrefix("\(scenario.faultShardSource): fault_shard: 1 is not a shard of 1 (0..<1)"), "\(refusal)")
        // Absent: shard 0, a shard of every run.
        let absent = try TestStack.temporaryFile("no-fault-shard.yaml", text("0").replacingOccurrences(of: "fault_shard: 0\n", with: ""))
        let defaulted = try LoadScenario.load(contentsOf: absent, knownOperations: LoadRun.knownOperations())
        #expect(defaulted.faultShard == 0 && ShardSlice.faultShardRefusal(defaulted, count: 1) == nil)
        // Not an index: refused while parsing, naming file:line:column and the field.
        for value in ["-1", "x", "99999999999", "1.5"] {
            let file = try TestStack.temporaryFile("bad-fault-shard.yaml", text(value))
            do {
                _ = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
                Issue.record("fault_shard: \(value) was accepted")
            } catch {
                #expect("\(error)".contains("\(file.path):4:") && "\(error)".contains("fault_shard"), "\(value): \(error)")
            }
        }
    }

    @Test func mergeRefusesShardsThatDisagreeOnTheFaultShardOrThatBothRanFaults() throws {
        let root = try Self.scratch()
        let file = try Self.scenario()
        let loaded = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
        let planned0 = try Self.shard(0, of: 2, samples: [1], scenario: file, root: root, faultShard: 1,
            faults: Self.faults(ran: false, by: 1), tag: "-planned")
        let ran1 = try Self.shard(1, of: 2, samples: [1], scenario: file, root: root, faultShard: 1,
            faults: Self.faults(ran: true, by: 1), tag: "-ran")
        let ran0 = try Self.shard(0, of: 2, samples: [1], scenario: file, root: root, faultShard: 1,
            faults: Self.faults(ran: true, by: 0), tag: "-ran")
        let otherHeader = try Self.shard(1, of: 2, samples: [1], scenario: file, root: root, faultShard: 0,
            faults: Self.faults(ran: false, by: 0), tag: "-other")
        let ranWrong = try Self.shard(0, of: 2, samples: [1], scenario: file, root: root, faultShard: 1,
            faults: Self.faults(ran: true, by: 0), tag: "-wrong")
        let planned1 = try Self.shard(1, of: 2, samples: [1], scenario: file, root: root, faultShard: 1,
            faults: Self.faults(ran: false, by: 1), tag: "-planned")
        let cases: [([URL], String)] = [
            ([planned0, otherHeader], "disagree on which shard runs the faults: fault_shard 0 vs 1"),
            ([ran0, ran1], "shards 0 and 1 all ran faults"),
            ([ranWrong, planned1], "shard 0/2 ran faults but fault_shard is 1"),
        ]
        for (index, (directories, expected)) in cases.enumerated() {
            let output = root.appendingPathComponent("refused-\(index)")
            do {
                _ = try ShardMerge.merge(directories, into: output, scenario: loaded)
                Issue.record("merged \(directories.map(\.lastPathComponent)) (expected: \(expected))")
            } catch {
                #expect("\(error)".contains(expected), "\(error)")
            }
            #expect(!FileManager.default.fileExists(atPath: output.path), "a refused merge writes nothing")
        }
    }

    @Test func theMergedFaultsAreTheFaultShardsOnTheMergedClock() throws {
        let root = try Self.scratch()
        let file = try Self.scenario()
        let loaded = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations())
        // Shard 1 (the fault shard) started its phase 700 ms after shard 0; its fault at its phase second 4.
        let shards = try [
            Self.shard(0, of: 2, samples: [1], scenario: file, root: root, faultShard: 1,
                faults: Self.faults(ran: false, by: 1, start: 5_000), phaseStart: 1_000),
            Self.shard(1, of: 2, samples: [1], scenario: file, root: root, faultShard: 1,
                faults: Self.faults(ran: true, by: 1, start: 5_700), phaseStart: 1_700),
        ]
        let report = try ShardMerge.merge(shards, into: root.appendingPathComponent("merged"), scenario: loaded)
        let fault = try #require(report.faults?.first)
        #expect(report.faults?.count == 1, "the planned-only entry of shard 0 is not the run's")
        #expect(fault.verified == .yes && fault.runByShard == 1 && fault.plannedOnly == nil)
        #expect(report.phases.first?.startedAt == 1_000)
        #expect(fault.startedAt == 5_000 && fault.stoppedAt == 7_000 && fault.plannedStart == 5_000, "\(fault)")
    }

    /// A shard's planned-only entry never becomes a drill (nor a verified fault): the shard that ran it judges it.
    @Test func aPlannedOnlyFaultHasNoDrill() throws {
        var planned = RunReport.Fault(
            name: "freeze", kind: "pause", target: "redis-primary", plannedStart: 5_000, verified: .unknown)
        planned.plannedOnly = true
        planned.runByShard = 1
        #expect(!planned.ranHere)
        let report = RunReport(
            identity: .init(
                id: "s0", scenario: "x", scenarioFile: "x", datasetSpec: "x", seed: 1, datasetRows: 1, stack: "s",
                namespace: "n", kilnRevision: nil, host: "h", cores: 1),
            startedAt: 0, endedAt: nil, complete: true, interrupted: false, phases: [], verdict: .passed, exitCode: 0,
            storeRows: [:])
        #expect(DrillMetrics.compute(faults: [planned], report: report, timeline: []).isEmpty)
        var ran = planned
        ran.plannedOnly = nil
        ran.startedAt = 5_000
        ran.stoppedAt = 7_000
        ran.verified = .yes
        #expect(DrillMetrics.compute(faults: [ran], report: report, timeline: []).count == 1)
    }

    /// The scenario has a fault but the fault shard recorded none (e.g. shards run from a copy without `faults:`):
    /// the merged timeline keeps it, never started and unknown, so the merged drill can never pass.
    @Test func aPlannedFaultNoShardRanIsUnknownInTheMergedRun() throws {
        let root = try Self.scratch()
        let file = try Self.scenario()
        let withFault = try TestStack.temporaryFile(
            "with-fault.yaml",
            String(contentsOf: file, encoding: .utf8).replacingOccurrences(
                of: "phases:",
                with: "faults:\n  - {name: freeze, kind: pause, target: redis-primary, at: 1s, duration: 1s}\nphases:"))
        let loaded = try LoadScenario.load(contentsOf: withFault, knownOperations: LoadRun.knownOperations())
        #expect(loaded.faults?.entries.count == 1)
        let shards = try [
            Self.shard(0, of: 2, samples: [1], scenario: file, root: root),
            Self.shard(1, of: 2, samples: [1], scenario: file, root: root),
        ]
        let report = try ShardMerge.merge(shards, into: root.appendingPathComponent("merged"), scenario: loaded)
        let fault = try #require(report.faults?.first)
        #expect(fault.name == "freeze" && fault.verified == .unknown && fault.startedAt == nil && fault.ranHere)
        #expect(fault.note?.contains("no shard ran it") == true)
        #expect(report.verdict != .passed && report.checkRequired == true)
        let drills = DrillMetrics.compute(faults: report.faults ?? [], report: report, timeline: [])
        #expect(drills.map(\.verdict) == [.unknown], "\(drills)")
    }
}
