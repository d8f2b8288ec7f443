import Foundation
import KilnCore
import KilnReport
import KilnScenario
import Testing

@Suite("Comparison statistics and kiln compare")
struct ComparisonTests {
    @Test func mannWhitneyMatchesAKnownExample() {
        // Fully separated samples of 5 and 5: U = 0, exact two-sided p = 0.0079; the normal approximation ~0.012.
        let p = RankTest.mannWhitneyP([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
        #expect(p > 0.005 && p < 0.02, "p = \(p)")
        #expect(RankTest.mannWhitneyP([1, 2, 3], [1, 2, 3]) > 0.9)
        #expect(RankTest.mannWhitneyP([4, 4, 4], [4, 4, 4]) == 1)
        #expect(RankTest.mannWhitneyP([], [1]) == 1)
        #expect(RankTest.median([3, 1, 2]) == 2)
        #expect(RankTest.median([4, 1, 2, 3]) == 2.5)
    }

    @Test func sameDistributionIsUnchangedTenTimesOutOfTen() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("compare"))
        for trial in 0..<10 {
            let seed = UInt64(100 + trial * 2)
            let baseline = try RunData.load(RunFixture.make(in: root, id: "base\(trial)", seed: seed))
            let current = try RunData.load(RunFixture.make(in: root, id: "cur\(trial)", seed: seed + 1))
            let comparison = RunComparison.compare(baseline: baseline, current: current, limits: .defaults)
            let notUnchanged = comparison.rows.filter { $0.verdict != .unchanged }
            #expect(notUnchanged.isEmpty, "trial \(trial): \(notUnchanged.map { "\($0.operation) \($0.metric) \($0.verdict)" })")
            #expect(comparison.verdict == .unchanged)
            #expect(comparison.rows.count == RunFixture.operations.count * ComparisonReport.Metric.allCases.count)
        }
    }

    @Test func twentyPercentSlowerOnOneOpIsRegressedForThatOpOnly() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("compare"))
        let baseline = try RunData.load(RunFixture.make(in: root, id: "base", seed: 300))
        let current = try RunData.load(
            RunFixture.make(in: root, id: "slow", seed: 301, slowdown: ["postgres.point-read": 1.2]))
        let comparison = RunComparison.compare(baseline: baseline, current: current, limits: .defaults)
        #expect(comparison.verdict == .regressed)
        let regressed = comparison.regressions
        #expect(Set(regressed.map(\.operation)) == ["postgres.point-read"])
        #expect(Set(regressed.map(\.metric)) == [.p50, .p99])
        for row in comparison.rows where row.operation != "postgres.point-read" {
            #expect(row.verdict == .unchanged, "\(row.operation) \(row.metric): \(row.verdict)")
        }
        // The same data the other way round is an improvement, and a 40 % limit tolerates it.
        #expect(RunComparison.compare(baseline: current, current: baseline, limits: .defaults).verdict == .improved)
        let lenient = RegressionLimits(p50: 0.40, p99: 0.40)
        #expect(RunComparison.compare(baseline: baseline, current: current, limits: lenient).verdict == .unchanged)
        // Too few seconds to tell.
        let short = try RunData.load(RunFixture.make(in: root, id: "short", seed: 302, seconds: 4))
        let inconclusive = RunComparison.compare(baseline: baseline, current: short, limits: .defaults)
        #expect(inconclusive.verdict == .inconclusive)
    }

    @Test func driftThatTheBaselineRunsShowIsNotARegressionButASlowdownBeyondThemIs() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("compare"))
        // Three baseline runs of one build on a drifting machine: point-read 0 %, +25 % and +10 % slower.
        let baselines = try [(400, 1.0), (402, 1.25), (404, 1.1)].map { seed, factor in
            try RunData.load(
                RunFixture.make(in: root, id: "b\(seed)", seed: UInt64(seed), slowdown: ["postgres.point-read": factor]))
        }
        let drifted = try RunData.load(
            RunFixture.make(in: root, id: "drift", seed: 406, slowdown: ["postgres.point-read": 1.2]))
        // Against the first run alone the drift looks like a regression…
        #expect(RunComparison.compare(baseline: baselines[0], current: drifted, limits: .defaults).verdict == .regressed)
        // …against the three it is inside their spread.
        let pooled = RunComparison.compare(baselines: baselines, current: drifted, limits: .defaults)
        #expect(pooled.verdict != .regressed, "\(pooled.regressions.map { "\($0.operation) \($0.metric) \($0.note ?? "")" })")
        #expect(pooled.baseline == "b400+b402+b404")
        // 60 % slower is beyond even the slowest baseline run by more than the limit.
        let slow = try RunData.load(RunFixture.make(in: root, id: "slow", seed: 408, slowdown: ["postgres.point-read": 1.6]))
        let regressed = RunComparison.compare(baselines: baselines, current: slow, limits: .defaults)
        #expect(Set(regressed.regressions.map(\.operation)) == ["postgres.point-read"])
        #expect(Set(regressed.regressions.map(\.metric)).contains(.p50))
        // redis.feature-read's p99 (~4 ms) 20 % up is +0.8 ms: under the 1 ms floor, so not a regression.
        let subFloor = try RunData.load(
            RunFixture.make(in: root, id: "floor", seed: 410, slowdown: ["redis.feature-read": 1.2]))
        let floored = RunComparison.compare(baseline: baselines[0], current: subFloor, limits: .defaults)
        #expect(!floored.regressions.contains { $0.operation == "redis.feature-read" && $0.metric == .p99 })
        let noFloor = RegressionLimits(p99FloorMs: 0)
        #expect(
            RunComparison.compare(baseline: baselines[0], current: subFloor, limits: noFloor).regressions
                .contains { $0.operation == "redis.feature-read" && $0.metric == .p99 })
    }

    @Test func regressionBlockParsesAndBadValuesNameFileLineAndField() throws {
        let fields = try YAMLFields.document(
            "regression:\n  p99: +20%\n  throughput: -3%\n  alpha: 0.05\n  min_samples: 10\n", file: "s.yaml")
        let limits = try RegressionLimits.parse(try #require(try fields.optionalMapping("regression")))
        #expect(limits == RegressionLimits(p50: 0.10, p99: 0.20, throughput: 0.03, alpha: 0.05, minSamples: 10))
        #expect(try limits.overriding(["p50=+30%"]).p50 == 0.30)
        #expect(try limits.overriding(["p50=+30%"]).p99 == 0.20)
        func failure(_ text: String) -> String {
            do {
                let fields = try YAMLFields.document(text, file: "s.yaml")
                _ = try RegressionLimits.parse(try #require(try fields.optionalMapping("regression")))
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        #expect(failure("regression:\n  p99: -10%\n").contains("s.yaml:2"))
        #expect(failure("regression:\n  p99: -10%\n").contains("regression.p99"))
        #expect(failure("regression:\n  throughput: fast\n").contains("-5%"))
        #expect(failure("regression:\n  p95: +10%\n").contains("regression.p95"))
    }

    @Test func theCompareCommandExitsTwoOnARegressionAndPrintsJSON() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("compare"))
        let baseline = try RunFixture.make(in: root, id: "base", seed: 400)
        let same = try RunFixture.make(in: root, id: "same", seed: 401)
        let slow = try RunFixture.make(in: root, id: "slow", seed: 402, slowdown: ["kafka.produce": 1.25])
        let unchanged = try CommandLineTests.kiln(["compare", baseline.path, same.path])
        #expect(unchanged.status == 0, "\(unchanged.output)")
        #expect(unchanged.output.contains("verdict: unchanged"))
        let regressed = try CommandLineTests.kiln(["compare", baseline.path, slow.appendingPathComponent("report.json").path])
        #expect(regressed.status == KilnExitCode.thresholdFailed.rawValue, "\(regressed.output)")
        #expect(regressed.output.contains("▼ regressed"))
        let lenient = try CommandLineTests.kiln(["compare", baseline.path, slow.path, "--limit", "p99=+50%", "--limit", "p50=+50%"])
        #expect(lenient.status == 0, "\(lenient.output)")
        let json = try CommandLineTests.kiln(["compare", baseline.path, slow.path, "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
        #expect(object["verdict"] as? String == "regressed")
        #expect(object["schema"] as? String == "kiln.compare/1")
        let bad = try CommandLineTests.kiln(["compare", baseline.path, root.appendingPathComponent("nope").path])
        #expect(bad.status == KilnExitCode.invalidInput.rawValue)
    }

    @Test func baselinesSaveShowListAndCompareByNameAndTrendRendersRuns() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("baselines"))
        let store = root.appendingPathComponent("baselines").path
        let run = try RunFixture.make(in: root, id: "nightly-1", seed: 500)
        let save = try CommandLineTests.kiln(["baseline", "save", "nightly", run.path, "--baselines-directory", store])
        #expect(save.status == 0, "\(save.output)")
        for file in ["report.json", "timeline.jsonl", "scenario.yaml", "baseline.json", "histograms"] {
            #expect(FileManager.default.fileExists(atPath: "\(store)/nightly/\(file)"), "\(file)")
        }
        let again = try CommandLineTests.kiln(["baseline", "save", "nightly", run.path, "--baselines-directory", store])
        #expect(again.status == KilnExitCode.invalidInput.rawValue)
        #expect(again.output.contains("--replace"))
        let partial = try RunFixture.make(in: root, id: "partial", seed: 501, interrupted: true)
        let refused = try CommandLineTests.kiln(["baseline", "save", "p", partial.path, "--baselines-directory", store])
        #expect(refused.status == KilnExitCode.invalidInput.rawValue)
        #expect(refused.output.contains("partial"))
        let show = try CommandLineTests.kiln(["baseline", "show", "nightly", "--baselines-directory", store])
        #expect(show.status == 0 && show.output.contains("postgres.point-read"), "\(show.output)")
        let list = try CommandLineTests.kiln(["baseline", "list", "--baselines-directory", store])
        #expect(list.output.contains("nightly") && list.output.contains("nightly-1"), "\(list.output)")
        let named = try BaselineStore(root: URL(fileURLWithPath: store)).resolve("nightly")
        #expect(named.report?.identity.id == "nightly-1")

        let later = try RunFixture.make(in: root, id: "nightly-2", seed: 502, slowdown: ["kafka.produce": 1.3])
        let output = root.appendingPathComponent("trend.html")
        let trend = try CommandLineTests.kiln(["trend", run.path, later.path, partial.path, "-o", output.path])
        #expect(trend.status == 0, "\(trend.output)")
        let html = try String(contentsOf: output, encoding: .utf8)
        #expect(html.contains("Trend over 3 runs"))
        #expect(html.contains("p99 latency per run"))
        #expect(html.components(separatedBy: "<polyline").count - 1 >= 2 * RunFixture.operations.count)
        #expect(!html.contains("<script"))
    }
}
