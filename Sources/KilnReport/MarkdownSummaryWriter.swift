import Foundation
import KilnCore

/// `summary.md`: short enough for a CI job summary (GitHub's `$GITHUB_STEP_SUMMARY`): verdict and reasons, one
/// table row per operation, thresholds, checkers, drills, faults and the baseline comparison's regressions.
public struct MarkdownSummaryWriter: ReportWriter {
    public let fileName = "summary.md"
    private var context: ReportContext?

    public init() {}

    public mutating func start(_ run: ReportContext) { context = run }
    public mutating func add(_ samples: [TimelineSample]) {}

    public func finish(_ result: ReportResult) -> Data {
        guard let context else { return Data() }
        let run = context.run
        var lines: [String] = []
        let icon = result.verdict == .passed
            ? "✅" : (result.partial && result.verdict == .partial) || result.verdict == .notChecked ? "⚠️" : "❌"
        lines.append("# \(icon) Kiln run `\(run.id)`: \(result.title)")
        lines.append("")
        if let reason = result.notChecked {
            lines.append("> **NOT CHECKED** — \(Self.cell(reason)): the stores were not compared with the oracle.")
            lines.append("")
        }
        if let reason = run.partialReason {
            lines.append("> **PARTIAL REPORT** — \(reason).")
            lines.append("")
        }
        if let report = run.report {
            let identity = report.identity
            lines.append(
                "Scenario `\(identity.scenario)` · dataset \(identity.datasetRows) rows, seed \(identity.seed) · stack "
                    + "\(identity.stack) · kiln \(identity.kilnRevision ?? "unknown") · \(identity.host) "
                    + "(\(identity.cores) cores) · started \(Format.date(report.startedAt)) · exit code "
                    + "\(result.exitCode.rawValue)")
            lines.append("")
        }
        if !result.reasons.isEmpty {
            for reason in result.reasons.prefix(20) { lines.append("- \(Self.cell(reason))") }
            if result.reasons.count > 20 { lines.append("- … \(result.reasons.count - 20) more") }
            lines.append("")
        }
        for phase in run.report?.phases ?? [] {
            lines.append(
                "## Phase `\(phase.name)` (\(phase.executor), \(String(format: "%.1f", phase.seconds)) s"
                    + "\(phase.complete ? "" : ", **incomplete**"))")
            lines.append("")
            lines.append("| operation | ok | fail | info | dropped | ops/s | p50 ms | p99 ms | p99.9 ms | max ms |")
            lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for operation in phase.operations {
                lines.append(
                    "| `\(operation.name)` | \(operation.ok) | \(operation.fail) | \(operation.info) | "
                        + "\(operation.dropped) | \(Format.number(operation.throughput)) | "
                        + "\(Format.ms(operation.latencyMs.p50)) | \(Format.ms(operation.latencyMs.p99)) | "
                        + "\(Format.ms(operation.latencyMs.p999)) | \(Format.ms(operation.latencyMs.max)) |")
            }
            if !phase.thresholds.isEmpty {
                lines.append("")
                for verdict in phase.thresholds {
                    lines.append(
                        "- \(verdict.passed ? "✅" : "❌") `\(verdict.scope)`: `\(verdict.expression)` (observed "
                            + "\(verdict.observedText))")
                }
            }
            lines.append("")
        }
        if let check = run.check {
            lines.append("## Checkers: \(check.validity.rawValue)")
            lines.append("")
            lines.append("| place | result | expected | scanned | anomalies |")
            lines.append("|---|---|---:|---:|---|")
            for place in check.places {
                lines.append(
                    "| `\(place.place)` | \(place.validity.rawValue) | \(place.expected) | \(place.scanned) | "
                        + "\(Self.cell(place.error ?? CheckSummary.counts(place))) |")
            }
            lines.append("")
            lines += TransactionalExplanation.markdown(check.places)
        }
        if let drills = run.report?.drills, !drills.isEmpty {
            lines.append("## Drills")
            lines.append("")
            lines.append("| drill | store | verdict | metrics |")
            lines.append("|---|---|---|---|")
            for drill in drills {
                let metrics = drill.metrics.sorted { $0.key < $1.key }.map { "\($0.key) \(Format.number($0.value))" }
                // Before its check a drill has passed only its availability part: never shown as `passed`.
                let verdict = result.notChecked != nil && drill.verdict == .passed ? "not checked" : drill.verdict.rawValue
                lines.append(
                    "| \(Self.cell(drill.name)) | \(drill.store) | \(verdict) | \(metrics.joined(separator: ", ")) |")
            }
            lines.append("")
        }
        if let faults = run.report?.faults, !faults.isEmpty {
            lines.append("## Faults")
            lines.append("")
            lines.append("| fault | kind | target | started | stopped | verified |")
            lines.append("|---|---|---|---|---|---|")
            for fault in faults {
                lines.append(
                    "| \(Self.cell(fault.name)) | \(fault.kind) | \(Self.cell(fault.target)) | "
                        + "\(Format.date(fault.startedAt)) | \(Format.date(fault.stoppedAt)) | \(Self.verifiedCell(fault)) |")
            }
            lines.append("")
        }
        if let comparison = context.comparison {
            lines.append("## Against baseline `\(comparison.baseline)`: \(comparison.verdict.rawValue)")
            lines.append("")
            let notable = comparison.rows.filter { $0.verdict == .regressed || $0.verdict == .improved }
            if notable.isEmpty {
                lines.append("No significant change beyond the limits.")
            } else {
                lines.append("| phase | operation | metric | baseline | current | change | verdict |")
                lines.append("|---|---|---|---:|---:|---:|---|")
                for row in notable {
                    lines.append(
                        "| \(row.phase) | `\(row.operation)` | \(row.metric.rawValue) | \(Format.number(row.baseline)) | "
                            + "\(Format.number(row.current)) | \(Format.percent(row.change)) | "
                            + "\(row.verdict == .regressed ? "🔻 regressed" : "🔺 improved") |")
                }
            }
            lines.append("")
        }
        for problem in run.problems { lines.append("_note: \(Self.cell(problem))_") }
        return Data((lines.joined(separator: "\n") + "\n").utf8)
    }

    /// Keeps a table cell on one line and its pipes literal.
    /// A fault's `verified` cell: a shard's planned-only entry says which shard ran it, never a verification.
    static func verifiedCell(_ fault: RunReport.Fault) -> String {
        guard fault.ranHere else { return "not run here (shard \(fault.runByShard.map(String.init) ?? "?") runs it)" }
        return fault.runByShard.map { "\(fault.verified) (shard \($0))" } ?? "\(fault.verified)"
    }

    static func cell(_ text: String) -> String {
        text.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
    }
}
