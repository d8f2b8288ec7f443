import Foundation
import KilnBackend
import KilnCore
import KilnData
import KilnPostgres
import KilnScenario

/// The operations of store `timescale`: the raw value is the name in scenarios after `timescale.`.
public enum TimescaleOperation: String, StoreOperation {
    case bulk
    case insertPoint = "insert-point"
    case minuteAggregate = "minute-aggregate"

    public static let store = "timescale"

    public var kind: OperationDescriptor.Kind {
        switch self {
        case .bulk: .bulk
        case .insertPoint: .write
        case .minuteAggregate: .read
        }
    }

    public var summary: String {
        switch self {
        case .bulk:
            "COPY the rows' points into <ns>_points (FORMAT binary, chunked)"
        case .insertPoint:
            "INSERT one point (prepared statement)"
        case .minuteAggregate:
            "per-minute count/sum of the row's merchant, 1 h to its ts"
        }
    }
}

/// Per-transaction points `(time, merchant_id, amount, txn_id)` in TimescaleDB (store `timescale`).
///
/// TimescaleDB is a PostgreSQL extension and cannot run on this machine, so this client speaks plain libpq and
/// decides in `setup`: when the server offers the `timescaledb` extension it creates a hypertable (`usesHypertable`
/// is true; that path is untested here); otherwise a table partitioned by range on `time` with one partition
/// per day of the dataset's span plus a default partition. Endpoint: `context.stack.timeseries` when its kind is
/// `timescale`, else the PostgreSQL primary (the embedded stack has no TimescaleDB server).
///
/// Threading, ownership, timeouts and outcomes as `PostgresClient`: one connection per worker, `SET
/// statement_timeout` = `context.timeout`, a timed-out or connection-lost write is `info`, a read error `fail`.
public final class TimescaleClient: Client {
    public typealias Operation = TimescaleOperation

    public let table: String
    /// Set by `setup`: whether the table is a TimescaleDB hypertable (false: declarative daily partitions).
    public private(set) var usesHypertable = false
    private let context: ClientContext
    /// The connection to the configured server (never a failover's new primary).
    private let server: PostgresPrimaryConnection
    /// COPY binary of the current chunk; reused, grows to one chunk.
    private var buffer: [UInt8] = []

    public init(context: ClientContext) throws {
        self.context = context
        let table = try StoreError.identifier(context.namespace, store: "timescale") + "_points"
        self.table = table
        let ts = context.stack.timeseries
        let endpoint: PostgresEndpoint
        if ts.kind == .timescale {
            endpoint = PostgresEndpoint(
                host: ts.endpoint.host, port: ts.endpoint.port, database: ts.database, user: ts.user ?? "postgres",
                password: StackDefinition.secret(ts.passwordEnvironmentVariable, in: context.environment))
        } else {
            let pg = context.stack.postgres
            endpoint = PostgresEndpoint(
                host: pg.primary.host, port: pg.primary.port, database: pg.database, user: pg.user,
                password: StackDefinition.secret(pg.passwordEnvironmentVariable, in: context.environment))
        }
        buffer.reserveCapacity(Int(PostgresClient.chunkRows) * 64)
        server = try PostgresPrimaryConnection(
            store: "timescale", configured: endpoint, directory: nil, timeout: context.timeout
        ) { connection throws(PostgresError) in try Self.prepareStatements(connection, table: table) }
    }

    /// The open connection, if any (internal for tests).
    var connection: PostgresConnection? { server.connection }

    public func setup() throws {
        let connection = try server.live()
        let available = try connection.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        usesHypertable = available.rowCount > 0
        if usesHypertable {
            try connection.execute(Self.hypertableSQL(table: table))
        } else {
            let spec = context.dataset.spec
            try connection.execute(Self.partitionedSQL(table: table, startMillis: spec.startMillis, days: spec.days))
        }
    }

    public func teardown() throws {
        try server.dropPreparedStatements(andTable: table)
    }

    public func close() {
        server.close()
    }

    /// TimescaleDB path (untested here: no TimescaleDB server can run on this machine).
    static func hypertableSQL(table: String) -> String {
        """
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        CREATE TABLE IF NOT EXISTS \(table) (time timestamptz NOT NULL, merchant_id bigint NOT NULL,
          amount numeric(15,2) NOT NULL, txn_id bigint NOT NULL, PRIMARY KEY (txn_id, time));
        SELECT create_hypertable('\(table)', 'time', chunk_time_interval => interval '1 day', if_not_exists => TRUE);
        CREATE INDEX IF NOT EXISTS \(table)_merchant_time ON \(table) (merchant_id, time DESC)
        """
    }

    /// Plain PostgreSQL path: range partitions of one UTC day each over [start, start + days), and a default
    /// partition for anything outside. Idempotent.
    static func partitionedSQL(table: String, startMillis: Int64, days: Int) -> String {
        let dayMillis: Int64 = 86_400_000
        let firstDay = startMillis >= 0 ? startMillis / dayMillis : (startMillis - dayMillis + 1) / dayMillis
        var statements = [
            """
            CREATE TABLE IF NOT EXISTS \(table) (time timestamptz NOT NULL, merchant_id bigint NOT NULL,
              amount numeric(15,2) NOT NULL, txn_id bigint NOT NULL, PRIMARY KEY (txn_id, time))
              PARTITION BY RANGE (time)
            """
        ]
        let lastDay = (startMillis + Int64(max(days, 1)) * dayMillis - 1) / dayMillis
        for day in firstDay...lastDay {
            let from = date(day * dayMillis)
            let to = date((day + 1) * dayMillis)
            statements.append(
                "CREATE TABLE IF NOT EXISTS \(table)_p\(from.filter { $0 != "-" }) PARTITION OF \(table) "
                    + "FOR VALUES FROM ('\(from) 00:00:00+00') TO ('\(to) 00:00:00+00')")
        }
        statements.append("CREATE TABLE IF NOT EXISTS \(table)_default PARTITION OF \(table) DEFAULT")
        statements.append("CREATE INDEX IF NOT EXISTS \(table)_merchant_time ON \(table) (merchant_id, time DESC)")
        return statements.joined(separator: ";\n")
    }

    /// `YYYY-MM-DD` (UTC) of Unix milliseconds.
    static func date(_ millis: Int64) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let parts = calendar.dateComponents(
            [.year, .month, .day], from: Date(timeIntervalSince1970: Double(millis) / 1000))
        func two(_ value: Int?) -> String { (value ?? 0) < 10 ? "0\(value ?? 0)" : "\(value ?? 0)" }
        return "\(parts.year ?? 1970)-\(two(parts.month))-\(two(parts.day))"
    }

    public func invoke(_ operation: TimescaleOperation, _ request: Request) -> Outcome {
        server.run(isRead: operation.kind == .read) {
            switch operation {
            case .bulk:
                _ = try bulk(request.rows)
            case .insertPoint:
                let row = context.dataset.transaction(request.row)
                try server.withPreparedStatements().executePrepared(
                    "kiln_insert_point",
                    [
                        String(row.timestampMillis), String(row.merchantID),
                        PostgresClient.decimal(row.amountCents, scale: 2), String(row.txnID),
                    ])
            case .minuteAggregate:
                _ = try minuteAggregate(row: request.row)
            }
            return .ok
        }
    }

    /// COPY of `rows` as points, in chunks of `PostgresClient.chunkRows` rows through one reused buffer.
    func bulk(_ rows: Range<Int64>) throws -> Int {
        let connection = try server.live()
        let dataset = context.dataset
        return try connection.copyIn("COPY \(table) (time, merchant_id, amount, txn_id) FROM STDIN (FORMAT binary)") {
            writer in
            buffer.removeAll(keepingCapacity: true)
            // "PGCOPY\n\xFF\r\n\0", flags, header extension length.
            buffer.append(contentsOf: [0x50, 0x47, 0x43, 0x4F, 0x50, 0x59, 0x0A, 0xFF, 0x0D, 0x0A, 0x00])
            append(Int32(0))
            append(Int32(0))
            try PostgresClient.inChunks(rows) { chunk, last in
                for row in chunk {
                    appendPoint(dataset.transaction(row))
                }
                if last { append(Int16(-1)) }
                try buffer.withUnsafeBytes { bytes in try writer.write(bytes) }
                buffer.removeAll(keepingCapacity: true)
            }
        }
    }

    func minuteAggregate(row: Int64) throws(PostgresError) -> PostgresResult {
        let transaction = context.dataset.transaction(row)
        return try server.withPreparedStatements().executePrepared(
            "kiln_minute_aggregate", [String(transaction.merchantID), String(transaction.timestampMillis)])
    }

    // MARK: encoding

    private func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { buffer.append(contentsOf: $0) }
    }

    /// One COPY binary tuple: time (timestamptz µs since 2000), merchant_id, amount (numeric), txn_id.
    private func appendPoint(_ row: Transaction) {
        append(Int16(4))
        append(Int32(8))
        append((row.timestampMillis - 946_684_800_000) * 1000)
        append(Int32(8))
        append(row.merchantID)
        appendNumeric(row.amountCents)
        append(Int32(8))
        append(row.txnID)
    }

    /// PostgreSQL binary numeric of `cents / 100` (display scale 2), through the one encoder.
    func appendNumeric(_ cents: Int64) {
        PostgresNumeric.append(cents, scale: 2, to: &buffer)
    }

    /// The COPY binary field (length and value) `appendNumeric` writes for `cents`; for tests.
    func numericBytes(_ cents: Int64) -> [UInt8] {
        buffer.removeAll(keepingCapacity: true)
        appendNumeric(cents)
        return buffer
    }

    // MARK: connection

    private static func prepareStatements(_ connection: PostgresConnection, table: String) throws(PostgresError) {
        try connection.prepare(
            "kiln_insert_point",
            """
            INSERT INTO \(table) (time, merchant_id, amount, txn_id)
            VALUES (timestamptz 'epoch' + $1::bigint * interval '1 millisecond', $2, $3, $4)
            """)
        try connection.prepare(
            "kiln_minute_aggregate",
            """
            SELECT date_trunc('minute', time) AS minute, count(*) AS txns, sum(amount) AS amount FROM \(table)
            WHERE merchant_id = $1
              AND time > timestamptz 'epoch' + $2::bigint * interval '1 millisecond' - interval '1 hour'
              AND time <= timestamptz 'epoch' + $2::bigint * interval '1 millisecond'
            GROUP BY 1 ORDER BY 1
            """)
    }
}
