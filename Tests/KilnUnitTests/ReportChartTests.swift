import Foundation
import Testing

@testable import KilnReport

/// report.html's charts: phase labels never overlap, and a bulk phase reads in rows/s (issue 14 item 7).
@Suite struct ReportChartTests {
    @Test func phaseLabelsOfClosePhasesGoToSeparateRows() {
        // Three phases 10 px apart with long names: each needs its own row; a fourth far right goes back to row 0.
        let rows = SVGChart.markerLabelRows([
            (x: 100, label: "bulk-load"), (x: 110, label: "warm-up"), (x: 120, label: "mixed"), (x: 600, label: "tail"),
        ])
        #expect(rows == [0, 1, 2, 0])
        // Far-apart phases share the bottom row.
        #expect(SVGChart.markerLabelRows([(x: 0, label: "a"), (x: 300, label: "b")]) == [0, 0])
    }

    @Test func noTwoLabelsOnOneRowOverlap() {
        let placed = (0..<40).map { (x: Double($0 * 17), label: String(repeating: "p", count: 3 + $0 % 9)) }
        let rows = SVGChart.markerLabelRows(placed)
        for row in Set(rows) {
            let spans = zip(placed, rows).filter { $0.1 == row }.map { ($0.0.x + 3, $0.0.x + 3 + SVGChart.markerLabelWidth($0.0.label)) }
            for (earlier, later) in zip(spans, spans.dropFirst()) { #expect(earlier.1 <= later.0) }
        }
    }

    @Test func aBulkPhaseIsChartedInRowsPerSecond() {
        let timeline = (1...5).map { second in
            TimelineSample(phase: "load", second: second, operation: "clickhouse.bulk", ok: 5, rows: 500_000, p50Ms: 90, p99Ms: 120)
        } + (1...5).map { second in
            TimelineSample(phase: "mixed", second: second, operation: "clickhouse.point-read", ok: 300, rows: 0, p50Ms: 1, p99Ms: 3)
        }
        let run = RunData(directory: URL(fileURLWithPath: "/tmp/none"), report: nil, timeline: timeline)
        var writer = HTMLReportWriter()
        writer.add(timeline)
        let html = writer.timelineCharts(run)
        #expect(html.contains("clickhouse.bulk (rows/s)"))
        #expect(html.contains("ops/s, rows/s for bulk"))
        #expect(!html.contains("clickhouse.point-read (rows/s)"))
    }
}
