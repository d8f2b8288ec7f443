import Foundation
import KilnCheck
import KilnCore

/// `junit.xml` in the common JUnit XML shape CI servers read (Jenkins, GitHub, GitLab): `<testsuites>` with one
/// `<testsuite>` each for thresholds, checkers and drills (and the run itself), one `<testcase>` per threshold
/// verdict, checker place and drill verdict. A failed one carries `<failure message="reason" type="…">`; a
/// checker or drill that could not decide carries `<error>` instead.
public struct JUnitWriter: ReportWriter {
    public let fileName = "junit.xml"
    private var context: ReportContext?

    public init() {}

    public mutating func start(_ run: ReportContext) { context = run }
    public mutating func add(_ samples: [TimelineSample]) {}

    struct Case {
        var className: String
        var name: String
        var seconds: Double = 0
        /// (element, type, message, body): `failure` or `error`.
        var problem: (element: String, type: String, message: String, body: String)?
    }

    public func finish(_ result: ReportResult) -> Data {
        guard let context else { return Data() }
        let run = context.run
        let report = run.report
        var suites: [(name: String, cases: [Case])] = []

        var runCase = Case(className: "kiln.run", name: "run \(run.id) completed", seconds: Self.runSeconds(report))
        if let reason = run.partialReason {
            runCase.problem = ("failure", "partial", "partial report: \(reason)", run.problems.joined(separator: "\n"))
        }
        suites.append(("kiln.run", [runCase]))

        var thresholds: [Case] = []
        for phase in report?.phases ?? [] {
            for verdict in phase.thresholds {
                var testCase = Case(
                    className: "kiln.thresholds.\(phase.name)", name: "\(verdict.scope): \(verdict.expression)")
                if !verdict.passed {
                    let observed = verdict.observedText
                    testCase.problem = (
                        "failure", "threshold",
                        "threshold failed: \(verdict.scope): \(verdict.expression) (observed \(observed))",
                        "phase \(phase.name), written at \(verdict.source)"
                    )
                }
                thresholds.append(testCase)
            }
        }
        suites.append(("kiln.thresholds", thresholds))

        if let reason = result.notChecked {
            // The check that judges this run did not run: an error, so no CI reads the run as all-passed.
            var testCase = Case(className: "kiln.checks", name: "check of run \(run.id)")
            testCase.problem = ("error", "not-checked", "NOT CHECKED: \(reason)", "")
            suites.append(("kiln.checks", [testCase]))
        }
        if let check = run.check {
            var cases: [Case] = []
            for place in check.places {
                var testCase = Case(className: "kiln.checks", name: place.place, seconds: place.seconds)
                switch place.validity {
                case .valid: break
                case .invalid:
                    testCase.problem = (
                        "failure", "anomaly", "\(place.place): \(CheckSummary.counts(place))",
                        CheckSummary.keys(place, limit: 20).joined(separator: "\n")
                    )
                case .unknown:
                    testCase.problem = ("error", "unknown", "\(place.place): \(place.error ?? "could not decide")", "")
                }
                cases.append(testCase)
            }
            suites.append(("kiln.checks", cases))
        }

        if let drills = report?.drills, !drills.isEmpty {
            let cases = drills.map { drill in
                var testCase = Case(className: "kiln.drills.\(drill.fault)", name: "\(drill.name) (\(drill.store))")
                let metrics = drill.metrics.sorted { $0.key < $1.key }.map { "\($0.key) = \(Format.number($0.value))" }
                switch drill.verdict {
                case .passed: break
                case .failed:
                    testCase.problem = (
                        "failure", "drill", "drill \(drill.name) failed: \(drill.reason ?? "no reason given")",
                        metrics.joined(separator: "\n")
                    )
                case .unknown:
                    testCase.problem = (
                        "error", "unknown", "drill \(drill.name) \(drill.verdict): \(drill.reason ?? "could not decide")",
                        metrics.joined(separator: "\n")
                    )
                }
                return testCase
            }
            suites.append(("kiln.drills", cases))
        }

        let timestamp = Self.timestamp(report?.startedAt)
        let host = report?.identity.host ?? "unknown"
        let all = suites.flatMap(\.cases)
        var xml = #"<?xml version="1.0" encoding="UTF-8"?>"# + "\n"
        xml += #"<testsuites name="kiln \#(Self.escape(run.id))" tests="\#(all.count)" "#
        xml += #"failures="\#(all.filter { $0.problem?.element == "failure" }.count)" "#
        xml += #"errors="\#(all.filter { $0.problem?.element == "error" }.count)" "#
        xml += #"time="\#(Self.seconds(all.map(\.seconds).reduce(0, +)))">"# + "\n"
        for (index, suite) in suites.enumerated() {
            xml += #"  <testsuite name="\#(suite.name)" id="\#(index)" package="kiln" tests="\#(suite.cases.count)" "#
            xml += #"failures="\#(suite.cases.filter { $0.problem?.element == "failure" }.count)" "#
            xml += #"errors="\#(suite.cases.filter { $0.problem?.element == "error" }.count)" skipped="0" "#
            xml += #"time="\#(Self.seconds(suite.cases.map(\.seconds).reduce(0, +)))" "#
            xml += #"timestamp="\#(timestamp)" hostname="\#(Self.escape(host))">"# + "\n"
            if index == 0, let report {
                xml += "    <properties>\n"
                let identity = report.identity
                let properties: [(String, String)] = [
                    ("scenario", identity.scenario), ("seed", String(identity.seed)),
                    ("dataset_rows", String(identity.datasetRows)), ("stack", identity.stack),
                    ("kiln_revision", identity.kilnRevision ?? "unknown"), ("verdict", result.verdict.rawValue),
                    ("exit_code", String(result.exitCode.rawValue)),
                ]
                for (name, value) in properties {
                    xml += #"      <property name="\#(name)" value="\#(Self.escape(value))"/>"# + "\n"
                }
                xml += "    </properties>\n"
            }
            for testCase in suite.cases {
                xml += #"    <testcase classname="\#(Self.escape(testCase.className))" "#
                xml += #"name="\#(Self.escape(testCase.name))" time="\#(Self.seconds(testCase.seconds))""#
                if let problem = testCase.problem {
                    xml += ">\n"
                    xml += #"      <\#(problem.element) message="\#(Self.escape(problem.message))" "#
                    xml += #"type="\#(problem.type)">\#(Self.escape(problem.body))</\#(problem.element)>"# + "\n"
                    xml += "    </testcase>\n"
                } else {
                    xml += "/>\n"
                }
            }
            xml += "  </testsuite>\n"
        }
        xml += "</testsuites>\n"
        return Data(xml.utf8)
    }

    static func runSeconds(_ report: RunReport?) -> Double {
        guard let report, let end = report.endedAt else { return 0 }
        return max(0, Double(end - report.startedAt) / 1000)
    }

    static func seconds(_ value: Double) -> String { String(format: "%.3f", value) }

    /// ISO 8601 without a zone designator, as the JUnit schema's `timestamp` wants.
    static func timestamp(_ millis: Int64?) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        return formatter.string(from: millis.map { Date(timeIntervalSince1970: Double($0) / 1000) } ?? Date())
    }

    /// XML attribute/text escaping; control characters XML 1.0 cannot carry become spaces.
    static func escape(_ text: String) -> String { XMLText.escaped(text) }
}
