import Foundation
import KilnCheck
import KilnCore
import KilnReport

/// A durability drill's result as an ordinary run directory, so `kiln report` and `kiln compare` read it like any
/// run: `report.json` (schema `kiln.report/1`), `check.json`, `timeline.jsonl`, and through the KilnReport writers
/// `report.html`, `summary.md` and `junit.xml`. `durability.json` stays the drill's own full record.
///
/// How the drill's verdict maps onto a run's parts (judged again by `RunResults`, so every writer agrees):
/// - each step is one `drills[]` entry with its measured numbers: the crash (restart time, loss measured against
///   the promise's window), each backup (seconds, bytes), each restore (RTO, restore time), the corrupted backup;
///   a broken promise or an uncaught corrupted backup is a `failed` drill (exit 2), a step that did not run or had
///   no evidence an `unknown` one (exit 3) — never `passed`;
/// - what the restarted or restored server holds is a check place (`check.json`): lost, phantom and mismatched
///   transactions are anomalies (exit 1); a place without evidence is `unknown`.
/// If the parts ever judged milder than the drill itself, one more `unknown`/`failed` entry (or an `invalid` place)
/// carries the drill's reasons: the run's verdict is never better than the drill's.
public struct DurabilityRunOutputs: Sendable {
    public var report: RunReport
    public var check: CheckReport
    public var timeline: [TimelineSample]

    public static let phase = "drill-writes"

    public init(
        _ drill: DurabilityReport, spec: DurabilityDrillSpec, records: [WriteRecord], id: String, startedAt: Int64,
        endedAt: Int64
    ) {
        let store = spec.kind == .pgPITR ? "postgres" : spec.server.rawValue
        let operationName = "\(store).write"
        var drills: [RunReport.Drill] = []
        var places: [PlaceResult] = []

        if let crash = drill.crash {
            let judged = crash.judged
            let promiseWindow = Double(judged.killedMicros - judged.boundMicros) / 1000
            let metrics: [String: Double] = [
                "restart_s": crash.restartSeconds,
                "rto_ms": crash.restartSeconds * 1000,
                "acknowledged": Double(judged.acknowledged),
                "lost": Double(judged.lost),
                "lost_within_promise": Double(judged.lostWithinPromise),
                "lost_beyond_promise": Double(judged.beyondPromise),
                "phantom": Double(judged.phantom),
                "mismatched": Double(judged.mismatched),
                "measured_loss_window_ms": Double(judged.lossWindowMicros) / 1000,
                "promised_loss_window_ms": promiseWindow,
                "killed_pids": Double(crash.killedPIDs.count),
            ]
            let verdict: KilnCore.DrillVerdict
            var reason: String?
            if judged.beyondPromise > 0 {
                verdict = .failed
                reason = "\(judged.beyondPromise) acknowledged write(s) lost beyond the promise (\(crash.promise))"
            } else if drill.verdict == .unknown || judged.acknowledged == 0 {
                verdict = .unknown
                reason = drill.reasons.joined(separator: "; ")
            } else {
                verdict = .passed
            }
            drills.append(RunReport.Drill(
                name: "\(crash.server) \(crash.setting): kill -9 and restart", fault: "crash-restart", store: store,
                verdict: verdict, reason: reason, metrics: metrics))
            var counts: [String: Int64] = [:]
            if judged.phantom > 0 { counts[Anomaly.Kind.phantom.rawValue] = Int64(judged.phantom) }
            if judged.mismatched > 0 { counts[Anomaly.Kind.corrupted.rawValue] = Int64(judged.mismatched) }
            let evidence = judged.acknowledged > 0 && drill.verdict != .unknown
            places.append(PlaceResult.judged(
                place: "\(store).after-restart", source: "durability drill \(drill.drill)",
                validity: !counts.isEmpty ? .invalid : (evidence ? .valid : .unknown), expected: Int64(judged.acknowledged),
                indeterminate: Int64(drill.writes.info), failedWrites: Int64(drill.writes.fail), scanned: 0,
                indeterminatePresent: 0, counts: counts,
                anomalies: Self.anomalies(judged.findings.filter { $0.kind != .lost }),
                error: evidence ? nil : drill.reasons.joined(separator: "; "), seconds: 0))
        } else if spec.kind == .crashRestart {
            drills.append(RunReport.Drill(
                name: "\(spec.server.rawValue) \(spec.setting.rawValue): kill -9 and restart", fault: "crash-restart",
                store: store, verdict: .unknown, reason: Self.notRun(drill)))
        }

        for backup in drill.backups ?? [] {
            drills.append(RunReport.Drill(
                name: "backup \(backup.type) \(backup.label)", fault: "pgbackrest-backup", store: store, verdict: .passed,
                metrics: [
                    "seconds": backup.seconds, "database_bytes": Double(backup.databaseBytes),
                    "delta_bytes": Double(backup.deltaBytes), "repository_bytes": Double(backup.repositoryBytes),
                    "repository_delta_bytes": Double(backup.repositoryDeltaBytes),
                ]))
        }
        for restore in drill.restores ?? [] {
            let name = String(format: "restore to +%.1f s", restore.offsetSeconds)
            var metrics: [String: Double] = [
                "offset_s": restore.offsetSeconds, "restore_s": restore.restoreSeconds,
                "rto_ms": restore.rtoSeconds * 1000,
            ]
            guard let check = restore.check else {
                drills.append(RunReport.Drill(
                    name: name, fault: "pg-pitr", store: store, verdict: .unknown,
                    reason: "not checked: \(restore.error ?? "the restore did not run")", metrics: metrics))
                places.append(Self.unknownPlace("\(store).\(name)", drill, error: restore.error ?? "the restore did not run"))
                continue
            }
            metrics["required"] = Double(check.required)
            metrics["present"] = Double(check.present)
            metrics["lost"] = Double(check.lost)
            metrics["phantom"] = Double(check.phantom)
            metrics["mismatched"] = Double(check.mismatched)
            metrics["undecided"] = Double(check.undecided)
            let evidence = check.required > 0
            drills.append(RunReport.Drill(
                name: name, fault: "pg-pitr", store: store, verdict: evidence ? .passed : .unknown,
                reason: evidence ? nil : "no write was acknowledged before the target (no evidence)", metrics: metrics))
            var counts: [String: Int64] = [:]
            if check.lost > 0 { counts[Anomaly.Kind.lost.rawValue] = Int64(check.lost) }
            if check.phantom > 0 { counts[Anomaly.Kind.phantom.rawValue] = Int64(check.phantom) }
            if check.mismatched > 0 { counts[Anomaly.Kind.corrupted.rawValue] = Int64(check.mismatched) }
            places.append(PlaceResult.judged(
                place: "\(store).\(name)", source: "durability drill \(drill.drill) (target \(restore.target))",
                validity: !counts.isEmpty ? .invalid : (evidence ? .valid : .unknown), expected: Int64(check.required),
                indeterminate: Int64(check.undecided), failedWrites: Int64(drill.writes.fail), scanned: Int64(check.present),
                indeterminatePresent: Int64(check.undecidedPresent), counts: counts,
                anomalies: Self.anomalies(check.findings),
                error: evidence ? nil : "no write was acknowledged before the target", seconds: 0))
        }
        if spec.kind == .pgPITR, drill.restores == nil {
            drills.append(RunReport.Drill(
                name: "restores", fault: "pg-pitr", store: store, verdict: .unknown, reason: Self.notRun(drill)))
        }
        if let corruption = drill.corruption {
            drills.append(RunReport.Drill(
                name: "corrupted backup", fault: "backup-corruption", store: store,
                verdict: corruption.caught ? .passed : .failed,
                reason: corruption.caught ? nil : "a changed byte in \(corruption.file) was caught by nothing",
                metrics: [
                    "verify_flagged": corruption.verify.valid ? 0 : 1, "restore_failed": corruption.restoreFailed ? 1 : 0,
                    "invalid_files": Double(corruption.verify.invalidFiles.count),
                ]))
        } else if spec.kind == .pgPITR, spec.corruptBackup {
            drills.append(RunReport.Drill(
                name: "corrupted backup", fault: "backup-corruption", store: store, verdict: .unknown,
                reason: "the corrupted-backup step did not run"))
        }
        if places.isEmpty { places.append(Self.unknownPlace("\(store).ledger", drill, error: Self.notRun(drill))) }

        // Never milder than the drill: add what the parts above missed.
        let reasons = drill.reasons.isEmpty ? "the drill's verdict is \(drill.verdict.rawValue)" : drill.reasons.joined(separator: "; ")
        func judged() -> RunVerdict {
            RunResults(check: Validity.worst(places.map(\.validity)), drills: drills.map(\.verdict)).verdict
        }
        switch (drill.verdict, judged()) {
        case (.anomaly, let verdict) where verdict != .anomaly:
            places.append(PlaceResult.judged(
                place: "\(store).drill", source: "durability drill \(drill.drill)", validity: .invalid, expected: 0,
                indeterminate: 0, failedWrites: 0, scanned: 0, indeterminatePresent: 0, counts: ["drill": 1],
                anomalies: [], error: reasons, seconds: 0))
        case (.failed, .passed), (.failed, .unknown):
            drills.append(RunReport.Drill(name: drill.drill, fault: drill.kind, store: store, verdict: .failed, reason: reasons))
        case (.unknown, .passed):
            drills.append(RunReport.Drill(name: drill.drill, fault: drill.kind, store: store, verdict: .unknown, reason: reasons))
        default:
            break
        }

        let operation = Self.operation(operationName, store: store, records: records)
        timeline = Self.timeline(operationName, records: records)
        let identity = RunReport.Identity(
            id: id, scenario: spec.name, scenarioFile: spec.file.path, datasetSpec: spec.datasetSpec.path, seed: spec.seed,
            datasetRows: spec.rows, stack: spec.stack.name, namespace: "", kilnRevision: nil,
            host: ProcessInfo.processInfo.hostName, cores: ProcessInfo.processInfo.activeProcessorCount)
        let firstInvoke = records.map(\.invokedMicros).min()
        let results = RunResults(check: Validity.worst(places.map(\.validity)), drills: drills.map(\.verdict))
        var report = RunReport(
            identity: identity, startedAt: startedAt, endedAt: endedAt, complete: true, interrupted: false,
            phases: [
                RunReport.Phase(
                    name: Self.phase, executor: "durability", workers: spec.workers,
                    startedAt: firstInvoke.map { $0 / 1000 } ?? startedAt, seconds: Self.span(records),
                    complete: true, plannedOps: nil, operations: [operation], thresholds: [])
            ],
            verdict: results.verdict, exitCode: results.exitCode.rawValue, storeRows: [:])
        report.drills = drills
        report.checkRequired = true
        self.report = report
        check = CheckReport(
            run: id, datasetRows: spec.rows, places: places, validity: Validity.worst(places.map(\.validity)), seconds: 0)
    }

    /// Writes report.json, check.json and timeline.jsonl, then report.html, summary.md and junit.xml through the
    /// KilnReport writers, and appends the drill's own summary to summary.md.
    public func write(to directory: URL, drillSummary: String) throws {
        try RunReport.encoder.encode(report).write(to: directory.appendingPathComponent("report.json"), options: .atomic)
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(check).write(to: directory.appendingPathComponent("check.json"), options: .atomic)
        let compact = JSONEncoder()
        compact.keyEncodingStrategy = .convertToSnakeCase
        compact.outputFormatting = [.sortedKeys]
        var lines = ""
        for sample in timeline {
            let values = TimelineValues(
                ok: sample.ok, fail: sample.fail, info: sample.info, rows: sample.rows, p50Ms: sample.p50Ms,
                p99Ms: sample.p99Ms, maxMs: sample.maxMs)
            let line = TimelineLine(phase: sample.phase, second: sample.second, ops: [sample.operation: values])
            lines += String(decoding: try compact.encode(line), as: UTF8.self) + "\n"
        }
        try Data(lines.utf8).write(to: directory.appendingPathComponent("timeline.jsonl"), options: .atomic)
        let run = try RunData.load(directory)
        try ReportWriters.writeAll(run)
        let summary = directory.appendingPathComponent("summary.md")
        var text = (try? String(contentsOf: summary, encoding: .utf8)) ?? ""
        text += "\n## Durability drill\n\n```\n\(drillSummary)\n```\n"
        try text.write(to: summary, atomically: true, encoding: .utf8)
    }

    private struct TimelineValues: Encodable {
        var ok, fail, info, rows: Int64
        var p50Ms, p99Ms, maxMs: Double?
    }

    private struct TimelineLine: Encodable {
        var phase: String
        var second: Int
        var ops: [String: TimelineValues]
    }

    static func notRun(_ drill: DurabilityReport) -> String {
        drill.reasons.isEmpty ? "the step did not run" : drill.reasons.joined(separator: "; ")
    }

    static func unknownPlace(_ place: String, _ drill: DurabilityReport, error: String) -> PlaceResult {
        PlaceResult.judged(
            place: place, source: "durability drill \(drill.drill)", validity: .unknown, expected: 0, indeterminate: 0,
            failedWrites: 0, scanned: 0, indeterminatePresent: 0, counts: [:], anomalies: [], error: error, seconds: 0)
    }

    static func anomalies(_ findings: [LedgerFinding]) -> [Anomaly] {
        var kept: [Anomaly.Kind: Int] = [:]
        var result: [Anomaly] = []
        for finding in findings {
            let kind: Anomaly.Kind = switch finding.kind {
            case .lost: .lost
            case .phantom: .phantom
            case .mismatched: .corrupted
            }
            guard kept[kind, default: 0] < PlaceResult.keptPerKind else { continue }
            kept[kind, default: 0] += 1
            result.append(Anomaly.judged(kind: kind, txnID: finding.txnID, detail: finding.detail))
        }
        return result
    }

    /// Seconds from the first invocation to the last completion (0 without writes).
    static func span(_ records: [WriteRecord]) -> Double {
        guard let first = records.map(\.invokedMicros).min(), let last = records.map(\.completedMicros).max() else { return 0 }
        return Double(max(0, last - first)) / 1e6
    }

    /// The `q` quantile (nearest rank) of sorted values.
    static func quantile(_ sorted: [Double], _ q: Double) -> Double? {
        guard !sorted.isEmpty else { return nil }
        let rank = Int((q * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(sorted.count - 1, max(0, rank))]
    }

    static func operation(_ name: String, store: String, records: [WriteRecord]) -> RunReport.Operation {
        let counts = WriteCounts(records)
        var errors: [String: Int64] = [:]
        for record in records where record.outcome != .ok { errors[record.error ?? record.outcome.rawValue, default: 0] += 1 }
        let latencies = records.filter { $0.outcome == .ok }.map { Double($0.completedMicros - $0.invokedMicros) / 1000 }.sorted()
        let latency = RunReport.Latency(
            p50: quantile(latencies, 0.5), p90: quantile(latencies, 0.9), p95: quantile(latencies, 0.95),
            p99: quantile(latencies, 0.99), p999: quantile(latencies, 0.999), p9999: quantile(latencies, 0.9999),
            max: latencies.last, mean: latencies.isEmpty ? nil : latencies.reduce(0, +) / Double(latencies.count))
        let seconds = span(records)
        let throughput = seconds > 0 ? Double(counts.ok + counts.fail + counts.info) / seconds : 0
        return RunReport.Operation(
            name: name, store: store, kind: "write", ok: Int64(counts.ok), fail: Int64(counts.fail),
            info: Int64(counts.info), errors: errors, dropped: 0, late: 0, rows: Int64(counts.ok), throughput: throughput,
            rowsPerSecond: seconds > 0 ? Double(counts.ok) / seconds : nil, latencyMs: latency, serviceMs: latency)
    }

    /// Per-second samples of the writes (by completion second since the first invocation), for `kiln compare`.
    static func timeline(_ name: String, records: [WriteRecord]) -> [TimelineSample] {
        guard let first = records.map(\.invokedMicros).min() else { return [] }
        var bySecond: [Int: [WriteRecord]] = [:]
        for record in records { bySecond[Int((record.completedMicros - first) / 1_000_000) + 1, default: []].append(record) }
        return bySecond.keys.sorted().map { second in
            let group = bySecond[second]!
            let counts = WriteCounts(group)
            let latencies = group.filter { $0.outcome == .ok }.map { Double($0.completedMicros - $0.invokedMicros) / 1000 }.sorted()
            return TimelineSample(
                phase: phase, second: second, operation: name, ok: Int64(counts.ok), fail: Int64(counts.fail),
                info: Int64(counts.info), rows: Int64(counts.ok), p50Ms: quantile(latencies, 0.5),
                p99Ms: quantile(latencies, 0.99), maxMs: latencies.last)
        }
    }
}
