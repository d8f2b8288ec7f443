import Foundation
import KilnCore
import KilnLoad
import KilnScenario
import Testing

@Suite("kiln run against the embedded stack", .serialized)
struct RunCommandTests {
    static let scenarios = TestStack.paths.home.appendingPathComponent("Scenarios")

    @Test(arguments: [
        "quick.yaml", "nightly-regression.yaml", "nightly-100m.yaml", "pipeline.yaml", "drills/proxy-latency.yaml",
        "drills/pipeline-sink-kill.yaml", "drills/kafka-broker-kill.yaml", "drills/partition-primary.yaml",
        "drills/pg-failover.yaml", "drills/redis-sentinel-failover.yaml", "drills/pg-failover-sync.yaml",
        "drills/partition-replica.yaml", "drills/clock-skew.yaml", "drills/secure-faults.yaml",
    ])
    func shippedScenariosValidateAgainstTheStoreRegistry(file: String) throws {
        let scenario = try LoadScenario.load(
            contentsOf: Self.scenarios.appendingPathComponent(file), knownOperations: LoadRun.knownOperations())
        #expect(!scenario.phases.isEmpty)
        // Every store has a bulk op and at least two query ops in the nightly mix.
        if file == "nightly-regression.yaml" {
            let mix = scenario.phases[1].mix.map(\.name)
            for store in ["postgres", "redis", "kafka", "falkordb", "clickhouse"] {
                #expect(mix.contains { $0.hasPrefix(store + ".") }, "\(store) missing from the mix")
            }
        }
    }

    @Test func theQuickScenarioRunsGreenAndWritesItsRunDirectory() throws {
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let result = try CommandLineTests.kiln([
            "run", Self.scenarios.appendingPathComponent("quick.yaml").path, "--runs-directory", runs.path, "--id", "q",
        ])
        #expect(result.status == 0, "\(result.output)")
        let directory = runs.appendingPathComponent("q")
        let report = try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        #expect(report.verdict == .passed)
        #expect(report.complete && !report.interrupted)
        let bulk = report.phases[0].operations
        #expect(bulk.map(\.name) == ["postgres.bulk", "kafka.bulk", "redis.bulk", "clickhouse.bulk", "falkordb.bulk"])
        for operation in bulk {
            #expect(operation.rows == 20_000, "\(operation.name)")
            #expect(operation.fail == 0 && operation.info == 0, "\(operation.name): \(operation.errors)")
        }
        let mixed = report.phases[1]
        #expect(mixed.plannedOps == 2_000)
        let completed = mixed.operations.reduce(Int64(0)) { $0 + $1.ok + $1.fail + $1.info + $1.dropped }
        #expect(completed == 2_000)
        #expect(report.storeRows["postgres"]! > 20_000)
        for name in ["scenario.yaml", "timeline.jsonl", "history.jsonl", "histograms/mixed/postgres.point-read.json"] {
            #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path), "\(name)")
        }
        let timeline = try String(contentsOf: directory.appendingPathComponent("timeline.jsonl"), encoding: .utf8)
        #expect(timeline.split(separator: "\n").count >= 10)
        #expect(result.output.contains("verdict: passed"))
    }

    @Test func aFailedThresholdExitsTwoAndSaysWhich() throws {
        let scenario = try CommandLineTests.temporaryFile(
            "strict.yaml",
            """
            name: strict
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 1, rows: 10K}
            namespace: strict
            phases:
              - name: reads
                executor: constant-arrival-rate
                rate: 100
                duration: 1s
                mix: {redis.top-k: 1}
                thresholds:
                  redis.top-k: ["p50 < 1us"]
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let result = try CommandLineTests.kiln(["run", scenario.path, "--runs-directory", runs.path])
        #expect(result.status == KilnExitCode.thresholdFailed.rawValue, "\(result.output)")
        #expect(result.output.contains("FAIL redis.top-k: p50 < 1us"))
    }

    @Test func aScenarioErrorNamesFileLineAndFieldAndExits64() throws {
        let scenario = try CommandLineTests.temporaryFile(
            "typo.yaml",
            """
            name: typo
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), rows: 10K}
            phases:
              - name: reads
                executor: constant-arrival-rate
                rate: 100
                duration: 1s
                mix: {redis.top-k: 1, postgres.point-raed: 2}
            """)
        let result = try CommandLineTests.kiln(["run", scenario.path])
        #expect(result.status == KilnExitCode.invalidInput.rawValue)
        #expect(result.output.contains("typo.yaml:9"), "\(result.output)")
        #expect(result.output.contains("phases[0].mix.postgres.point-raed"))
        #expect(result.output.contains("postgres.point-read"))
    }

    @Test func sigtermStopsTheRunWithinTwoSecondsAndLeavesAPartialReport() throws {
        let scenario = try CommandLineTests.temporaryFile(
            "long.yaml",
            """
            name: long
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 1, rows: 100K}
            namespace: longrun
            phases:
              - {name: reads, executor: constant-arrival-rate, rate: 200, duration: 60s, mix: {redis.top-k: 1}}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let process = Process()
        process.executableURL = TestStack.paths.home.appendingPathComponent(".build/debug/kiln")
        process.arguments = ["run", scenario.path, "--runs-directory", runs.path, "--id", "long"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: 3)
        let signalled = Date()
        process.terminate()
        process.waitUntilExit()
        #expect(Date().timeIntervalSince(signalled) < 2.5)
        #expect(process.terminationStatus == KilnExitCode.unknown.rawValue)
        let report = try RunReport.decode(Data(contentsOf: runs.appendingPathComponent("long/report.json")))
        #expect(report.interrupted)
        #expect(report.verdict == .interrupted)
        #expect((report.phases.first?.operations.first?.ok ?? 0) > 100)
    }

    @Test func aPhaseCanRunAloneAndContinueFromAnEarlierRunsData() throws {
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let quick = Self.scenarios.appendingPathComponent("quick.yaml").path
        let load = try CommandLineTests.kiln(["run", quick, "--runs-directory", runs.path, "--id", "load", "--phase", "bulk-load"])
        #expect(load.status == 0, "\(load.output)")
        let mixed = try CommandLineTests.kiln([
            "run", quick, "--runs-directory", runs.path, "--id", "mixed", "--phase", "mixed",
            "--continue-from", runs.appendingPathComponent("load").path,
        ])
        #expect(mixed.status == 0, "\(mixed.output)")
        let report = try RunReport.decode(Data(contentsOf: runs.appendingPathComponent("mixed/report.json")))
        #expect(report.phases.map(\.name) == ["mixed"])
        // Reads found the rows the first run loaded; writes went on after them.
        let pointReads = try #require(report.phases[0].operations.first { $0.name == "postgres.point-read" })
        #expect(pointReads.ok > 0 && pointReads.fail == 0)
        #expect(report.storeRows["postgres"]! > 20_000)
        let unknown = try CommandLineTests.kiln(["run", quick, "--runs-directory", runs.path, "--phase", "warmup"])
        #expect(unknown.status == KilnExitCode.invalidInput.rawValue)
        #expect(unknown.output.contains("no phase 'warmup'"))
    }
}
