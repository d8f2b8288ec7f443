import Foundation
import KilnScenario

/// A threshold checked against a phase's totals.
public struct ThresholdVerdict: Sendable, Codable {
    public var phase: String
    /// `store.operation`, a store, or `phase`.
    public var scope: String
    public var expression: String
    /// The measured value in the expression's unit (seconds for latencies, a fraction for error_rate); nil when
    /// nothing was measured for the scope (which fails the threshold: no evidence is not a pass).
    public var observed: Double?
    public var passed: Bool
    public var source: String

    public init(phase: String, scope: String, expression: String, observed: Double?, passed: Bool, source: String) {
        self.phase = phase
        self.scope = scope
        self.expression = expression
        self.observed = observed
        self.passed = passed
        self.source = source
    }
}

enum ThresholdEvaluation {
    static func evaluate(_ measurement: PhaseMeasurement) -> [ThresholdVerdict] {
        measurement.phase.thresholds.map { threshold in
            var merged = OperationStats()
            var matched = false
            for (index, operation) in measurement.operations.enumerated() {
                let inScope = threshold.scope == nil || threshold.scope == operation.name
                    || threshold.scope == operation.store
                if inScope {
                    merged.add(measurement.totals[index])
                    matched = true
                }
            }
            let observed = matched ? value(threshold.expression.metric, merged, seconds: measurement.rateSeconds) : nil
            let passed = observed.map { threshold.expression.comparison.holds($0, threshold.expression.value) } ?? false
            return ThresholdVerdict(
                phase: measurement.phase.name, scope: threshold.scope ?? "phase", expression: threshold.expression.text,
                observed: observed, passed: passed, source: threshold.source)
        }
    }

    static func value(_ metric: String, _ stats: OperationStats, seconds: Double) -> Double? {
        switch metric {
        case "p50": stats.latencySeconds(percentile: 50)
        case "p90": stats.latencySeconds(percentile: 90)
        case "p95": stats.latencySeconds(percentile: 95)
        case "p99": stats.latencySeconds(percentile: 99)
        case "p99.9": stats.latencySeconds(percentile: 99.9)
        case "p99.99": stats.latencySeconds(percentile: 99.99)
        case "max": stats.maxLatencySeconds
        case "mean": stats.meanLatencySeconds
        case "error_rate": stats.completed == 0 ? nil : Double(stats.fail + stats.info) / Double(stats.completed)
        case "errors": Double(stats.fail + stats.info)
        case "dropped": Double(stats.dropped)
        case "late": Double(stats.late)
        case "ok": Double(stats.ok)
        case "throughput": seconds > 0 ? Double(stats.completed) / seconds : nil
        case "rows_per_second": stats.activeSeconds > 0 ? Double(stats.rows) / stats.activeSeconds : nil
        default: nil
        }
    }
}

extension ThresholdVerdict {
    /// The observed value in the unit of the threshold's metric, for people: `2.53 ms` for latencies (never
    /// `0.002525`), `0.12 %` for error_rate, `1,234/s` for throughput and rows_per_second, an integer for counts;
    /// `nothing measured` when there was no value.
    public var observedText: String {
        guard let observed, observed.isFinite else { return "nothing measured" }
        let metric = expression.split(whereSeparator: { $0 == " " || $0 == "<" || $0 == ">" || $0 == "=" || $0 == "!" })
            .first.map { $0.lowercased() } ?? ""
        if ThresholdExpression.latencyMetrics.contains(metric) {
            let milliseconds = observed * 1000
            if milliseconds >= 1000 { return String(format: "%.2f s", observed) }
            if milliseconds >= 100 { return String(format: "%.0f ms", milliseconds) }
            if milliseconds >= 0.01 { return String(format: "%.2f ms", milliseconds) }
            return String(format: "%.0f µs", milliseconds * 1000)
        }
        switch metric {
        case "error_rate": return String(format: "%.3g %%", observed * 100)
        case "throughput", "rows_per_second":
            let formatter = NumberFormatter()
            formatter.numberStyle = .decimal
            formatter.maximumFractionDigits = observed >= 100 ? 0 : 1
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.usesGroupingSeparator = true
            formatter.groupingSeparator = ","
            return (formatter.string(from: NSNumber(value: observed)) ?? String(observed)) + "/s"
        default:
            return observed == observed.rounded() && abs(observed) < 1e15 ? String(Int64(observed)) : String(observed)
        }
    }
}
