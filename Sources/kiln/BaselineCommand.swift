import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnReport

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
