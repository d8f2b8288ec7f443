import KilnBackend
import Foundation
import KilnCore
import KilnData
import KilnHTTP
import KilnScenario

/// The operations of store `clickhouse`: the raw value is the name in scenarios after `clickhouse.`.
public enum ClickHouseOperation: String, StoreOperation {
    case bulk
    case insert
    case minuteAggregate = "minute-aggregate"
    case pointRead = "point-read"

    public static let store = "clickhouse"

    public var kind: OperationDescriptor.Kind {
        switch self {
        case .bulk: .bulk
        case .insert: .write
        case .minuteAggregate, .pointRead: .read
        }
    }

    public var summary: String {
        switch self {
        case .bulk:
            "INSERT the rows into <ns>_transactions FORMAT RowBinary, one POST"
        case .insert:
            "INSERT one row (FORMAT RowBinary; ClickHouse's worst case)"
        case .minuteAggregate:
            "per-minute count/sum of the row's merchant, hour before it"
        case .pointRead:
            "SELECT the row by txn_id; fails not-found when absent"
        }
    }
}

/// The transactions table and its per-minute per-merchant aggregate in ClickHouse (store `clickhouse`), over the
/// HTTP interface of `context.stack.timeseries.endpoint`. Written for ClickHouse 18.16 (the embedded stack): no
/// DateTime64 (`ts` is Unix ms, see `TransactionSchema.clickhouse`), aggregate as a SummingMergeTree
/// materialized view, which sums Decimal columns on merge.
///
/// Threading: one instance per worker thread; every call blocks it (libcurl easy). Ownership: owns one
/// `HTTPClient` (one keep-alive connection) and one RowBinary encoder buffer. Timeouts: each request is bounded by
/// `context.timeout`; a write that times out ends `info("timeout")`, a read `fail("timeout")`. After the request
/// was sent, a 5xx or a broken connection leaves a write `info` (18.16 answers 500 for every exception, so its
/// fate cannot be told apart); a refused connection is `fail("connection")` (nothing was sent).
public final class ClickHouseClient: Client {
    public typealias Operation = ClickHouseOperation

    /// `database.<ns>_transactions`.
    public let table: String
    /// `database.<ns>_merchant_minute`: SummingMergeTree of (merchant_id, minute) -> txns, amount.
    public let aggregate: String
    private let context: ClientContext
    private let baseURL: String
    private let address: String
    private let http: HTTPClient
    private var encoder: RowEncoder
    /// The connection of setup and teardown (DDL), with a timeout of at least `ddlTimeoutSeconds`.
    private let ddl: HTTPClient
    static let ddlTimeoutSeconds: Double = 120

    public init(context: ClientContext) throws {
        let ts = context.stack.timeseries
        self.context = context
        let namespace = try StoreError.identifier(context.namespace, store: "clickhouse")
        let database = try StoreError.identifier(ts.database, store: "clickhouse")
        table = "\(database).\(namespace)_transactions"
        aggregate = "\(database).\(namespace)_merchant_minute"
        address = ts.endpoint.description
        baseURL = ts.baseURL
        let seconds =
            context.timeout.seconds
        http = try HTTPClient(
            timeoutSeconds: seconds, connectTimeoutSeconds: min(5, max(1, seconds)), user: ts.user,
            password: StackDefinition.secret(ts.passwordEnvironmentVariable, in: context.environment),
            caFile: ts.caFile(in: context.environment))
        // Setup and teardown are not measured operations: a DROP of a 10M-row table while ClickHouse merges its
        // parts took longer than a scenario's 10 s op timeout (a nightly's fresh setup exited 69 on it).
        ddl = try HTTPClient(
            timeoutSeconds: max(seconds, Self.ddlTimeoutSeconds), connectTimeoutSeconds: min(5, max(1, seconds)),
            user: ts.user, password: StackDefinition.secret(ts.passwordEnvironmentVariable, in: context.environment),
            caFile: ts.caFile(in: context.environment))
        encoder = RowEncoder(format: .rowBinary, dataset: context.dataset, capacity: 1 << 16)
        do {
            try http.get(baseURL + "ping").expectOK()
        } catch {
            throw StoreError(store: "clickhouse", address: address, underlying: error)
        }
    }

    public func setup() throws {
        let create = TransactionSchema.clickhouse(table: table)
            .replacingOccurrences(of: "CREATE TABLE ", with: "CREATE TABLE IF NOT EXISTS ")
        try run(create)
        try run(
            """
            CREATE MATERIALIZED VIEW IF NOT EXISTS \(aggregate) ENGINE = SummingMergeTree()
              ORDER BY (merchant_id, minute)
              AS SELECT merchant_id, toStartOfMinute(time) AS minute, toUInt64(count()) AS txns, sum(amount) AS amount
              FROM \(table) GROUP BY merchant_id, minute
            """)
    }

    public func teardown() throws {
        try run("DROP TABLE IF EXISTS \(aggregate)")
        try run("DROP TABLE IF EXISTS \(table)")
    }

    public func close() {}

    public func invoke(_ operation: ClickHouseOperation, _ request: Request) -> Outcome {
        let isRead = operation.kind == .read
        do throws(HTTPError) {
            switch operation {
            case .bulk:
                encoder.removeAll()
                encoder.append(context.dataset, rows: request.rows)
            case .insert:
                encoder.removeAll()
                encoder.append(context.dataset.transaction(request.row))
            case .minuteAggregate, .pointRead:
                let response = try query(operation, row: request.row)
                if operation == .pointRead && response.body.isEmpty {
                    return .fail("not-found")
                }
                return .ok
            }
            // One copy into a reused array: HTTPClient.post sends an [UInt8] in place.
            body.removeAll(keepingCapacity: true)
            encoder.withBytes { body.append(contentsOf: $0) }
            let response = try http.post(insertURL, body: body)
            return Self.outcome(status: response.status, isRead: false)
        } catch {
            return Self.outcome(error, isRead: isRead)
        }
    }

    /// The request body of the last write, reused (it only grows to the largest bulk).
    private var body: [UInt8] = []

    private lazy var insertURL = baseURL + "?query=" + Self.percentEncoded("INSERT INTO \(table) FORMAT RowBinary")

    /// Runs read `operation` for dataset row `row`; the TabSeparated response. Precondition: `operation` is a read
    /// (`invoke` passes only those).
    func query(_ operation: ClickHouseOperation, row: Int64) throws(HTTPError) -> HTTPResponse {
        let transaction = context.dataset.transaction(row)
        let sql: String
        switch operation {
        case .minuteAggregate:
            // The 60 minutes ending with the row's minute: (minute(ts) - 1 h, minute(ts)].
            let minute = transaction.timestampMillis / 60_000 * 60
            sql = """
                SELECT minute, sum(txns), sum(amount) FROM \(aggregate)
                WHERE merchant_id = \(transaction.merchantID) AND minute > toDateTime(\(minute - 3600))
                  AND minute <= toDateTime(\(minute))
                GROUP BY minute ORDER BY minute FORMAT TabSeparated
                """
        case .pointRead:
            sql = "SELECT * FROM \(table) WHERE txn_id = \(transaction.txnID) FORMAT TabSeparated"
        case .bulk, .insert: preconditionFailure("ClickHouseClient.query of write operation \(operation.id)")
        }
        let response = try http.post(baseURL, body: Array(sql.utf8), contentType: "text/plain")
        return try response.expectOK()
    }

    /// Runs a statement, throwing on any error (setup and teardown).
    private func run(_ sql: String) throws {
        do {
            try ddl.post(baseURL, body: Array(sql.utf8), contentType: "text/plain").expectOK()
        } catch {
            throw StoreError(store: "clickhouse", address: address, detail: String(reflecting: error))
        }
    }

    /// The outcome of a response that arrived: 2xx ok; 5xx after a write was sent is unknown; other statuses are
    /// definite refusals.
    public static func outcome(status: Int, isRead: Bool) -> Outcome {
        switch status {
        case 200...299: .ok
        case 500...599: isRead ? .fail("http-\(status)") : .info("http-\(status)")
        default: .fail("http-\(status)")
        }
    }

    /// The outcome of a request without a complete response, by CURLcode.
    public static func outcome(_ error: HTTPError, isRead: Bool) -> Outcome {
        if let status = error.status {
            return outcome(status: status, isRead: isRead)
        }
        switch error.curlCode {
        // 6/7: host not resolved / connection refused: nothing was sent.
        case 6, 7: return .fail("connection")
        case 28: return isRead ? .fail("timeout") : .info("timeout")
        default: return isRead ? .fail("connection") : .info("connection")
        }
    }

    /// `text` with everything but RFC 3986 unreserved characters percent-encoded, for a query-string value.
    public static func percentEncoded(_ text: String) -> String {
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}
