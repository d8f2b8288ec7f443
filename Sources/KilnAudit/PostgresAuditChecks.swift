import Foundation
import KilnCore
import KilnPostgres
import KilnScenario
import KilnStores

/// Opens libpq connections for the PostgreSQL checks.
struct PostgresProbe {
    let context: AuditContext

    /// The stack's application login: its user, its password from the environment (or, when the stack names none,
    /// whatever libpq finds in PGPASSWORD / a password file), libpq's default sslmode unless `sslMode` is given.
    func applicationEndpoint(_ server: HostPort, sslMode: PostgresEndpoint.SSLMode? = nil) -> PostgresEndpoint {
        let pg = context.stack.postgres
        var endpoint = PostgresEndpoint(
            host: server.host, port: server.port, database: pg.database, user: pg.user,
            password: context.secret(pg.passwordEnvironmentVariable))
        endpoint.sslMode = sslMode
        return endpoint
    }

    func connect(_ endpoint: PostgresEndpoint) -> Result<PostgresConnection, PostgresError> {
        do throws(PostgresError) {
            return .success(try PostgresConnection(endpoint, connectTimeoutSeconds: context.timeoutSeconds))
        } catch {
            return .failure(error)
        }
    }

    /// The first value of a one-row query.
    func scalar(_ connection: PostgresConnection, _ sql: String, _ parameters: [String?] = []) throws(PostgresError)
        -> String?
    {
        let result = try connection.execute(sql, parameters)
        return result.rowCount > 0 ? result.value(row: 0, column: 0) : nil
    }
}

/// `postgres.no-password` and `postgres.default-password`: log in as the application user (and `postgres`) with no
/// password at all (PGPASSWORD and password files ignored), then with well-known defaults, on every server.
struct PostgresLoginCheck: AuditCheck {
    var findingIDs: [AuditFindingID] { [.postgresNoPassword, .postgresDefaultPassword] }
    static let defaultPasswords = ["postgres", "password", "admin", "changeme"]

    var requiredSections: [String] { [PostgresStackConfig.key] }

    func run(_ context: AuditContext) -> [AuditResult] {
        let probe = PostgresProbe(context: context)
        let pg = context.stack.postgres
        let users = pg.user == "postgres" ? [pg.user] : [pg.user, "postgres"]
        var results: [AuditResult] = []
        for server in context.stack.auditPostgresServers {
            var openUsers: [String] = []
            var evidence: [String] = []
            var unreachable: String?
            for user in users {
                var endpoint = PostgresEndpoint(
                    host: server.endpoint.host, port: server.endpoint.port, database: "postgres", user: user)
                endpoint.ignoresPasswordSources = true
                switch probe.connect(endpoint) {
                case .success(let connection):
                    let one = (try? probe.scalar(connection, "SELECT 1")) ?? "no answer"
                    connection.close()
                    openUsers.append(user)
                    evidence.append("connected to \(server.endpoint) as \(user) with no password and ran SELECT 1 → \(one)")
                case .failure(let error):
                    if ["password required", "authentication failed", "rejected by pg_hba.conf", "database or role does not exist"]
                        .contains(error.reason ?? "")
                    {
                        evidence.append("login as \(user) without a password was refused (\(error.reason!))")
                    } else {
                        unreachable = "could not reach \(server.endpoint): \(error.description)"
                    }
                }
            }
            if let unreachable, openUsers.isEmpty {
                results.append(AuditResult(.postgresNoPassword, target: server.label, .notChecked(reason: unreachable)))
                results.append(AuditResult(.postgresDefaultPassword, target: server.label, .notChecked(reason: unreachable)))
                continue
            }
            let joined = evidence.joined(separator: "; ")
            results.append(
                AuditResult(
                    .postgresNoPassword, target: server.label,
                    openUsers.isEmpty ? .passed(evidence: joined) : .finding(evidence: joined)))
            guard openUsers.isEmpty else {
                results.append(
                    AuditResult(
                        .postgresDefaultPassword, target: server.label,
                        .notApplicable(reason: "the server asks no password of \(openUsers.joined(separator: ", ")) (postgres.no-password)")))
                continue
            }
            var accepted: [String] = []
            for user in users {
                for password in Self.defaultPasswords {
                    var endpoint = PostgresEndpoint(
                        host: server.endpoint.host, port: server.endpoint.port, database: "postgres", user: user,
                        password: password)
                    endpoint.ignoresPasswordSources = true
                    if case .success(let connection) = probe.connect(endpoint) {
                        connection.close()
                        accepted.append("\(user) with the default password '\(password)'")
                    }
                }
            }
            results.append(
                AuditResult(
                    .postgresDefaultPassword, target: server.label,
                    accepted.isEmpty
                        ? .passed(evidence: "logins as \(users.joined(separator: ", ")) with \(Self.defaultPasswords.count) well-known passwords were refused")
                        : .finding(evidence: "connected to \(server.endpoint) as " + accepted.joined(separator: ", "))))
        }
        return results
    }
}

/// `postgres.tls-not-offered` and `postgres.tls-not-required`: a login with sslmode=require (does the server speak TLS,
/// and does pg_stat_ssl say the session is encrypted) and one with sslmode=disable (does the server accept it).
struct PostgresTLSCheck: AuditCheck {
    var findingIDs: [AuditFindingID] { [.postgresTLSNotOffered, .postgresTLSNotRequired] }

    var requiredSections: [String] { [PostgresStackConfig.key] }

    func run(_ context: AuditContext) -> [AuditResult] {
        let probe = PostgresProbe(context: context)
        var results: [AuditResult] = []
        for server in context.stack.auditPostgresServers {
            switch probe.connect(probe.applicationEndpoint(server.endpoint, sslMode: .require)) {
            case .success(let connection):
                let version = (try? probe.scalar(connection, "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl")) ?? nil
                connection.close()
                results.append(
                    AuditResult(
                        .postgresTLSNotOffered, target: server.label,
                        version != nil
                            ? .passed(evidence: "sslmode=require login to \(server.endpoint) succeeded; pg_stat_ssl: \(version!)")
                            : .finding(evidence: "sslmode=require login succeeded but pg_stat_ssl shows no TLS for the session")))
            case .failure(let error) where error.reason == "server offers no TLS":
                results.append(
                    AuditResult(
                        .postgresTLSNotOffered, target: server.label,
                        .finding(evidence: "sslmode=require login to \(server.endpoint): the server does not support SSL")))
            case .failure(let error):
                results.append(
                    AuditResult(
                        .postgresTLSNotOffered, target: server.label,
                        .notChecked(reason: "sslmode=require login to \(server.endpoint) failed: \(error.description)")))
            }
            switch probe.connect(probe.applicationEndpoint(server.endpoint, sslMode: .disable)) {
            case .success(let connection):
                connection.close()
                results.append(
                    AuditResult(
                        .postgresTLSNotRequired, target: server.label,
                        .finding(evidence: "logged in to \(server.endpoint) as \(context.stack.postgres.user) with sslmode=disable (unencrypted)")))
            case .failure(let error) where error.reason == "rejected by pg_hba.conf":
                results.append(
                    AuditResult(
                        .postgresTLSNotRequired, target: server.label,
                        .passed(evidence: "sslmode=disable login to \(server.endpoint) was rejected by pg_hba.conf")))
            case .failure(let error):
                results.append(
                    AuditResult(
                        .postgresTLSNotRequired, target: server.label,
                        .notChecked(reason: "sslmode=disable login to \(server.endpoint) failed for another reason: \(error.description)")))
            }
        }
        return results
    }
}

/// `postgres.hba-trust`, `postgres.password-encryption`, `postgres.app-role-superuser`: queries on the primary as
/// the application role (pg_hba_file_rules needs superuser or a GRANT; without one the check says not checked).
struct PostgresConfigurationCheck: AuditCheck {
    var findingIDs: [AuditFindingID] {
        [.postgresTrustInHBA, .postgresPasswordEncryption, .postgresSuperuserApplicationRole]
    }

    var requiredSections: [String] { [PostgresStackConfig.key] }

    func run(_ context: AuditContext) -> [AuditResult] {
        let probe = PostgresProbe(context: context)
        let primary = context.stack.auditPostgresServers[0]
        let user = context.stack.postgres.user
        let connection: PostgresConnection
        switch probe.connect(probe.applicationEndpoint(primary.endpoint)) {
        case .success(let opened): connection = opened
        case .failure(let error):
            return findingIDs.map {
                AuditResult($0, target: primary.label, .notChecked(reason: "login as \(user) failed: \(error.description)"))
            }
        }
        defer { connection.close() }
        var results: [AuditResult] = []

        do throws(PostgresError) {
            let rules = try connection.execute(
                "SELECT line_number, type, coalesce(array_to_string(database, ','), ''), "
                    + "coalesce(array_to_string(user_name, ','), ''), coalesce(address || coalesce('/' || netmask, ''), ''), auth_method "
                    + "FROM pg_hba_file_rules WHERE error IS NULL ORDER BY line_number")
            var trust: [String] = []
            for row in 0..<rules.rowCount where rules.value(row: row, column: 5) == "trust" {
                let cells = (0..<5).map { rules.value(row: row, column: $0) ?? "" }
                trust.append("line \(cells[0]): \(cells[1]) \(cells[2]) \(cells[3]) \(cells[4]) trust".replacingOccurrences(of: "  ", with: " "))
            }
            results.append(
                AuditResult(
                    .postgresTrustInHBA, target: primary.label,
                    trust.isEmpty
                        ? .passed(evidence: "pg_hba_file_rules: \(rules.rowCount) rules, none with auth_method trust")
                        : .finding(evidence: "pg_hba_file_rules: " + trust.joined(separator: "; "))))
        } catch {
            results.append(
                AuditResult(
                    .postgresTrustInHBA, target: primary.label,
                    .notChecked(reason: "\(user) may not read pg_hba_file_rules (\(error.description)); grant it SELECT or audit as a superuser")))
        }

        do throws(PostgresError) {
            let method = try probe.scalar(connection, "SHOW password_encryption") ?? ""
            results.append(
                AuditResult(
                    .postgresPasswordEncryption, target: primary.label,
                    method == "scram-sha-256"
                        ? .passed(evidence: "SHOW password_encryption → \(method)")
                        : .finding(evidence: "SHOW password_encryption → \(method)")))
        } catch {
            results.append(
                AuditResult(.postgresPasswordEncryption, target: primary.label, .notChecked(reason: error.description)))
        }

        do throws(PostgresError) {
            let superuser = try probe.scalar(connection, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            let evidence = "pg_roles.rolsuper of \(user) (current_user on \(primary.endpoint)) → \(superuser ?? "no row")"
            results.append(
                AuditResult(
                    .postgresSuperuserApplicationRole, target: "role \(user)",
                    superuser == "f" ? .passed(evidence: evidence) : superuser == "t"
                        ? .finding(evidence: evidence) : .notChecked(reason: evidence)))
        } catch {
            results.append(
                AuditResult(.postgresSuperuserApplicationRole, target: "role \(user)", .notChecked(reason: error.description)))
        }
        return results
    }
}

/// `postgres.rls-missing`: pg_class.relrowsecurity of every table the stack file lists in `postgres.sensitive_tables`.
struct PostgresRowLevelSecurityCheck: AuditCheck {
    var findingIDs: [AuditFindingID] { [.postgresRowLevelSecurity] }

    var requiredSections: [String] { [PostgresStackConfig.key] }

    func run(_ context: AuditContext) -> [AuditResult] {
        let tables = context.stack.postgres.sensitiveTables
        guard !tables.isEmpty else {
            return [
                AuditResult(
                    .postgresRowLevelSecurity, target: "postgres.sensitive_tables",
                    .notApplicable(reason: "the stack file marks no table sensitive (postgres.sensitive_tables)"))
            ]
        }
        let probe = PostgresProbe(context: context)
        let primary = context.stack.auditPostgresServers[0]
        guard case .success(let connection) = probe.connect(probe.applicationEndpoint(primary.endpoint)) else {
            return tables.map {
                AuditResult(.postgresRowLevelSecurity, target: "table \($0)", .notChecked(reason: "cannot log in to \(primary.endpoint)"))
            }
        }
        defer { connection.close() }
        return tables.map { table in
            let parts = table.split(separator: ".").map(String.init)
            let schema = parts.count == 2 ? parts[0] : "public"
            let name = parts.last!
            do throws(PostgresError) {
                let result = try connection.execute(
                    "SELECT c.relrowsecurity, c.relforcerowsecurity, (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
                        + "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                    [schema, name])
                guard result.rowCount == 1 else {
                    return AuditResult(
                        .postgresRowLevelSecurity, target: "table \(schema).\(name)",
                        .notChecked(reason: "\(schema).\(name) does not exist on \(primary.endpoint)"))
                }
                let enabled = result.value(row: 0, column: 0) == "t"
                let evidence =
                    "pg_class.relrowsecurity of \(schema).\(name) → \(enabled ? "t" : "f"), relforcerowsecurity → "
                    + "\(result.value(row: 0, column: 1) ?? "?"), policies → \(result.value(row: 0, column: 2) ?? "?")"
                return AuditResult(
                    .postgresRowLevelSecurity, target: "table \(schema).\(name)",
                    enabled ? .passed(evidence: evidence) : .finding(evidence: evidence))
            } catch {
                return AuditResult(
                    .postgresRowLevelSecurity, target: "table \(schema).\(name)", .notChecked(reason: error.description))
            }
        }
    }
}
