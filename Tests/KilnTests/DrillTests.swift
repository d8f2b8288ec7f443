import Foundation
import KilnCheck
import KilnFaults
import KilnCore
import KilnLoad
import KilnReport
import KilnScenario
import Testing

/// Fault schedules inside `kiln run`, on faults that leave the shared stack's servers alone: a latency toxic on a
/// fault proxy in front of Redis, and kills of the run's own pipeline sink processes.
@Suite("drills: fault schedules in kiln run", .serialized)
struct DrillTests {
    static func scenario(_ name: String, _ body: String) throws -> URL {
        try CommandLineTests.temporaryFile(
            "\(name).yaml",
            """
            name: \(name)
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 5, rows: 50K}
            namespace: \(name)
            \(body)
            """)
    }

    @Test func aLatencyToxicRaisesTheProxiedOpsP50ByItsLatency() throws {
        let name = "drl_\(UInt32.random(in: 0...UInt32.max))"
        let file = try Self.scenario(
            name,
            """
            proxy: [redis]
            faults:
              - {name: slow-redis, kind: proxy, target: redis, toxic: latency=100ms, at: 6s, duration: 8s}
            heal_wait: 0s
            phases:
              - {name: seed, executor: bulk, rows: 5K, batch: 1K, stores: [redis]}
              - name: steady
                executor: constant-arrival-rate
                rate: 100
                duration: 20s
                workers: 64
                mix: {redis.feature-read: 1}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let result = try CommandLineTests.kiln(["run", file.path, "--runs-directory", runs.path, "--id", "d"])
        #expect(result.status == 0 || result.status == 2, "\(result.output)")
        let directory = runs.appendingPathComponent("d")
        let report = try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        let fault = try #require(report.faults?.first)
        #expect(fault.verified == .yes, "\(fault)")
        let started = try #require(fault.startedAt)
        let stopped = try #require(fault.stoppedAt)
        #expect(stopped - started >= 7_500 && stopped - started <= 10_000)
        // Per-second p50 of the seconds wholly inside the fault window, and of those well before it.
        let phase = try #require(report.phases.first { $0.name == "steady" })
        let samples = try RunData.load(directory).timeline.filter { $0.phase == "steady" }
        func p50s(_ range: ClosedRange<Int64>) -> [Double] {
            samples.filter { range.contains(phase.startedAt + Int64($0.second) * 1000) }.compactMap(\.p50Ms)
        }
        let during = p50s((started + 2_000)...(stopped - 500)).sorted()
        let before = p50s((phase.startedAt + 1_000)...(started - 500)).sorted()
        try #require(during.count >= 4 && before.count >= 3)
        let raise = during[during.count / 2] - before[before.count / 2]
        #expect(raise >= 90 && raise <= 130, "p50 before \(before), during \(during)")
        let drill = try #require(report.drills?.first)
        #expect(drill.store == "redis")
        #expect(drill.metrics["p99_during_ms"].map { $0 >= 100 } == true, "\(drill)")
        let html = try String(contentsOf: directory.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.contains("slow-redis"))
    }

    @Test func aRefusedFaultFailsItsDrillAndTheExitCodeEvenWithoutACheck() throws {
        // The shared stack's PostgreSQL is not under libfaketime: the clock-skew fault must be refused, recorded,
        // and make the run fail — never exit 0 beside a summary that says otherwise.
        let name = "drc_\(UInt32.random(in: 0...UInt32.max))"
        let file = try Self.scenario(
            name,
            """
            faults:
              - {name: skew, kind: clock-skew, target: postgres-primary, offset: +10m, at: 1s, duration: 2s}
            heal_wait: 0s
            phases:
              - {name: steady, executor: constant-arrival-rate, rate: 50, duration: 4s, workers: 8, mix: {postgres.point-read: 1}}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let result = try CommandLineTests.kiln(["run", file.path, "--runs-directory", runs.path, "--id", "c"])
        #expect(result.status == KilnExitCode.thresholdFailed.rawValue, "\(result.output)")
        #expect(result.output.contains("does not run under libfaketime"))
        let report = try RunReport.decode(Data(contentsOf: runs.appendingPathComponent("c/report.json")))
        #expect(report.faults?.first?.verified == .no)
        #expect(report.drills?.first?.verdict == .failed)
        #expect(report.verdict == .thresholdsFailed && report.loadVerdict == .passed)
    }

    @Test func aKilledSinkProcessIsRestartedAndTheCheckFindsNothingLostOrDoubled() throws {
        let name = "drk_\(UInt32.random(in: 0...UInt32.max))"
        let file = try Self.scenario(
            name,
            """
            pipeline: {workers: processes, batch: 200, sinks: [postgres, clickhouse], convergence_timeout: 30s}
            faults:
              - {name: kill-ch, kind: kill, target: "sink:clickhouse", at: 3s, duration: 4s}
              - {name: pause-pg, kind: pause, target: "sink:postgres", at: 4s, duration: 2s}
            heal_wait: 0s
            phases:
              - name: stream
                executor: constant-arrival-rate
                rate: 200
                duration: 10s
                workers: 32
                mix: {kafka.produce: 1}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        // --check: the run checks itself after the heal, and its exit code is the combined verdict.
        let result = try CommandLineTests.kiln(["run", file.path, "--runs-directory", runs.path, "--id", "k", "--check"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("verdict: passed"), "\(result.output)")
        let directory = runs.appendingPathComponent("k")
        let report = try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        let faults = Dictionary(uniqueKeysWithValues: (report.faults ?? []).map { ($0.name, $0) })
        #expect(faults["kill-ch"]?.verified == .yes, "\(String(describing: faults["kill-ch"]))")
        #expect(faults["pause-pg"]?.verified == .yes, "\(String(describing: faults["pause-pg"]))")
        let checkData = try Data(contentsOf: directory.appendingPathComponent("check.json"))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let checked = try decoder.decode(CheckReport.self, from: checkData)
        for place in ["clickhouse.rows", "postgres.rows", "invariant.minute-totals"] {
            #expect(checked.places.first { $0.place == place }?.validity == .valid, "\(place)")
        }
    }

    @Test func aKill9OfKilnMidDrillLeavesNoSinkProcessAndStackUpRestoresEverything() throws {
        let name = "drx_\(UInt32.random(in: 0...UInt32.max))"
        let file = try Self.scenario(
            name,
            """
            pipeline: {workers: processes, batch: 200, sinks: [postgres, redis]}
            faults:
              - {name: pause-redis-sink, kind: pause, target: "sink:redis", at: 2s, duration: 30s}
            phases:
              - {name: stream, executor: constant-arrival-rate, rate: 100, duration: 40s, workers: 8, mix: {kafka.produce: 1}}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let process = Process()
        process.executableURL = TestStack.paths.home.appendingPathComponent(".build/debug/kiln")
        process.arguments = ["run", file.path, "--runs-directory", runs.path, "--id", "x"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait until the pause is in place (the report's fault timeline shows its start), then kill -9 kiln.
        let deadline = Date().addingTimeInterval(30)
        var sinks: [Int32] = []
        while Date() < deadline {
            sinks = Self.pids(matching: "pipeline \(file.path)")
            if sinks.count == 2, sinks.contains(where: { ProcessFault.processState($0) == "T" }) { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        try #require(sinks.count == 2, "sink processes: \(sinks)")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        // The killed drill never reached its check: every page regenerated from its directory says NOT CHECKED.
        let killed = ReportResult.of(try RunData.load(runs.appendingPathComponent("x")))
        #expect(killed.verdict == .notChecked && killed.exitCode == .unknown, "\(killed)")
        // The sinks notice that their parent is gone (a paused one as soon as something SIGCONTs it).
        let stackUp = try CommandLineTests.kiln(["stack", "up"])
        #expect(stackUp.status == 0, "\(stackUp.output)")
        for pid in sinks { kill(pid, SIGCONT) }
        let gone = Date().addingTimeInterval(5)
        while Date() < gone && !Self.pids(matching: "pipeline \(file.path)").isEmpty { Thread.sleep(forTimeInterval: 0.1) }
        #expect(Self.pids(matching: "pipeline \(file.path)").isEmpty)
        let iptables = Process()
        iptables.executableURL = URL(fileURLWithPath: "/usr/sbin/iptables")
        iptables.arguments = ["-w", "-S", "INPUT"]
        let pipe = Pipe()
        iptables.standardOutput = pipe
        try iptables.run()
        let rules = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        iptables.waitUntilExit()
        #expect(iptables.terminationStatus == 0)
        #expect(!rules.contains("kiln-fault:"))
    }

    static func pids(matching text: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let line = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            return line.contains(text) && !line.contains(" run ")
        }
    }
}

@Suite("fault schedule of a scenario")
struct FaultScheduleSpecTests {
    static func load(_ body: String) throws -> LoadScenario {
        let file = try CommandLineTests.temporaryFile(
            "faults.yaml",
            """
            name: f
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 10K}
            \(body)
            phases:
              - {name: load, executor: bulk, rows: 1K, stores: [kafka]}
            """)
        return try LoadScenario.load(contentsOf: file, knownOperations: ["kafka.bulk"])
    }

    static func error(_ body: String) -> SpecError? {
        do {
            _ = try load(body)
            return nil
        } catch let error as SpecError {
            return error
        } catch {
            return nil
        }
    }

    @Test func periodicFaultsWithJitterArePlannedTheSameForTheSameSeed() throws {
        let spec = try #require(
            try Self.load(
                """
                faults:
                  - {name: p, kind: pause, target: redis-primary, at: 10s, duration: 2s, every: 20s, times: 3, jitter: 5s}
                  - {kind: kill, target: kafka, at: 1s}
                """
            ).faults)
        let plan = spec.plan(seed: 42)
        #expect(plan.count == 4)
        #expect(plan.first?.name == "kill-kafka-2")
        #expect(plan.first?.stop == .seconds(11))
        let pauses = plan.filter { $0.entry.name == "p" }
        #expect(pauses.map(\.name) == ["p#1", "p#2", "p#3"])
        for (index, pause) in pauses.enumerated() {
            let base = Duration.seconds(10 + 20 * index)
            #expect(pause.start >= base && pause.start < base + .seconds(5))
            #expect(pause.stop == pause.start + .seconds(2))
        }
        #expect(spec.plan(seed: 42) == plan)
        #expect(spec.plan(seed: 43) != plan)
    }

    @Test func badEntriesAreErrorsAtTheirLine() throws {
        let kind = try #require(Self.error("faults:\n  - {kind: meteor, target: kafka, at: 1s}"))
        #expect(kind.message.contains("unknown fault kind 'meteor'"))
        let proxy = try #require(Self.error("faults:\n  - {kind: proxy, target: redis, toxic: latency=1ms, at: 1s}"))
        #expect(proxy.message.contains("not proxied"))
        let every = try #require(Self.error("faults:\n  - {kind: pause, target: kafka, at: 1s, duration: 5s, every: 5s, times: 2}"))
        #expect(every.field.hasSuffix("every"))
        let kafka = try #require(Self.error("proxy: [kafka]"))
        #expect(kafka.message.contains("advertised"))
        let split = try #require(Self.error("faults:\n  - {kind: partition, target: kafka, shape: split, at: 1s}"))
        #expect(split.message.contains("unknown shape 'split'"))
        #expect(split.message.contains("split-replica"))
        let notPostgres = try #require(
            Self.error("faults:\n  - {kind: partition, target: redis-primary, shape: split-replica, at: 1s}"))
        #expect(notPostgres.message.contains("target a postgres server"))
        let offset = try #require(Self.error("faults:\n  - {kind: clock-skew, target: postgres-primary, offset: soon, at: 1s}"))
        #expect(offset.field.hasSuffix("offset"))
        #expect(offset.line == 5)
        let missing = try #require(Self.error("faults:\n  - {kind: clock-skew, target: postgres-primary, at: 1s}"))
        #expect(missing.message.contains("missing"))
        #expect(kind.line == 5)
        let replication = try #require(Self.error("faults:\n  - {kind: pg-failover, replication: eventually, at: 1s}"))
        #expect(replication.message.contains("async or sync"))
        let unfenced = try #require(
            Self.error("faults:\n  - {kind: pg-failover, fence: none, heal: leave-fenced, at: 1s}"))
        #expect(unfenced.field.hasSuffix("heal"))
        #expect(unfenced.message.contains("two primaries"))
        let none = try #require(try Self.load("faults:\n  - {kind: pg-failover, fence: none, at: 1s}").faults)
        #expect(none.entries.first?.options["fence"] == "none")
    }

    @Test func failoverKindsTargetTheirStoreAndKeepTheirOptions() throws {
        let spec = try #require(
            try Self.load(
                """
                faults:
                  - {kind: pg-failover, replication: sync, fence: kill, heal: leave-fenced, lag: 250ms, at: 5s}
                  - {kind: redis-failover, trigger: kill, at: 5s}
                """
            ).faults)
        #expect(spec.entries[0].target == "postgres")
        #expect(
            spec.entries[0].options == ["replication": "sync", "fence": "kill", "heal": "leave-fenced", "lag_ms": "250"])
        #expect(spec.entries[1].target == "redis" && spec.entries[1].options["trigger"] == "kill")
    }

    @Test func clockSkewOffsetsAreSignedSecondsAndPartitionShapesAreKept() throws {
        let spec = try #require(
            try Self.load(
                """
                faults:
                  - {kind: clock-skew, target: postgres-primary, offset: +10m, at: 5s}
                  - {kind: clock-skew, target: postgres-replica, offset: -30s, at: 5s}
                  - {kind: partition, target: postgres-primary, shape: primary-to-replica, at: 5s}
                """
            ).faults)
        #expect(spec.entries[0].options["offset_s"] == "600")
        #expect(spec.entries[1].options["offset_s"] == "-30")
        #expect(spec.entries[2].shape == "primary-to-replica")
    }

    @Test func anUnknownServerOrAForbiddenTargetStopsTheRunBeforeAnythingStarts() throws {
        let file = try CommandLineTests.temporaryFile(
            "bad-target.yaml",
            """
            name: bad
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 10K}
            namespace: bad_target
            faults:
              - {kind: kill, target: mainframe, at: 1s}
            phases:
              - {name: load, executor: bulk, rows: 1K, stores: [kafka]}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let result = try CommandLineTests.kiln(["run", file.path, "--runs-directory", runs.path])
        #expect(result.status == 64)
        #expect(result.output.contains("'mainframe' is not a server of stack embedded"))
        #expect(result.output.contains("bad-target.yaml:6"))
    }
}
