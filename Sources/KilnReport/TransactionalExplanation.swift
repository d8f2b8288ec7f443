import Foundation
import KilnCheck
import KilnElle

/// How summary.md and report.html explain a transactional checker's findings: each anomaly's minimal witness (its
/// transactions with their operations, and why each edge of a cycle exists), and in HTML an inline SVG of the cycle
/// (no scripts, fonts or external references).
enum TransactionalExplanation {
    /// Witnesses shown per kind (check.json keeps more).
    static let shownPerKind = 2

    static func shown(_ findings: TransactionalFindings) -> [AnomalyWitness] {
        var perKind: [AnomalyKind: Int] = [:]
        return findings.witnesses.filter { witness in
            perKind[witness.kind, default: 0] += 1
            return perKind[witness.kind]! <= shownPerKind
        }
    }

    /// `code` wraps the place's name in Markdown's backticks.
    static func heading(_ place: PlaceResult, _ findings: TransactionalFindings, code: Bool = true) -> String {
        let forbidden = findings.forbiddenFound.isEmpty ? "none" : findings.forbiddenFound.joined(separator: ", ")
        return (code ? "`\(place.place)`" : place.place)
            + ": \(findings.promised) judged as \(findings.model): \(place.validity.rawValue) "
            + "(forbidden anomalies found: \(forbidden); \(findings.statistics.transactions) transactions)"
    }

    /// Markdown lines: a heading per transactional place, then each shown witness as a text block.
    static func markdown(_ places: [PlaceResult]) -> [String] {
        var lines: [String] = []
        for place in places {
            guard let findings = place.transactional, !findings.witnesses.isEmpty else { continue }
            lines.append("### " + heading(place, findings))
            lines.append("")
            for witness in shown(findings) {
                let forbidden = findings.forbiddenFound.contains(witness.kind.rawValue)
                lines.append(
                    "**\(witness.kind.rawValue)** (\(forbidden ? "forbidden" : "allowed") by \(findings.model))")
                lines.append("")
                lines.append("```")
                lines.append(witness.text)
                lines.append("```")
                lines.append("")
            }
        }
        return lines
    }

    /// An HTML section per transactional place: each shown witness with its transactions, its edges and the cycle.
    static func html(_ places: [PlaceResult]) -> String {
        let e = HTMLReportWriter.escape
        var html = ""
        var shownCount = 0
        for place in places {
            guard let findings = place.transactional, !findings.witnesses.isEmpty else { continue }
            html += "<section class=\"elle\"><h3>\(e(heading(place, findings, code: false)))</h3>"
            for witness in shown(findings) {
                let forbidden = findings.forbiddenFound.contains(witness.kind.rawValue)
                html += "<div class=\"witness\"><h4>\(e(witness.kind.rawValue)) "
                html += "<small>(\(forbidden ? "forbidden" : "allowed") by \(e(findings.model)))</small></h4>"
                html += "<p>\(e(witness.explanation))</p>"
                shownCount += 1
                if !witness.steps.isEmpty { html += cycleSVG(witness, idPrefix: "cycle\(shownCount)") }
                html += "<table><tr><th class=\"l\">transaction</th><th class=\"l\">process</th>"
                html += "<th class=\"l\">outcome</th><th class=\"l\">operations</th></tr>"
                for member in witness.transactions {
                    let ops = member.transaction.ops.map(\.shortDescription).joined(separator: ", ")
                    html +=
                        "<tr><td class=\"l\">T\(member.index)</td><td class=\"l\">\(member.transaction.process)</td>"
                    html += "<td class=\"l\">\(member.transaction.outcome.rawValue)</td>"
                    html += "<td class=\"l\"><code>\(e(ops))</code></td></tr>"
                }
                html += "</table>"
                if !witness.steps.isEmpty {
                    html += "<ol class=\"edges\">"
                    for step in witness.steps {
                        html += "<li>T\(step.from) <b>\(step.relation.rawValue)</b> T\(step.to): \(e(step.why))</li>"
                    }
                    html += "</ol>"
                }
                html += "</div>"
            }
            html += "</section>"
        }
        return html
    }

    /// The cycle as an inline SVG: transactions on a circle, one arrow per step labelled with its relation and key.
    /// `idPrefix` keeps the arrowhead markers' ids unique within the page.
    static func cycleSVG(_ witness: AnomalyWitness, idPrefix: String = "cycle") -> String {
        var order: [Int] = []
        for step in witness.steps where !order.contains(step.from) { order.append(step.from) }
        for step in witness.steps where !order.contains(step.to) { order.append(step.to) }
        let count = order.count
        let radius = count <= 2 ? 70.0 : 60.0 + 12.0 * Double(count)
        let size = 2 * radius + 120
        let center = size / 2
        var position: [Int: (x: Double, y: Double)] = [:]
        for (slot, node) in order.enumerated() {
            let angle = -Double.pi / 2 + 2 * Double.pi * Double(slot) / Double(max(count, 1))
            position[node] = (center + radius * cos(angle), center + radius * sin(angle))
        }
        func format(_ value: Double) -> String { String(format: "%.1f", value) }
        let colors: [DependencyRelation: String] = [
            .ww: "#1f77b4", .wr: "#2ca02c", .rw: "#d62728", .process: "#7f7f7f", .realtime: "#9467bd",
        ]
        var svg = "<svg class=\"cycle\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(size))\" "
        svg += "height=\"\(Int(size))\" viewBox=\"0 0 \(Int(size)) \(Int(size))\" role=\"img\" "
        svg += "aria-label=\"\(witness.kind.rawValue) cycle\"><defs>"
        for (relation, color) in colors.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            svg += "<marker id=\"\(idPrefix)-\(relation.rawValue)\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" "
            svg += "markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">"
            svg += "<path d=\"M0,0 L10,5 L0,10 z\" fill=\"\(color)\"/></marker>"
        }
        svg += "</defs>"
        let nodeRadius = 22.0
        for (number, step) in witness.steps.enumerated() {
            guard let from = position[step.from], let to = position[step.to] else { continue }
            let dx = to.x - from.x
            let dy = to.y - from.y
            let length = max((dx * dx + dy * dy).squareRoot(), 1)
            // Between two nodes joined both ways, each arrow bends to its own side.
            let bend = count <= 2 ? 40.0 : 18.0
            let (ux, uy) = (dx / length, dy / length)
            let start = (from.x + ux * nodeRadius, from.y + uy * nodeRadius)
            let end = (to.x - ux * nodeRadius, to.y - uy * nodeRadius)
            let control = ((start.0 + end.0) / 2 - uy * bend, (start.1 + end.1) / 2 + ux * bend)
            let color = colors[step.relation] ?? "#000"
            svg += "<path d=\"M\(format(start.0)),\(format(start.1)) Q\(format(control.0)),\(format(control.1)) "
            svg += "\(format(end.0)),\(format(end.1))\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" "
            svg += "marker-end=\"url(#\(idPrefix)-\(step.relation.rawValue))\"><title>"
            svg += "\(HTMLReportWriter.escape(step.why))</title></path>"
            let label = step.relation.rawValue + (step.key.map { " k\($0)" } ?? "")
            svg += "<text x=\"\(format(control.0))\" y=\"\(format(control.1))\" font-size=\"11\" "
            svg += "text-anchor=\"middle\" fill=\"\(color)\">\(number + 1). \(label)</text>"
        }
        for node in order {
            guard let point = position[node] else { continue }
            svg += "<circle cx=\"\(format(point.x))\" cy=\"\(format(point.y))\" r=\"\(Int(nodeRadius))\" "
            svg += "fill=\"#fff\" stroke=\"#333\" stroke-width=\"1.5\"/>"
            svg += "<text x=\"\(format(point.x))\" y=\"\(format(point.y + 4))\" font-size=\"12\" "
            svg += "text-anchor=\"middle\">T\(node)</text>"
        }
        return svg + "</svg>"
    }
}
