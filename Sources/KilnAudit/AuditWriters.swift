import Foundation
import KilnCore

/// The output formats of `kiln audit` (`--format`).
public enum AuditFormat: String, Sendable, CaseIterable {
    case table
    case json
    case sarif
    case junit

    public func render(_ report: AuditReport, failOn: AuditSeverity) -> String {
        switch self {
        case .table: AuditTableWriter.render(report, failOn: failOn)
        case .json: AuditJSONWriter.render(report, failOn: failOn)
        case .sarif: AuditSARIFWriter.render(report)
        case .junit: AuditJUnitWriter.render(report)
        }
    }
}

/// A table for people: one row per result (findings first, by severity), then the fix of each finding id.
public enum AuditTableWriter {
    public static func render(_ report: AuditReport, failOn: AuditSeverity) -> String {
        let order: (AuditResult) -> Int = { result in
            switch result.outcome {
            case .finding: 0
            case .notChecked: 1
            case .passed: 2
            case .notApplicable: 3
            }
        }
        let rows = report.results.enumerated().sorted { a, b in
            (order(a.element), b.element.severity, a.offset) < (order(b.element), a.element.severity, b.offset)
        }.map(\.element)
        var lines = ["kiln audit of stack \(report.stackName) (\(report.stackFile))", ""]
        let header = ["STATUS", "SEVERITY", "ID", "TARGET", "EVIDENCE"]
        var table = [header]
        for row in rows {
            table.append([row.outcome.statusName, row.isFinding ? row.severity.rawValue : "-", row.id.rawValue, row.target, row.outcome.text])
        }
        let widths = (0..<4).map { column in table.map { $0[column].count }.max() ?? 0 }
        for row in table {
            lines.append((0..<4).map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ") + "  " + row[4])
        }
        let findingIDs = Array(Set(report.findings.map(\.id))).sorted { $0.rawValue < $1.rawValue }
        if !findingIDs.isEmpty {
            lines.append("")
            lines.append("FIXES")
            for id in findingIDs { lines.append("\(id.rawValue): \(id.fix)") }
        }
        lines.append("")
        return lines.joined(separator: "\n") + "\n" + summaryLine(report, failOn: failOn)
    }

    /// `N finding(s) (…by severity), M at or above S, K not checked, P passed`.
    public static func summaryLine(_ report: AuditReport, failOn: AuditSeverity) -> String {
        let counts = AuditSeverity.allCases.reversed().compactMap { severity -> String? in
            let count = report.findings.filter { $0.severity == severity }.count
            return count == 0 ? nil : "\(count) \(severity.rawValue)"
        }
        let passed = report.results.filter { if case .passed = $0.outcome { true } else { false } }.count
        return "\(report.findings.count) finding(s)" + (counts.isEmpty ? "" : " (\(counts.joined(separator: ", ")))")
            + ", \(report.findings(atOrAbove: failOn).count) at or above \(failOn.rawValue), "
            + "\(report.notChecked.count) not checked, \(passed) passed\n"
    }
}

/// JSON (`kiln.audit/1`): the verdict and every result with its id, severity, status, evidence and fix.
public enum AuditJSONWriter {
    public static func object(_ report: AuditReport, failOn: AuditSeverity) -> [String: Any] {
        [
            "schema": "kiln.audit/1",
            "stack": report.stackName,
            "stack_file": report.stackFile,
            "fail_on": failOn.rawValue,
            "verdict": report.verdict(failOn: failOn).rawValue,
            "results": report.results.map { result -> [String: Any] in
                var entry: [String: Any] = [
                    "id": result.id.rawValue, "title": result.id.title, "store": result.store.rawValue,
                    "target": result.target, "severity": result.severity.rawValue,
                    "status": result.outcome.statusName.lowercased().replacingOccurrences(of: " ", with: "-"),
                ]
                switch result.outcome {
                case .finding(let evidence): entry["evidence"] = evidence; entry["fix"] = result.id.fix
                case .passed(let evidence): entry["evidence"] = evidence
                case .notChecked(let reason), .notApplicable(let reason): entry["reason"] = reason
                }
                return entry
            },
        ]
    }

    public static func render(_ report: AuditReport, failOn: AuditSeverity) -> String {
        let data = try! JSONSerialization.data(withJSONObject: object(report, failOn: failOn), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

/// SARIF 2.1.0 (what code-scanning tools read): one rule per finding id, one result per finding (`kind: fail`, level
/// from the severity, `security-severity` for GitHub) and per check that could not run (`kind: open`). Passed and
/// not-applicable checks are not results. Every result is located in the stack file (a leaked password: in the file).
public enum AuditSARIFWriter {
    static func securitySeverity(_ severity: AuditSeverity) -> String {
        switch severity {
        case .critical: "9.5"
        case .high: "7.5"
        case .medium: "5.0"
        case .low: "2.0"
        case .info: "0.0"
        }
    }

    public static func render(_ report: AuditReport) -> String {
        let rules = AuditFindingID.allCases
        let results: [[String: Any]] = report.results.compactMap { result in
            let kind: String
            let level: String
            let text: String
            switch result.outcome {
            case .finding(let evidence):
                kind = "fail"
                level = result.severity.sarifLevel
                text = "\(result.id.title) — \(result.target): \(evidence). Fix: \(result.id.fix)"
            case .notChecked(let reason):
                kind = "open"
                level = "none"
                text = "NOT CHECKED \(result.id.title) — \(result.target): \(reason)"
            case .passed, .notApplicable:
                return nil
            }
            return [
                "ruleId": result.id.rawValue,
                "ruleIndex": rules.firstIndex(of: result.id)!,
                "kind": kind,
                "level": level,
                "message": ["text": text],
                "locations": [["physicalLocation": ["artifactLocation": ["uri": report.stackFile], "region": ["startLine": 1]]]],
                "properties": ["store": result.store.rawValue, "target": result.target, "severity": result.severity.rawValue],
            ]
        }
        let sarif: [String: Any] = [
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [[
                "tool": ["driver": [
                    "name": "kiln audit",
                    "informationUri": "https://example.invalid/kiln",
                    "rules": rules.map { id -> [String: Any] in
                        [
                            "id": id.rawValue,
                            "name": id.rawValue.replacingOccurrences(of: ".", with: "-"),
                            "shortDescription": ["text": id.title],
                            "help": ["text": id.fix],
                            "defaultConfiguration": ["level": id.severity.sarifLevel],
                            "properties": ["security-severity": securitySeverity(id.severity), "tags": ["security", id.store.rawValue]],
                        ]
                    },
                ]],
                "results": results,
            ]],
        ]
        let data = try! JSONSerialization.data(withJSONObject: sarif, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

/// JUnit XML: one testcase per result; a finding is a `<failure>`, a check that could not run an `<error>` (so no CI
/// reads it as passed), not applicable `<skipped>`.
public enum AuditJUnitWriter {
    /// XML content (`XMLText`, the one escaper: control characters become spaces).
    static func escape(_ text: String) -> String { XMLText.escaped(text) }

    public static func render(_ report: AuditReport) -> String {
        let failures = report.findings.count
        let errors = report.notChecked.count
        let skipped = report.results.filter { if case .notApplicable = $0.outcome { true } else { false } }.count
        var lines = [
            #"<?xml version="1.0" encoding="UTF-8"?>"#,
            "<testsuites name=\"kiln audit\" tests=\"\(report.results.count)\" failures=\"\(failures)\" errors=\"\(errors)\">",
            "  <testsuite name=\"kiln.audit.\(escape(report.stackName))\" tests=\"\(report.results.count)\" failures=\"\(failures)\" errors=\"\(errors)\" skipped=\"\(skipped)\">",
        ]
        for result in report.results {
            let open = "    <testcase classname=\"kiln.audit.\(result.store.rawValue)\" name=\"\(escape("\(result.id.rawValue) \(result.target)"))\""
            switch result.outcome {
            case .passed:
                lines.append(open + "/>")
            case .finding(let evidence):
                lines.append(open + ">")
                lines.append("      <failure type=\"\(result.severity.rawValue)\" message=\"\(escape("\(result.severity.rawValue): \(result.id.title)"))\">\(escape("\(evidence)\nfix: \(result.id.fix)"))</failure>")
                lines.append("    </testcase>")
            case .notChecked(let reason):
                lines.append(open + ">")
                lines.append("      <error type=\"not-checked\" message=\"\(escape("NOT CHECKED: \(reason)"))\"/>")
                lines.append("    </testcase>")
            case .notApplicable(let reason):
                lines.append(open + ">")
                lines.append("      <skipped message=\"\(escape(reason))\"/>")
                lines.append("    </testcase>")
            }
        }
        lines.append("  </testsuite>")
        lines.append("</testsuites>")
        return lines.joined(separator: "\n") + "\n"
    }
}
