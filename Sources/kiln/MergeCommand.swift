import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnLoad
import KilnReport
import KilnScenario

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge the run directories of a sharded run (kiln run --shard i/n) into one run directory.",
        discussion: """
            HDR histograms are added bucket by bucket (merged percentiles are those of all samples, never averaged),
            counts and per-second timelines summed, histories concatenated (each line tagged with its shard), and the
            scenario's thresholds and drills re-evaluated on the merged data; `kiln check` and `kiln report` then work
            on the merged directory as on a single run. Refuses (exit 64) shards of different scenarios, seeds,
            dataset sizes or shard counts, a duplicate or missing index. With --wait, waits until every shard's
            report.json says its run ended (a Kubernetes merge Job started beside the shards).
            Exit codes: the merged load's verdict — 0 passed, 2 a threshold failed, 3 interrupted or NOT CHECKED
            (a drill: run `kiln check` on the merged directory), 64 refused.
            """
    )

    @Argument(help: "The shards' run directories (every index 0..<n exactly once).")
    var shards: [String] = []

    @Option(name: .shortAndLong, help: "The merged run directory to create.")
    var output: String

    @Option(help: "The scenario file (default: the scenario file the shards recorded).")
    var scenario: String?

    @Option(help: "Wait up to this many seconds for every shard's run to end (report.json with ended_at).")
    var wait: Int = 0

    func run() throws {
        try exiting {
            guard !shards.isEmpty else { throw Failure(code: .invalidInput, message: "missing the shards' run directories") }
            guard wait >= 0, wait <= 7 * 86_400 else {
                throw Failure(code: .invalidInput, message: "--wait: expected 0...604800 seconds, found \(wait)")
            }
            let directories = shards.map { URL(fileURLWithPath: $0) }
            if wait > 0 { try Self.waitForShards(directories, seconds: wait) }
            let scenarioFile = try scenario.map { URL(fileURLWithPath: $0) } ?? Self.recordedScenario(directories[0])
            let loaded = try LoadScenario.load(contentsOf: scenarioFile, knownOperations: LoadRun.knownOperations(),
                knownSinks: LoadRun.knownSinks())
            let outputURL = URL(fileURLWithPath: output)
            var report: RunReport
            do throws(ShardMerge.Refusal) {
                report = try ShardMerge.merge(directories, into: outputURL, scenario: loaded)
            } catch {
                throw Failure(code: .invalidInput, message: "merge: \(error)")
            }
            if let faults = report.faults, !faults.isEmpty {
                let samples = (try? RunData.load(outputURL))?.timeline ?? []
                let proxied = (try? MergeManifest.read(from: outputURL))?.proxied ?? [:]
                report.drills = DrillMetrics.compute(faults: faults, report: report, timeline: samples, proxied: proxied)
                let data = try RunReport.encoder.encode(report)
                try data.write(to: outputURL.appendingPathComponent("report.json"), options: .atomic)
            }
            if report.needsCheck {
                CheckRun.recordNotChecked(
                    "the merged run is not checked yet: kiln check \(outputURL.path)", in: outputURL)
            }
            ReportInput.writeOutputs(outputURL)
            print(RunSummary.text(report))
            print("merged \(shards.count) shards into \(outputURL.path)")
            guard let judged = try? RunData.load(outputURL) else { return .internalError }
            let result = ReportResult.of(judged)
            print("verdict: \(result.consoleVerdict)" + result.reasons.map { "\n  \($0)" }.joined())
            return result.exitCode
        }
    }

    /// The scenario file the first shard ran (report.json's identity), which must still be readable.
    static func recordedScenario(_ directory: URL) throws -> URL {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent("report.json")),
            let report = try? RunReport.decode(data)
        else { throw Failure(code: .invalidInput, message: "merge: \(directory.path): no readable report.json") }
        return URL(fileURLWithPath: report.identity.scenarioFile)
    }

    /// Polls every second until each shard's report.json has `ended_at`; a shard still missing then is a refusal.
    static func waitForShards(_ directories: [URL], seconds: Int) throws {
        let deadline = Date().addingTimeInterval(Double(seconds))
        while true {
            let pending = directories.filter { directory in
                guard let data = try? Data(contentsOf: directory.appendingPathComponent("report.json")),
                    let report = try? RunReport.decode(data)
                else { return true }
                return report.endedAt == nil
            }
            if pending.isEmpty { return }
            if Date() >= deadline {
                throw Failure(
                    code: .unknown,
                    message: "merge: after \(seconds) s these shards have not ended: \(pending.map(\.path).joined(separator: ", "))")
            }
            Thread.sleep(forTimeInterval: 1)
        }
    }
}
