import Foundation

/// How bad a finding is. Ordered: `info < low < medium < high < critical`; `--fail-on` compares against it.
public enum AuditSeverity: String, Sendable, CaseIterable, Comparable, Codable {
    case info
    case low
    case medium
    case high
    case critical

    public static func < (left: AuditSeverity, right: AuditSeverity) -> Bool {
        allCases.firstIndex(of: left)! < allCases.firstIndex(of: right)!
    }

    /// SARIF's `level` for a result of this severity.
    public var sarifLevel: String {
        switch self {
        case .critical, .high: "error"
        case .medium: "warning"
        case .low, .info: "note"
        }
    }
}

/// The part of the stack a check looks at: a backend, by its name (`Backend.name`), or Kiln itself. Not a closed set:
/// a check over every server (the listeners) files each under its backend's name, whatever backends exist.
public struct AuditStore: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let postgres = AuditStore(rawValue: "postgres")
    public static let redis = AuditStore(rawValue: "redis")
    public static let kafka = AuditStore(rawValue: "kafka")
    public static let falkordb = AuditStore(rawValue: "falkordb")
    public static let neo4j = AuditStore(rawValue: "neo4j")
    public static let clickhouse = AuditStore(rawValue: "clickhouse")
    /// Kiln's own files (run directories).
    public static let kiln = AuditStore(rawValue: "kiln")
}

/// Every finding `kiln audit` can report, by its stable id (SARIF `ruleId`, JUnit test name, JSON `id`). The raw
/// values never change meaning; new checks get new ids.
public enum AuditFindingID: String, Sendable, CaseIterable, Codable {
    case postgresNoPassword = "postgres.no-password"
    case postgresDefaultPassword = "postgres.default-password"
    case postgresTrustInHBA = "postgres.hba-trust"
    case postgresPasswordEncryption = "postgres.password-encryption"
    case postgresTLSNotOffered = "postgres.tls-not-offered"
    case postgresTLSNotRequired = "postgres.tls-not-required"
    case postgresSuperuserApplicationRole = "postgres.app-role-superuser"
    case postgresRowLevelSecurity = "postgres.rls-missing"
    case redisNoPassword = "redis.no-password"
    case redisAnyPasswordAccepted = "redis.any-password-accepted"
    case redisDefaultUserEnabled = "redis.default-user-enabled"
    case redisProtectedModeOff = "redis.protected-mode-off"
    case redisDangerousCommands = "redis.dangerous-commands"
    case redisPlaintext = "redis.plaintext"
    case clickhouseDefaultUserNoPassword = "clickhouse.default-no-password"
    case clickhousePlaintext = "clickhouse.plaintext"
    case kafkaNoSASL = "kafka.no-sasl"
    case kafkaPlaintext = "kafka.plaintext"
    case neo4jAuthDisabled = "neo4j.auth-disabled"
    case listenerReachableFromOutside = "listener.reachable-from-outside"
    case kilnPasswordInRunDirectory = "kiln.password-in-run-directory"

    /// The severity of a finding of this kind when nothing about the target changes it.
    public var severity: AuditSeverity {
        switch self {
        case .postgresNoPassword, .redisNoPassword, .redisAnyPasswordAccepted, .clickhouseDefaultUserNoPassword,
            .kafkaNoSASL, .neo4jAuthDisabled:
            .critical
        case .postgresDefaultPassword, .postgresTrustInHBA, .postgresSuperuserApplicationRole,
            .redisDangerousCommands, .listenerReachableFromOutside, .kilnPasswordInRunDirectory:
            .high
        case .postgresPasswordEncryption, .postgresTLSNotOffered, .postgresTLSNotRequired, .postgresRowLevelSecurity,
            .redisDefaultUserEnabled, .redisProtectedModeOff, .redisPlaintext, .clickhousePlaintext, .kafkaPlaintext:
            .medium
        }
    }

    /// One line: what the check looks for.
    public var title: String {
        switch self {
        case .postgresNoPassword: "PostgreSQL accepts a login without a password"
        case .postgresDefaultPassword: "PostgreSQL accepts a well-known default password"
        case .postgresTrustInHBA: "pg_hba.conf has `trust` lines"
        case .postgresPasswordEncryption: "password_encryption is not scram-sha-256"
        case .postgresTLSNotOffered: "PostgreSQL offers no TLS"
        case .postgresTLSNotRequired: "PostgreSQL accepts unencrypted connections"
        case .postgresSuperuserApplicationRole: "the application role is a superuser"
        case .postgresRowLevelSecurity: "a sensitive table has no Row Level Security"
        case .redisNoPassword: "Redis runs commands for unauthenticated clients"
        case .redisAnyPasswordAccepted: "Redis accepts any password for the application user"
        case .redisDefaultUserEnabled: "Redis's `default` user is enabled"
        case .redisProtectedModeOff: "Redis protected mode is off while unauthenticated clients are served"
        case .redisDangerousCommands: "the application user may run CONFIG, DEBUG, FLUSHALL or MODULE"
        case .redisPlaintext: "Redis speaks plaintext (no TLS)"
        case .clickhouseDefaultUserNoPassword: "ClickHouse's `default` user has no password"
        case .clickhousePlaintext: "ClickHouse's HTTP interface speaks plaintext (no TLS)"
        case .kafkaNoSASL: "the Kafka-API broker serves clients without SASL authentication"
        case .kafkaPlaintext: "the Kafka-API broker speaks plaintext (no TLS)"
        case .neo4jAuthDisabled: "Neo4j answers queries without authentication"
        case .listenerReachableFromOutside: "a server listens on a wildcard address (reachable from outside the host)"
        case .kilnPasswordInRunDirectory: "a password from the environment appears in a run directory"
        }
    }

    /// How to fix a finding of this kind.
    public var fix: String {
        switch self {
        case .postgresNoPassword:
            "replace `trust` (and `peer`/`ident` for network users) in pg_hba.conf with `scram-sha-256`, then SELECT pg_reload_conf()"
        case .postgresDefaultPassword: "ALTER ROLE … PASSWORD with a random secret kept in the environment"
        case .postgresTrustInHBA: "change every `trust` line of pg_hba.conf to `scram-sha-256` (hostssl for TCP) and reload"
        case .postgresPasswordEncryption:
            "SET password_encryption = 'scram-sha-256' in postgresql.conf, reload, and reset every role's password"
        case .postgresTLSNotOffered: "set ssl = on with ssl_cert_file/ssl_key_file (a certificate signed by your CA)"
        case .postgresTLSNotRequired:
            "use only `hostssl` lines (no `host`) in pg_hba.conf; clients connect with sslmode=verify-full"
        case .postgresSuperuserApplicationRole:
            "ALTER ROLE app NOSUPERUSER; grant it only the privileges its tables need"
        case .postgresRowLevelSecurity: "ALTER TABLE … ENABLE ROW LEVEL SECURITY and CREATE POLICY for each role"
        case .redisNoPassword:
            "turn the `default` user off (`user default off`) and give each client an ACL user with a password"
        case .redisAnyPasswordAccepted: "remove `nopass` from the user (`ACL SETUSER name resetpass >secret`)"
        case .redisDefaultUserEnabled: "`ACL SETUSER default off` (clients authenticate as their own ACL user)"
        case .redisProtectedModeOff: "`protected-mode yes` and bind only the addresses clients use — or require a password"
        case .redisDangerousCommands: "ACL SETUSER app -@dangerous -config -debug -flushall -flushdb -module"
        case .redisPlaintext: "serve only `tls-port` (port 0) with tls-cert-file/tls-key-file/tls-ca-cert-file"
        case .clickhouseDefaultUserNoPassword:
            "set <password_sha256_hex> for `default` in users.xml (or remove it) and restrict its <networks>"
        case .clickhousePlaintext: "serve <https_port> with an openSSL server certificate and close <http_port>"
        case .kafkaNoSASL: "enable SASL (SCRAM-SHA-512 or PLAIN over TLS) on every listener and require it"
        case .kafkaPlaintext: "use SASL_SSL or SSL listeners only"
        case .neo4jAuthDisabled: "dbms.security.auth_enabled=true and a password for every user"
        case .listenerReachableFromOutside:
            "bind the server to the addresses its clients use (listen_addresses / bind / listen_host), not 0.0.0.0 or ::"
        case .kilnPasswordInRunDirectory:
            "remove the file or the value; pass secrets only through the environment variable a `password_env` names"
        }
    }

    public var store: AuditStore {
        switch self {
        case .postgresNoPassword, .postgresDefaultPassword, .postgresTrustInHBA, .postgresPasswordEncryption,
            .postgresTLSNotOffered, .postgresTLSNotRequired, .postgresSuperuserApplicationRole,
            .postgresRowLevelSecurity:
            .postgres
        case .redisNoPassword, .redisAnyPasswordAccepted, .redisDefaultUserEnabled, .redisProtectedModeOff,
            .redisDangerousCommands, .redisPlaintext:
            .redis
        case .clickhouseDefaultUserNoPassword, .clickhousePlaintext: .clickhouse
        case .kafkaNoSASL, .kafkaPlaintext: .kafka
        case .neo4jAuthDisabled: .neo4j
        case .listenerReachableFromOutside, .kilnPasswordInRunDirectory: .kiln
        }
    }
}

/// What one check concluded about one target.
public enum AuditOutcome: Sendable, Equatable {
    /// The weakness is there; the evidence says what a client saw.
    case finding(evidence: String)
    /// The check ran and the weakness is absent; the evidence says what a client saw.
    case passed(evidence: String)
    /// The check could not run (server unreachable, no privilege to look): never a pass.
    case notChecked(reason: String)
    /// The stack has nothing this check applies to (e.g. no Neo4j server): neither a pass nor a failure.
    case notApplicable(reason: String)

    public var statusName: String {
        switch self {
        case .finding: "FINDING"
        case .passed: "passed"
        case .notChecked: "NOT CHECKED"
        case .notApplicable: "not applicable"
        }
    }

    public var text: String {
        switch self {
        case .finding(let text), .passed(let text), .notChecked(let text), .notApplicable(let text): text
        }
    }
}

/// One check's verdict on one target (a server, a table, a run directory).
public struct AuditResult: Sendable, Equatable {
    public var id: AuditFindingID
    /// The store the target belongs to (a FalkorDB server's Redis checks say `falkordb`).
    public var store: AuditStore
    /// What was looked at, e.g. `postgres-primary 127.0.0.11:15432` or `table public.cards`.
    public var target: String
    public var severity: AuditSeverity
    public var outcome: AuditOutcome

    public init(
        _ id: AuditFindingID, store: AuditStore? = nil, target: String, severity: AuditSeverity? = nil,
        _ outcome: AuditOutcome
    ) {
        self.id = id
        self.store = store ?? id.store
        self.target = target
        self.severity = severity ?? id.severity
        self.outcome = outcome
    }

    public var isFinding: Bool {
        if case .finding = outcome { return true }
        return false
    }
}

/// All results of one audit, in registry order.
public struct AuditReport: Sendable {
    public var stackName: String
    public var stackFile: String
    public var results: [AuditResult]

    public init(stackName: String, stackFile: String, results: [AuditResult]) {
        self.stackName = stackName
        self.stackFile = stackFile
        self.results = results
    }

    public var findings: [AuditResult] { results.filter(\.isFinding) }

    public func findings(atOrAbove severity: AuditSeverity) -> [AuditResult] {
        findings.filter { $0.severity >= severity }
    }

    public var notChecked: [AuditResult] {
        results.filter { if case .notChecked = $0.outcome { true } else { false } }
    }

    /// The verdict `kiln audit` exits with: a finding at or above `failOn` beats a check that could not run, which
    /// beats a clean result; an audit in which no check could reach anything is `stackUnavailable`.
    public func verdict(failOn: AuditSeverity) -> AuditVerdict {
        if !findings(atOrAbove: failOn).isEmpty { return .findings }
        let decided = results.contains { if case .passed = $0.outcome { true } else { $0.isFinding } }
        if !decided { return .stackUnavailable }
        return notChecked.isEmpty ? .clean : .notChecked
    }
}

/// The closed set of audit verdicts (README's exit-code table: 0, 2, 3, 69).
public enum AuditVerdict: String, Sendable {
    case clean
    case findings
    case notChecked
    case stackUnavailable
}
