import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnReport
import KilnScenario
import KilnStack

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Regenerate report.html, summary.md and junit.xml of a run directory (also a partial one).",
        discussion: """
            Reads report.json, timeline.jsonl, histograms/ and check.json (each optional: a crashed or interrupted run
            still gives a report, marked PARTIAL) and writes the three files into the run directory. With --baseline,
            report.html and summary.md also compare the run against it (as `kiln compare` does). Exit codes: 0 written
            (whatever the run's verdict); 64 not a run directory, or a bad --baseline/--limit.
            """
    )

    @Argument(help: "Run directory (Reports/runs/<id>).")
    var runDirectory: String

    @Option(help: "Baseline to compare against: a name in Reports/baselines, a run directory or a report.json.")
    var baseline: String?

    @OptionGroup var limits: LimitOptions

    func run() throws {
        try exiting {
            let run = try ReportInput.load(runDirectory)
            var comparison: ComparisonReport?
            if let baseline {
                let base = try ReportInput.resolve(baseline)
                comparison = RunComparison.compare(baseline: base, current: run, limits: try limits.resolve(base, run))
            }
            let written: [URL]
            do {
                written = try ReportWriters.writeAll(run, comparison: comparison)
            } catch {
                throw Failure(code: .invalidInput, message: "cannot write into \(run.directory.path): \(error.localizedDescription)")
            }
            let result = ReportResult.of(run)
            print("verdict: \(result.consoleVerdict)\(result.partial ? " (PARTIAL report)" : "")")
            for reason in result.reasons.prefix(10) { print("  \(reason)") }
            for file in written { print("written: \(file.path)") }
            return .ok
        }
    }
}

/// Where regression limits come from: `--scenario FILE`'s `regression:` block, else the current run's copy of its
/// scenario (scenario.yaml in the run directory), else the baseline's, else the defaults; `--limit` overrides.
struct LimitOptions: ParsableArguments {
    @Option(help: "Scenario whose `regression:` block sets the limits (default: the current run's scenario.yaml).")
    var scenario: String?

    @Option(name: .customLong("limit"), help: "Override a limit, e.g. p99=+20%, throughput=-10%, error_rate=+2%, alpha=0.05, min_samples=10 (repeatable).")
    var overrides: [String] = []

    func resolve(_ baseline: RunData, _ current: RunData) throws -> RegressionLimits {
        var limits = RegressionLimits.defaults
        let candidates = scenario.map { [URL(fileURLWithPath: $0)] }
            ?? [current.directory, baseline.directory].map { $0.appendingPathComponent("scenario.yaml") }
        for file in candidates where scenario != nil || FileManager.default.fileExists(atPath: file.path) {
            limits = try RegressionLimits.load(scenario: file)
            break
        }
        return try limits.overriding(overrides)
    }
}

struct TrendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trend",
        abstract: "One HTML page of throughput and p99 per operation across many runs, with each run's verdict.",
        discussion: "Runs are ordered by start time. Exit codes: 0 written; 64 a run directory is unreadable."
    )

    @Argument(help: "Run directories, report.json files or baseline names.")
    var runs: [String]

    @Option(name: .shortAndLong, help: "Output file.")
    var output = "trend.html"

    func run() throws {
        try exiting {
            guard !runs.isEmpty else { throw Failure(code: .invalidInput, message: "give at least one run directory") }
            let loaded = try runs.map { try ReportInput.resolve($0) }
            let url = URL(fileURLWithPath: output)
            do {
                try Data(TrendPage.html(loaded).utf8).write(to: url, options: .atomic)
            } catch {
                throw Failure(code: .invalidInput, message: "\(url.path): cannot write (\(error.localizedDescription))")
            }
            print("written: \(url.path) (\(loaded.count) runs)")
            return .ok
        }
    }
}
