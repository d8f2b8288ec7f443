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

struct BaselineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baseline",
        abstract: "Named baselines in Reports/baselines/ (commit them): save, show, list.",
        subcommands: [Save.self, Show.self, List.self]
    )

    struct Location: ParsableArguments {
        @Option(help: "Baselines directory (default: Reports/baselines of this checkout).")
        var baselinesDirectory: String?

        var store: BaselineStore {
            baselinesDirectory.map { BaselineStore(root: URL(fileURLWithPath: $0)) } ?? ReportInput.baselines
        }
    }

    struct Save: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy a run's report.json, timeline.jsonl, check.json, scenario.yaml and histograms as NAME.")

        @Argument(help: "Baseline name (letters, digits, '-', '_', '.').") var name: String
        @Argument(help: "Run directory.") var runDirectory: String
        @Flag(help: "Overwrite an existing baseline of that name.") var replace = false
        @Flag(help: "Save an interrupted or crashed run too.") var allowPartial = false
        @OptionGroup var location: Location

        func run() throws {
            try exiting {
                do {
                    let saved = try location.store.save(
                        name: name, run: URL(fileURLWithPath: runDirectory), replace: replace, allowPartial: allowPartial)
                    print("saved baseline \(saved.name) from run \(saved.runId) (\(saved.verdict?.rawValue ?? "-")) in "
                        + location.store.root.appendingPathComponent(saved.name).path)
                } catch {
                    throw Failure(code: .invalidInput, message: "\(error)")
                }
                return .ok
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a baseline's origin and its operations.")
        @Argument(help: "Baseline name.") var name: String
        @OptionGroup var location: Location

        func run() throws {
            try exiting {
                let store = location.store
                let metadata: BaselineStore.Metadata
                let run: RunData
                do {
                    metadata = try store.metadata(name)
                    run = try store.resolve(name)
                } catch {
                    throw Failure(code: .invalidInput, message: "\(error)")
                }
                print("baseline \(metadata.name): run \(metadata.runId), scenario \(metadata.scenario ?? "-"), kiln "
                    + "\(metadata.kilnRevision ?? "-"), verdict \(metadata.verdict?.rawValue ?? "-")")
                print("saved \(Date(timeIntervalSince1970: Double(metadata.savedAt) / 1000)) from \(metadata.source)")
                var table = [["PHASE", "OPERATION", "OPS/S", "P50 MS", "P99 MS", "ERRORS"]]
                for phase in run.report?.phases ?? [] {
                    for operation in phase.operations {
                        table.append([
                            phase.name, operation.name, String(format: "%.1f", operation.throughput),
                            operation.latencyMs.p50.map { String(format: "%.2f", $0) } ?? "-",
                            operation.latencyMs.p99.map { String(format: "%.2f", $0) } ?? "-",
                            String(operation.fail + operation.info),
                        ])
                    }
                }
                print(TextTable.render(table))
                return .ok
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List saved baselines.")
        @OptionGroup var location: Location

        func run() throws {
            try exiting {
                let all: [BaselineStore.Metadata]
                do {
                    all = try location.store.list()
                } catch {
                    throw Failure(code: .invalidInput, message: "\(error)")
                }
                var table = [["NAME", "RUN", "SCENARIO", "KILN", "VERDICT"]]
                for metadata in all {
                    table.append([
                        metadata.name, metadata.runId, metadata.scenario ?? "-", metadata.kilnRevision ?? "-",
                        metadata.verdict?.rawValue ?? "-",
                    ])
                }
                print(all.isEmpty ? "no baselines in \(location.store.root.path)" : TextTable.render(table))
                return .ok
            }
        }
    }
}
