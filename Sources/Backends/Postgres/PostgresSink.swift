import KilnData
import KilnPostgres
import KilnScenario
import KilnBackend

/// The offsets of the sinks that cannot store them with their write (graph, ClickHouse), and of the ledger (in
/// the same transaction as its rows): table `<ns>_pipeline_offsets(sink, part, next_offset)` in PostgreSQL.
/// Owns one connection; used by one thread.
public final class OffsetTable {
    public let table: String
    let context: ClientContext
    let timeout: Duration
    private var connection: PostgresConnection?

    public init(context: ClientContext) throws {
        table = "\(context.namespace)_pipeline_offsets"
        self.context = context
        timeout = context.timeout
    }

    /// The open connection, or a new one to the current primary (so a reconnect follows a failover).
    func connected() throws -> PostgresConnection {
        if let connection, connection.isOpen { return connection }
        connection?.close()
        let fresh = try PostgresConnection(
            context.postgresPrimaryEndpoint, connectTimeoutSeconds: max(2, Int(timeout.seconds)))
        connection = fresh
        return fresh
    }

    public static func createSQL(_ table: String) -> String {
        "CREATE TABLE IF NOT EXISTS \(table) (sink text NOT NULL, part integer NOT NULL, next_offset bigint NOT NULL, "
            + "PRIMARY KEY (sink, part))"
    }

    /// Drops the rows of `sink` (fresh) and makes sure the table exists.
    public func setup(sink: PipelineSpec.Sink, fresh: Bool) throws {
        let connection = try connected()
        try connection.execute(Self.createSQL(table))
        if fresh { try connection.execute("DELETE FROM \(table) WHERE sink = $1", [sink.rawValue]) }
    }

    public func load(sink: PipelineSpec.Sink) throws -> [Int32: Int64] {
        let result = try connected().execute(
            "SELECT part, next_offset FROM \(table) WHERE sink = $1", [sink.rawValue])
        var offsets: [Int32: Int64] = [:]
        for row in 0..<result.rowCount {
            if let part = result.value(row: row, column: 0).flatMap({ Int32($0) }),
                let next = result.value(row: row, column: 1).flatMap({ Int64($0) })
            {
                offsets[part] = next
            }
        }
        return offsets
    }

    /// The upsert of `next` for `sink`, as one statement (also run inside the ledger's transaction).
    public func upsertSQL(sink: PipelineSpec.Sink, _ next: [Int32: Int64]) -> String {
        let values = next.sorted { $0.key < $1.key }.map { "('\(sink.rawValue)', \($0.key), \($0.value))" }
        return "INSERT INTO \(table) (sink, part, next_offset) VALUES \(values.joined(separator: ", ")) "
            + "ON CONFLICT (sink, part) DO UPDATE SET next_offset = excluded.next_offset"
    }

    public func store(sink: PipelineSpec.Sink, _ next: [Int32: Int64]) throws {
        guard !next.isEmpty else { return }
        try connected().execute(upsertSQL(sink: sink, next))
    }

    public func close() {
        connection?.close()
        connection = nil
    }
}

/// The ledger: posted transactions into `<ns>_transactions` (the load engine's table and schema) and per-user
/// balances into `<ns>_balances(user_id, balance, txns)`, with the offsets, in ONE transaction per batch —
/// exactly-once by construction. A redelivered transaction hits the primary key and is skipped (ON CONFLICT DO
/// NOTHING), and only inserted rows move a balance.
public final class PostgresSink: Sink {
    public let sink = PipelineSpec.Sink.postgres
    public let storesOffsetsWithWrite = true
    let context: ClientContext
    let table: String
    let balances: String
    let offsets: OffsetTable
    private var encoder: RowEncoder
    private var stagingReady = false

    public init(context: ClientContext) throws {
        self.context = context
        table = "\(context.namespace)_transactions"
        balances = "\(context.namespace)_balances"
        offsets = try OffsetTable(context: context)
        encoder = RowEncoder(format: .copyBinary, dataset: context.dataset, capacity: 1 << 20)
        _ = try offsets.connected()
    }

    public func setup(fresh: Bool) throws {
        let client = try PostgresClient(context: context)
        defer { client.close() }
        if fresh { try client.teardown() }
        try client.setup()
        let connection = try offsets.connected()
        if fresh { try connection.execute("DROP TABLE IF EXISTS \(balances)") }
        try connection.execute(
            "CREATE TABLE IF NOT EXISTS \(balances) (user_id bigint PRIMARY KEY, balance numeric(18,2) NOT NULL, "
                + "txns bigint NOT NULL)")
        try offsets.setup(sink: sink, fresh: fresh)
    }

    public func storedOffsets() throws -> [Int32: Int64] { try offsets.load(sink: sink) }

    public func apply(_ batch: [SinkMessage], next: [Int32: Int64]) throws -> ApplyResult {
        let connection = try offsets.connected()
        var result = ApplyResult()
        if !stagingReady {
            try connection.execute(
                "CREATE TEMP TABLE IF NOT EXISTS kiln_staging (LIKE \(table)) ON COMMIT DELETE ROWS")
            stagingReady = true
        }
        encoder.removeAll()
        encoder.header()
        var staged = 0
        for message in batch where message.row >= 0 {
            let transaction = context.dataset.transaction(message.row)
            guard transaction.posted else {
                result.skipped += 1
                continue
            }
            encoder.append(transaction)
            staged += 1
        }
        encoder.trailer()
        try connection.execute("BEGIN")
        do {
            if staged > 0 {
                _ = try connection.copyIn("COPY kiln_staging FROM STDIN (FORMAT binary)") { writer in
                    try encoder.withBytes { try writer.write($0) }
                }
                let inserted = try connection.execute(
                    """
                    WITH ins AS (INSERT INTO \(table) SELECT * FROM kiln_staging ON CONFLICT (txn_id) DO NOTHING
                      RETURNING user_id, amount),
                    moved AS (INSERT INTO \(balances) AS b (user_id, balance, txns)
                      SELECT user_id, sum(amount), count(*) FROM ins GROUP BY user_id
                      ON CONFLICT (user_id) DO UPDATE SET balance = b.balance + excluded.balance,
                        txns = b.txns + excluded.txns
                      RETURNING txns)
                    SELECT (SELECT count(*) FROM ins)
                    """)
                let count = inserted.rowCount > 0 ? inserted.value(row: 0, column: 0).flatMap { Int($0) } ?? 0 : 0
                result.applied = count
                result.duplicatesSkipped = staged - count
            }
            if !next.isEmpty { try connection.execute(offsets.upsertSQL(sink: sink, next)) }
            try connection.execute("COMMIT")
        } catch {
            _ = try? connection.execute("ROLLBACK")
            throw error
        }
        return result
    }

    public func storeOffsets(_ next: [Int32: Int64]) throws {}

    public func close() { offsets.close() }
}

extension PipelineSpec.Sink {
    public static let postgres = PipelineSpec.Sink(rawValue: "postgres")
}
