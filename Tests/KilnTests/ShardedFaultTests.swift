import Foundation
import KilnCore
import KilnScenario
import KilnStack
import Logging
import Testing

/// A sharded drill on a PRIVATE Redis (127.0.2.21:36221, its own KILN_STACK_DIR; never the shared stack): one
/// unsharded `kiln run` of a scenario whose one fault pauses that Redis, then the same scenario as 2 shards — two
/// `kiln run --shards 2` processes given JOB_COMPLETION_INDEX as a Kubernetes Indexed Job gives each pod — merged
/// with `kiln merge` and checked with `kiln check`. Exactly one shard (`fault_shard: 1`) ran the fault; the other
/// recorded the plan and never shows it verified; the merged run's fault and drill are those of the unsharded run in
/// kind and verification, and its per-operation counts are the unsharded run's.
@Suite("Sharded drill: faults in one shard, merged like one run (private Redis)", .serialized)
struct ShardedFaultTests {
    static let address = "127.0.2.21:36221"

    /// A stack holding only a Redis primary at `address`, in a fresh directory; the stack's state under `run/`.
    static func privateStack() throws -> (definition: StackDefinition, paths: KilnPaths, directory: URL) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-shardfault"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("stack.yaml")
        try """
        name: shard-fault-private
        kind: embedded
        chaos_target: true
        redis:
          primary: \(address)
          replicas: []
          sentinels: []
          master_name: kiln
        """.write(to: file, atomically: true, encoding: .utf8)
        return (
            try StackDefinition.load(contentsOf: file),
            KilnPaths(home: TestStack.paths.home, stack: directory.appendingPathComponent("run")), directory
        )
    }

    static func scenario(stack: URL, namespace: String) -> String {
        """
        name: shard-fault
        stack: \(stack.path)
        dataset: {spec: \(Fixtures.specURL.path), seed: 21, rows: 10K}
        namespace: \(namespace)
        timeout: 10s
        fresh: true
        fault_shard: 1
        faults:
          - {name: freeze-redis, kind: pause, target: redis-primary, at: 4s, duration: 2s}
        heal_wait: 1s
        phases:
          - name: open
            executor: constant-arrival-rate
            rate: 100
            duration: 12s
            workers: 32
            drop_after: 10s
            mix: {redis.feature-update: 1, redis.feature-read: 1}
        """
    }

    /// Starts `kiln ARGUMENTS` with KILN_STACK_DIR (and JOB_COMPLETION_INDEX when given), output to `log`.
    static func start(_ arguments: [String], stackDirectory: URL, index: Int? = nil, log: URL) throws -> Process {
        let process = Process()
        process.executableURL = TestStack.paths.home.appendingPathComponent(".build/debug/kiln")
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["KILN_STACK_DIR"] = stackDirectory.path
        if let index { environment["JOB_COMPLETION_INDEX"] = String(index) }
        process.environment = environment
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    static func kiln(_ arguments: [String], stackDirectory: URL, log: URL) throws -> (status: Int32, output: String) {
        let process = try start(arguments, stackDirectory: stackDirectory, log: log)
        process.waitUntilExit()
        return (process.terminationStatus, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    static func report(_ directory: URL) throws -> RunReport {
        try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
    }

    @Test(.timeLimit(.minutes(6)))
    func theFaultRunsInOneShardAndTheMergedDrillAndCountsAreTheUnshardedRuns() throws {
        let (definition, paths, directory) = try Self.privateStack()
        let stack = try EmbeddedStack(definition: definition, paths: paths, logger: Logger(label: "test.shardfault"))
        defer {
            for status in stack.status() { if let pid = status.pid { ProcessTree.resume([], root: pid) } }
            stack.down()
            if ProcessInfo.processInfo.environment["KILN_KEEP_TEST_RUNS"] == nil {
                try? FileManager.default.removeItem(at: directory)
            }
        }
        try stack.up()
        let file = directory.appendingPathComponent("scenario.yaml")
        try Self.scenario(stack: directory.appendingPathComponent("stack.yaml"), namespace: "sf_\(UInt32.random(in: 0...999_999))")
            .write(to: file, atomically: true, encoding: .utf8)
        let runs = directory.appendingPathComponent("runs")
        let logs = directory.appendingPathComponent("logs")
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)

        // The unsharded run (it checks itself: a drill).
        let single = try Self.kiln(
            ["run", file.path, "--runs-directory", runs.path, "--id", "single"], stackDirectory: paths.stack,
            log: logs.appendingPathComponent("single.log"))
        let singleReport = try Self.report(runs.appendingPathComponent("single"))

        // The sharded run: setup once, then the Indexed Job's two pods side by side.
        let setup = try Self.kiln(
            ["run", file.path, "--setup-only"], stackDirectory: paths.stack, log: logs.appendingPathComponent("setup.log"))
        try #require(setup.status == 0, "\(setup.output)")
        let pods = try (0..<2).map { (index: Int) -> Process in
            try Self.start(
                ["run", file.path, "--shards", "2", "--runs-directory", runs.path, "--id", "shard-\(index)"],
                stackDirectory: paths.stack, index: index, log: logs.appendingPathComponent("shard-\(index).log"))
        }
        for pod in pods { pod.waitUntilExit() }
        print("pods: \(pods.map { "\($0.processIdentifier) exit \($0.terminationStatus) \($0.terminationReason.rawValue)" })")
        for (index, pod) in pods.enumerated() {
            let log = (try? String(contentsOf: logs.appendingPathComponent("shard-\(index).log"), encoding: .utf8)) ?? ""
            #expect(pod.terminationStatus == 0, "shard \(index): \(log.suffix(3_000))")
        }
        for index in 0..<2 {
            let log = (try? String(contentsOf: logs.appendingPathComponent("shard-\(index).log"), encoding: .utf8)) ?? ""
            try #require(
                FileManager.default.fileExists(atPath: runs.appendingPathComponent("shard-\(index)/report.json").path),
                "shard \(index): \(log.suffix(3_000))\nsingle: \(single.output.suffix(2_000))")
        }
        let shard0 = try Self.report(runs.appendingPathComponent("shard-0"))
        let shard1 = try Self.report(runs.appendingPathComponent("shard-1"))

        // Shard 0 records the plan, run by shard 1: never started here, never verified, no drill.
        let planned = try #require(shard0.faults?.first, "shard 0 records the planned timeline")
        #expect(shard0.faults?.count == 1)
        #expect(planned.plannedOnly == true && planned.runByShard == 1 && planned.startedAt == nil)
        #expect(planned.verified == .unknown && planned.plannedStart != nil)
        #expect((shard0.drills ?? []).isEmpty, "a shard that ran no fault has no drill")
        let summary0 = try String(
            contentsOf: runs.appendingPathComponent("shard-0/summary.md"), encoding: .utf8)
        #expect(summary0.contains("not run here (shard 1 runs it)"), "\(summary0)")
        #expect(shard0.verdict == .notChecked)
        // Shard 1 ran it and verified it.
        let ran = try #require(shard1.faults?.first)
        #expect(shard1.faults?.count == 1)
        #expect(ran.ranHere && ran.runByShard == 1 && ran.verified == .yes, "\(ran)")
        #expect(shard1.verdict == .notChecked)

        // The merge, then the check of the merged run (what the merge Job does).
        let merged = runs.appendingPathComponent("merged")
        let merge = try Self.kiln(
            ["merge", runs.appendingPathComponent("shard-0").path, runs.appendingPathComponent("shard-1").path,
             "-o", merged.path], stackDirectory: paths.stack, log: logs.appendingPathComponent("merge.log"))
        #expect(merge.status == KilnExitCode.unknown.rawValue, "a drill is NOT CHECKED until checked: \(merge.output)")
        let check = try Self.kiln(["check", merged.path], stackDirectory: paths.stack, log: logs.appendingPathComponent("check.log"))
        let mergedReport = try Self.report(merged)

        // Faults: exactly the fault shard's, verified, as in the unsharded run.
        let singleFault = try #require(singleReport.faults?.first, "\(single.output.suffix(3_000))")
        let mergedFault = try #require(mergedReport.faults?.first)
        #expect(mergedReport.faults?.count == 1 && singleReport.faults?.count == 1)
        #expect(mergedFault.name == singleFault.name && mergedFault.kind == singleFault.kind)
        #expect(mergedFault.verified == singleFault.verified && mergedFault.verified == .yes)
        #expect(mergedFault.runByShard == 1 && mergedFault.ranHere)
        // On the merged clock: at the same phase second as in the fault shard.
        let phaseStart = try #require(mergedReport.phases.first?.startedAt)
        let shardPhaseStart = try #require(shard1.phases.first?.startedAt)
        #expect(
            (mergedFault.startedAt ?? 0) - phaseStart == (ran.startedAt ?? 0) - shardPhaseStart,
            "merged \(String(describing: mergedFault.startedAt)) - \(phaseStart) vs shard \(String(describing: ran.startedAt)) - \(shardPhaseStart)")

        // Drills: the same drill, same verdict. Detection within the timeline's 1 s resolution (+1 s for the shards'
        // start offsets); recovery (throughput back to 90 %, p99 back under the slow-second limit) depends on how busy
        // the machine is just after the pause, so both RTOs are held to the pause's window instead: at least its 2 s,
        // at most 6 s more.
        let singleDrill = try #require(singleReport.drills?.first, "\(single.output.suffix(3_000))")
        let mergedDrill = try #require(mergedReport.drills?.first, "\(merge.output.suffix(3_000))")
        #expect(mergedReport.drills?.count == singleReport.drills?.count)
        #expect(mergedDrill.name == singleDrill.name && mergedDrill.store == singleDrill.store)
        #expect(mergedDrill.verdict == singleDrill.verdict, "merged \(mergedDrill) vs single \(singleDrill)")
        for metric in ["time_to_detect_ms", "rto_ms"] {
            let (a, b) = (singleDrill.metrics[metric], mergedDrill.metrics[metric])
            #expect(a != nil && b != nil, "\(metric): single \(String(describing: a)) merged \(String(describing: b))")
        }
        if let a = singleDrill.metrics["time_to_detect_ms"], let b = mergedDrill.metrics["time_to_detect_ms"] {
            #expect(abs(a - b) <= 2_000, "time_to_detect_ms: single \(a) merged \(b)")
        }
        for rto in [singleDrill.metrics["rto_ms"], mergedDrill.metrics["rto_ms"]].compactMap({ $0 }) {
            #expect(rto >= 2_000 - 1_000 && rto <= 2_000 + 6_000, "rto_ms \(rto): single \(singleDrill) merged \(mergedDrill)")
        }
        #expect(check.status == single.status, "check of the merged run \(check.output.suffix(2_000)) vs single \(single.output.suffix(2_000))")
        #expect(mergedReport.verdict == singleReport.verdict, "merged \(mergedReport.verdict) vs single \(singleReport.verdict)")

        // Per-operation counts: scheduled (completed + dropped) equal; the rows of each op too.
        func counts(_ report: RunReport) -> [String: [Int64]] {
            var result: [String: [Int64]] = [:]
            for phase in report.phases {
                for op in phase.operations {
                    result["\(phase.name)/\(op.name)"] = [op.ok + op.fail + op.info + op.dropped, op.rows]
                }
            }
            return result
        }
        #expect(counts(mergedReport) == counts(singleReport))
        #expect(mergedReport.phases.map(\.plannedOps) == singleReport.phases.map(\.plannedOps))

        // What BENCHMARKS.md records (issue 18, merge exactness under a fault).
        for (label, report) in [("unsharded", singleReport), ("2 shards merged", mergedReport)] {
            let ops = report.phases.flatMap(\.operations).map {
                "\($0.name) ok \($0.ok) fail \($0.fail) info \($0.info) dropped \($0.dropped) p99 \($0.latencyMs.p99.map { String(format: "%.1f", $0) } ?? "-") ms"
            }
            let drill = report.drills?.first.map { drill in
                "\(drill.name): \(drill.verdict.rawValue); "
                    + drill.metrics.sorted { $0.key < $1.key }.map { "\($0.key) \(Int($0.value))" }.joined(separator: ", ")
            } ?? "-"
            print("BENCH \(label): verdict \(report.verdict.rawValue); \(ops.joined(separator: "; ")); fault \(report.faults?.first.map { "\($0.name) verified \($0.verified.rawValue)" } ?? "-"); drill \(drill)")
        }
        print("BENCH exit codes: unsharded \(single.status), merge \(merge.status), check of merged \(check.status)")
    }
}
