import Foundation
import KilnLoad
import KilnReplay
import KilnScenario
import Testing

/// `kiln replay` and `kiln shrink` end to end: bad input is exit 64 naming the file; a planted bug replays to the
/// same anomaly on the real stack, the correct scenario stays valid, and a replay that cannot reproduce (the bug
/// removed) or cannot be judged (no stack) never says reproduced.
@Suite(.serialized) struct ReplayCommandTests {
    static let home = TestStack.paths.home

    /// A copy of `Scenarios/bugs/<name>.yaml` in its own namespace (other suites run the same files at once).
    static func namespacedBug(_ name: String) throws -> URL {
        var text = try String(contentsOf: home.appendingPathComponent("Scenarios/bugs/\(name).yaml"), encoding: .utf8)
        let namespace = TestStack.uniqueName("rt").replacingOccurrences(of: "-", with: "_").lowercased()
        text = text.replacingOccurrences(
            of: #"(?m)^namespace: .*$"#, with: "namespace: \(namespace)", options: .regularExpression)
        text = text.replacingOccurrences(of: "stack: ../stacks/", with: "stack: \(home.path)/Scenarios/stacks/")
        text = text.replacingOccurrences(of: "spec: ../../Generators/", with: "spec: \(home.path)/Generators/")
        return try CommandLineTests.temporaryFile("\(name).yaml", text)
    }

    static func run(_ scenario: URL) throws -> URL {
        let runs = scenario.deletingLastPathComponent().appendingPathComponent("runs")
        let run = try CommandLineTests.kiln(["run", scenario.path, "--runs-directory", runs.path, "--id", "original", "--check"])
        #expect([0, 1].contains(run.status), "\(run.output.suffix(2000))")
        return runs.appendingPathComponent("original")
    }

    // MARK: bad input (no server needed)

    static let validCheck = #"{"validity":"valid","places":[{"place":"postgres.rows","validity":"valid","counts":{},"anomalies":[]}]}"#
    static let report = #"{"verdict":"passed","interrupted":false,"phases":[{"name":"stream","started_at":1,"thresholds":[]}]}"#

    @Test func aTruncatedBundleIsExit64NamingTheFile() throws {
        let (directory, _) = try ReplayBundleTests.bundleDirectory(report: Self.report, check: Self.validCheck)
        let file = directory.appendingPathComponent("bundle.json")
        let data = try Data(contentsOf: file)
        try data.prefix(200).write(to: file)
        for command in [["replay", directory.path], ["shrink", directory.path], ["replay", file.path]] {
            let result = try CommandLineTests.kiln(command)
            #expect(result.status == 64, "\(command): \(result.output)")
            #expect(result.output.contains(file.path) && result.output.contains("not valid JSON"), "\(result.output)")
        }
    }

    @Test func aBundleNamingAMissingSpecIsExit64() throws {
        let (directory, _) = try ReplayBundleTests.bundleDirectory(report: Self.report, check: Self.validCheck)
        try FileManager.default.removeItem(at: directory.appendingPathComponent(ReplayBundle.specFileName))
        let result = try CommandLineTests.kiln(["replay", directory.path])
        #expect(result.status == 64, "\(result.output)")
        #expect(result.output.contains("bundle.json: dataset.spec_file: names \(ReplayBundle.specFileName), which is missing"), "\(result.output)")
    }

    @Test func aPassingRunCannotBeShrunkAndAnUncheckedRunCannotBeReplayed() throws {
        let (passing, _) = try ReplayBundleTests.bundleDirectory(report: Self.report, check: Self.validCheck)
        let shrink = try CommandLineTests.kiln(["shrink", passing.path])
        #expect(shrink.status == 64, "\(shrink.output)")
        #expect(shrink.output.contains(passing.path) && shrink.output.contains("did not fail"), "\(shrink.output)")
        let (unchecked, _) = try ReplayBundleTests.bundleDirectory(report: Self.report)
        let replay = try CommandLineTests.kiln(["replay", unchecked.path])
        #expect(replay.status == 64, "\(replay.output)")
        #expect(replay.output.contains("check.json: missing"), "\(replay.output)")
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("no-bundle"))
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let none = try CommandLineTests.kiln(["replay", empty.path])
        #expect(none.status == 64 && none.output.contains("no bundle.json"), "\(none.output)")
    }

    @Test func aMalformedScenarioCopyIsExit64NamingItsLine() throws {
        let (directory, _) = try ReplayBundleTests.bundleDirectory(report: Self.report, check: Self.validCheck)
        let scenario = directory.appendingPathComponent(ReplayBundle.scenarioFileName)
        let text = try String(contentsOf: scenario, encoding: .utf8)
        try text.replacingOccurrences(of: "rate: 200", with: "rate: -200").write(to: scenario, atomically: true, encoding: .utf8)
        let result = try CommandLineTests.kiln(["replay", directory.path])
        #expect(result.status == 64, "\(result.output)")
        #expect(result.output.contains("\(ReplayBundle.scenarioFileName):") && result.output.contains("rate"), "\(result.output)")
    }

    @Test(arguments: [
        ["--times", "0"], ["--times", "-3"], ["--anomaly", "postgres.rows"], ["--anomaly", "postgres.rows:lost"], ["--times", "99999999999999999999"], ["--stack", "/nonexistent/stack.yaml"],
    ])
    func badReplayFlagsAreExit64(flags: [String]) throws {
        let (directory, _) = try ReplayBundleTests.bundleDirectory(report: Self.report, check: Self.validCheck)
        let result = try CommandLineTests.kiln(["replay", directory.path] + flags)
        #expect(result.status == 64, "\(flags): \(result.output)")
    }

    @Test(arguments: [["--budget", "0s"], ["--budget", "-5m"], ["--budget", "soon"], ["--tries", "0"], ["--anomaly", "nothing"]])
    func badShrinkFlagsAreExit64(flags: [String]) throws {
        let failing = #"{"validity":"invalid","places":[{"place":"postgres.rows","validity":"invalid","counts":{"lost":3},"anomalies":[]}]}"#
        let (directory, _) = try ReplayBundleTests.bundleDirectory(report: Self.report, check: failing)
        let result = try CommandLineTests.kiln(["shrink", directory.path] + flags)
        #expect(result.status == 64, "\(flags): \(result.output)")
    }

    // MARK: real servers

    @Test func aPlantedBugReplaysToTheSameAnomalyAndTheBugRemovedDoesNot() throws {
        let original = try Self.run(try Self.namespacedBug("non-idempotent"))
        let bundle = try ReplayBundle.read(original).bundle
        #expect(bundle.complete && bundle.phases.map(\.name) == ["backlog", "stream"])
        #expect(bundle.phases[1].writeRows?["kafka"]?.first == 3000 && bundle.phases[1].writeRows?["kafka"]?.end == 4000)
        let replay = try CommandLineTests.kiln(["replay", original.path, "--times", "3"])
        #expect(replay.status == 0, "\(replay.output.suffix(3000))")
        #expect(replay.output.contains("reproduced in 3 of 3 replays (100 %)"), "\(replay.output.suffix(3000))")
        // Planted defect for the verdict: the bundle's scenario without the bug must NOT reproduce (exit 2).
        let scenario = original.appendingPathComponent(ReplayBundle.scenarioFileName)
        let text = try String(contentsOf: scenario, encoding: .utf8)
        try text.replacingOccurrences(of: "  - non-idempotent\n", with: "  []\n")
            .replacingOccurrences(of: "  bugs:\n  []\n", with: "  bugs: []\n")
            .write(to: scenario, atomically: true, encoding: .utf8)
        let fixed = try CommandLineTests.kiln(["replay", original.path])
        #expect(fixed.status == 2, "\(fixed.output.suffix(3000))")
        #expect(fixed.output.contains("NOT reproduced in any of 1 replays"), "\(fixed.output.suffix(2000))")
        #expect(fixed.output.contains("NOT reproduced: missing") && fixed.output.contains("clickhouse.rows duplicated"), "\(fixed.output.suffix(2000))")
    }

    @Test func theCorrectScenarioStaysValid() throws {
        let original = try Self.run(try Self.namespacedBug("correct"))
        let replay = try CommandLineTests.kiln(["replay", original.path, "--times", "2"])
        #expect(replay.status == 0, "\(replay.output.suffix(3000))")
        #expect(replay.output.contains("valid again in 2 of 2 replays (100 %)"), "\(replay.output.suffix(3000))")
    }

    @Test func aReplayThatCannotRunIsNotJudgedNeverReproduced() throws {
        let original = try Self.run(try Self.namespacedBug("non-idempotent"))
        // A stack where nothing listens (the replay helper's private addresses): kiln run exits 69.
        let embedded = try String(contentsOf: Self.home.appendingPathComponent("Scenarios/stacks/embedded.yaml"), encoding: .utf8)
        let nowhere = try CommandLineTests.temporaryFile(
            "nowhere.yaml",
            embedded.replacingOccurrences(of: "127.0.0.", with: "127.0.32.").replacingOccurrences(of: "name: embedded", with: "name: nowhere")
                // external: `kiln run` touches no embedded stack's state (the shared stack's pids) for it.
                .replacingOccurrences(of: "kind: embedded", with: "kind: external")
                .replacingOccurrences(of: "chaos_target: true", with: "chaos_target: false"))
        let replay = try CommandLineTests.kiln(["replay", original.path, "--stack", nowhere.path])
        #expect(replay.status == 3, "\(replay.output.suffix(3000))")
        #expect(replay.output.contains("NOT reproduced in any of 1 replays"), "\(replay.output.suffix(2000))")
        #expect(replay.output.contains("NOT JUDGED"), "\(replay.output.suffix(2000))")
    }
}
