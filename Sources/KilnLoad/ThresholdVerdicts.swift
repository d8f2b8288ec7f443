import Foundation
import KilnCore
import KilnScenario

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
