import Foundation

/// A line chart rendered as inline SVG (no scripts, fonts or external references), for report.html and the
/// trend page. Pure value; `svg` builds the markup.
struct SVGChart {
    struct Series {
        var name: String
        var color: String
        var dashed = false
        var points: [(x: Double, y: Double)]
    }

    /// A shaded x-range with a label (a fault window).
    struct Band {
        var from: Double
        var to: Double
        var label: String
    }

    /// Height of one row of phase labels (10 px text).
    static let markerLabelLineHeight = 12.0
    /// Width a 10 px label takes, generously (SVG text is not measured here): 6.5 px per character plus the 3 px gap.
    static func markerLabelWidth(_ label: String) -> Double { Double(label.count) * 6.5 + 3 }

    /// The row (0 = bottom) of each marker label, left to right in `placed` order: a label goes to the lowest row
    /// where it does not run into the label before it on that row, so labels of close phases never overlap.
    static func markerLabelRows(_ placed: [(x: Double, label: String)]) -> [Int] {
        var rowEnds: [Double] = []
        return placed.map { x, label in
            let start = x + 3
            let row = rowEnds.firstIndex { $0 <= start } ?? rowEnds.count
            if row == rowEnds.count { rowEnds.append(0) }
            rowEnds[row] = start + markerLabelWidth(label)
            return row
        }
    }

    /// A vertical line with a label (a phase start).
    struct Marker {
        var x: Double
        var label: String
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series]
    var bands: [Band] = []
    var markers: [Marker] = []
    /// Tick labels for x (value, text) instead of numbers, e.g. percentiles or run ids.
    var xTicks: [(Double, String)]? = nil
    var width = 860.0
    var height = 300.0

    static let faultColor = "#f4a261"
    static let palette = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22",
    ]

    var svg: String {
        let left = 64.0, right = 16.0, top = 30.0, bottom = 44.0
        let legendRows = (series.count + 3) / 4
        let legendHeight = Double(legendRows) * 16
        let plotWidth = width - left - right
        let plotHeight = height - top - bottom
        let total = height + legendHeight
        let xs = series.flatMap { $0.points.map(\.x) } + bands.flatMap { [$0.from, $0.to] } + markers.map(\.x)
            + (xTicks?.map(\.0) ?? [])
        let ys = series.flatMap { $0.points.map(\.y) }.filter(\.isFinite)
        var xMin = xs.min() ?? 0
        var xMax = xs.max() ?? 1
        if xMax <= xMin { xMax = xMin + 1 }
        var yMax = ys.max() ?? 1
        if yMax <= 0 { yMax = 1 }
        let yTicks = Self.ticks(upTo: yMax)
        yMax = yTicks.last ?? yMax
        if xTicks == nil {
            xMin = min(xMin, 0)
        }
        func px(_ x: Double) -> Double { left + (x - xMin) / (xMax - xMin) * plotWidth }
        func py(_ y: Double) -> Double { top + plotHeight - y / yMax * plotHeight }

        var out = #"<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" "#
        out += #"viewBox="0 0 \#(Int(width)) \#(Int(total))" width="\#(Int(width))" height="\#(Int(total))">"#
        out += "<title>\(Self.escape(title))</title>"
        out += #"<text x="\#(left)" y="18" class="chart-title">\#(Self.escape(title))</text>"#
        for band in bands {
            let x0 = px(max(xMin, band.from))
            let x1 = px(min(xMax, band.to))
            out += #"<rect class="fault" x="\#(Self.f(x0))" y="\#(top)" width="\#(Self.f(max(2, x1 - x0)))" "#
            out += #"height="\#(plotHeight)" fill="\#(Self.faultColor)" fill-opacity="0.25"><title>\#(Self.escape(band.label))</title></rect>"#
            out += #"<text class="fault-label" x="\#(Self.f(x0 + 3))" y="\#(top + 12)">\#(Self.escape(band.label))</text>"#
        }
        for tick in yTicks {
            let y = py(tick)
            out += #"<line x1="\#(left)" x2="\#(left + plotWidth)" y1="\#(Self.f(y))" y2="\#(Self.f(y))" class="grid"/>"#
            out += #"<text x="\#(left - 6)" y="\#(Self.f(y + 4))" text-anchor="end" class="tick">\#(Self.label(tick))</text>"#
        }
        let xTickList = xTicks ?? Self.ticks(upTo: xMax, from: xMin).map { ($0, Self.label($0)) }
        for (value, text) in xTickList where value >= xMin && value <= xMax {
            let x = px(value)
            out += #"<line x1="\#(Self.f(x))" x2="\#(Self.f(x))" y1="\#(top + plotHeight)" y2="\#(top + plotHeight + 4)" class="axis"/>"#
            out += #"<text x="\#(Self.f(x))" y="\#(top + plotHeight + 16)" text-anchor="middle" class="tick">\#(Self.escape(text))</text>"#
        }
        let labelRows = Self.markerLabelRows(markers.map { (px($0.x), $0.label) })
        for (marker, row) in zip(markers, labelRows) {
            let x = px(marker.x)
            out += #"<line x1="\#(Self.f(x))" x2="\#(Self.f(x))" y1="\#(top)" y2="\#(top + plotHeight)" class="marker"/>"#
            let y = top + plotHeight - 4 - Double(row) * Self.markerLabelLineHeight
            out += #"<text x="\#(Self.f(x + 3))" y="\#(Self.f(y))" class="marker-label">\#(Self.escape(marker.label))</text>"#
        }
        out += #"<line x1="\#(left)" x2="\#(left)" y1="\#(top)" y2="\#(top + plotHeight)" class="axis"/>"#
        out += #"<line x1="\#(left)" x2="\#(left + plotWidth)" y1="\#(top + plotHeight)" y2="\#(top + plotHeight)" class="axis"/>"#
        out += #"<text x="\#(left + plotWidth / 2)" y="\#(top + plotHeight + 34)" text-anchor="middle" class="axis-label">\#(Self.escape(xLabel))</text>"#
        out += #"<text transform="translate(14 \#(top + plotHeight / 2)) rotate(-90)" text-anchor="middle" class="axis-label">\#(Self.escape(yLabel))</text>"#
        for item in series where !item.points.isEmpty {
            let points = item.points.filter { $0.y.isFinite }.map { "\(Self.f(px($0.x))),\(Self.f(py($0.y)))" }
            let dash = item.dashed ? #" stroke-dasharray="5 3""# : ""
            out += #"<polyline class="series" data-series="\#(Self.escape(item.name))" fill="none" stroke="\#(item.color)" "#
            out += #"stroke-width="1.6"\#(dash) points="\#(points.joined(separator: " "))"/>"#
            if item.points.count == 1, let point = item.points.first {
                out += #"<circle cx="\#(Self.f(px(point.x)))" cy="\#(Self.f(py(point.y)))" r="3" fill="\#(item.color)"/>"#
            }
        }
        for (index, item) in series.enumerated() {
            let x = left + Double(index % 4) * (plotWidth / 4)
            let y = height + Double(index / 4) * 16
            let dash = item.dashed ? #" stroke-dasharray="5 3""# : ""
            out += #"<line x1="\#(Self.f(x))" x2="\#(Self.f(x + 18))" y1="\#(Self.f(y - 4))" y2="\#(Self.f(y - 4))" stroke="\#(item.color)" stroke-width="2"\#(dash)/>"#
            out += #"<text x="\#(Self.f(x + 22))" y="\#(Self.f(y))" class="legend">\#(Self.escape(item.name))</text>"#
        }
        out += "</svg>"
        return out
    }

    /// About five round ticks from `from` up to at least `maximum`.
    static func ticks(upTo maximum: Double, from minimum: Double = 0) -> [Double] {
        let span = max(maximum - minimum, 1e-9)
        let raw = span / 5
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var ticks: [Double] = []
        var value = (minimum / step).rounded(.down) * step
        while value < maximum + step * 0.999 && ticks.count < 20 {
            ticks.append(value)
            value += step
        }
        return ticks
    }

    static func label(_ value: Double) -> String {
        if abs(value) >= 1_000_000 { return Format.number(value / 1_000_000) + "M" }
        if abs(value) >= 10_000 { return Format.number(value / 1000) + "k" }
        return Format.number(value)
    }

    static func f(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
