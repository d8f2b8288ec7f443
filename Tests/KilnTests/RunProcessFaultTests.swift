import Foundation
import KilnCore
import KilnFaults
import KilnLoad
import KilnStack
import Logging
import Testing

/// `kiln run` with process faults on a private copy of the embedded stack (127.0.14.x,
/// `PrivateStackPauseTests.privateStack`, its own run directory through KILN_STACK_DIR): the scenario path the lie
/// came through — a pause of the PostgreSQL primary under open-model load must be verified from the client's side
/// and slow the store's ops, and a Redis failover triggered by a kill must keep its scenario name and get its drill
/// row.
@Suite("kiln run: process faults and failover drill rows on a private stack", .serialized)
struct RunProcessFaultTests {
    static func kiln(_ arguments: [String], stackDirectory: URL) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = TestStack.paths.home.appendingPathComponent(".build/debug/kiln")
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["KILN_STACK_DIR"] = stackDirectory.path
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func aPauseOfThePrimaryIsVerifiedAndSlowsItsOpsAndAKillFailoverHasANamedDrillRow() throws {
        let (definition, paths) = try PrivateStackPauseTests.privateStack(octet: 14)
        let stack = try EmbeddedStack(definition: definition, paths: paths, logger: Logger(label: "test.runstack"))
        defer {
            // A fresh instance: `kiln run` restarted servers (the failover's killed primary) and recorded their
            // pids in the run directory after `stack` read it.
            let current =
                (try? EmbeddedStack(definition: definition, paths: paths, logger: Logger(label: "t"))) ?? stack
            for status in current.status() { if let pid = status.pid { ProcessTree.resume([], root: pid) } }
            current.down()
            try? FileManager.default.removeItem(at: paths.stack.deletingLastPathComponent())
        }
        try stack.up()
        let file = paths.stack.deletingLastPathComponent().appendingPathComponent("scenario.yaml")
        try """
        name: run-process-faults
        stack: \(definition.source)
        dataset: {spec: \(Fixtures.specURL.path), seed: 7, rows: 20K}
        namespace: rpf_\(UInt32.random(in: 0...UInt32.max))
        timeout: 10s
        fresh: true
        faults:
          - {name: freeze-pg, kind: pause, target: postgres-primary, at: 4s, duration: 3s}
          - {name: sentinel-drill, kind: redis-failover, trigger: kill, at: 12s, duration: 20s}
        heal_wait: 1s
        phases:
          - {name: seed, executor: bulk, rows: 5K, batch: 1K, stores: [postgres, redis]}
          - name: steady
            executor: constant-arrival-rate
            rate: 200
            duration: 40s
            workers: 64
            drop_after: 20s
            mix: {postgres.point-read: 1, postgres.insert: 1, redis.feature-read: 1}
        """.write(to: file, atomically: true, encoding: .utf8)
        let runs = paths.stack.deletingLastPathComponent().appendingPathComponent("runs")
        let result = try Self.kiln(
            ["run", file.path, "--runs-directory", runs.path, "--id", "r"], stackDirectory: paths.stack)
        let reportFile = runs.appendingPathComponent("r/report.json")
        let report = try RunReport.decode(Data(contentsOf: reportFile))
        let faults = Dictionary(uniqueKeysWithValues: (report.faults ?? []).map { ($0.name, $0) })
        let drills = Dictionary(uniqueKeysWithValues: (report.drills ?? []).map { ($0.fault, $0) })
        print("kiln run exit \(result.status)\nfaults: \(faults)\ndrills: \(drills)")

        let pause = try #require(faults["freeze-pg"], "\(result.output)")
        #expect(pause.verified == .yes, "\(pause)")
        #expect(pause.note?.contains("SELECT 1 on a connection opened before the pause: no reply in ") == true,
            "\(pause.note ?? "")")
        let pauseDrill = try #require(drills["freeze-pg"])
        #expect(pauseDrill.store == "postgres")
        // The lie: p99 3.7 ms "during" a 3 s pause. Ops intended during it wait for its end: the worst second's p99
        // is the time held (3 s + the ~0.6 s active verification) less at most the timeline's 1 s resolution.
        #expect(pauseDrill.metrics["p99_worst_second_ms"].map { $0 >= 2_500 } == true, "\(pauseDrill)")

        let failover = try #require(faults["sentinel-drill"], "the scenario's name is lost: \(faults.keys)")
        #expect(failover.kind == "redis-failover:kill")
        let failoverDrill = try #require(drills["sentinel-drill"], "no drill row for redis-failover:kill")
        #expect(failoverDrill.store == "redis")
        #expect(failoverDrill.name == "sentinel-drill on redis")
    }
}
