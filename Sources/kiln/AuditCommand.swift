import ArgumentParser
import Foundation
import KilnAudit
import KilnCore
import KilnRunner
import Logging

extension AuditFormat: ExpressibleByArgument {}
extension AuditSeverity: ExpressibleByArgument {}

/// `kiln audit`: a security audit of a stack through real clients (KilnAudit); exit 0 clean, 2 when a finding is at or
/// above `--fail-on`, 3 when a check could not run, 64 bad flags or stack file, 69 when no server could be reached.
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Security audit of a stack: one check per finding, with severity, evidence and fix.",
        discussion: """
            Exit codes: 0 no finding at or above --fail-on and every check ran; 2 a finding at or above --fail-on;
            3 a check could not run (NOT CHECKED); 64 invalid flags or stack file; 69 no server of the stack answered.
            Redis ACLs and settings are read as KILN_AUDIT_REDIS_USER / KILN_AUDIT_REDIS_PASSWORD when set.
            """)

    @OptionGroup var stack: StackOptions

    @Option(help: "Output format: \(AuditFormat.allCases.map(\.rawValue).joined(separator: ", ")).")
    var format: AuditFormat = .table

    @Option(name: .shortAndLong, help: "Write the output to this file instead of stdout.")
    var output: String?

    @Option(help: "Exit 2 when a finding is at or above this severity: \(AuditSeverity.allCases.map(\.rawValue).joined(separator: ", ")).")
    var failOn: AuditSeverity = .high

    @Option(name: .customLong("runs"), help: "A directory of run directories to scan for leaked passwords (repeatable; default Reports/runs).")
    var runsDirectories: [String] = []

    @Option(help: "Seconds each probe (connect, query, handshake) may take (1-60).")
    var timeout: Int = 5

    func validate() throws {
        guard (1...60).contains(timeout) else { throw ValidationError("--timeout must be 1-60 seconds, got \(timeout)") }
    }

    func run() throws {
        try exiting {
            let definition = try stack.loadStack()
            let paths = stack.paths(for: definition)
            let runs = runsDirectories.isEmpty
                ? [paths.home.appendingPathComponent("Reports/runs")] : runsDirectories.map { URL(fileURLWithPath: $0) }
            let context = AuditContext(
                stack: definition, environment: ProcessInfo.processInfo.environment, runsDirectories: runs,
                logger: stack.logger("kiln.audit"), timeoutSeconds: timeout)
            let report = AuditChecks.audit(context, stackFile: stack.stackFile ?? "Scenarios/stacks/embedded.yaml")
            let text = format.render(report, failOn: failOn)
            if let output {
                do {
                    try Data(text.utf8).write(to: URL(fileURLWithPath: output))
                } catch {
                    throw Failure(code: .invalidInput, message: "cannot write \(output): \(error.localizedDescription)")
                }
                FileHandle.standardError.write(Data(AuditTableWriter.summaryLine(report, failOn: failOn).utf8))
            } else {
                print(text, terminator: "")
            }
            switch report.verdict(failOn: failOn) {
            case .clean: return .ok
            case .findings: return .thresholdFailed
            case .notChecked: return .unknown
            case .stackUnavailable: return .stackUnavailable
            }
        }
    }
}
