import Foundation
import KilnCore

/// `kiln trend`: one self-contained HTML page over many runs (oldest first): per phase and operation, throughput
/// and p99 from each run's report.json, so a slow drift across nightly runs is visible, plus each run's verdict.
public enum TrendPage {
    public static func html(_ runs: [RunData]) -> String {
        let ordered = runs.sorted { ($0.report?.startedAt ?? 0, $0.id) < ($1.report?.startedAt ?? 0, $1.id) }
        var keys: [(phase: String, operation: String)] = []
        for run in ordered {
            for phase in run.report?.phases ?? [] {
                for operation in phase.operations
                where !keys.contains(where: { $0.phase == phase.name && $0.operation == operation.name }) {
                    keys.append((phase.name, operation.name))
                }
            }
        }
        let ticks = ordered.enumerated().map { (Double($0.offset), "#\($0.offset + 1)") }
        var body = "<header class=\"verdict \(ordered.allSatisfy { ReportResult.of($0).verdict == .passed } ? "ok" : "warn")\">"
        body += "<h1>Trend over \(ordered.count) runs</h1><p>x axis: run number (oldest first); table below.</p></header>"
        body += "<section><h2>Runs</h2><table><tr><th>#</th><th class=\"l\">run</th><th class=\"l\">scenario</th>"
        body += "<th class=\"l\">started</th><th class=\"l\">kiln</th><th class=\"l\">verdict</th><th class=\"l\">why</th></tr>"
        for (index, run) in ordered.enumerated() {
            let result = ReportResult.of(run)
            body += "<tr><td>\(index + 1)</td><td class=\"l\"><code>\(e(run.id))</code></td>"
            body += "<td class=\"l\">\(e(run.report?.identity.scenario ?? "-"))</td>"
            body += "<td class=\"l\">\(Format.date(run.report?.startedAt))</td>"
            body += "<td class=\"l\">\(e(run.report?.identity.kilnRevision ?? "-"))</td>"
            body += "<td class=\"l\">\(HTMLReportWriter.validity(result.verdict.rawValue))</td>"
            body += "<td class=\"l\">\(e(result.reasons.prefix(3).joined(separator: "; ")))</td></tr>"
        }
        body += "</table></section>"
        var phases: [String] = []
        for key in keys where !phases.contains(key.phase) { phases.append(key.phase) }
        for phase in phases {
            body += "<section><h2>phase \(e(phase))</h2>"
            let operations = keys.filter { $0.phase == phase }.map(\.operation)
            var throughput: [SVGChart.Series] = []
            var p99: [SVGChart.Series] = []
            for (index, operation) in operations.enumerated() {
                let color = SVGChart.palette[index % SVGChart.palette.count]
                var throughputPoints: [(x: Double, y: Double)] = []
                var p99Points: [(x: Double, y: Double)] = []
                for (runIndex, run) in ordered.enumerated() {
                    guard let measured = run.report?.phases.first(where: { $0.name == phase })?.operations
                        .first(where: { $0.name == operation })
                    else { continue }
                    throughputPoints.append((Double(runIndex), measured.throughput))
                    if let value = measured.latencyMs.p99 { p99Points.append((Double(runIndex), value)) }
                }
                throughput.append(SVGChart.Series(name: operation, color: color, points: throughputPoints))
                p99.append(SVGChart.Series(name: operation, color: color, points: p99Points))
            }
            body += SVGChart(
                title: "\(phase): throughput per run", xLabel: "run", yLabel: "ops/s", series: throughput, xTicks: ticks
            ).svg
            body += SVGChart(title: "\(phase): p99 latency per run", xLabel: "run", yLabel: "ms", series: p99, xTicks: ticks)
                .svg
            body += "</section>"
        }
        return HTMLReportWriter.page(title: "Kiln trend (\(ordered.count) runs)", body: body)
    }

    static func e(_ text: String) -> String { HTMLReportWriter.escape(text) }
}
