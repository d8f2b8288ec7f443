import Foundation

/// junit.xml of a durability drill for CI: one test case per check (the crash's promise; each restore target; the
/// corrupted backup). A check that did not run is an `<error>`, never a pass or a skip.
public enum DurabilityJUnit {
    public static func xml(_ report: DurabilityReport) -> String {
        var cases: [(name: String, failure: String?, error: String?)] = []
        if let crash = report.crash {
            let failed = report.verdict == .failed || report.verdict == .anomaly
            cases.append((
                "\(crash.server).\(crash.setting).promise",
                failed ? report.reasons.joined(separator: "; ") : nil,
                report.verdict == .unknown ? report.reasons.joined(separator: "; ") : nil))
        } else if report.kind == "crash-restart" {
            cases.append(("crash-restart", nil, report.reasons.joined(separator: "; ")))
        }
        for restore in report.restores ?? [] {
            let name = String(format: "restore+%.1fs", restore.offsetSeconds)
            if let check = restore.check {
                let failure = check.findings.isEmpty
                    ? nil : "lost \(check.lost), phantom \(check.phantom), mismatched \(check.mismatched)"
                cases.append((name, failure, check.required == 0 ? "no write acknowledged before the target" : nil))
            } else {
                cases.append((name, nil, restore.error ?? "not checked"))
            }
        }
        if let corruption = report.corruption {
            cases.append(("corrupted-backup", corruption.caught ? nil : "a changed backup byte was caught by nothing", nil))
        } else if report.kind == "pg-pitr" && report.restores == nil {
            cases.append(("pg-pitr", nil, report.reasons.joined(separator: "; ")))
        }
        let failures = cases.filter { $0.failure != nil }.count
        let errors = cases.filter { $0.error != nil && $0.failure == nil }.count
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        xml += "<testsuite name=\"\(escape(report.drill))\" tests=\"\(cases.count)\" failures=\"\(failures)\" errors=\"\(errors)\">\n"
        for item in cases {
            xml += "  <testcase classname=\"\(escape(report.drill))\" name=\"\(escape(item.name))\""
            if let failure = item.failure {
                xml += ">\n    <failure message=\"\(escape(failure))\"/>\n  </testcase>\n"
            } else if let error = item.error {
                xml += ">\n    <error message=\"\(escape(error))\"/>\n  </testcase>\n"
            } else {
                xml += "/>\n"
            }
        }
        return xml + "</testsuite>\n"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
