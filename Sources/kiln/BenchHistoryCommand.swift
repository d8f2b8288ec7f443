import ArgumentParser
import Foundation
import KilnCore
import KilnRunner

extension BenchCommand {
    /// The history's write path (RunDirectory.appendHistory: one buffer per phase-second, one write) against the
    /// peer encoder, Foundation's JSONEncoder, on the same entries into the same kind of file; plus the
    /// string-concatenation writer Kiln used before `HistoryEntry` (kept here only as the "before" of BENCHMARKS.md).
    /// Every writer's file must decode back to the same entries, else the bench fails.
    struct History: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "history.jsonl write path: HistoryEntry's line writer vs JSONEncoder (and the old string writer).")

        @Option(help: "Entries written per trial.") var entries = 1_000_000
        @Option(help: "Trials per writer (interleaved); the medians are reported.") var trials = 3

        func run() throws {
            try exiting {
                guard (1...100_000_000).contains(entries), (1...50).contains(trials) else {
                    throw Failure(code: .invalidInput, message: "--entries must be 1...100M and --trials 1...50")
                }
                let batch = (0..<10_000).map { index in
                    HistoryEntry(
                        phase: "mixed", operation: index % 3 == 0 ? "redis.set" : "postgres.insert", worker: index % 8,
                        row: Int64(index) * 7, rows: 1, outcome: index % 50 == 0 ? .info : .ok,
                        errorClass: index % 50 == 0 ? "timeout" : nil, server: "127.0.0.21:16379",
                        intendedNanos: UInt64(index) * 1_000_123, startNanos: UInt64(index) * 1_000_200,
                        endNanos: UInt64(index) * 1_000_900)
                }
                let writers: [(String, ([HistoryEntry]) throws -> Data)] = [
                    ("HistoryEntry.appendJSONLine", HistoryBench.lineWriter),
                    ("JSONEncoder (peer)", HistoryBench.jsonEncoder),
                    ("string concatenation (before)", HistoryBench.stringConcatenation),
                ]
                var rates: [[Double]] = Array(repeating: [], count: writers.count)
                for _ in 0..<trials {
                    for (index, writer) in writers.enumerated() {
                        rates[index].append(try HistoryBench.measure(writer.1, batch: batch, entries: entries))
                    }
                }
                let medians = rates.map { $0.sorted()[$0.count / 2] }
                var table = [["WRITER", "entries/s (median of \(trials))", "vs JSONEncoder"]]
                for (index, writer) in writers.enumerated() {
                    table.append([writer.0, String(format: "%.0f", medians[index]), String(format: "%.2f", medians[index] / medians[1])])
                }
                print(TextTable.render(table))
                print(try HistoryBench.readRates(batch: batch, entries: entries))
                return .ok
            }
        }
    }
}
