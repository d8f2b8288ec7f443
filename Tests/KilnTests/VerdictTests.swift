import Foundation
import KilnCheck
import KilnCore
import KilnData
import KilnHTTP
import KilnLoad
import KilnPostgres
import KilnRedis
import KilnReport
import KilnStores
import Logging
import Testing

@testable import KilnRunner

/// A run whose check did not run is NOT CHECKED in every output, never PASSED (report writers, no servers).
@Suite("verdicts: a run judged by its check")
struct NotCheckedVerdictTests {
    static func root() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("verdicts"))
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        return root
    }

    /// A clean drill's run directory (faults verified, drills passed, thresholds held), with report.json's check
    /// fields set as `kiln run` sets them.
    static func drill(id: String, checkRequired: Bool?, notChecked: String?, check: [String: Any]? = nil) throws -> URL {
        let faults: [[String: Any]] = [
            [
                "name": "slow-redis", "kind": "proxy-latency", "target": "redis", "started_at": RunFixture.startedAt + 5000,
                "stopped_at": RunFixture.startedAt + 9000, "verified": "yes",
            ]
        ]
        let drills: [[String: Any]] = [
            ["name": "slow-redis", "fault": "slow-redis", "store": "redis", "verdict": "passed", "metrics": ["rto_ms": 0]]
        ]
        let directory = try RunFixture.make(
            in: try root(), id: id, seed: 3, seconds: 10, faults: faults, drills: drills, check: check)
        let file = directory.appendingPathComponent("report.json")
        var report = try RunReport.decode(Data(contentsOf: file))
        report.checkRequired = checkRequired
        report.notChecked = notChecked
        try RunReport.encoder.encode(report).write(to: file)
        return directory
    }

    static func outputs(_ directory: URL) throws -> (html: String, markdown: String, junit: String) {
        try ReportWriters.writeAll(RunData.load(directory))
        func read(_ name: String) throws -> String {
            try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        }
        return (try read("report.html"), try read("summary.md"), try read("junit.xml"))
    }

    @Test func aDrillWithNoCheckIsNotCheckedInEveryOutputAndNeverPassed() throws {
        let directory = try Self.drill(id: "nocheck", checkRequired: true, notChecked: "--no-check given")
        let result = ReportResult.of(try RunData.load(directory))
        #expect(result.verdict == .notChecked)
        #expect(result.exitCode == .unknown && result.exitCode != .ok)
        #expect(result.consoleVerdict == "NOT CHECKED (--no-check given)")
        let (html, markdown, junit) = try Self.outputs(directory)
        #expect(html.contains("<h1>NOT CHECKED</h1>") && html.contains("--no-check given"))
        #expect(!html.contains("<h1>PASSED</h1>") && !html.contains(#"class="verdict ok""#))
        #expect(markdown.contains(": NOT CHECKED") && markdown.contains("--no-check given"))
        #expect(!markdown.contains("✅ Kiln run") && !markdown.contains("PASSED"))
        // The drill passed its availability part only: no row says `passed` before the check.
        #expect(!markdown.contains("| passed |") && markdown.contains("| not checked |"), "\(markdown)")
        #expect(!html.contains(#"<span class="pass">passed</span>"#), "\(html)")
        #expect(junit.contains(#"<error message="NOT CHECKED: --no-check given" type="not-checked">"#))
        #expect(junit.contains(#"errors="1""#))
        #expect(junit.contains(#"<property name="verdict" value="not-checked"/>"#))
    }

    @Test func aRunKilledBeforeItsCheckSaysWhyWithoutARecordedReason() throws {
        // kill -9 between load and check: report.json says the check is required, nothing says why it is missing.
        let directory = try Self.drill(id: "killed", checkRequired: true, notChecked: nil)
        let result = ReportResult.of(try RunData.load(directory))
        #expect(result.verdict == .notChecked && result.exitCode == .unknown)
        #expect(result.notChecked?.contains("no check.json: the check did not run") == true, "\(result)")
    }

    @Test func anOldReportWithFaultsAndNoCheckIsNotCheckedToo() throws {
        // Written before `check_required` existed (the lie this fixes): a run with faults needs its check.
        let directory = try Self.drill(id: "old", checkRequired: nil, notChecked: nil)
        #expect(ReportResult.of(try RunData.load(directory)).verdict == .notChecked)
    }

    @Test func theCheckJudgesTheDrillOnceItRan() throws {
        let valid: [String: Any] = [
            "schema": "kiln.check/1", "run": "checked", "dataset_rows": 100_000, "validity": "valid", "seconds": 0.1,
            "places": [[String: Any]](),
        ]
        let passed = try Self.drill(id: "checked", checkRequired: true, notChecked: "--no-check given", check: valid)
        #expect(ReportResult.of(try RunData.load(passed)).verdict == .passed)
        let failing = try Self.drill(
            id: "failing", checkRequired: true, notChecked: nil, check: RunFixture.failingCheck(run: "failing"))
        let result = ReportResult.of(try RunData.load(failing))
        #expect(result.verdict == .anomaly && result.exitCode == .anomaly && result.notChecked == nil)
    }

    @Test func aDefiniteFailureOutranksNotCheckedButStillSaysIt() throws {
        let directory = try RunFixture.make(
            in: try Self.root(), id: "failed", seed: 4, seconds: 10, failThreshold: true, faults: RunFixture.faults,
            drills: RunFixture.drills)
        let result = ReportResult.of(try RunData.load(directory))
        #expect(result.verdict == .thresholdsFailed && result.exitCode == .thresholdFailed)
        #expect(result.reasons.contains { $0.hasPrefix("NOT CHECKED:") }, "\(result.reasons)")
        let (_, _, junit) = try Self.outputs(directory)
        #expect(junit.contains(#"type="not-checked""#))
    }

    @Test func checkAndNoCheckTogetherAreAUsageError() throws {
        let result = try CommandLineTests.kiln(["run", "Scenarios/quick.yaml", "--check", "--no-check"])
        #expect(result.status == KilnExitCode.invalidInput.rawValue, "\(result.output)")
        #expect(result.output.contains("--check and --no-check exclude each other"))
    }

    @Test func aRunWithoutFaultsOrCheckKeepsTheLoadsVerdict() throws {
        let directory = try RunFixture.make(in: try Self.root(), id: "plain", seed: 5, seconds: 10)
        let result = ReportResult.of(try RunData.load(directory))
        #expect(result.verdict == .passed && result.exitCode == .ok && result.notChecked == nil)
    }
}

/// Derived-place comparison on hand-built totals (no servers).
@Suite("derived places against the oracle")
struct DerivedPlaceCompareTests {
    typealias Totals = DerivedPlaceChecks.Totals

    @Test func everyDifferenceIsReportedByKeyWithItsExactAmount() {
        var expected: [Int64: DerivedPlaceChecks.Expected] = [:]
        expected[1] = .init(ok: Totals(count: 4, cents: 1250))
        expected[2] = .init(ok: Totals(count: 1, cents: 7))
        expected[3] = .init(ok: Totals(count: 2, cents: 300), info: Totals(count: 1, cents: 100))
        expected[5] = .init(ok: Totals(), info: Totals(count: 1, cents: 50))
        let found: [Int64: Totals] = [
            1: Totals(count: 3, cents: 900), 3: Totals(count: 3, cents: 400), 4: Totals(count: 1, cents: 1),
        ]
        let result = DerivedPlaceChecks.compare(
            place: "test", source: "test", expected: expected, found: found, label: { "user \($0)" }, since: Date())
        #expect(result.validity == .invalid)
        #expect(result.counts == ["corrupted": 1, "lost": 1, "phantom": 1], "\(result.counts)")
        let byKey = Dictionary(uniqueKeysWithValues: result.anomalies.map { ($0.key ?? "", $0) })
        #expect(byKey["user 1"]?.detail == "expected count 4 sum 12.50, found count 3 sum 9.00 (difference -1 / -3.50)")
        #expect(byKey["user 2"]?.kind == .lost && byKey["user 2"]?.detail == "expected count 1 sum 0.07, found no row")
        #expect(byKey["user 4"]?.kind == .phantom)
        // user 3: within ok…ok+info; user 5: only an unknown write, absent — both fine.
        #expect(byKey["user 3"] == nil && byKey["user 5"] == nil)
    }

    @Test func aMatchingStoreIsValid() {
        let expected: [Int64: DerivedPlaceChecks.Expected] = [7: .init(ok: Totals(count: 2, cents: -5))]
        let result = DerivedPlaceChecks.compare(
            place: "test", source: "test", expected: expected, found: [7: Totals(count: 2, cents: -5)],
            label: { "merchant \($0)" }, since: Date())
        #expect(result.validity == .valid && result.anomalies.isEmpty)
        #expect(DerivedPlaceChecks.amount(-5) == "-0.05" && DerivedPlaceChecks.amount(123_456) == "1234.56")
    }
}

/// `kiln run` of a drill against the shared stack, with a latency toxic on the run's own fault proxy in front of
/// Redis (the shared servers are never faulted), and derived places after a mixed run.
@Suite("verdicts: drills judged by their check, derived places (embedded stack)", .serialized)
struct DrillVerdictTests {
    /// 200 ms of latency: the proxy's heal probe calls anything ≥ half of it "not healed", which a 20 ms toxic's
    /// 10 ms bound made flaky on this loaded 2-core machine.
    static func drillScenario(_ name: String) throws -> URL {
        try DrillTests.scenario(
            name,
            """
            proxy: [redis]
            faults:
              - {name: slow-redis, kind: proxy, target: redis, toxic: latency=200ms, at: 2s, duration: 2s}
            heal_wait: 0s
            phases:
              - {name: seed, executor: bulk, rows: 2K, batch: 1K, stores: [redis, clickhouse]}
              - name: steady
                executor: constant-arrival-rate
                rate: 50
                duration: 6s
                workers: 16
                mix: {redis.feature-read: 1}
            """)
    }

    @Test func aDrillWithNoCheckIsNotCheckedEverywhereAndExitsNonZero() throws {
        let name = "vnc_\(UInt32.random(in: 0...UInt32.max))"
        let file = try Self.drillScenario(name)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let result = try CommandLineTests.kiln(
            ["run", file.path, "--runs-directory", runs.path, "--id", "n", "--no-check"])
        #expect(result.status == KilnExitCode.unknown.rawValue, "\(result.output)")
        #expect(result.output.contains("verdict: NOT CHECKED (--no-check given)"), "\(result.output)")
        #expect(!result.output.split(separator: "\n").contains("verdict: passed"), "\(result.output)")
        let directory = runs.appendingPathComponent("n")
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("check.json").path))
        let report = try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        #expect(report.verdict == .notChecked && report.exitCode == 3, "\(report.verdict)")
        #expect(report.checkRequired == true && report.notChecked == "--no-check given")
        #expect(report.faults?.first?.verified == .yes, "\(String(describing: report.faults))")
        let schema = try JSONSchemaSubset(
            contentsOf: TestStack.paths.home.appendingPathComponent("Reports/report.schema.json"))
        let errors = schema.validate(try JSONValue.parse(Data(contentsOf: directory.appendingPathComponent("report.json"))))
        #expect(errors.isEmpty, "\(errors)")
        let junitTree = try XMLTree.parse(Data(contentsOf: directory.appendingPathComponent("junit.xml")))
        #expect(junitTree.attributes["errors"] != "0" || junitTree.attributes["failures"] != "0")
        func read(_ name: String) throws -> String {
            try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        }
        for _ in 0..<2 {
            #expect(try read("report.html").contains("<h1>NOT CHECKED</h1>"))
            #expect(try read("summary.md").contains("NOT CHECKED"))
            let junit = try read("junit.xml")
            #expect(junit.contains(#"type="not-checked""#) && !junit.contains(#"errors="0" time"#), "\(junit)")
            // `kiln report` regenerating the pages says the same.
            let regenerated = try CommandLineTests.kiln(["report", directory.path])
            #expect(regenerated.status == 0 && regenerated.output.contains("verdict: NOT CHECKED"), "\(regenerated.output)")
        }
        // A later check (in-process, as `kiln check` calls it) judges the drill.
        #expect(try CheckRun(runDirectory: directory.path).check() == .ok)
        let judged = try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        #expect(judged.verdict == .passed, "\(judged.verdict)")
        #expect(!(try read("report.html")).contains("NOT CHECKED"))
    }

    @Test func aDrillWithoutAFlagIsCheckedAndExitsWithTheCombinedVerdict() throws {
        let name = "vck_\(UInt32.random(in: 0...UInt32.max))"
        let file = try Self.drillScenario(name)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        // In-process, as `kiln run` does it: the run controller checks the drill after the heal.
        var controller = RunController(scenario: file.path)
        controller.runsDirectory = runs.path
        controller.id = "c"
        let code = try controller.run()
        let directory = runs.appendingPathComponent("c")
        let run = try RunData.load(directory)
        let check = try #require(run.check, "the check did not run")
        #expect(check.places.contains { $0.place == "clickhouse.rows" })
        #expect(check.places.contains { $0.place == MerchantMinuteOracleCheck.place })
        let combined = ReportResult.of(run)
        #expect(code == combined.exitCode)
        #expect(run.report?.verdict == combined.verdict && run.report?.loadVerdict == .passed)
        #expect(combined.verdict == .passed, "\(combined.reasons)")
    }

    @Test func aDrillWhoseCheckCannotRunIsNotCheckedWithTheCheckError() throws {
        // The black-box place names a table that does not exist: the load runs, the check stops before any scan.
        let name = "vce_\(UInt32.random(in: 0...UInt32.max))"
        let file = try DrillTests.scenario(
            name,
            """
            proxy: [redis]
            faults:
              - {name: slow-redis, kind: proxy, target: redis, toxic: latency=200ms, at: 1s, duration: 1s}
            heal_wait: 0s
            blackbox:
              entry: kafka
              places:
                - {store: postgres, table: \(name)_no_such_ledger, key: id}
            phases:
              - {name: stream, executor: constant-arrival-rate, rate: 50, duration: 3s, workers: 4, mix: {kafka.produce: 1}}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let result = try CommandLineTests.kiln(["run", file.path, "--runs-directory", runs.path, "--id", "e"])
        #expect(result.status == KilnExitCode.unknown.rawValue, "\(result.output)")
        #expect(result.output.contains("verdict: NOT CHECKED (the check could not run: "), "\(result.output)")
        let directory = runs.appendingPathComponent("e")
        let report = try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        #expect(report.verdict == .notChecked, "\(report.verdict)")
        #expect(report.notChecked?.contains("\(name)_no_such_ledger") == true, "\(String(describing: report.notChecked))")
        let html = try String(contentsOf: directory.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.contains("<h1>NOT CHECKED</h1>") && html.contains("the check could not run"))
    }

    @Test func anInterruptedDrillIsNotCheckedAndSaysSo() throws {
        let name = "vin_\(UInt32.random(in: 0...UInt32.max))"
        let file = try DrillTests.scenario(
            name,
            """
            proxy: [redis]
            faults:
              - {name: slow-redis, kind: proxy, target: redis, toxic: latency=200ms, at: 1s, duration: 1s}
            heal_wait: 0s
            phases:
              - {name: seed, executor: bulk, rows: 1K, batch: 1K, stores: [redis]}
              - {name: steady, executor: constant-arrival-rate, rate: 50, duration: 60s, workers: 8, mix: {redis.feature-read: 1}}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let process = Process()
        process.executableURL = TestStack.paths.home.appendingPathComponent(".build/debug/kiln")
        process.arguments = ["run", file.path, "--runs-directory", runs.path, "--id", "i"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: 4)
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationStatus == KilnExitCode.unknown.rawValue)
        let directory = runs.appendingPathComponent("i")
        let report = try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        #expect(report.interrupted && report.verdict == .notChecked, "\(report.verdict)")
        #expect(report.notChecked == "the run was interrupted before the check")
        let junit = try String(contentsOf: directory.appendingPathComponent("junit.xml"), encoding: .utf8)
        #expect(junit.contains("NOT CHECKED: the run was interrupted before the check"))
    }

    @Test func aTamperedBalanceAndADeletedPaidEdgeAreReportedByUserAndMerchant() throws {
        let namespace = "vdp_\(UInt32.random(in: 0...UInt32.max))"
        let scenario = try DrillTests.scenario(
            namespace,
            """
            pipeline: {batch: 200, sinks: [postgres, falkordb], convergence_timeout: 30s}
            phases:
              - {name: stream, executor: constant-arrival-rate, rate: 200, duration: 4s, workers: 8, mix: {kafka.produce: 1}}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let run = try CommandLineTests.kiln(["run", scenario.path, "--runs-directory", runs.path, "--id", "p"])
        try #require(run.status == 0, "\(run.output)")
        let directory = runs.appendingPathComponent("p")
        let (clean, cleanReport) = try CheckCommandTests.check(directory)
        #expect(clean.status == 0, "\(clean.output)")
        for place in [BalanceOracleCheck.place, PaidEdgeOracleCheck.userPlace, PaidEdgeOracleCheck.merchantPlace] {
            let result = try #require(cleanReport.places.first { $0.place == place }, "\(place) not checked")
            #expect(result.validity == .valid && result.expected > 0, "\(result)")
        }

        // One user's balance moves by 1.00 (its txns stay); one PAID edge disappears from the graph.
        let postgres = try PostgresConnection(TestStack.postgres)
        defer { postgres.close() }
        let picked = try postgres.execute("SELECT min(user_id) FROM \(namespace)_balances")
        let user = try #require(picked.value(row: 0, column: 0))
        _ = try postgres.execute("UPDATE \(namespace)_balances SET balance = balance + 1.00 WHERE user_id = \(user)")
        let graph = try RedisConnection(host: TestStack.falkordb.host, port: TestStack.falkordb.port)
        defer { graph.close() }
        let edge = try graph.command([
            "GRAPH.RO_QUERY", "\(namespace)_graph",
            "MATCH (u:User)-[p:PAID]->(m:Merchant) RETURN u.id AS u, m.id AS m, p.txn_id AS t ORDER BY t LIMIT 1",
        ])
        let fields = try #require(edge.array?[1].array?.first?.array, "\(edge)")
        let (edgeUser, edgeMerchant, txn) = (fields[0].integer!, fields[1].integer!, fields[2].integer!)
        _ = try graph.command([
            "GRAPH.QUERY", "\(namespace)_graph", "MATCH (:User)-[p:PAID {txn_id: \(txn)}]->(:Merchant) DELETE p",
        ])

        let (tampered, report) = try CheckCommandTests.check(directory)
        #expect(tampered.status == KilnExitCode.anomaly.rawValue, "\(tampered.output)")
        let places = Dictionary(report.places.map { ($0.place, $0) }, uniquingKeysWith: { a, _ in a })
        let balances = try #require(places[BalanceOracleCheck.place])
        #expect(balances.counts == ["corrupted": 1], "\(balances)")
        #expect(balances.anomalies.first?.key == "user \(user)")
        #expect(balances.anomalies.first?.detail.hasSuffix("(difference 0 / 1.00)") == true, "\(balances.anomalies)")
        let perUser = try #require(places[PaidEdgeOracleCheck.userPlace])
        #expect(perUser.validity == .invalid && perUser.anomaly(for: "user \(edgeUser)") != nil, "\(perUser)")
        let perMerchant = try #require(places[PaidEdgeOracleCheck.merchantPlace])
        #expect(perMerchant.counts == ["corrupted": 1] || perMerchant.counts == ["lost": 1], "\(perMerchant)")
        #expect(perMerchant.anomalies.first?.key == "merchant \(edgeMerchant)", "\(perMerchant.anomalies)")
        let detail = perMerchant.anomalies.first?.detail ?? ""
        #expect(detail.contains("difference -1 / -") || detail.hasSuffix("found no row"), "\(detail)")
    }

    @Test func aDeletedRowOfClickHousesMinuteAggregateIsReportedByMerchantAndMinute() throws {
        let namespace = "vagg_\(UInt32.random(in: 0...UInt32.max))"
        let scenario = try CommandLineTests.temporaryFile(
            "\(namespace).yaml",
            """
            name: \(namespace)
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 5, rows: 10K}
            namespace: \(namespace)
            phases:
              - {name: load, executor: bulk, rows: 2K, batch: 1K, stores: [postgres, clickhouse]}
              - name: mixed
                executor: constant-arrival-rate
                rate: 100
                duration: 4s
                workers: 8
                mix: {clickhouse.insert: 1, postgres.insert: 1}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let run = try CommandLineTests.kiln(["run", scenario.path, "--runs-directory", runs.path, "--id", "m"])
        try #require(run.status == 0, "\(run.output)")
        let directory = runs.appendingPathComponent("m")
        let (clean, cleanReport) = try CheckCommandTests.check(directory)
        #expect(clean.status == 0, "\(clean.output)")
        let place = try #require(cleanReport.places.first { $0.place == MerchantMinuteOracleCheck.place })
        #expect(place.validity == .valid && place.expected > 0 && place.scanned == place.expected, "\(place)")

        // Delete one (merchant, minute) row of the view's inner table; 18.16 runs the DELETE as a mutation.
        let http = try HTTPClient()
        func sql(_ text: String) throws -> String {
            try http.post(TestStack.clickhouseHTTP + "/", body: Array(text.utf8)).expectOK().text
        }
        let inner = "kiln.`.inner.\(namespace)_merchant_minute`"
        let victim = try sql(
            "SELECT merchant_id, toInt64(toUInt32(minute)) FROM \(inner) ORDER BY merchant_id, minute LIMIT 1 "
                + "FORMAT TabSeparated"
        ).split(separator: "\t").map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
        try #require(victim.count == 2, "\(victim)")
        _ = try sql("ALTER TABLE \(inner) DELETE WHERE merchant_id = \(victim[0]) AND toUInt32(minute) = \(victim[1])")
        let deadline = Date().addingTimeInterval(30)
        while try sql("SELECT count() FROM system.mutations WHERE table = '.inner.\(namespace)_merchant_minute' AND is_done = 0")
            .trimmingCharacters(in: .whitespacesAndNewlines) != "0", Date() < deadline
        {
            Thread.sleep(forTimeInterval: 0.2)
        }
        let (tampered, report) = try CheckCommandTests.check(directory)
        #expect(tampered.status == KilnExitCode.anomaly.rawValue, "\(tampered.output)")
        let found = try #require(report.places.first { $0.place == MerchantMinuteOracleCheck.place })
        let minute = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(victim[1])!))
        let key = "(merchant \(victim[0]), minute \(minute))"
        #expect(found.validity == .invalid && found.counts == ["lost": 1], "\(found)")
        #expect(found.anomalies.first?.key == key, "\(found.anomalies)")
        #expect(found.anomalies.first?.detail.hasPrefix("expected count ") == true)
        #expect(tampered.output.contains(key), "\(tampered.output)")
        // Paged by time (a few hundred dataset rows per page, so ~20 pages): the same verdict and keys.
        let dataset = try Dataset(spec: Fixtures.spec, seed: 5, rows: 10_000)
        let context = ClientContext(
            stack: TestStack.definition, dataset: dataset, namespace: namespace, timeout: .seconds(30),
            environment: ProcessInfo.processInfo.environment, logger: Logger(label: "test"))
        let written = try WrittenRows.fromHistory(
            directory.appendingPathComponent("history.jsonl"), datasetRows: dataset.rows)
        let paged = MerchantMinuteOracleCheck.check(
            context: context, written: try #require(written["clickhouse.rows"]), rowsPerPage: 500)
        #expect(paged.counts == found.counts && paged.anomalies == found.anomalies, "\(paged)")
        #expect(paged.expected == found.expected && paged.scanned == found.scanned)
        // The raw rows are untouched: only the derived place is wrong.
        #expect(report.places.first { $0.place == "clickhouse.rows" }?.validity == .valid)
        _ = try? sql("DROP TABLE IF EXISTS kiln.\(namespace)_merchant_minute")
        _ = try? sql("DROP TABLE IF EXISTS kiln.\(namespace)_transactions")
    }
}

extension PlaceResult {
    func anomaly(for key: String) -> Anomaly? { anomalies.first { $0.key == key } }
}
