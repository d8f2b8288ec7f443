import Foundation
import KilnCore
import KilnScenario
import Logging

/// What every check may use: the stack file (addresses and the names of password variables, never evidence), the
/// environment the passwords come from, and the run directories the hygiene check scans.
public struct AuditContext: Sendable {
    public var stack: StackDefinition
    public var environment: [String: String]
    /// Directories whose subdirectories are run directories (default `Reports/runs`).
    public var runsDirectories: [URL]
    public var logger: Logger
    /// Seconds a single probe (connect, query, handshake) may take.
    public var timeoutSeconds: Int

    public init(
        stack: StackDefinition, environment: [String: String], runsDirectories: [URL], logger: Logger,
        timeoutSeconds: Int = 5
    ) {
        self.stack = stack
        self.environment = environment
        self.runsDirectories = runsDirectories
        self.logger = logger
        self.timeoutSeconds = timeoutSeconds
    }

    /// The value of a `password_env` variable (nil when unset or empty).
    public func secret(_ variable: String?) -> String? {
        StackDefinition.secret(variable, in: environment)
    }
}

/// One audit check (Jepsen-style small protocol): looks at the stack through real clients and returns one result
/// per target it examined. A check never throws: whatever stops it becomes `notChecked` with the reason.
public protocol AuditCheck: Sendable {
    /// The findings this check can report.
    var findingIDs: [AuditFindingID] { get }
    /// The stack-file sections (`postgres`, `redis`…) the check cannot run without: on a stack that lacks one, the
    /// check does not run and each of its findings is `not applicable` (a stack with only Redis Cluster has no
    /// PostgreSQL to audit). Checks that examine whatever subset the stack lists read the sections as optionals.
    var requiredSections: [String] { get }
    func run(_ context: AuditContext) -> [AuditResult]
}

extension AuditCheck {
    public var requiredSections: [String] { [] }
}

/// The registry: every check `kiln audit` runs, in report order. Adding a check = one type + one line here.
public enum AuditChecks {
    public static let all: [any AuditCheck] = [
        PostgresLoginCheck(),
        PostgresTLSCheck(),
        PostgresConfigurationCheck(),
        PostgresRowLevelSecurityCheck(),
        RedisAccessCheck(),
        RedisPrivilegeCheck(),
        ClickHouseAccessCheck(),
        KafkaSASLCheck(),
        PlaintextTransportCheck(),
        Neo4jAuthCheck(),
        ListenerCheck(),
        RunDirectorySecretsCheck(),
    ]

    /// Runs every check (or `only` those) against the context's stack.
    public static func audit(_ context: AuditContext, stackFile: String, checks: [any AuditCheck] = all) -> AuditReport {
        var results: [AuditResult] = []
        for check in checks {
            let started = ContinuousClock.now
            let missing = check.requiredSections.filter { !context.stack.has($0) }
            if let section = missing.first {
                results += check.findingIDs.map {
                    AuditResult($0, target: "\(section):", .notApplicable(reason: "the stack file has no `\(section):` section"))
                }
                continue
            }
            var checkResults = check.run(context)
            if checkResults.isEmpty {
                // A check that found nothing to examine says so: an absent row would read as "not audited at all".
                checkResults = check.findingIDs.map {
                    AuditResult($0, target: "stack", .notApplicable(reason: "the stack lists no server this check examines"))
                }
            }
            context.logger.debug(
                "audit check ran",
                metadata: [
                    "kiln.audit.ids": "\(check.findingIDs.map(\.rawValue).joined(separator: ","))",
                    "kiln.audit.results": "\(checkResults.count)",
                    "kiln.audit.findings": "\(checkResults.filter(\.isFinding).count)",
                    "kiln.audit.seconds": "\(started.duration(to: .now).roundedSeconds)",
                ])
            results += checkResults
        }
        return AuditReport(stackName: context.stack.name, stackFile: stackFile, results: results)
    }
}

/// A server of the stack as the audit names it.
struct AuditServer: Sendable {
    var role: String
    var endpoint: HostPort
    var label: String { "\(role) \(endpoint)" }
}

extension StackDefinition {
    var auditPostgresServers: [AuditServer] {
        [AuditServer(role: "postgres-primary", endpoint: postgres.primary)]
            + postgres.replicas.enumerated().map { index, endpoint in
                AuditServer(role: index == 0 ? "postgres-replica" : "postgres-replica-\(index + 1)", endpoint: endpoint)
            }
    }
}

/// Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost): traffic to it never leaves the host.
func isLoopback(_ host: String) -> Bool {
    host.hasPrefix("127.") || host == "::1" || host == "localhost"
}
