import Foundation
import KilnCheck
import KilnData
import KilnReport
@testable import KilnDurability
import KilnScenario
import KilnStack
import Logging
import Testing

/// Shared pieces of the durability tests: a dataset, drill specs on private addresses (127.0.34.x, ports 34100+,
/// apart from the drill files' 34011-34041), and a run directory under /tmp.
enum DurabilityFixture {
    static let home = TestStack.paths.home
    static let dataset = try! Dataset(
        spec: DatasetSpec.load(contentsOf: home.appendingPathComponent("Generators/fraud-platform.yaml")), seed: 23,
        rows: 50_000)

    static func stack(base: Int) -> String {
        """
        name: durability-test
        kind: embedded
        postgres: {primary: 127.0.34.111:\(base + 11), replicas: []}
        redis: {primary: 127.0.34.121:\(base + 21), replicas: [], sentinels: []}
        kafka: {bootstrap: [127.0.34.131:\(base + 31)]}
        graph: {kind: falkordb, endpoint: 127.0.34.141:\(base + 41)}
        timeseries: {kind: clickhouse, endpoint: 127.0.34.151:\(base + 51)}
        """
    }

    /// A drill file in a fresh directory with the test stack beside it; `durability` is the block's body.
    static func spec(_ name: String, base: Int, durability: String) throws -> DurabilityDrillSpec {
        let directory = URL(fileURLWithPath: "/tmp/durability-test-\(getpid())-\(name)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try stack(base: base).write(to: directory.appendingPathComponent("stack.yaml"), atomically: true, encoding: .utf8)
        let text = """
            name: \(name)
            stack: stack.yaml
            dataset: {spec: \(home.path)/Generators/fraud-platform.yaml, seed: 23, rows: 50K}
            durability:
            \(durability.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            """
        let file = directory.appendingPathComponent("\(name).yaml")
        try text.write(to: file, atomically: true, encoding: .utf8)
        return try DurabilityDrillSpec.load(contentsOf: file)
    }

    /// Runs the drill; its report is returned (and printed by the tests), its directory removed.
    static func run(_ spec: DurabilityDrillSpec) throws -> DurabilityReport {
        let directory = spec.file.deletingLastPathComponent()
        defer { try? FileManager.default.removeItem(at: directory) }
        return try DurabilityDrillRunner.run(
            spec, runDirectory: directory.appendingPathComponent("run"), logger: Logger(label: "kiln.test.durability"))
    }

    static func record(_ txn: Int64, _ invoked: Int64, _ completed: Int64, _ outcome: WriteOutcome) -> WriteRecord {
        WriteRecord(txnID: txn, invokedMicros: invoked, completedMicros: completed, outcome: outcome)
    }

    static func row(_ txn: Int64) -> [String] { LedgerFields.values(dataset.transaction(txn - 1)) }
}

@Suite("Durability checks (restore and crash-loss judges, pgBackRest verify output, drill files)")
struct DurabilityCheckTests {
    typealias F = DurabilityFixture

    @Test("a restore holding exactly the writes acknowledged before T is valid; straddling and info writes go either way")
    func restoreExact() {
        let history = [
            F.record(1, 100, 200, .ok), F.record(2, 300, 400, .ok),  // before T=1000: required
            F.record(3, 900, 1100, .ok),  // straddles T: either way
            F.record(4, 950, 990, .info),  // info before T: either way
            F.record(5, 1200, 1300, .ok), F.record(6, 1500, 1600, .info),  // after T: must be absent
            F.record(7, 500, 600, .fail),
        ]
        let restored = StoredLedger(rows: [1: F.row(1), 2: F.row(2), 3: F.row(3)])
        let result = RestoreCheck(dataset: F.dataset).check(history: history, target: 1000, restored: restored)
        #expect(result.valid)
        #expect(result.required == 2 && result.undecided == 2 && result.undecidedPresent == 1)
    }

    @Test("a restore missing an acknowledged write, holding a later or failed one, or a changed field is reported by txn_id")
    func restoreWrong() {
        let history = [
            F.record(1, 100, 200, .ok), F.record(2, 300, 400, .ok), F.record(5, 1200, 1300, .ok),
            F.record(6, 1500, 1600, .info), F.record(7, 500, 600, .fail),
        ]
        var changed = F.row(1)
        changed[4] = String((Int64(changed[4]) ?? 0) + 1)  // amount_cents
        let restored = StoredLedger(rows: [1: changed, 5: F.row(5), 6: F.row(6), 7: F.row(7), 40_000: F.row(40_000)])
        let result = RestoreCheck(dataset: F.dataset).check(history: history, target: 1000, restored: restored)
        #expect(!result.valid)
        #expect(result.findings.filter { $0.kind == .lost }.map(\.txnID) == [2])
        #expect(Set(result.findings.filter { $0.kind == .phantom }.map(\.txnID)) == [5, 6, 7, 40_000])
        let mismatch = result.findings.first { $0.kind == .mismatched }
        #expect(mismatch?.txnID == 1 && mismatch?.detail.contains("amount_cents") == true)
    }

    @Test("a restore with no write acknowledged before the target has no evidence: not valid")
    func restoreNoEvidence() {
        let result = RestoreCheck(dataset: F.dataset).check(
            history: [F.record(1, 2000, 2100, .ok)], target: 1000, restored: StoredLedger(rows: [:]))
        #expect(result.findings.isEmpty && !result.valid)
    }

    @Test("crash loss within the promise window passes; loss older than the window breaks it")
    func crashWindow() {
        let kill: Int64 = 10_000_000
        let history = [
            F.record(1, 1_000_000, 1_001_000, .ok), F.record(2, 9_500_000, 9_501_000, .ok),
            F.record(3, 9_900_000, 9_901_000, .info),
        ]
        let judge = CrashLossJudge(dataset: F.dataset)
        let kept = judge.judge(history: history, killedAt: kill, promise: .window(micros: 2_000_000),
                               stored: StoredLedger(rows: [1: F.row(1)]))
        #expect(kept.keptPromise && kept.lost == 1 && kept.lostWithinPromise == 1 && kept.lossWindowMicros == 499_000)
        let broken = judge.judge(history: history, killedAt: kill, promise: .window(micros: 2_000_000),
                                 stored: StoredLedger(rows: [:]))
        #expect(!broken.keptPromise && broken.beyondPromise == 1 && broken.findings.map(\.txnID) == [1])
        let none = judge.judge(history: history, killedAt: kill, promise: .none, stored: StoredLedger(rows: [1: F.row(1)]))
        #expect(!none.keptPromise && none.beyondPromise == 1 && none.findings.map(\.txnID) == [2])
        let since = judge.judge(history: history, killedAt: kill, promise: .since(micros: 5_000_000),
                                stored: StoredLedger(rows: [1: F.row(1)]))
        #expect(since.keptPromise)
    }

    @Test("after a crash, a failed write present or a field unlike the generator's is an anomaly")
    func crashPhantom() {
        var changed = F.row(1)
        changed[0] = "999999"
        let result = CrashLossJudge(dataset: F.dataset).judge(
            history: [F.record(1, 10, 20, .ok), F.record(2, 30, 40, .fail)], killedAt: 100, promise: .none,
            stored: StoredLedger(rows: [1: changed, 2: F.row(2)]))
        #expect(result.phantom == 1 && result.mismatched == 1 && !result.keptPromise)
    }

    @Test("pgbackrest verify's report is read, not its exit code: 2.45 exits 0 with an invalid checksum")
    func verifyOutput() {
        let output = """
            2026-12-05 13:33:34.900 P01   INFO: invalid checksum '20261205-133241F/pg_data/base/5/2655.gz'
            2026-12-05 13:33:35.034 P00   INFO: stanza: kiln
                                                status: error
                                                  backup: 20261205-133241F, status: invalid, total files checked: 964, total valid files: 963
                                                    checksum invalid: 1
            2026-12-05 13:33:35.034 P00   INFO: verify command end: completed successfully (858ms)
            """
        let verification = PgBackRest.Verification.parse(output, exitCode: 0)
        #expect(!verification.valid)
        #expect(verification.invalidFiles == ["20261205-133241F/pg_data/base/5/2655.gz"])
        let clean = PgBackRest.Verification.parse("INFO: stanza: kiln\n    status: ok\n", exitCode: 0)
        #expect(clean.valid)
    }

    @Test("the PITR verdict: a corrupted backup nothing caught fails; an unchecked restore is unknown, never passed")
    func pitrVerdict() {
        let checked = RestoreCheck.Result(targetMicros: 1000, required: 10, undecided: 0, undecidedPresent: 0, present: 10, findings: [])
        func restore(_ check: RestoreCheck.Result?) -> DurabilityReport.Restore {
            DurabilityReport.Restore(
                offsetSeconds: 1, target: "t", restoredTo: "t", restoreSeconds: 1, rtoSeconds: 2, check: check,
                error: check == nil ? "pg_ctl failed" : nil)
        }
        let silent = DurabilityReport.Corruption(
            file: "x.gz", verify: PgBackRest.Verification(exitCode: 0, invalidFiles: [], reportsError: false),
            restoreFailed: false, restoreError: nil, checkValid: true, caught: false)
        var report = DurabilityReport(drill: "d", kind: "pg-pitr", plant: "none")
        report.restores = [restore(checked)]
        report.corruption = silent
        PITRDrill.judge(&report, corruptionExpected: true)
        #expect(report.verdict == .failed)
        var caught = silent
        caught.verify.invalidFiles = ["x.gz"]
        caught.caught = true
        report = DurabilityReport(drill: "d", kind: "pg-pitr", plant: "none")
        report.restores = [restore(checked)]
        report.corruption = caught
        PITRDrill.judge(&report, corruptionExpected: true)
        #expect(report.verdict == .passed)
        report = DurabilityReport(drill: "d", kind: "pg-pitr", plant: "none")
        report.restores = [restore(checked), restore(nil)]
        report.corruption = caught
        PITRDrill.judge(&report, corruptionExpected: true)
        #expect(report.verdict == .unknown && report.verdict.exitCode.rawValue == 3)
        report = DurabilityReport(drill: "d", kind: "pg-pitr", plant: "none")
        report.restores = [restore(checked)]
        PITRDrill.judge(&report, corruptionExpected: true)
        #expect(report.verdict == .unknown)
        report = DurabilityReport(drill: "d", kind: "pg-pitr", plant: "none")
        PITRDrill.judge(&report, corruptionExpected: false)
        #expect(report.verdict == .unknown)
        #expect(DurabilityJUnit.xml(report).contains("<error"))
    }

    @Test("bad drill fields are errors naming file:line:column and the field", arguments: [
        ("kind: crash-restart\nserver: redis\nsetting: rdb\nrate: -5", "durability.rate"),
        ("kind: crash-restart\nserver: redis\nsetting: rdb\nworkers: 0", "durability.workers"),
        ("kind: crash-restart\nserver: postgres\nsetting: aof-everysec", "durability.setting"),
        ("kind: crash-restart\nserver: falkordb\nsetting: aof-everysec", "durability.setting"),
        ("kind: crash-restart\nserver: redis\nsetting: rdb\ntimeout: 100000h", "durability.timeout"),
        ("kind: crash-restart\nserver: redis\nsetting: rdb\nkill_after: 0s", "durability.kill_after"),
        ("kind: crash-restart\nserver: redis\nsetting: rdb\nplant: fsync-off", "durability.plant"),
        ("kind: crash-restart\nserver: redis\nsetting: aof-everysec\nrdb_save_every_s: 5", "durability.rdb_save_every_s"),
        ("kind: crash-restart\nserver: redis\nsetting: rdb\nbogus: 1", "durability.bogus"),
        ("kind: pg-pitr\nload: 10s\nincremental_at: 4s\ntargets: [3s, 12s]", "durability.targets[1]"),
        ("kind: pg-pitr\nload: 10s\nincremental_at: 4s\ntargets: []", "durability.targets"),
        ("kind: pg-pitr\nload: 10s\nincremental_at: 99999999999s\ntargets: [1s]", "durability.incremental_at"),
        ("kind: pg-pitr\nload: 10s\nincremental_at: 4s\ntargets: [1s]\nplant: appendonly-off", "durability.plant"),
        ("kind: nonsense", "durability.kind"),
    ])
    func badFields(body: String, field: String) throws {
        do {
            // One file per case: the cases run in parallel.
            let name = "bad\(UInt(bitPattern: body.hashValue))"
            defer { try? FileManager.default.removeItem(atPath: "/tmp/durability-test-\(getpid())-\(name)") }
            _ = try F.spec(name, base: 34900, durability: body)
            Issue.record("accepted: \(body)")
        } catch let error as SpecError {
            #expect(error.field == field, "\(error)")
            #expect(error.line > 0 && error.column > 0 && error.file.hasSuffix(".yaml"))
        }
    }

    @Test("the drill files in Scenarios/drills parse, on the private stack")
    func drillFiles() throws {
        let drills = F.home.appendingPathComponent("Scenarios/drills")
        var count = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: drills.path) where name.hasPrefix("crash-restart-") || name == "pg-pitr.yaml" {
            let spec = try DurabilityDrillSpec.load(contentsOf: drills.appendingPathComponent(name))
            #expect(spec.stack.postgres.primary.host.hasPrefix("127.0.34."), "\(name)")
            count += 1
        }
        #expect(count == 6)
    }
}

@Suite("Crash-restart durability drills on private servers", .serialized)
struct CrashRestartDrillTests {
    typealias F = DurabilityFixture

    static func body(_ server: String, _ setting: String, plant: String = "none") -> String {
        "kind: crash-restart\nserver: \(server)\nsetting: \(setting)\nrate: 300\nworkers: 4\nkill_after: 5s\nload_after_kill: 500ms\nplant: \(plant)"
    }

    @Test("Redis AOF everysec keeps its promise under SIGKILL")
    func redisAOF() throws {
        let report = try F.run(F.spec("crash-aof", base: 34100, durability: Self.body("redis", "aof-everysec")))
        print(report.summary)
        #expect(report.verdict == .passed, "\(report.summary)")
        #expect((report.crash?.judged.acknowledged ?? 0) > 500)
    }

    @Test("planted: a drill claiming AOF on a Redis running without persistence fails")
    func redisAOFBroken() throws {
        let report = try F.run(F.spec("crash-aof-planted", base: 34100, durability: Self.body("redis", "aof-everysec", plant: "appendonly-off")))
        print(report.summary)
        #expect(report.verdict == .failed, "\(report.summary)")
        #expect((report.crash?.judged.beyondPromise ?? 0) > 0)
    }

    @Test("Redis RDB-only loses at most what came after the last snapshot")
    func redisRDB() throws {
        let report = try F.run(F.spec("crash-rdb", base: 34100, durability: Self.body("redis", "rdb")))
        print(report.summary)
        #expect(report.verdict == .passed, "\(report.summary)")
    }

    @Test("FalkorDB RDB-only loses at most what came after the last snapshot")
    func falkorRDB() throws {
        let report = try F.run(F.spec("crash-falkordb", base: 34100, durability: Self.body("falkordb", "rdb")))
        print(report.summary)
        #expect(report.verdict == .passed, "\(report.summary)")
    }

    @Test("PostgreSQL synchronous_commit=on loses nothing; =off stays within 3 x wal_writer_delay")
    func postgres() throws {
        let on = try F.run(F.spec("crash-pg-on", base: 34100, durability: Self.body("postgres", "synchronous-commit-on")))
        print(on.summary)
        #expect(on.verdict == .passed && on.crash?.judged.lost == 0, "\(on.summary)")
        let off = try F.run(F.spec("crash-pg-off", base: 34100, durability: Self.body("postgres", "synchronous-commit-off")))
        print(off.summary)
        #expect(off.verdict == .passed, "\(off.summary)")
    }

    @Test("planted: a drill claiming synchronous_commit=on on a server with fsync=off and asynchronous commits fails")
    func postgresBroken() throws {
        let report = try F.run(F.spec("crash-pg-planted", base: 34100, durability: Self.body("postgres", "synchronous-commit-on", plant: "fsync-off")))
        print(report.summary)
        #expect(report.verdict == .failed, "\(report.summary)")
        #expect((report.crash?.judged.beyondPromise ?? 0) > 0)
    }

    @Test("a server that cannot start makes the drill unknown (exit 3), never passed")
    func cannotStart() throws {
        // 192.0.2.1 (TEST-NET-1) is no address of this machine: redis-server cannot bind it and exits.
        var spec = try F.spec("crash-unstartable", base: 34100, durability: Self.body("redis", "aof-everysec"))
        spec.stack.redis.primary = .init(host: "192.0.2.1", port: 34199)
        let report = try F.run(spec)
        #expect(report.verdict == .unknown && report.verdict.exitCode.rawValue == 3, "\(report.summary)")
    }
}

@Suite("pgBackRest point-in-time recovery drill on a private server", .serialized)
struct PITRDrillTests {
    typealias F = DurabilityFixture

    @Test("three restore targets each hold exactly the acknowledged writes; a changed backup byte is caught")
    func threeTargets() throws {
        let report = try F.run(F.spec("pitr", base: 34200, durability: """
            kind: pg-pitr
            rate: 200
            workers: 4
            load: 14s
            incremental_at: 6s
            targets: [3s, 9s, 12s]
            corrupt_backup: true
            """))
        print(report.summary)
        #expect(report.verdict == .passed, "\(report.summary)")
        let restores = report.restores ?? []
        #expect(restores.count == 3)
        for restore in restores {
            #expect(restore.check?.valid == true && (restore.check?.required ?? 0) > 100, "\(restore)")
        }
        #expect(report.corruption?.caught == true)
        #expect(report.backups?.map(\.type) == ["full", "incr"])
    }

    @Test("planted: a restore 3 s past its target is caught as phantom writes")
    func targetSkew() throws {
        let report = try F.run(F.spec("pitr-skew", base: 34300, durability: """
            kind: pg-pitr
            load: 9s
            incremental_at: 3s
            targets: [5s]
            corrupt_backup: false
            plant: target-skew
            """))
        print(report.summary)
        #expect(report.verdict == .anomaly, "\(report.summary)")
        #expect((report.restores?.first?.check?.phantom ?? 0) > 100)
    }

    @Test("planted: a restored ledger with a changed and a deleted row is caught (mismatched, lost)")
    func tampered() throws {
        let report = try F.run(F.spec("pitr-tamper", base: 34400, durability: """
            kind: pg-pitr
            load: 8s
            incremental_at: 3s
            targets: [5s]
            corrupt_backup: false
            plant: tamper-restored
            """))
        print(report.summary)
        #expect(report.verdict == .anomaly, "\(report.summary)")
        let check = report.restores?.first?.check
        #expect(check?.mismatched == 1 && check?.lost == 1)
    }
}

@Suite("Durability drills through `kiln run` (exit codes, run directory, interrupt)", .serialized)
struct DurabilityCommandTests {
    typealias F = DurabilityFixture

    @Test("a broken promise exits 2 and leaves durability.json and history.jsonl; a bad field exits 64 naming the place")
    func exitCodes() throws {
        let spec = try F.spec("cli-planted", base: 34500, durability: CrashRestartDrillTests.body("redis", "aof-everysec", plant: "appendonly-off"))
        let directory = spec.file.deletingLastPathComponent()
        defer { try? FileManager.default.removeItem(at: directory) }
        let runs = directory.appendingPathComponent("runs")
        let outcome = try CommandLineTests.kiln(["run", spec.file.path, "--runs-directory", runs.path, "--id", "r"])
        #expect(outcome.status == 2, "\(outcome.output)")
        #expect(outcome.output.contains("FAILED") && outcome.output.contains("beyond the promise"))
        let run = runs.appendingPathComponent("r")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("durability.json"))) as? [String: Any]
        #expect(report?["verdict"] as? String == "failed")
        let history = try String(contentsOf: run.appendingPathComponent("history.jsonl"), encoding: .utf8)
        #expect(history.split(separator: "\n").count > 1000 && history.contains(#""outcome":"ok""#))
        let junit = try String(contentsOf: run.appendingPathComponent("junit.xml"), encoding: .utf8)
        #expect(junit.contains(#"failures="1""#) && junit.contains("<failure"), "\(junit)")

        let bad = directory.appendingPathComponent("bad.yaml")
        try String(contentsOf: spec.file, encoding: .utf8).replacingOccurrences(of: "rate: 300", with: "rate: 0")
            .write(to: bad, atomically: true, encoding: .utf8)
        let invalid = try CommandLineTests.kiln(["run", bad.path, "--runs-directory", runs.path])
        #expect(invalid.status == 64 && invalid.output.contains("bad.yaml:") && invalid.output.contains("durability.rate"), "\(invalid.output)")
    }

    @Test("SIGINT during a drill stops its private servers and exits 3, never 0")
    func interrupt() throws {
        let spec = try F.spec("cli-interrupt", base: 34600, durability: CrashRestartDrillTests.body("postgres", "synchronous-commit-on"))
        let directory = spec.file.deletingLastPathComponent()
        defer { try? FileManager.default.removeItem(at: directory) }
        let process = Process()
        process.executableURL = TestStack.paths.home.appendingPathComponent(".build/debug/kiln")
        process.arguments = ["run", spec.file.path, "--runs-directory", directory.appendingPathComponent("runs").path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait until the private PostgreSQL answers, then interrupt.
        let deadline = ContinuousClock.now + .seconds(60)
        var listening = false
        while ContinuousClock.now < deadline && !listening {
            listening = LocalProcessProbe.isListening(spec.stack.postgres.primary.host, spec.stack.postgres.primary.port)
            if !listening { Thread.sleep(forTimeInterval: 0.2) }
        }
        #expect(listening)
        process.interrupt()
        process.waitUntilExit()
        #expect(process.terminationStatus == 3)
        Thread.sleep(forTimeInterval: 1)
        #expect(!LocalProcessProbe.isListening(spec.stack.postgres.primary.host, spec.stack.postgres.primary.port))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/durability-cli-interrupt-\(process.processIdentifier)"))
    }
}

enum LocalProcessProbe {
    static func isListening(_ host: String, _ port: Int) -> Bool {
        KilnStack.LocalProcess.isListening(host: host, port: port)
    }
}

@Suite("A durability drill's run directory (report.json, check.json) judges like the drill")
struct DurabilityRunOutputTests {
    typealias F = DurabilityFixture

    static let records = (1...40).map { F.record(Int64($0), 1_000_000 + Int64($0) * 50_000, 1_002_000 + Int64($0) * 50_000, .ok) }

    static func restore(_ check: RestoreCheck.Result?) -> DurabilityReport.Restore {
        DurabilityReport.Restore(
            offsetSeconds: 1, target: "t", restoredTo: "t", restoreSeconds: 1.5, rtoSeconds: 2.25, check: check,
            error: check == nil ? "pg_ctl failed" : nil)
    }

    /// Writes the outputs of `report` into a fresh directory and reads them back as `kiln report` does.
    static func judged(_ report: DurabilityReport, _ spec: DurabilityDrillSpec) throws -> (ReportResult, RunData) {
        // One directory per call: the suite's tests run in parallel.
        let directory = URL(fileURLWithPath: "/tmp/durability-outputs-\(getpid())-\(UUID().uuidString)")
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let outputs = DurabilityRunOutputs(report, spec: spec, records: records, id: "r", startedAt: 1000, endedAt: 5000)
        try outputs.write(to: directory, drillSummary: report.summary)
        let run = try RunData.load(directory)
        let result = ReportResult.of(run)
        #expect(run.report?.verdict == result.verdict, "report.json's verdict is the writers' verdict")
        #expect(run.problems.isEmpty, "\(run.problems)")
        for file in ["report.html", "summary.md", "junit.xml", "check.json", "timeline.jsonl"] {
            #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent(file).path), "\(file)")
        }
        return (result, run)
    }

    @Test("PITR: passed, lost rows (anomaly), an uncaught corrupted backup (failed), an unchecked restore (unknown)")
    func pitr() throws {
        let spec = try F.spec("outputs-pitr", base: 34950, durability: "kind: pg-pitr\nload: 10s\nincremental_at: 4s\ntargets: [3s]\ncorrupt_backup: true")
        defer { try? FileManager.default.removeItem(at: spec.file.deletingLastPathComponent()) }
        let valid = RestoreCheck.Result(targetMicros: 1000, required: 10, undecided: 1, undecidedPresent: 0, present: 10, findings: [])
        let caught = DurabilityReport.Corruption(
            file: "x.gz", verify: PgBackRest.Verification(exitCode: 0, invalidFiles: ["x.gz"], reportsError: true),
            restoreFailed: true, restoreError: nil, checkValid: nil, caught: true)
        var report = DurabilityReport(drill: "outputs-pitr", kind: "pg-pitr", plant: "none")
        report.writes = WriteCounts(Self.records)
        report.backups = [PgBackRest.Backup(
            label: "F", type: "full", databaseBytes: 30_000_000, deltaBytes: 30_000_000, repositoryBytes: 4_000_000,
            repositoryDeltaBytes: 4_000_000, seconds: 2.5)]
        report.restores = [Self.restore(valid)]
        report.corruption = caught
        PITRDrill.judge(&report, corruptionExpected: true)
        #expect(report.verdict == .passed)
        var (result, run) = try Self.judged(report, spec)
        #expect(result.verdict == .passed && result.exitCode.rawValue == 0, "\(result.reasons)")
        let restoreDrill = run.report?.drills?.first { $0.fault == "pg-pitr" }
        #expect(restoreDrill?.metrics["rto_ms"] == 2250 && restoreDrill?.metrics["required"] == 10)
        #expect(run.report?.drills?.first { $0.fault == "pgbackrest-backup" }?.metrics["repository_bytes"] == 4_000_000)
        #expect(run.report?.phases.first?.operations.first?.ok == 40)
        #expect(run.timeline.reduce(0) { $0 + $1.ok } == 40)

        var lost = report
        lost.restores = [Self.restore(RestoreCheck.Result(
            targetMicros: 1000, required: 10, undecided: 0, undecidedPresent: 0, present: 9,
            findings: [LedgerFinding(kind: .lost, txnID: 7, detail: "absent")]))]
        PITRDrill.judge(&lost, corruptionExpected: true)
        (result, run) = try Self.judged(lost, spec)
        #expect(lost.verdict == .anomaly && result.verdict == .anomaly && result.exitCode.rawValue == 1)
        #expect(run.check?.places.first { $0.validity == .invalid }?.anomalies.first?.txnID == 7)

        var silent = report
        silent.corruption?.caught = false
        PITRDrill.judge(&silent, corruptionExpected: true)
        (result, _) = try Self.judged(silent, spec)
        #expect(silent.verdict == .failed && result.exitCode.rawValue == 2, "\(result.reasons)")

        var unchecked = report
        unchecked.restores = [Self.restore(valid), Self.restore(nil)]
        PITRDrill.judge(&unchecked, corruptionExpected: true)
        (result, _) = try Self.judged(unchecked, spec)
        #expect(unchecked.verdict == .unknown && result.verdict == .unknown && result.exitCode.rawValue == 3)

        var nothing = DurabilityReport(drill: "outputs-pitr", kind: "pg-pitr", plant: "none")
        nothing.verdict = .unknown
        nothing.reasons = ["drill did not complete: pgbackrest stanza-create failed"]
        (result, _) = try Self.judged(nothing, spec)
        #expect(result.verdict == .unknown && result.reasons.contains { $0.contains("stanza-create") }, "\(result.reasons)")
    }

    @Test("crash-restart: loss beyond the promise fails (exit 2), phantoms are an anomaly, no evidence is unknown")
    func crash() throws {
        let spec = try F.spec("outputs-crash", base: 34960, durability: CrashRestartDrillTests.body("redis", "aof-everysec"))
        defer { try? FileManager.default.removeItem(at: spec.file.deletingLastPathComponent()) }
        func report(beyond: Int, phantom: Int, acknowledged: Int, verdict: KilnDurability.DrillVerdict) -> DurabilityReport {
            var report = DurabilityReport(drill: "outputs-crash", kind: "crash-restart", plant: "none")
            report.writes = WriteCounts(Self.records)
            report.crash = DurabilityReport.Crash(
                server: "redis", setting: "aof-everysec", effectiveSettings: ["appendonly": "yes"], promise: "1 s",
                killedPIDs: [42], restartSeconds: 0.4,
                judged: CrashLossJudge.Result(
                    killedMicros: 10_000_000, boundMicros: 8_000_000, acknowledged: acknowledged, lost: beyond + 3,
                    lostWithinPromise: 3, lossWindowMicros: 900_000,
                    findings: (0..<phantom).map { LedgerFinding(kind: .phantom, txnID: Int64(900 + $0), detail: "failed write present") },
                    beyondPromise: beyond, phantom: phantom, mismatched: 0))
            report.verdict = verdict
            return report
        }
        var (result, run) = try Self.judged(report(beyond: 0, phantom: 0, acknowledged: 40, verdict: .passed), spec)
        #expect(result.verdict == .passed)
        let drill = run.report?.drills?.first
        #expect(drill?.metrics["measured_loss_window_ms"] == 900 && drill?.metrics["promised_loss_window_ms"] == 2000)
        #expect(drill?.metrics["rto_ms"] == 400)
        (result, _) = try Self.judged(report(beyond: 5, phantom: 0, acknowledged: 40, verdict: .failed), spec)
        #expect(result.verdict == .thresholdsFailed && result.exitCode.rawValue == 2)
        (result, _) = try Self.judged(report(beyond: 0, phantom: 2, acknowledged: 40, verdict: .anomaly), spec)
        #expect(result.verdict == .anomaly)
        (result, _) = try Self.judged(report(beyond: 0, phantom: 0, acknowledged: 0, verdict: .unknown), spec)
        #expect(result.verdict == .unknown)
        var notRun = DurabilityReport(drill: "outputs-crash", kind: "crash-restart", plant: "none")
        notRun.reasons = ["drill did not complete: redis-server did not start"]
        (result, _) = try Self.judged(notRun, spec)
        #expect(result.verdict == .unknown && result.exitCode.rawValue == 3)
    }
}
