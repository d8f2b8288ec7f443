import Foundation
import KilnCore

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
