import Dispatch
import Foundation
import Synchronization
import KilnCore
import KilnLoad
import Testing
import Yams

/// Sharded runs on the shared stack, driven exactly as Kubernetes would drive them: `kiln k8s` writes the manifests,
/// the ConfigMap's files are written to a directory (the pods' /kiln/scenario), and the Jobs' own commands run
/// here — the Indexed Job's once per index with JOB_COMPLETION_INDEX set and `$(JOB_COMPLETION_INDEX)` expanded as the
/// kubelet expands it. The merged run must give the unsharded run's verdict and per-operation counts.
/// A value shared by test threads, under a lock.
final class Locked<Value>: @unchecked Sendable {
    // @unchecked: `value` is only touched under `lock`.
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

@Suite("Sharded runs merged like one run (shared stack)", .serialized)
struct ShardedRunTests {
    /// An open-model scenario (rate × duration = 1,000 ops: with 3 shards the remainder is 1) after a bulk phase.
    static func scenario(namespace: String) -> String {
        """
        name: sharded-it
        stack: \(TestStack.paths.embeddedStackFile.path)
        dataset: {spec: \(Fixtures.specURL.path), seed: 11, rows: 20K}
        namespace: \(namespace)
        fresh: true
        phases:
          - name: load
            executor: bulk
            rows: 3001
            batch: 500
            stores: [postgres, redis, kafka]
            thresholds:
              phase: ["error_rate == 0"]
          - name: open
            executor: constant-arrival-rate
            rate: 200
            duration: 5s
            workers: 12
            drop_after: 5s
            mix: {postgres.insert: 4, postgres.point-read: 3, redis.feature-update: 3, redis.feature-read: 3, kafka.produce: 3}
            thresholds:
              phase: ["error_rate == 0", "dropped == 0"]
              postgres.point-read: ["p99 < 2s"]
        """
    }

    struct Pod {
        var command: [String]
        var arguments: [String]
    }

    /// The container command and args of a Job manifest.
    static func pod(_ file: URL) throws -> Pod {
        let document = try #require(try Yams.load(yaml: String(contentsOf: file, encoding: .utf8)) as? [String: Any])
        let spec = try #require(document["spec"] as? [String: Any])
        let template = try #require((spec["template"] as? [String: Any])?["spec"] as? [String: Any])
        let container = try #require((template["containers"] as? [[String: Any]])?.first)
        return Pod(
            command: try #require(container["command"] as? [String]), arguments: try #require(container["args"] as? [String]))
    }

    /// Runs a pod's command here: the mounts become local directories, `kiln` the debug binary.
    static func run(_ pod: Pod, files: URL, runs: URL, index: Int? = nil) throws -> Process {
        func local(_ text: String) -> String {
            var text = text.replacingOccurrences(of: "/kiln/scenario", with: files.path)
                .replacingOccurrences(of: "/kiln/runs", with: runs.path)
            if let index { text = text.replacingOccurrences(of: "$(JOB_COMPLETION_INDEX)", with: String(index)) }
            return text
        }
        let process = Process()
        let binaryDirectory = TestStack.paths.home.appendingPathComponent(".build/debug").path
        process.executableURL = URL(fileURLWithPath: pod.command[0] == "kiln" ? "\(binaryDirectory)/kiln" : pod.command[0])
        process.arguments = pod.command.dropFirst().map(local) + pod.arguments.map(local)
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = binaryDirectory + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        if let index { environment["JOB_COMPLETION_INDEX"] = String(index) }
        process.environment = environment
        let log = runs.appendingPathComponent("pod-\(pod.arguments.first ?? "x")-\(index.map(String.init) ?? "-").log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    static func log(_ runs: URL) -> String {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: runs.path)) ?? []
        return files.filter { $0.hasSuffix(".log") }.sorted().map {
            "== \($0)\n" + ((try? String(contentsOf: runs.appendingPathComponent($0), encoding: .utf8)) ?? "")
        }.joined(separator: "\n").suffix(6_000).description
    }

    /// Per phase and operation: (scheduled = completed + dropped, rows).
    static func counts(_ report: RunReport) -> [String: [Int64]] {
        var result: [String: [Int64]] = [:]
        for phase in report.phases {
            for operation in phase.operations {
                result["\(phase.name)/\(operation.name)"] = [
                    operation.ok + operation.fail + operation.info + operation.dropped, operation.rows,
                ]
            }
        }
        return result
    }

    @Test func jobEnvironmentShardsMergeToTheUnshardedVerdictAndCounts() throws {
        let shards = 3
        let namespace = "shardit_\(UInt32.random(in: 0...999_999))"
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("shard-it"))
        let files = root.appendingPathComponent("files")
        let runs = root.appendingPathComponent("runs")
        let manifests = root.appendingPathComponent("k8s")
        try FileManager.default.createDirectory(at: files, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: runs, withIntermediateDirectories: true)
        let scenario = try CommandLineTests.temporaryFile("sharded-it.yaml", Self.scenario(namespace: namespace))
        let written = try CommandLineTests.kiln([
            "k8s", scenario.path, "--shards", String(shards), "-o", manifests.path, "--image", "kiln:test",
        ])
        try #require(written.status == 0, "\(written.output)")
        // The ConfigMap's files, as every pod sees them.
        let configMap = try #require(
            try Yams.load(yaml: String(contentsOf: manifests.appendingPathComponent("00-configmap.yaml"), encoding: .utf8))
                as? [String: Any])
        for (key, value) in try #require(configMap["data"] as? [String: String]) {
            try Data(value.utf8).write(to: files.appendingPathComponent(key))
        }
        let scenarioInPod = files.appendingPathComponent("scenario.yaml")

        // One unsharded run of the same files.
        let single = try CommandLineTests.kiln([
            "run", scenarioInPod.path, "--runs-directory", runs.path, "--id", "single",
        ])
        try #require(single.status == 0, "\(single.output)")
        let singleReport = try RunReport.decode(Data(contentsOf: runs.appendingPathComponent("single/report.json")))

        // The setup Job, then the Indexed Job's pods side by side, then the merge Job.
        let setup = try Self.run(Self.pod(manifests.appendingPathComponent("02-setup-job.yaml")), files: files, runs: runs)
        setup.waitUntilExit()
        try #require(setup.terminationStatus == 0, "\(Self.log(runs))")
        let shardPod = try Self.pod(manifests.appendingPathComponent("10-shards-job.yaml"))
        let pods = try (0..<shards).map { try Self.run(shardPod, files: files, runs: runs, index: $0) }
        for pod in pods { pod.waitUntilExit() }
        for (index, pod) in pods.enumerated() {
            #expect(pod.terminationStatus == 0, "shard \(index): \(Self.log(runs))")
        }
        // A shard's own report is never green: its thresholds and checks belong to the merged run.
        let shardRoot = try #require(
            try FileManager.default.contentsOfDirectory(atPath: runs.path).first { $0.hasPrefix("kiln-") })
        let shardReport = try RunReport.decode(
            Data(contentsOf: runs.appendingPathComponent(shardRoot).appendingPathComponent("shard-0/report.json")))
        #expect(shardReport.verdict == .notChecked && shardReport.loadVerdict == .passed)
        #expect(shardReport.notChecked?.contains("kiln merge") == true)
        #expect(shardReport.phases.allSatisfy { $0.thresholds.isEmpty })
        let merge = try Self.run(Self.pod(manifests.appendingPathComponent("20-merge-job.yaml")), files: files, runs: runs)
        merge.waitUntilExit()
        #expect(merge.terminationStatus == 0, "merge, check and report of the merged run: \(Self.log(runs))")

        let runRoot = try #require(
            try FileManager.default.contentsOfDirectory(atPath: runs.path).first { $0.hasPrefix("kiln-") })
        let merged = runs.appendingPathComponent(runRoot).appendingPathComponent("merged")
        let mergedReport = try RunReport.decode(Data(contentsOf: merged.appendingPathComponent("report.json")))
        #expect(mergedReport.verdict == singleReport.verdict, "merged \(mergedReport.verdict) vs single \(singleReport.verdict)")
        #expect(Self.counts(mergedReport) == Self.counts(singleReport))
        #expect(mergedReport.phases.map(\.plannedOps) == singleReport.phases.map(\.plannedOps))
        for name in ["check.json", "report.html", "summary.md", "junit.xml", "merge.json"] {
            #expect(FileManager.default.fileExists(atPath: merged.appendingPathComponent(name).path), "\(name)")
        }

        // Disjoint rows: no (store, row) written by two shards.
        var owner: [String: Int] = [:]
        var overlaps: [String] = []
        for index in 0..<shards {
            let history = runs.appendingPathComponent(runRoot).appendingPathComponent("shard-\(index)/history.jsonl")
            for line in try String(contentsOf: history, encoding: .utf8).split(separator: "\n") {
                let entry = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                let operation = try #require(entry["op"] as? String)
                let store = String(operation.split(separator: ".")[0])
                let row = try #require((entry["row"] as? NSNumber)?.int64Value)
                let count = try #require((entry["rows"] as? NSNumber)?.int64Value)
                for written in row..<(row + max(1, count)) {
                    let key = "\(store):\(written)"
                    if let earlier = owner[key], earlier != index { overlaps.append("\(key) in shards \(earlier) and \(index)") }
                    owner[key] = index
                }
            }
        }
        #expect(overlaps.isEmpty, "\(overlaps.prefix(10))")
        #expect(owner.keys.filter { $0.hasPrefix("postgres:") }.count > 3001, "bulk rows and inserts are in the histories")
        try? FileManager.default.removeItem(at: root)
    }

    /// Faults run in `fault_shard` only; the merged run keeps that shard's timeline and is NOT CHECKED (exit 3, never
    /// passed) until `kiln check` judges it.
    @Test func faultsRunInTheFaultShardOnlyAndTheMergedDrillIsNotCheckedUntilChecked() throws {
        let namespace = "sharddrill_\(UInt32.random(in: 0...999_999))"
        let scenario = try CommandLineTests.temporaryFile(
            "shard-drill.yaml",
            """
            name: shard-drill
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 12, rows: 10K}
            namespace: \(namespace)
            fault_shard: 1
            proxy: [redis]
            faults:
              - {name: redis-latency, kind: proxy, target: redis, toxic: latency=50ms, at: 1s, duration: 2s}
            heal_wait: 1s
            phases:
              - name: open
                executor: constant-arrival-rate
                rate: 60
                duration: 5s
                workers: 8
                drop_after: 5s
                mix: {redis.feature-update: 1, redis.feature-read: 1}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("shard-drill"))
        let setup = try CommandLineTests.kiln(["run", scenario.path, "--setup-only"])
        try #require(setup.status == 0, "\(setup.output)")
        let group = DispatchGroup()
        let results = Locked<[Int: CommandLineTests.Outcome]>([:])
        for index in 0..<2 {
            group.enter()
            Thread {
                let outcome = try? CommandLineTests.kiln([
                    "run", scenario.path, "--shard", "\(index)/2", "--runs-directory", runs.path, "--id", "s\(index)",
                ])
                results.withLock { $0[index] = outcome }
                group.leave()
            }.start()
        }
        group.wait()
        for index in 0..<2 {
            let outcome = try #require(results.withLock { $0[index] })
            #expect(outcome.status == 0, "shard \(index): \(outcome.output)")
        }
        let shard0 = try RunReport.decode(Data(contentsOf: runs.appendingPathComponent("s0/report.json")))
        let shard1 = try RunReport.decode(Data(contentsOf: runs.appendingPathComponent("s1/report.json")))
        #expect(shard0.faults?.allSatisfy { $0.plannedOnly == true && $0.runByShard == 1 && $0.verified == .unknown } == true,
            "shard 0 ran no fault, it records the plan: \(String(describing: shard0.faults))")
        #expect((shard0.drills ?? []).isEmpty)
        #expect(shard1.faults?.map(\.name) == ["redis-latency"])
        #expect(shard1.faults?.first?.verified == .yes, "\(String(describing: shard1.faults))")

        let merged = runs.appendingPathComponent("merged")
        let merge = try CommandLineTests.kiln([
            "merge", runs.appendingPathComponent("s0").path, runs.appendingPathComponent("s1").path, "-o", merged.path,
        ])
        #expect(merge.status == KilnExitCode.unknown.rawValue, "a drill is judged by its check: \(merge.output)")
        #expect(merge.output.contains("NOT CHECKED"), "\(merge.output)")
        let unchecked = try RunReport.decode(Data(contentsOf: merged.appendingPathComponent("report.json")))
        #expect(unchecked.verdict == .notChecked && unchecked.faults?.count == 1)
        #expect(unchecked.faults?.first?.note?.contains("its proxy carried that shard's clients only") == true)
        #expect(unchecked.drills?.isEmpty == false, "drills re-evaluated on the merged timeline")
        let check = try CommandLineTests.kiln(["check", merged.path])
        #expect(check.status == 0, "\(check.output)")
        let judged = try RunReport.decode(Data(contentsOf: merged.appendingPathComponent("report.json")))
        #expect(judged.verdict == .passed, "\(judged.verdict)")
    }

    @Test func shardOptionsAreCheckedBeforeAnythingRuns() throws {
        let scenario = try CommandLineTests.temporaryFile("sharded-bad.yaml", Self.scenario(namespace: "shard_bad"))
        for (arguments, expected) in [
            (["--shard", "2/2"], "outside 0..<2"),
            (["--shard", "x"], "INDEX/COUNT"),
            (["--shards", "2"], "JOB_COMPLETION_INDEX is not set"),
            (["--shard", "0/2", "--check"], "checked after `kiln merge`"),
            (["--shard", "0/2", "--shards", "2"], "exclude each other"),
        ] {
            let result = try CommandLineTests.kiln(["run", scenario.path, "--runs-directory", "/tmp/shard-never"] + arguments)
            #expect(result.status == KilnExitCode.invalidInput.rawValue, "\(arguments): \(result.output)")
            #expect(result.output.contains(expected), "\(arguments): \(result.output)")
        }
        #expect(!FileManager.default.fileExists(atPath: "/tmp/shard-never"))
        // fault_shard: outside the run's shards, negative, huge: named by file:line:column.
        for (value, expected) in [("5", "fault_shard: 5 is not a shard of 2"), ("-1", "fault_shard"), ("99999999999", "fault_shard")] {
            let text = Self.scenario(namespace: "shard_bad").replacingOccurrences(
                of: "fresh: true", with: "fresh: true\nfault_shard: \(value)")
            let file = try CommandLineTests.temporaryFile("fault-shard.yaml", text)
            let result = try CommandLineTests.kiln(["run", file.path, "--shard", "0/2", "--runs-directory", "/tmp/shard-never"])
            #expect(result.status == KilnExitCode.invalidInput.rawValue, "\(value): \(result.output)")
            #expect(result.output.contains("\(file.path):6:"), "\(value) names its line: \(result.output)")
            #expect(result.output.contains(expected), "\(value): \(result.output)")
        }
        let merge = try CommandLineTests.kiln(["merge", "/nonexistent-shard", "-o", "/tmp/shard-never-merged"])
        #expect(merge.status == KilnExitCode.invalidInput.rawValue, "\(merge.output)")
    }
}
