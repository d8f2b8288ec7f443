import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnReport

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare a run against a baseline per phase, operation and metric; exit 2 on a regression.",
        discussion: """
            Metrics: throughput, p50, p99 and error_rate, each from the per-second samples of timeline.jsonl. A change
            is `regressed` (or `improved`) only when the samples differ significantly (two-sided Mann-Whitney U,
            p < alpha) AND the change of their medians reaches the limit; `unchanged` otherwise; `inconclusive` with
            fewer than min_samples seconds on either side. Limits: the scenario's `regression:` block (defaults p50/p99
            +10%, throughput -5%, error_rate +1 percentage point, alpha 0.01, min_samples 5), overridable with --limit.
            BASELINE and CURRENT are run directories, report.json files, or names saved with `kiln baseline save`.
            Several BASELINE runs (kiln compare B1 B2 B3 CURRENT) pool their samples, and a change must also reach the
            limit against the worst of them: the run-to-run drift of a noisy machine, which the baseline runs show,
            is then `unchanged` rather than a false regression. Nightly use: keep the last 3-5 good runs as baseline.
            Exit codes: 0 no regression; 2 at least one regression; 64 bad input.
            """
    )

    @Argument(help: "BASELINE... CURRENT: one or more baseline runs (run directories, report.json files or baseline names), then the current run.")
    var runs: [String]

    @OptionGroup var limits: LimitOptions

    @Flag(help: "Print the comparison as JSON (schema kiln.compare/1).")
    var json = false

    @Flag(help: "Print only rows that are not unchanged.")
    var changesOnly = false

    func run() throws {
        try exiting {
            guard runs.count >= 2, let current = runs.last else {
                throw Failure(code: .invalidInput, message: "expected BASELINE... CURRENT (at least two runs), found \(runs.count)")
            }
            let bases = try runs.dropLast().map { try ReportInput.resolve($0) }
            let run = try ReportInput.resolve(current)
            var comparison = RunComparison.compare(
                baselines: bases, current: run, limits: try limits.resolve(bases[0], run))
            if json {
                let encoder = JSONEncoder()
                encoder.keyEncodingStrategy = .convertToSnakeCase
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(comparison), as: UTF8.self))
            } else {
                if changesOnly { comparison.rows = comparison.rows.filter { $0.verdict != .unchanged } }
                print(comparison.table)
            }
            return comparison.verdict == .regressed ? .thresholdFailed : .ok
        }
    }
}
