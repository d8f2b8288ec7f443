import KilnBackend
import KilnCore
import KilnData
import KilnPostgres
import KilnScenario

/// The operations of store `postgres`: the raw value is the name in scenarios after `postgres.`.
public enum PostgresOperation: String, StoreOperation {
    case bulk
    case insert
    case pointRead = "point-read"
    case userRecent = "user-recent"
    case merchantHourly = "merchant-hourly"

    public static let store = "postgres"

    public var kind: OperationDescriptor.Kind {
        switch self {
        case .bulk: .bulk
        case .insert: .write
        case .pointRead, .userRecent, .merchantHourly: .read
        }
    }

    public var summary: String {
        switch self {
        case .bulk:
            "COPY the rows into <ns>_transactions (FORMAT binary, 8192-row chunks)"
        case .insert:
            "INSERT one row (prepared statement)"
        case .pointRead:
            "SELECT the row by txn_id; fails not-found when absent"
        case .userRecent:
            "the last 50 transactions of the row's user, newest first"
        case .merchantHourly:
            "per-hour count and sum(amount) of the row's merchant, 24 h"
        }
    }
}

/// The transactions table in PostgreSQL (store `postgres`), on `context.stack.postgres.primary`.
///
/// Threading: one instance per worker thread; every call blocks that thread (libpq). Ownership: owns its one
/// connection and its COPY encoder buffer. Timeouts: `SET statement_timeout` = `context.timeout` on every
/// connection, so a statement (a bulk COPY included) running longer fails with SQLSTATE 57014, which ends
/// `info("timeout")` for writes and `fail("timeout")` for reads. A connection lost during a write ends
/// `info("connection")`; the next `invoke` reconnects (and re-prepares) before running its op.
///
/// Failover: with `context.primaries`, every (re)connect goes to that directory's `postgres` entry (falling back to
/// the stack file's primary), and a connection opened before the entry last changed is dropped before the next op,
/// so workers follow a promotion without a restart. A write refused because the server is read-only (SQLSTATE
/// 25006: a demoted primary) ends `fail` and drops the connection too. A client that cannot reach the new primary
/// while its connection to the old one still works keeps using that connection (as a pooled application cut off
/// from the new primary does) and tries the new one again at most every 5 s: with an unfenced old primary this is
/// how a split-brain's minority keeps writing (`servedBy` then names the old primary, and the history shows it).
public final class PostgresClient: Client, SecondaryIndexes {
    public typealias Operation = PostgresOperation

    /// Rows encoded per chunk handed to libpq: about 1 MB of COPY binary, so memory stays flat for any range.
    static let chunkRows: Int64 = 8192

    public let table: String
    let context: ClientContext
    /// The connection to the current primary, following the `primaries` directory.
    private let primary: PostgresPrimaryConnection
    private var encoder: RowEncoder
    /// Multiplexed reads ask for binary results (`KILN_PG_BINARY_RESULTS=1`): the op's outcome needs only the row
    /// count, and the server's binary send functions cost less than its text output functions.
    let binaryReadResults: Bool
    /// Multiplexed ops are pipelined (`enablePipelining`): the connection enters pipeline mode once prepared.
    var pipelinesMultiplexedOps = false

    public init(context: ClientContext) throws {
        let pg = context.stack.postgres
        self.context = context
        let table = try StoreError.identifier(context.namespace, store: "postgres") + "_transactions"
        self.table = table
        self.encoder = RowEncoder(format: .copyBinary, dataset: context.dataset, capacity: 2 << 20)
        self.binaryReadResults = context.environment["KILN_PG_BINARY_RESULTS"] == "1"
        primary = try PostgresPrimaryConnection(
            store: "postgres",
            configured: PostgresEndpoint(
                host: pg.primary.host, port: pg.primary.port, database: pg.database, user: pg.user,
                password: StackDefinition.secret(pg.passwordEnvironmentVariable, in: context.environment)),
            directory: context.primaries, timeout: context.timeout
        ) { connection throws(PostgresError) in try Self.prepareStatements(connection, table: table) }
    }

    /// The server the connection was opened to (the directory's primary at that time).
    public var servedBy: HostPort? { primary.servedBy }

    /// The open connection, if any (internal for tests, which end its backend to simulate a lost connection).
    var connection: PostgresConnection? { primary.connection }

    public func setup() throws {
        let sql = TransactionSchema.postgres(table: table)
            .replacingOccurrences(of: "CREATE TABLE ", with: "CREATE TABLE IF NOT EXISTS ")
        try liveConnection().execute("\(sql); \(secondaryIndexes)")
    }

    /// The indexes the reads use; the primary key stays (txn_id grows with the row, so its inserts are cheap).
    private var secondaryIndexes: String {
        """
        CREATE INDEX IF NOT EXISTS \(table)_user_ts ON \(table) (user_id, ts);
        CREATE INDEX IF NOT EXISTS \(table)_merchant_ts ON \(table) (merchant_id, ts)
        """
    }

    public func dropSecondaryIndexes() throws {
        try liveConnection().execute("DROP INDEX IF EXISTS \(table)_user_ts, \(table)_merchant_ts")
    }

    /// Builds both indexes with 4 GB of sort memory (the (key, ts, tid) entries of 100M rows sort in memory) and
    /// parallel workers, without a statement timeout (on 100M rows this takes minutes), then ANALYZEs the table so
    /// the reads that follow get index plans; the connection's usual timeout is restored afterwards, also on
    /// failure.
    public func buildSecondaryIndexes() throws {
        let connection = try liveConnection()
        try connection.execute(
            "SET statement_timeout = 0; SET maintenance_work_mem = '4GB'; SET max_parallel_maintenance_workers = 2")
        defer {
            try? connection.execute(
                "RESET maintenance_work_mem; RESET max_parallel_maintenance_workers; "
                    + "SET statement_timeout = \(PostgresPrimaryConnection.statementTimeoutMilliseconds(context.timeout))")
        }
        try connection.execute(secondaryIndexes)
        try connection.execute("ANALYZE \(table)")
    }

    public func teardown() throws {
        try primary.dropPreparedStatements(andTable: table)
    }

    public func close() {
        primary.close()
    }

    public func invoke(_ operation: PostgresOperation, _ request: Request) -> Outcome {
        primary.run(isRead: operation.kind == .read) {
            switch operation {
            case .bulk:
                _ = try bulk(request.rows)
            case .insert:
                try preparedConnection().executePrepared(
                    "kiln_insert", Self.insertParameters(context.dataset.transaction(request.row), context.dataset))
            case .pointRead, .userRecent, .merchantHourly:
                let result = try read(operation, row: request.row)
                if operation == .pointRead && result.rowCount == 0 {
                    return .fail("not-found")
                }
            }
            return .ok
        }
    }

    /// Streams `rows` through one `COPY … FROM STDIN (FORMAT binary)`; returns the rows the server copied.
    /// Memory: one reused encoder buffer of about `chunkRows` rows, whatever the range.
    func bulk(_ rows: Range<Int64>) throws -> Int {
        let connection = try liveConnection()
        let dataset = context.dataset
        return try connection.copyIn("COPY \(table) FROM STDIN (FORMAT binary)") { writer in
            encoder.removeAll()
            encoder.header()
            try Self.inChunks(rows) { chunk, last in
                encoder.append(dataset, rows: chunk)
                if last { encoder.trailer() }
                try encoder.withBytes { bytes in try writer.write(bytes) }
                encoder.removeAll()
            }
        }
    }

    /// Calls `body` for consecutive chunks of at most `chunkRows` rows of `rows`, in order, `last` true for the
    /// final one; an empty range is one empty, last chunk (so a COPY still gets its trailer). The COPY loop of
    /// this client and of `TimescaleClient`.
    static func inChunks(
        _ rows: Range<Int64>, _ body: (_ chunk: Range<Int64>, _ last: Bool) throws -> Void
    ) rethrows {
        var start = rows.lowerBound
        repeat {
            let end = min(start + chunkRows, rows.upperBound)
            try body(start..<end, end == rows.upperBound)
            start = end
        } while start < rows.upperBound
    }

    /// Runs read operation `operation` for dataset row `row` and returns its result. Precondition: `operation` is
    /// a read (`invoke` passes only those).
    func read(_ operation: PostgresOperation, row: Int64) throws(PostgresError) -> PostgresResult {
        let transaction = context.dataset.transaction(row)
        let connection = try preparedConnection()
        switch operation {
        case .pointRead: return try connection.executePrepared("kiln_point_read", [String(transaction.txnID)])
        case .userRecent: return try connection.executePrepared("kiln_user_recent", [String(transaction.userID)])
        case .merchantHourly:
            return try connection.executePrepared(
                "kiln_merchant_hourly", [String(transaction.merchantID), String(transaction.timestampMillis)])
        case .bulk, .insert: preconditionFailure("PostgresClient.read of write operation \(operation.id)")
        }
    }

    // MARK: connection

    private func liveConnection() throws(PostgresError) -> PostgresConnection { try primary.live() }

    private static func prepareStatements(_ connection: PostgresConnection, table: String) throws(PostgresError) {
        try connection.prepare(
            "kiln_insert",
            """
            INSERT INTO \(table) (txn_id, user_id, merchant_id, device_id, location_id, amount, currency, ts, channel,
              status, fraud_score, is_fraud, ring_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, timestamptz 'epoch' + $8::bigint * interval '1 millisecond', $9, $10,
              $11, $12, $13)
            """)
        try connection.prepare(
            "kiln_point_read",
            """
            SELECT txn_id, user_id, merchant_id, device_id, location_id, amount, currency,
              (extract(epoch FROM ts) * 1000)::bigint AS ts_ms, channel, status, fraud_score, is_fraud, ring_id
            FROM \(table) WHERE txn_id = $1
            """)
        try connection.prepare(
            "kiln_user_recent",
            "SELECT txn_id, amount, ts FROM \(table) WHERE user_id = $1 ORDER BY ts DESC LIMIT 50")
        try connection.prepare(
            "kiln_merchant_hourly",
            """
            SELECT date_trunc('hour', ts) AS hour, count(*) AS txns, sum(amount) AS amount FROM \(table)
            WHERE merchant_id = $1
              AND ts > timestamptz 'epoch' + $2::bigint * interval '1 millisecond' - interval '24 hours'
              AND ts <= timestamptz 'epoch' + $2::bigint * interval '1 millisecond'
            GROUP BY 1 ORDER BY 1
            """)
    }

    /// The open connection with the statements of `insert` and the reads prepared on it (once per connection;
    /// the table must exist, else this fails with SQLSTATE 42P01).
    func preparedConnection() throws(PostgresError) -> PostgresConnection {
        try primary.withPreparedStatements()
    }

    /// How `error` ends an op, closing the connection when it cannot serve the next one.
    func outcome(_ error: PostgresError, isRead: Bool) -> Outcome {
        primary.outcome(error, isRead: isRead)
    }

    /// Drops the connection (a multiplexed op was abandoned mid-flight); the next op reconnects.
    func dropConnection() {
        primary.close()
    }

    /// Text parameters of `kiln_insert` for `row` (a single-row write; allocating here is fine).
    static func insertParameters(_ row: Transaction, _ dataset: Dataset) -> [String?] {
        [
            String(row.txnID), String(row.userID), String(row.merchantID), String(row.deviceID),
            String(row.locationID), decimal(row.amountCents, scale: 2), dataset.currencyCodes[Int(row.currency)],
            String(row.timestampMillis), dataset.channelNames[Int(row.channel)],
            row.declined ? "declined" : "approved", decimal(Int64(row.fraudScoreMillis), scale: 3),
            row.isFraud ? "true" : "false", row.ringID >= 0 ? String(row.ringID) : nil,
        ]
    }

    /// `value / 10^scale` as exact decimal text: (1205, 2) -> `12.05`, (-7, 3) -> `-0.007`.
    static func decimal(_ value: Int64, scale: Int) -> String {
        var divisor: UInt64 = 1
        for _ in 0..<scale { divisor *= 10 }
        let magnitude = value.magnitude
        let fraction = String(magnitude % divisor)
        let padded = String(repeating: "0", count: scale - fraction.count) + fraction
        return (value < 0 ? "-" : "") + "\(magnitude / divisor).\(padded)"
    }
}


extension ClientContext {
    /// The current PostgreSQL primary (the `primaries` directory's entry after a failover, else the stack file's),
    /// with its password from the environment: where the checkers, the pipeline's ledger and its offset table
    /// connect. Read it at each (re)connect to follow a failover.
    public var postgresPrimaryEndpoint: PostgresEndpoint {
        let pg = stack.postgres
        let configured = PostgresEndpoint(
            host: pg.primary.host, port: pg.primary.port, database: pg.database, user: pg.user,
            password: StackDefinition.secret(pg.passwordEnvironmentVariable, in: environment))
        return PostgresPrimaryConnection.currentPrimary(configured, primaries).0
    }
}
