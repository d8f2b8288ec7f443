import Foundation
import KilnBackend
import KilnCore
import KilnPostgres
import KilnScenario

/// The `postgres:` section of a stack file: the primary, its streaming replicas, the database and login.
public struct PostgresStackConfig: StackSection {
    public static let key = "postgres"

    public var primary: HostPort
    public var replicas: [HostPort]
    public var database: String
    public var user: String
    public var passwordEnvironmentVariable: String?
    /// `sensitive_tables:` — tables (`schema.table` or `table`) that must have Row Level Security; `kiln audit`
    /// checks each. Names: letters, digits and `_` (not first), at most one `.`.
    public var sensitiveTables: [String] = []

    public init(
        primary: HostPort, replicas: [HostPort], database: String, user: String, passwordEnvironmentVariable: String?
    ) {
        self.primary = primary
        self.replicas = replicas
        self.database = database
        self.user = user
        self.passwordEnvironmentVariable = passwordEnvironmentVariable
    }

    public var addresses: [StackSectionAddress] {
        [StackSectionAddress("primary", primary)] + replicas.map { StackSectionAddress("replicas", $0) }
    }

    /// The embedded server names of this section (`postgres-primary`, `postgres-replica`, `postgres-replica-2`…).
    public var serverNames: [String] {
        ["postgres-primary"] + replicas.indices.map { $0 == 0 ? "postgres-replica" : "postgres-replica-\($0 + 1)" }
    }

    /// PostgreSQL is dynamically linked and starts under libfaketime.
    public var faketimeServers: [String] { serverNames }

    public static let parser = StackSectionParser(key: key) { (pg, _) throws(SpecError) in
        var postgres = PostgresStackConfig(
            primary: try pg.hostPort("primary"),
            replicas: try pg.hostPorts("replicas"),
            database: try pg.optionalString("database") ?? "kiln",
            user: try pg.optionalString("user") ?? "postgres",
            passwordEnvironmentVariable: try pg.optionalString("password_env"))
        if pg.contains("sensitive_tables") {
            for (text, line, column) in try pg.strings("sensitive_tables") {
                let parts = text.split(separator: ".", omittingEmptySubsequences: false)
                guard (1...2).contains(parts.count), text.count <= 127,
                    parts.allSatisfy({ part in
                        !part.isEmpty && !part.first!.isNumber
                            && part.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
                    })
                else {
                    throw SpecError(
                        file: pg.file, line: line, column: column, field: "postgres.sensitive_tables",
                        message: "\(text.debugDescription) is not a table name (table or schema.table: letters, digits and _, not starting with a digit)")
                }
                postgres.sensitiveTables.append(text)
            }
        }
        try pg.finish()
        return postgres
    }
}

extension StackDefinition {
    public typealias Postgres = PostgresStackConfig

    /// The `postgres:` section. Only for code that runs because the scenario uses PostgreSQL (checked against the
    /// stack when the run starts); `section(PostgresStackConfig.self)` is the optional form.
    public var postgres: PostgresStackConfig {
        get { requiredSection(PostgresStackConfig.self, key: PostgresStackConfig.key) }
        set { setSection(PostgresStackConfig.key, newValue) }
    }
}

extension ServerRole {
    public static let postgresPrimary = ServerRole("postgres-primary")
    public static let postgresReplica = ServerRole("postgres-replica")
}

extension PostgresStackConfig {
    /// The embedded servers: the primary, then each streaming replica (cloned from the primary once it answers with
    /// the database in place).
    static func embeddedServers(_ stack: StackDefinition, _ paths: EmbeddedPaths) -> [EmbeddedServerDescription] {
        guard let pg = stack.section(PostgresStackConfig.self) else { return [] }
        let requires = [(what: "PostgreSQL 15", path: "/usr/lib/postgresql/15/bin/pg_ctl")]
        let probe: @Sendable (HostPort, Int) throws -> String = { endpoint, timeout in
            let connection = try PostgresConnection(
                PostgresEndpoint(host: endpoint.host, port: endpoint.port, database: "postgres", user: pg.user),
                connectTimeoutSeconds: timeout)
            let inRecovery = try connection.execute("SELECT pg_is_in_recovery()").value(row: 0, column: 0)
            return inRecovery == "t" ? "replica" : "primary"
        }
        var servers = [
            EmbeddedServerDescription(
                name: "postgres-primary", role: .postgresPrimary, endpoint: pg.primary, wire: .postgres,
                launch: .postgres(replicaOf: nil, user: "postgres"), requires: requires, probe: probe,
                afterReady: { try createDatabase(pg) })
        ]
        for (replica, name) in zip(pg.replicas, pg.serverNames.dropFirst()) {
            servers.append(
                EmbeddedServerDescription(
                    name: name, role: .postgresReplica, endpoint: replica, wire: .postgres,
                    launch: .postgres(replicaOf: pg.primary, user: "postgres"), startsAfter: ["postgres-primary"],
                    requires: requires, probe: probe))
        }
        return servers
    }

    /// Creates the stack's database on the primary when it is missing.
    static func createDatabase(_ pg: PostgresStackConfig) throws {
        let admin = PostgresEndpoint(
            host: pg.primary.host, port: pg.primary.port, database: "postgres", user: pg.user, password: nil)
        do {
            let connection = try PostgresConnection(admin, connectTimeoutSeconds: 5)
            let exists = try connection.execute("SELECT 1 FROM pg_database WHERE datname = $1", [pg.database])
            if exists.rowCount == 0 {
                try connection.execute("CREATE DATABASE \"\(pg.database)\"")
            }
        } catch {
            throw EmbeddedProbeError("could not create database \(pg.database): \(error)")
        }
    }

    static let stackSide = BackendStack(
        section: parser, servers: embeddedServers,
        proxy: ProxiedEndpoint(
            wire: .postgres, endpoint: { $0.section(PostgresStackConfig.self)?.primary },
            redirect: { stack, proxy in stack.postgres.primary = proxy }),
        environment: { stack, _ in
            guard let pg = stack.section(PostgresStackConfig.self) else { return [] }
            var variables: [(name: String, value: String)] = [
                ("PGHOST", pg.primary.host), ("PGPORT", String(pg.primary.port)), ("PGUSER", pg.user),
                ("PGDATABASE", pg.database),
                ("KILN_POSTGRES_URL", "postgresql://\(pg.user)@\(pg.primary)/\(pg.database)"),
            ]
            if let replica = pg.replicas.first {
                variables.append(("KILN_POSTGRES_REPLICA_URL", "postgresql://\(pg.user)@\(replica)/\(pg.database)"))
            }
            return variables
        },
        // The failover fault moves the primary; a past drill healed by a rebuild may have left a replica promoted.
        currentPrimary: { stack in
            guard let pg = stack.section(PostgresStackConfig.self) else { return nil }
            return promotedReplica(stack) ?? pg.primary
        },
        // 100M rows (nightly-100m, n100m-s17 and -s17b): the filesystem's free space fell by ~47 GB for PostgreSQL at
        // its lowest (index build) — primary and streaming replica, each with heap, PK, the two secondary indexes and
        // 4-6 GB of WAL, plus the build's sort files: ~240 B per row per copy.
        diskBytesPerBulkRow: { stack in
            guard let pg = stack.section(PostgresStackConfig.self) else { return 0 }
            return 240 * (1 + pg.replicas.count)
        })

    /// The replica that is the primary while the stack file's primary is a standby (a failover drill healed by a
    /// rebuild leaves it so until `kiln stack up` fails back; runs and checks then use the promoted replica); nil
    /// when the roles are as the file says, the stack lists no PostgreSQL, or a server cannot be asked (then the file
    /// is used as written). Asks each server `pg_is_in_recovery()` with a 2 s connect timeout.
    public static func promotedReplica(_ stack: StackDefinition) -> HostPort? {
        guard let pg = stack.section(PostgresStackConfig.self) else { return nil }
        func inRecovery(_ address: HostPort) -> Bool? {
            let endpoint = PostgresEndpoint(
                host: address.host, port: address.port, database: pg.database, user: pg.user,
                password: StackDefinition.secret(
                    pg.passwordEnvironmentVariable, in: ProcessInfo.processInfo.environment))
            guard let connection = try? PostgresConnection(endpoint, connectTimeoutSeconds: 2),
                let result = try? connection.execute("SELECT pg_is_in_recovery()"), result.rowCount == 1
            else { return nil }
            return result.value(row: 0, column: 0) == "t"
        }
        guard inRecovery(pg.primary) == true else { return nil }
        return pg.replicas.first { inRecovery($0) == false }
    }

    /// TimescaleDB reads the `timeseries:` section (contributed by ClickHouse's backend) with `kind: timescale`.
    static let timescaleStackSide = BackendStack(
        sectionKey: TimeSeriesStackConfig.key,
        environment: { stack, _ in
            guard let ts = stack.section(TimeSeriesStackConfig.self), ts.kind == .timescale else { return [] }
            return [("KILN_TIMESCALE_URL", "postgresql://\(ts.endpoint)/\(ts.database)")]
        })
}
