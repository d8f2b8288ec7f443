import Foundation
import KilnCore
import KilnLoad
import Testing

/// `kiln run` writes report.html, summary.md and junit.xml at its end, and its report.json validates against
/// Reports/report.schema.json. Runs Scenarios/quick.yaml against the embedded stack in its own namespace.
@Suite("kiln run writes the report outputs")
struct ReportEndToEndTests {
    @Test func theQuickScenarioWritesEveryReportOutputAndItsJSONMatchesTheSchema() throws {
        let home = TestStack.paths.home
        var text = try String(contentsOf: home.appendingPathComponent("Scenarios/quick.yaml"), encoding: .utf8)
        text = text.replacingOccurrences(of: "stack: stacks/embedded.yaml", with: "stack: \(TestStack.paths.embeddedStackFile.path)")
        text = text.replacingOccurrences(
            of: "spec: ../Generators/fraud-platform.yaml",
            with: "spec: \(home.appendingPathComponent("Generators/fraud-platform.yaml").path)")
        let namespace = TestStack.uniqueName("rq")
        text = text.replacingOccurrences(of: "namespace: quick", with: "namespace: \(namespace)")
        #expect(text.contains(namespace))
        let scenario = try CommandLineTests.temporaryFile("quick-report.yaml", text)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let result = try CommandLineTests.kiln(["run", scenario.path, "--runs-directory", runs.path, "--id", "r"])
        #expect(result.status == 0, "\(result.output)")
        let directory = runs.appendingPathComponent("r")
        for file in ["report.html", "summary.md", "junit.xml"] {
            let size = (try? FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent(file).path)[.size]
                as? Int) ?? 0
            #expect(size > 200, "\(file): \(size) bytes")
        }
        let html = try String(contentsOf: directory.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.contains("PASSED"))
        #expect(html.contains("<polyline"))
        let junit = try XMLTree.parse(Data(contentsOf: directory.appendingPathComponent("junit.xml")))
        #expect(junit.name == "testsuites")
        #expect(junit.attributes["failures"] == "0")
        let schema = try JSONSchemaSubset(contentsOf: home.appendingPathComponent("Reports/report.schema.json"))
        let json = try JSONValue.parse(Data(contentsOf: directory.appendingPathComponent("report.json")))
        let errors = schema.validate(json)
        #expect(errors.isEmpty, "\(errors)")
        // A run compared with itself has no regression.
        let compare = try CommandLineTests.kiln(["compare", directory.path, directory.path])
        #expect(compare.status == 0, "\(compare.output)")
    }

    @Test func aRunStoppedBySIGTERMMidPhaseGetsAReportThatSaysPartial() throws {
        let scenario = try CommandLineTests.temporaryFile(
            "long.yaml",
            """
            name: long
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 1, rows: 100K}
            namespace: \(TestStack.uniqueName("rp"))
            phases:
              - {name: reads, executor: constant-arrival-rate, rate: 100, duration: 60s, mix: {redis.top-k: 1}}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let process = Process()
        process.executableURL = TestStack.paths.home.appendingPathComponent(".build/debug/kiln")
        process.arguments = ["run", scenario.path, "--runs-directory", runs.path, "--id", "stopped"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: 3)
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationStatus == KilnExitCode.unknown.rawValue)
        let directory = runs.appendingPathComponent("stopped")
        let html = try String(contentsOf: directory.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.contains("PARTIAL REPORT"))
        #expect(html.contains("interrupted"))
        let summary = try String(contentsOf: directory.appendingPathComponent("summary.md"), encoding: .utf8)
        #expect(summary.contains("**PARTIAL REPORT**"))
        let junit = try String(contentsOf: directory.appendingPathComponent("junit.xml"), encoding: .utf8)
        #expect(junit.contains(#"type="partial""#))
    }
}
