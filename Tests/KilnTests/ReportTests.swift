import Foundation
import KilnCheck
import KilnCore
import KilnLoad
import KilnReport
import KilnScenario
import Testing

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// The report writers on hand-built run directories (no stack needed).
@Suite("Reports: html, summary, junit, schema")
struct ReportTests {
    static func root() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("reports"))
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func text(_ directory: URL, _ file: String) throws -> String {
        try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
    }

    @Test func reportJSONAsKilnWritesItValidatesAgainstTheSchema() throws {
        let schema = try JSONSchemaSubset(contentsOf: TestStack.paths.home.appendingPathComponent("Reports/report.schema.json"))
        let directory = try RunFixture.make(
            in: Self.root(), id: "schema", seed: 1, seconds: 10, failThreshold: true, faults: RunFixture.faults,
            drills: RunFixture.drills)
        let json = try JSONValue.parse(Data(contentsOf: directory.appendingPathComponent("report.json")))
        let errors = schema.validate(json)
        #expect(errors.isEmpty, "\(errors)")
        #expect(json["faults"] != nil && json["drills"] != nil)
        // The validator can fail: a wrong type, a missing field and an unknown field are each reported.
        var broken = json
        broken["complete"] = .string("yes")
        broken["verdict"] = nil
        broken["surprise"] = .integer(1)
        let brokenErrors = schema.validate(broken)
        #expect(brokenErrors.contains { $0.contains("$.complete") })
        #expect(brokenErrors.contains { $0.contains("'verdict' is missing") })
        #expect(brokenErrors.contains { $0.contains("'surprise'") })
    }

    @Test func junitHasTheCommonSchemasStructureAndFailuresCarryTheReason() throws {
        let directory = try RunFixture.make(
            in: Self.root(), id: "junit", seed: 2, seconds: 10, failThreshold: true, drills: RunFixture.drills,
            check: RunFixture.failingCheck(run: "junit"))
        try ReportWriters.writeAll(RunData.load(directory))
        let tree = try XMLTree.parse(Data(contentsOf: directory.appendingPathComponent("junit.xml")))
        #expect(tree.name == "testsuites")
        var cases: [XMLTree] = []
        for suite in tree.children {
            #expect(suite.name == "testsuite")
            for attribute in ["name", "tests", "failures", "errors", "time", "timestamp", "hostname"] {
                #expect(suite.attributes[attribute] != nil, "testsuite \(suite.attributes["name"] ?? "?") lacks \(attribute)")
            }
            // Schema order: properties?, testcase*, system-out?, system-err?
            let names = suite.children.map(\.name)
            #expect(names.filter { $0 == "properties" }.count <= 1)
            if let first = names.firstIndex(of: "properties") { #expect(first == 0) }
            let suiteCases = suite.children.filter { $0.name == "testcase" }
            #expect(Int(suite.attributes["tests"] ?? "") == suiteCases.count)
            let failures = suiteCases.filter { $0.children.contains { $0.name == "failure" } }.count
            let errors = suiteCases.filter { $0.children.contains { $0.name == "error" } }.count
            #expect(Int(suite.attributes["failures"] ?? "") == failures)
            #expect(Int(suite.attributes["errors"] ?? "") == errors)
            for testCase in suiteCases {
                #expect(testCase.attributes["name"] != nil && testCase.attributes["classname"] != nil)
                #expect(Double(testCase.attributes["time"] ?? "") != nil)
                for problem in testCase.children {
                    #expect(["failure", "error"].contains(problem.name))
                    #expect(!(problem.attributes["message"] ?? "").isEmpty)
                }
            }
            cases += suiteCases
        }
        #expect(Int(tree.attributes["tests"] ?? "") == cases.count)
        func problem(_ name: String) -> XMLTree? {
            cases.first { $0.attributes["name"] == name }?.children.first
        }
        // One case per threshold (2), checker place (3) and drill (2), plus the run.
        #expect(cases.count == 8)
        let lost = try #require(problem("postgres.rows"))
        #expect(lost.name == "failure")
        #expect(lost.attributes["message"] == "postgres.rows: lost 2")
        #expect(lost.text.contains("txn_id 17"))
        #expect(problem("redis.features") == nil)
        #expect(problem("kafka.messages")?.name == "error")
        let threshold = try #require(problem("postgres.point-read: p99 < 1ms"))
        #expect(threshold.attributes["message"]?.contains("observed") == true)
        #expect(problem("postgres.point-read: p99 < 50ms") == nil)
        #expect(problem("redis pause (redis)")?.attributes["message"]?.contains("RTO 6200 ms") == true)
        #expect(problem("postgres under redis pause (postgres)")?.name == "error")
    }

    @Test func rtoEndsWhenTheStoreServesAgainNotWhenTheFaultIsHealed() throws {
        let run = try RunData.load(RunFixture.make(in: try Self.root(), id: "rto", seed: 6, seconds: 10))
        let report = try #require(run.report)
        let phaseStart = try #require(report.phases.first { $0.name == "steady" }).startedAt
        let start = phaseStart + 20_100
        func timeline(_ second: (Int) -> TimelineSample) -> [TimelineSample] { (1...60).map(second) }
        func normal(_ second: Int) -> TimelineSample {
            TimelineSample(phase: "steady", second: second, operation: "postgres.insert", ok: 100, p50Ms: 1, p99Ms: 2)
        }
        // A failover: two seconds of errors, then the promoted replica serves; the fault stops (the old primary is
        // rebuilt) 15 s later.
        let failover = RunReport.Fault(
            name: "pg", kind: "pg-failover", target: "postgres-primary -> postgres-replica", startedAt: start,
            stoppedAt: start + 15_000, verified: .yes)
        let failing = timeline { second in
            (21...22).contains(second)
                ? TimelineSample(phase: "steady", second: second, operation: "postgres.insert", ok: 0, fail: 30, p50Ms: 1, p99Ms: 2)
                : normal(second)
        }
        #expect(
            DrillMetrics.store(
                of: RunReport.Fault(name: "r", kind: "redis-failover", target: "kiln via sentinels 127.0.0.23:26379", verified: .yes))
                == "redis")
        // Partitions and clock steps name their server first (an isolate's address alone had no drill row).
        #expect(
            DrillMetrics.store(
                of: RunReport.Fault(
                    name: "p", kind: "partition", target: "postgres-primary (isolate 127.0.0.11)", verified: .yes))
                == "postgres")
        #expect(
            DrillMetrics.store(
                of: RunReport.Fault(
                    name: "s", kind: "partition", target: "postgres-primary | postgres-replica (drop user postgres -> 127.0.0.11:15432)",
                    verified: .yes))
                == "postgres")
        let drill = try #require(DrillMetrics.compute(faults: [failover], report: report, timeline: failing).first)
        #expect(drill.metrics["rto_ms"] == 2_900, "\(drill.metrics)")
        #expect(drill.metrics["errors"] == 60)
        // A pause: nothing completes until the stop, then the queued ops land late in one second.
        let pause = RunReport.Fault(
            name: "p", kind: "pause", target: "postgres-primary", startedAt: start, stoppedAt: start + 15_000,
            verified: .yes)
        let paused = timeline { second in
            switch second {
            case 21...35: TimelineSample(phase: "steady", second: second, operation: "postgres.insert", ok: 0, p50Ms: nil, p99Ms: nil)
            case 36: TimelineSample(phase: "steady", second: 36, operation: "postgres.insert", ok: 1_500, p50Ms: 4_000, p99Ms: 5_000)
            default: normal(second)
            }
        }
        let pauseDrill = try #require(DrillMetrics.compute(faults: [pause], report: report, timeline: paused).first)
        #expect(pauseDrill.metrics["rto_ms"] == 16_900, "\(pauseDrill.metrics)")
        // A partition between the servers that Kiln's clients never noticed: a 5 ms p99 second (2 ms usual) is
        // loopback wobble, not the fault — no detection and RTO 0, not the fault's whole duration.
        let split = RunReport.Fault(
            name: "split", kind: "partition", target: "postgres-primary | postgres-replica (…)", startedAt: start,
            stoppedAt: start + 20_000, verified: .yes)
        let wobbly = timeline { second in
            second == 24
                ? TimelineSample(phase: "steady", second: 24, operation: "postgres.insert", ok: 80, p50Ms: 1, p99Ms: 5)
                : normal(second)
        }
        let splitDrill = try #require(DrillMetrics.compute(faults: [split], report: report, timeline: wobbly).first)
        #expect(splitDrill.metrics["time_to_detect_ms"] == nil, "\(splitDrill.metrics)")
        #expect(splitDrill.metrics["rto_ms"] == 0)
        #expect(splitDrill.verdict == .passed)
    }

    @Test func aDrillsRPOIsTheLostCountOfItsStoresCheckedPlaces() throws {
        let directory = try RunFixture.make(
            in: try Self.root(), id: "rpo", seed: 5, seconds: 10, faults: RunFixture.faults, drills: RunFixture.drills,
            check: RunFixture.failingCheck(run: "rpo"))
        let run = try RunData.load(directory)
        let check = try #require(run.check)
        // A value from an earlier check is replaced, not kept.
        let stale = try #require(run.report?.drills).map { drill in
            var drill = drill
            drill.metrics["rpo_writes"] = 7
            return drill
        }
        let withRPO = DrillMetrics.withRPO(stale, check: check)
        let drills = Dictionary(uniqueKeysWithValues: withRPO.map { ($0.store, $0) })
        // postgres.rows lost 2 (txn 17 and 99); redis.features checked clean.
        #expect(drills["postgres"]?.metrics["rpo_writes"] == 2)
        #expect(drills["redis"]?.metrics["rpo_writes"] == 0)
        let unchecked = DrillMetrics.withRPO(
            [RunReport.Drill(name: "k", fault: "k", store: "falkordb", verdict: .passed)],
            check: CheckReport(run: "r", datasetRows: 1, places: [], validity: .valid, seconds: 0))
        #expect(unchecked.first?.metrics["rpo_writes"] == nil)
    }

    @Test func htmlIsSelfContainedAndShowsChartsFaultWindowsChecksDrillsAndComparison() throws {
        let root = try Self.root()
        let baseline = try RunFixture.make(in: root, id: "base", seed: 3, seconds: 40)
        let directory = try RunFixture.make(
            in: root, id: "html", seed: 4, seconds: 40, slowdown: ["redis.feature-read": 1.5], faults: RunFixture.faults,
            drills: RunFixture.drills, check: RunFixture.failingCheck(run: "html"))
        let run = try RunData.load(directory)
        let comparison = RunComparison.compare(baseline: try RunData.load(baseline), current: run, limits: .defaults)
        try ReportWriters.writeAll(run, comparison: comparison)
        let html = try Self.text(directory, "report.html")
        for forbidden in ["<script", "src=", "url(", "@import", "@font-face", "href=\"http", "<link rel=\"stylesheet"] {
            #expect(!html.contains(forbidden), "report.html contains \(forbidden)")
        }
        // The only URL is the SVG namespace name (never fetched).
        let urls = html.components(separatedBy: "http").count - 1
        let namespaces = html.components(separatedBy: "http://www.w3.org/2000/svg").count - 1
        #expect(urls == namespaces)
        #expect(html.contains("ANOMALY"))
        #expect(html.contains("class=\"fault\""))
        #expect(html.contains("redis-pause (pause redis.primary, verified yes)"))
        #expect(html.components(separatedBy: "<polyline").count - 1 >= 3 * 3 + 1)
        #expect(html.contains("latency by percentile"))
        #expect(html.contains("txn_id 17"))
        #expect(html.contains("id=\"drills\"") && html.contains("6200"))
        #expect(html.contains("id=\"comparison\""))
        #expect(html.contains("▲"))
        #expect(!html.contains("PARTIAL REPORT"))
        let summary = try Self.text(directory, "summary.md")
        #expect(summary.hasPrefix("# ❌ Kiln run `html`: ANOMALY"))
        #expect(summary.contains("regressed"))
        #expect(summary.contains("| `redis.feature-read` |"))
    }

    @Test func anInterruptedRunAndACrashedRunGiveAReportThatSaysPartial() throws {
        let root = try Self.root()
        let interrupted = try RunFixture.make(in: root, id: "interrupted", seed: 5, seconds: 8, interrupted: true)
        try ReportWriters.writeAll(RunData.load(interrupted))
        #expect(try Self.text(interrupted, "report.html").contains("PARTIAL REPORT"))
        #expect(try Self.text(interrupted, "summary.md").contains("**PARTIAL REPORT**"))
        #expect(try Self.text(interrupted, "junit.xml").contains(#"type="partial""#))

        // A crash: no report.json, and the last timeline line cut mid-write.
        let crashed = try RunFixture.make(in: root, id: "crashed", seed: 6, seconds: 8, writeReport: false)
        let timeline = crashed.appendingPathComponent("timeline.jsonl")
        let handle = try FileHandle(forWritingTo: timeline)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"phase":"steady","second":9,"ops":{"postgres.po"#.utf8))
        try handle.close()
        let run = try RunData.load(crashed)
        #expect(run.isPartial)
        #expect(run.timeline.count == 8 * RunFixture.operations.count)
        #expect(run.problems.contains { $0.contains("1 unreadable line") })
        let result = try CommandLineTests.kiln(["report", crashed.path])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("PARTIAL"))
        let html = try Self.text(crashed, "report.html")
        #expect(html.contains("PARTIAL REPORT") && html.contains("<polyline"))

        // A bulk phase whose secondary-index rebuild failed (disk full: SQLSTATE 53100 in a 100M-row nightly) ran
        // every op, but left the ledger without its indexes: partial with the reason, never passed.
        let unindexed = try RunFixture.make(in: root, id: "unindexed", seed: 7, seconds: 4)
        var unindexedRun = try RunData.load(unindexed)
        #expect(!unindexedRun.isPartial && ReportResult.of(unindexedRun).verdict != .partial)
        unindexedRun.report!.phases[0].indexBuildError = "postgres: PostgresError(server, sqlState: 53100)"
        #expect(unindexedRun.isPartial)
        #expect(unindexedRun.partialReason?.contains("rebuilding the secondary indexes after the bulk load failed") == true,
            "\(unindexedRun.partialReason ?? "")")
        #expect(ReportResult.of(unindexedRun).verdict == .partial)
        #expect(ReportResult.of(unindexedRun).exitCode != .ok)

        let empty = root.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let refused = try CommandLineTests.kiln(["report", empty.path])
        #expect(refused.status == KilnExitCode.invalidInput.rawValue)
        #expect(refused.output.contains("not a run directory"))
    }
}

/// A parsed XML element (enough to check junit.xml's structure).
final class XMLTree {
    let name: String
    let attributes: [String: String]
    var children: [XMLTree] = []
    var text = ""

    init(name: String, attributes: [String: String]) {
        self.name = name
        self.attributes = attributes
    }

    static func parse(_ data: Data) throws -> XMLTree {
        let delegate = Builder()
        let parser = XMLParser(data: data)
        parser.delegate = delegate
        guard parser.parse(), let root = delegate.root else {
            throw CocoaError(.fileReadCorruptFile, userInfo: ["reason": "\(parser.parserError.map { "\($0)" } ?? "no root")"])
        }
        return root
    }

    final class Builder: NSObject, XMLParserDelegate {
        var stack: [XMLTree] = []
        var root: XMLTree?

        func parser(
            _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
            attributes: [String: String] = [:]
        ) {
            let element = XMLTree(name: elementName, attributes: attributes)
            stack.last?.children.append(element)
            if root == nil { root = element }
            stack.append(element)
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            stack.removeLast()
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { stack.last?.text += string }
    }
}
