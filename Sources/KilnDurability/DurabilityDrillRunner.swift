import Foundation
import KilnStores
import KilnData
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Runs one durability drill end to end, in-process (the `kiln run` adapter and the tests call this): builds the
/// dataset, creates the drill's work directory `/tmp/durability-<name>-<pid>` (its private servers' data; removed
/// afterwards), runs the drill, and writes `history.jsonl` and `durability.json` (the drill's own record), and the
/// run's `report.json`, `check.json`, `timeline.jsonl`, `report.html`, `summary.md` and `junit.xml`
/// (`DurabilityRunOutputs`) to `runDirectory`.
public enum DurabilityDrillRunner {
    /// The drill's work directory in this process: `/tmp/durability-<name>-<pid>`.
    public static func workDirectory(_ spec: DurabilityDrillSpec) -> URL {
        URL(fileURLWithPath: "/tmp/durability-\(spec.name)-\(getpid())")
    }

    /// The Redis-protocol addresses a drill may start a server at (for sweeping: their processes' titles name them).
    public static func privateAddresses(_ spec: DurabilityDrillSpec) -> [String] {
        [spec.stack.redis.primary.description, spec.stack.graph.endpoint.description]
    }

    public static func run(_ spec: DurabilityDrillSpec, runDirectory: URL, logger: Logger) throws -> DurabilityReport {
        let datasetSpec = try DatasetSpec.load(contentsOf: spec.datasetSpec)
        let dataset = try Dataset(spec: datasetSpec, seed: spec.seed, rows: spec.rows)
        try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
        for swept in DurabilityLeftovers.sweepAbandoned(name: spec.name, addresses: privateAddresses(spec)) {
            logger.warning("durability: removed what an earlier run left: \(swept)")
        }
        let work = workDirectory(spec)
        try? FileManager.default.removeItem(at: work)
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer {
            for _ in 0..<20 where FileManager.default.fileExists(atPath: work.path) {
                try? FileManager.default.removeItem(at: work)
                usleep(50_000)
            }
        }
        var history: WriteHistory?
        let startedAt = WallClock.micros() / 1000
        let report: DurabilityReport
        switch spec.kind {
        case .crashRestart:
            report = CrashRestartDrill(spec: spec, dataset: dataset, workDirectory: work, logger: logger).run { history = $0 }
        case .pgPITR:
            report = PITRDrill(spec: spec, dataset: dataset, workDirectory: work, logger: logger).run { history = $0 }
        }
        try history?.write(to: runDirectory.appendingPathComponent("history.jsonl"))
        try report.write(to: runDirectory.appendingPathComponent("durability.json"))
        let outputs = DurabilityRunOutputs(
            report, spec: spec, records: history?.records ?? [], id: runDirectory.lastPathComponent,
            startedAt: startedAt, endedAt: WallClock.micros() / 1000)
        try outputs.write(to: runDirectory, drillSummary: report.summary)
        if let text = try? String(contentsOf: spec.file, encoding: .utf8) {
            try? text.write(to: runDirectory.appendingPathComponent("scenario.yaml"), atomically: true, encoding: .utf8)
        }
        return report
    }
}
