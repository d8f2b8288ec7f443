import Foundation
import KilnCore
import KilnScenario

/// `kiln compare`'s result (`--json` prints it; schema `kiln.compare/1`). One row per phase, operation and metric.
public struct ComparisonReport: Codable, Sendable {
    public static let schemaVersion = "kiln.compare/1"

    public enum Verdict: String, Codable, Sendable, CaseIterable {
        case regressed, improved, unchanged, inconclusive
    }

    public enum Metric: String, Codable, Sendable, CaseIterable {
        case throughput, p50, p99, errorRate = "error_rate"

        /// True when a larger value is worse.
        var higherIsWorse: Bool { self != .throughput }
    }

    public struct Row: Codable, Sendable {
        public var phase: String
        public var operation: String
        public var metric: Metric
        /// Median of the per-second samples (throughput: ops/s; p50/p99: ms; error_rate: fraction); falls back to
        /// report.json's whole-phase value when the timeline has no samples.
        public var baseline: Double?
        public var current: Double?
        /// Relative change of the medians (error_rate: absolute change of the fraction).
        public var change: Double?
        public var pValue: Double?
        public var baselineSamples: Int
        public var currentSamples: Int
        /// The limit the change was held against (a positive fraction, in the direction of a regression).
        public var limit: Double
        public var verdict: Verdict
        public var note: String?
    }

    public var schema = ComparisonReport.schemaVersion
    public var baseline: String
    public var current: String
    public var limits: RegressionLimits
    public var rows: [Row]
    /// `regressed` if any row regressed; otherwise `improved` if any improved; `unchanged` if any row could be
    /// decided; `inconclusive` when none could.
    public var verdict: Verdict

    public var regressions: [Row] { rows.filter { $0.verdict == .regressed } }
}

/// Compares two runs per phase, operation and metric. Noise-aware: a change counts only when the per-second
/// samples differ significantly (two-sided Mann-Whitney U, `alpha`) AND the change of their medians reaches the
/// limit in the bad (regressed) or good (improved) direction. Phases are matched by name, operations by name.
///
/// Several baseline runs (`compare(baselines:…)`) pool their per-second samples for the test, and a change must
/// also reach the limit against the baseline run that is worst (for `regressed`) or best (for `improved`) on that
/// metric: run-to-run drift of this machine that the baseline runs already show is `unchanged`, not a regression.
public enum RunComparison {
    public static func compare(baseline: RunData, current: RunData, limits: RegressionLimits) -> ComparisonReport {
        compare(baselines: [baseline], current: current, limits: limits)
    }

    public static func compare(baselines: [RunData], current: RunData, limits: RegressionLimits) -> ComparisonReport {
        precondition(!baselines.isEmpty, "compare needs at least one baseline run")
        var rows: [Row] = []
        let baseKeys = baselines.flatMap(keys).reduce(into: [Key]()) { if !$0.contains($1) { $0.append($1) } }
        let currentKeys = keys(current)
        for key in currentKeys {
            for metric in ComparisonReport.Metric.allCases {
                guard baseKeys.contains(where: { $0 == key }) else {
                    rows.append(
                        Row(
                            phase: key.phase, operation: key.operation, metric: metric, baseline: nil,
                            current: nil, change: nil, pValue: nil, baselineSamples: 0, currentSamples: 0,
                            limit: limit(metric, limits), verdict: .inconclusive, note: "not in the baseline"))
                    continue
                }
                rows.append(row(key, metric, baselines: baselines, current: current, limits: limits))
            }
        }
        for key in baseKeys where !currentKeys.contains(where: { $0 == key }) {
            rows.append(
                Row(
                    phase: key.phase, operation: key.operation, metric: .throughput, baseline: nil, current: nil,
                    change: nil, pValue: nil, baselineSamples: 0, currentSamples: 0, limit: limits.throughput,
                    verdict: .inconclusive, note: "not in the current run"))
        }
        let verdicts = Set(rows.map(\.verdict))
        let verdict: ComparisonReport.Verdict =
            verdicts.contains(.regressed)
            ? .regressed
            : verdicts.contains(.improved) ? .improved : verdicts.contains(.unchanged) ? .unchanged : .inconclusive
        return ComparisonReport(
            baseline: baselines.map(\.id).joined(separator: "+"), current: current.id, limits: limits, rows: rows,
            verdict: verdict)
    }

    typealias Row = ComparisonReport.Row
    struct Key: Equatable {
        var phase: String
        var operation: String
    }

    /// (phase, operation) pairs in report order, else in timeline order.
    static func keys(_ run: RunData) -> [Key] {
        var keys: [Key] = []
        for phase in run.report?.phases ?? [] {
            for operation in phase.operations where !keys.contains(Key(phase: phase.name, operation: operation.name)) {
                keys.append(Key(phase: phase.name, operation: operation.name))
            }
        }
        for sample in run.timeline where !keys.contains(Key(phase: sample.phase, operation: sample.operation)) {
            keys.append(Key(phase: sample.phase, operation: sample.operation))
        }
        return keys
    }

    static func limit(_ metric: ComparisonReport.Metric, _ limits: RegressionLimits) -> Double {
        switch metric {
        case .throughput: limits.throughput
        case .p50: limits.p50
        case .p99: limits.p99
        case .errorRate: limits.errorRate
        }
    }

    /// Per-second samples of one metric. The first and last second of a phase are left out when there are more
    /// than four: they cover a part-second (start-up, the tail of the last ops) and skew throughput.
    static func samples(_ run: RunData, _ key: Key, _ metric: ComparisonReport.Metric) -> [Double] {
        var series = run.timeline.filter { $0.phase == key.phase && $0.operation == key.operation }
        if series.count > 4 {
            series.removeFirst()
            series.removeLast()
        }
        return series.compactMap { sample in
            switch metric {
            case .throughput: Double(sample.completed)
            case .p50: sample.p50Ms
            case .p99: sample.p99Ms
            case .errorRate:
                sample.completed == 0 ? nil : Double(sample.fail + sample.info) / Double(sample.completed)
            }
        }
    }

    /// report.json's whole-phase value (used when the timeline has no samples for the operation).
    static func aggregate(_ run: RunData, _ key: Key, _ metric: ComparisonReport.Metric) -> Double? {
        guard let phase = run.report?.phases.first(where: { $0.name == key.phase }),
            let operation = phase.operations.first(where: { $0.name == key.operation })
        else { return nil }
        switch metric {
        case .throughput: return operation.throughput
        case .p50: return operation.latencyMs.p50
        case .p99: return operation.latencyMs.p99
        case .errorRate:
            let completed = operation.ok + operation.fail + operation.info
            return completed == 0 ? nil : Double(operation.fail + operation.info) / Double(completed)
        }
    }

    static func row(
        _ key: Key, _ metric: ComparisonReport.Metric, baselines: [RunData], current: RunData, limits: RegressionLimits
    ) -> Row {
        let perRun = baselines.map { samples($0, key, metric) }
        let before = perRun.flatMap { $0 }
        let after = samples(current, key, metric)
        let baseValue = RankTest.median(before) ?? baselines.lazy.compactMap { aggregate($0, key, metric) }.first
        let currentValue = RankTest.median(after) ?? aggregate(current, key, metric)
        let limit = limit(metric, limits)
        var row = Row(
            phase: key.phase, operation: key.operation, metric: metric, baseline: baseValue, current: currentValue,
            change: nil, pValue: nil, baselineSamples: before.count, currentSamples: after.count, limit: limit,
            verdict: .inconclusive, note: nil)
        if let baseValue, let currentValue {
            if metric == .errorRate {
                row.change = currentValue - baseValue
            } else if baseValue > 0 {
                row.change = currentValue / baseValue - 1
            }
        }
        guard before.count >= limits.minSamples, after.count >= limits.minSamples else {
            row.note = "fewer than \(limits.minSamples) per-second samples"
            return row
        }
        guard let change = row.change else {
            row.note = "baseline is 0"
            return row
        }
        let p = RankTest.mannWhitneyP(before, after)
        row.pValue = p
        let worse = metric.higherIsWorse ? change : -change
        if p < limits.alpha, worse >= limit {
            row.verdict = .regressed
        } else if p < limits.alpha, -worse >= limit {
            row.verdict = .improved
        } else {
            row.verdict = .unchanged
        }
        if row.verdict != .unchanged, metric == .p99, let baseValue, let currentValue,
            abs(currentValue - baseValue) < limits.p99FloorMs
        {
            row.verdict = .unchanged
            row.note = "p99 moved less than the \(Format.number(limits.p99FloorMs)) ms floor"
        }
        if row.verdict != .unchanged, perRun.count > 1, let currentValue {
            // Against the baseline run at the edge of the spread in the direction of the change.
            let medians = perRun.compactMap { RankTest.median($0) }
            let ordered = medians.sorted { metric.higherIsWorse ? $0 < $1 : $0 > $1 }  // best first, worst last
            if let edge = row.verdict == .regressed ? ordered.last : ordered.first {
                let edgeChange = metric == .errorRate ? currentValue - edge : (edge > 0 ? currentValue / edge - 1 : 0)
                let edgeWorse = metric.higherIsWorse ? edgeChange : -edgeChange
                let beyond = row.verdict == .regressed ? edgeWorse >= limit : -edgeWorse >= limit
                if !beyond {
                    row.verdict = .unchanged
                    row.note = "within the spread of the \(perRun.count) baseline runs (\(Format.number(edge)) at the edge)"
                }
            }
        }
        return row
    }
}

extension ComparisonReport {
    /// The table `kiln compare` prints.
    public var table: String {
        var lines: [[String]] = [["PHASE", "OPERATION", "METRIC", "BASELINE", "CURRENT", "CHANGE", "P", "N", "VERDICT"]]
        for row in rows {
            let arrow: String
            switch row.verdict {
            case .regressed: arrow = "▼ regressed"
            case .improved: arrow = "▲ improved"
            case .unchanged: arrow = "= unchanged"
            case .inconclusive: arrow = "? inconclusive"
            }
            let unit = row.metric == .throughput ? "/s" : row.metric == .errorRate ? "" : "ms"
            func value(_ number: Double?) -> String { number.map { Format.number($0) + unit } ?? "-" }
            let change = row.metric == .errorRate
                ? row.change.map { String(format: "%+.2fpp", $0 * 100) } ?? "-" : Format.percent(row.change)
            lines.append([
                row.phase, row.operation, row.metric.rawValue, value(row.baseline), value(row.current), change,
                row.pValue.map { String(format: "%.3g", $0) } ?? "-", "\(row.baselineSamples)/\(row.currentSamples)",
                arrow + (row.note.map { " (\($0))" } ?? ""),
            ])
        }
        let widths = lines[0].indices.map { column in lines.map { $0[column].count }.max() ?? 0 }
        var text = lines.map { line in
            line.enumerated().map { column, cell in
                column == line.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        text.append(
            "verdict: \(verdict.rawValue) (\(regressions.count) regressed; limits p50 +\(Format.number(limits.p50 * 100))%, "
                + "p99 +\(Format.number(limits.p99 * 100))%, throughput -\(Format.number(limits.throughput * 100))%, "
                + "error_rate +\(Format.number(limits.errorRate * 100))pp, alpha \(Format.number(limits.alpha)))")
        return text.joined(separator: "\n")
    }
}
