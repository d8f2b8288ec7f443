import Foundation
import KilnCheck
import KilnCore
import KilnLoad
import Testing

/// `pipeline.workers: processes`: each sink worker is a `kiln pipeline` child of `kiln run`. A SIGKILLed sink is
/// recorded (not converged, with why) and its rows show as lost; started again with `kiln pipeline`, it resumes
/// from the offsets it stored and the store checks valid — nothing applied twice, nothing skipped.
@Suite("pipeline sink workers as processes")
struct PipelineProcessTests {
    /// A pause of a sink process is proved by what a client of its store sees: the offsets the sink stored as applied
    /// hold still while it is stopped (the load keeps producing), and move again after the SIGCONT.
    @Test func aPausedSinksAppliedOffsetHoldsThenMovesAgain() throws {
        let namespace = "ppause_\(UInt32.random(in: 0...UInt32.max))"
        let scenario = try CommandLineTests.temporaryFile(
            "\(namespace).yaml",
            """
            name: \(namespace)
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 20K}
            namespace: \(namespace)
            heal_wait: 0s
            pipeline: {workers: processes, batch: 200, sinks: [postgres], convergence_timeout: 20s}
            faults:
              - {name: pause-sink, kind: pause, target: "sink:postgres", at: 2s, duration: 4s}
            phases:
              - name: stream
                executor: constant-arrival-rate
                rate: 200
                duration: 9s
                workers: 4
                mix: {kafka.produce: 1}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let run = try CommandLineTests.kiln(["run", scenario.path, "--runs-directory", runs.path, "--id", "p"])
        let report = try RunReport.decode(Data(contentsOf: runs.appendingPathComponent("p/report.json")))
        let fault = try #require(report.faults?.first { $0.name == "pause-sink" }, "\(run.output)")
        print("pause of sink:postgres: \(fault.verified) (\(fault.note ?? ""))")
        #expect(fault.verified == .yes, "\(fault.note ?? "")")
        #expect(fault.note?.contains("applied offset held at") == true, "\(fault.note ?? "")")
        #expect(fault.note?.contains("applied offset moved") == true, "\(fault.note ?? "")")
    }

    @Test func aKilledSinkIsReportedAndResumesFromItsOffsets() throws {
        let namespace = "pproc_\(UInt32.random(in: 0...UInt32.max))"
        let scenario = try CommandLineTests.temporaryFile(
            "\(namespace).yaml",
            """
            name: \(namespace)
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 20K}
            namespace: \(namespace)
            pipeline: {workers: processes, batch: 200, sinks: [postgres, clickhouse], convergence_timeout: 20s}
            phases:
              - {name: backlog, executor: bulk, rows: 2K, batch: 500, stores: [kafka]}
              - name: stream
                executor: constant-arrival-rate
                rate: 200
                duration: 6s
                workers: 4
                mix: {kafka.produce: 1}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        // SIGKILL the ClickHouse sink process three seconds into the run.
        let killer = Thread {
            Thread.sleep(forTimeInterval: 3)
            let pkill = Process()
            pkill.executableURL = URL(fileURLWithPath: "/usr/bin/pkill")
            pkill.arguments = ["-KILL", "-f", "pipeline \(scenario.path) --sink clickhouse"]
            try? pkill.run()
            pkill.waitUntilExit()
        }
        killer.start()
        let run = try CommandLineTests.kiln(["run", scenario.path, "--runs-directory", runs.path, "--id", "p"])
        try #require(run.status == 0, "\(run.output)")
        let directory = runs.appendingPathComponent("p")
        let report = try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        let sinks = Dictionary(uniqueKeysWithValues: (report.pipeline ?? []).map { ($0.sink, $0) })
        #expect(sinks["postgres"]?.converged == true)
        let clickhouse = try #require(sinks["clickhouse"])
        #expect(!clickhouse.converged)
        #expect(clickhouse.lastError?.contains("exited") == true, "\(clickhouse)")

        let (_, before) = try CheckCommandTests.check(directory)
        let lost = before.places.first { $0.place == "clickhouse.rows" }
        #expect(lost?.validity == .invalid)
        #expect((lost?.counts["lost"] ?? 0) > 0)
        #expect(before.places.first { $0.place == "postgres.rows" }?.validity == .valid)

        let resumed = try CommandLineTests.kiln(["pipeline", scenario.path, "--sink", "clickhouse", "--until-caught-up"])
        #expect(resumed.status == 0, "\(resumed.output)")
        let (_, after) = try CheckCommandTests.check(directory)
        let rows = try #require(after.places.first { $0.place == "clickhouse.rows" })
        #expect(rows.validity == .valid, "\(rows.counts)")
        #expect(after.places.first { $0.place == "invariant.minute-totals" }?.validity == .valid)
    }
}
