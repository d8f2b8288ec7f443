import KilnBackend
import KilnCore
import KilnPostgres

/// A load client's one libpq connection to the current PostgreSQL primary, opened on use, with the client's prepared
/// statements: what `PostgresClient` and `TimescaleClient` share.
///
/// Failover: with a `directory`, every (re)connect goes to its `postgres` entry (falling back to `configured`), and a
/// connection opened before the entry last changed is replaced before the next op. A client that cannot reach the
/// new primary while its connection to the old one still works keeps using that connection (as a pooled application
/// cut off from the new primary does) and tries the new one again at most every 5 s. Without a directory it always
/// connects to `configured`.
///
/// Threading: one per client (not Sendable); every call blocks the calling thread (libpq). Ownership: owns the
/// connection; `close()` closes it. Timeouts: `SET statement_timeout` = `timeout` on every connection, and the
/// network bound 2 s above it.
final class PostgresPrimaryConnection {
    /// The stack file's server, with database, user and password.
    let configured: PostgresEndpoint
    private let directory: PrimaryDirectory?
    private let timeout: Duration
    /// Prepares the client's statements on a new connection (once per connection, before its first prepared op).
    private let prepareStatements: (PostgresConnection) throws(PostgresError) -> Void
    /// The open connection, if any (internal for tests, which end its backend to simulate a lost connection).
    var connection: PostgresConnection?
    /// The directory generation `connection` was opened at (nil without a directory entry).
    private var connectedGeneration: Int?
    /// The server `connection` was opened to (the directory's primary at that time).
    private(set) var servedBy: HostPort?
    /// When the new primary was last tried and could not be reached (the old connection kept in use meanwhile).
    private var unreachableSince: ContinuousClock.Instant?
    /// Whether `connection` has the statements of `prepareStatements`; reset with every new connection.
    private var prepared = false

    /// Connects now.
    /// - Throws: `StoreError` naming `store` and the address it tried when the server cannot be reached.
    init(
        store: String, configured: PostgresEndpoint, directory: PrimaryDirectory?, timeout: Duration,
        prepareStatements: @escaping (PostgresConnection) throws(PostgresError) -> Void
    ) throws {
        self.configured = configured
        self.directory = directory
        self.timeout = timeout
        self.prepareStatements = prepareStatements
        let (endpoint, generation) = Self.currentPrimary(configured, directory)
        let server = HostPort(host: endpoint.host, port: endpoint.port)
        do {
            connection = try Self.connect(endpoint, timeout: timeout)
            connectedGeneration = generation
            servedBy = server
        } catch {
            throw StoreError(store: store, address: server.description, underlying: error)
        }
    }

    /// The open connection, reconnecting (statements to be prepared again) first when the last one broke or was
    /// closed, or when the directory names a new primary that answers.
    func live() throws(PostgresError) -> PostgresConnection {
        let (endpoint, generation) = Self.currentPrimary(configured, directory)
        if let connection, connection.isOpen, generation == connectedGeneration {
            return connection
        }
        if let connection, connection.isOpen {
            // The primary moved. Keep the old connection while the new primary cannot be reached.
            if let unreachableSince, unreachableSince.duration(to: .now) < .seconds(5) { return connection }
            do {
                let fresh = try Self.connect(endpoint, timeout: timeout)
                connection.close()
                self.connection = fresh
                prepared = false
                connectedGeneration = generation
                servedBy = HostPort(host: endpoint.host, port: endpoint.port)
                unreachableSince = nil
                return fresh
            } catch {
                unreachableSince = .now
                return connection
            }
        }
        connection?.close()
        connection = nil
        prepared = false
        unreachableSince = nil
        servedBy = HostPort(host: endpoint.host, port: endpoint.port)
        let fresh = try Self.connect(endpoint, timeout: timeout)
        connection = fresh
        connectedGeneration = generation
        return fresh
    }

    /// The open connection with the client's statements prepared on it (once per connection; the tables they name
    /// must exist, else this fails with SQLSTATE 42P01).
    func withPreparedStatements() throws(PostgresError) -> PostgresConnection {
        let connection = try live()
        if !prepared {
            try prepareStatements(connection)
            prepared = true
        }
        return connection
    }

    /// Drops `table` and every prepared statement (they reference it; they are prepared again on next use).
    func dropPreparedStatements(andTable table: String) throws(PostgresError) {
        try live().execute("DEALLOCATE ALL; DROP TABLE IF EXISTS \(table)")
        prepared = false
    }

    /// Closes the connection; the next use reconnects.
    func close() {
        connection?.close()
        connection = nil
    }

    /// How `error` ends an op (`outcome(_:isRead:)`), after closing the connection when it cannot serve the next op:
    /// it broke, or the server refused a write as read-only (SQLSTATE 25006, a demoted primary: the next op
    /// reconnects to the current primary).
    func outcome(_ error: PostgresError, isRead: Bool) -> Outcome {
        if error.kind == .connectionLost || error.kind == .unexpectedResult || error.sqlState == "25006" {
            close()
        }
        return Self.outcome(error, isRead: isRead)
    }

    /// Runs one op: `body`'s outcome, or the outcome of what it threw (a `PostgresError` as `outcome(_:isRead:)`,
    /// anything else `client`: `fail` for a read, `info` for a write).
    @inline(__always)
    func run(isRead: Bool, _ body: () throws -> Outcome) -> Outcome {
        do {
            return try body()
        } catch let error as PostgresError {
            return outcome(error, isRead: isRead)
        } catch {
            return isRead ? .fail("client") : .info("client")
        }
    }

    /// How a libpq error ends an op (ARCHITECTURE.md, Outcomes): nothing sent or a server refusal is `fail`; a
    /// broken connection or timeout after sending is `info` for writes and `fail` for reads.
    static func outcome(_ error: PostgresError, isRead: Bool) -> Outcome {
        switch error.kind {
        case .connect, .closed:
            return .fail("connection")
        case .invalidArgument:
            return .fail("invalid-argument")
        case .notRun:
            return .fail("pipeline-aborted")
        case .server:
            if error.sqlState == "57014" {
                return isRead ? .fail("timeout") : .info("timeout")
            }
            return .fail("sqlstate-\(error.sqlState ?? "unknown")")
        case .connectionLost:
            return isRead ? .fail("connection") : .info("connection")
        case .unexpectedResult:
            return isRead ? .fail("unexpected-result") : .info("unexpected-result")
        }
    }

    /// The directory's `postgres` primary (and its generation) when there is one, else `configured`.
    static func currentPrimary(
        _ configured: PostgresEndpoint, _ directory: PrimaryDirectory?
    ) -> (PostgresEndpoint, Int?) {
        guard let entry = directory?.entry(of: "postgres") else { return (configured, nil) }
        var endpoint = configured
        endpoint.host = entry.endpoint.host
        endpoint.port = entry.endpoint.port
        return (endpoint, entry.generation)
    }

    /// A connection to `endpoint` with the statement and network timeouts of `timeout`.
    static func connect(
        _ endpoint: PostgresEndpoint, timeout: Duration
    ) throws(PostgresError) -> PostgresConnection {
        // The network bound sits 2 s above the statement timeout: a slow statement ends 57014 (its own outcome), a
        // cut network ends the op `info("connection")` instead of blocking the worker for TCP's ~15 minutes.
        let connection = try PostgresConnection(
            endpoint, connectTimeoutSeconds: max(2, Int(timeout.seconds)),
            networkTimeoutMilliseconds: Int(statementTimeoutMilliseconds(timeout)) + 2000)
        try connection.execute("SET statement_timeout = \(statementTimeoutMilliseconds(timeout))")
        return connection
    }

    /// `timeout` as the `statement_timeout` setting (at least 1 ms: 0 would mean none).
    static func statementTimeoutMilliseconds(_ timeout: Duration) -> Int64 {
        max(1, timeout.wholeMilliseconds)
    }
}
