import KilnData
import KilnHTTP
import KilnScenario
import KilnBackend

/// Reads `<database>.<ns>_transactions` back from ClickHouse (what `ClickHouseClient` writes) with one
/// `SELECT … FORMAT RowBinary` over HTTP, streamed through libcurl's write callback and parsed incrementally:
/// integers straight from the bytes, no whole-result buffering.
///
/// Amount and fraud score are converted server-side to exact integers (`toInt64(amount*100)`: Decimal times an
/// integer keeps the Decimal's scale in ClickHouse, so the product is exact and `toInt64` drops only zero
/// fractions); `ts` is already Unix ms. A NULL `ring_id` is delivered as -1; an `is_fraud` other than 0/1 as nil.
/// With `txnIDs` the scan covers only `txn_id BETWEEN lower AND upper` (the primary key: a range read).
///
/// Threading: not Sendable; `scan` blocks the calling thread. Ownership: owns one `HTTPClient` (one keep-alive
/// connection). Timeouts: connecting and the initial ping are bounded by `context.timeout`; the scan has no total
/// limit but fails with `HTTPError` (CURLcode 28) when nothing arrives for `context.timeout`.
/// Limitation: ClickHouse reports an exception raised after streaming began only as text appended to a 200 body;
/// the scan throws `StreamFraming.FormatError` when those bytes do not frame as whole rows, but rows already
/// delivered stay delivered.
public final class ClickHouseScanner: StoreScanner {
    public let source: String
    /// The exact query `scan` sends.
    public let query: String
    private let http: HTTPClient
    private let baseURL: String
    private let address: String
    private let stallSeconds: Double

    /// The columns `scan` reads: a table and 13 ClickHouse expressions in the parser's RowBinary layout (Int64
    /// txn_id … location_id, Int64 cents, Int64 Unix ms, String currency, channel, status, Int64 fraud-score
    /// thousandths, UInt8 is_fraud, Nullable(Int32) ring_id), and the key expression `txnIDs` filters on.
    public typealias Projection = TransactionTableProjection

    /// `<database>.<ns>_transactions` as `ClickHouseClient` writes it.
    public static func kilnProjection(database: String, namespace: String) throws -> Projection {
        Projection(
            table: "\(try identifier(database)).\(try identifier(namespace))_transactions",
            columns: [
                "txn_id", "user_id", "merchant_id", "device_id", "location_id", "toInt64(amount*100)", "ts",
                "currency", "channel", "status", "toInt64(fraud_score*1000)", "is_fraud", "ring_id",
            ], key: "txn_id")
    }

    /// Connects to `context.stack.timeseries.endpoint` and pings it, to read `<database>.<ns>_transactions`.
    /// - Throws: `StoreError` naming `clickhouse` and the address when the server cannot be reached.
    public convenience init(context: ClientContext, txnIDs: ClosedRange<Int64>? = nil) throws {
        let projection = try Self.kilnProjection(
            database: context.stack.timeseries.database, namespace: context.namespace)
        try self.init(context: context, projection: projection, txnIDs: txnIDs)
    }

    /// Connects to `context.stack.timeseries.endpoint` and pings it, to read `projection`.
    /// - Throws: `StoreError` naming `clickhouse` and the address when the server cannot be reached.
    public init(context: ClientContext, projection: Projection, txnIDs: ClosedRange<Int64>? = nil) throws {
        let ts = context.stack.timeseries
        address = ts.endpoint.description
        source = projection.scanSource(txnIDs: txnIDs)
        query = Self.query(projection, txnIDs: txnIDs)
        baseURL = ts.baseURL
        stallSeconds = max(1, context.timeout.seconds)
        http = try Self.connect(context)
    }

    /// An HTTP client for the server, after a successful ping.
    /// - Throws: `StoreError` naming `clickhouse` and the address when the server cannot be reached.
    public static func connect(_ context: ClientContext) throws -> HTTPClient {
        let ts = context.stack.timeseries
        let stallSeconds = max(1, context.timeout.seconds)
        do {
            let http = try HTTPClient(
                timeoutSeconds: stallSeconds, connectTimeoutSeconds: min(5, stallSeconds), user: ts.user,
                password: StackDefinition.secret(ts.passwordEnvironmentVariable, in: context.environment),
                caFile: ts.caFile(in: context.environment))
            try http.get(ts.baseURL + "ping").expectOK()
            return http
        } catch {
            throw StoreError(store: "clickhouse", address: ts.endpoint.description, detail: String(describing: error))
        }
    }

    /// Runs the query once and delivers every row; see the type's documentation.
    /// - Throws: the error of `body` (the transfer is then aborted), `HTTPError` (connection, stall, non-2xx
    ///   status), or `StreamFraming.FormatError` when the body does not end on a row boundary.
    public func scan(_ body: (StoredRow) throws -> Void) throws {
        var parser = RowBinaryTransactionParser()
        try http.streamPost(
            baseURL, body: Array(query.utf8), contentType: "text/plain", stallTimeoutSeconds: stallSeconds
        ) { chunk in
            try parser.feed(chunk, body)
        }
        try parser.finish(source: source)
    }

    public func close() {}

    static func query(_ projection: Projection, txnIDs: ClosedRange<Int64>?) -> String {
        projection.select(txnIDs: txnIDs) + " FORMAT RowBinary"
    }

    static func identifier(_ name: String) throws -> String {
        try StoreError.identifier(name, store: "clickhouse", naming: "name")
    }
}

/// Incremental parser of the RowBinary rows of `ClickHouseScanner.query`: Int64 ×7 (little-endian: txn_id …
/// location_id, cents, ts), String ×3 (LEB128 length + bytes: currency, channel, status), Int64 fraud score, UInt8
/// is_fraud, Nullable(Int32) ring_id (a null-flag byte, then 4 bytes unless null). Chunks may split it anywhere.
/// RowBinary carries no lengths for fixed-size columns, so a stream that does not match this layout cannot be
/// resynchronised: a bad null flag or an absurd string length throws.
struct RowBinaryTransactionParser: StoredRowStreamParser {
    var carry: [UInt8] = []
    private(set) var rows = 0
    /// Longer strings mean the stream is not rows of this query (e.g. error text): a row is never that big.
    static let maximumStringLength = 1 << 20

    /// Throws when the stream ended inside a row.
    func finish(source: String) throws {
        guard carry.isEmpty else {
            throw StreamFraming.FormatError(
                store: "clickhouse", source: source,
                detail: "RowBinary stream ended inside a row (\(carry.count) bytes left)")
        }
    }

    /// A row: RowBinary has no header or trailer.
    @inline(__always)
    mutating func unit(_ bytes: UnsafeRawBufferPointer, _ deliver: (StoredRow) throws -> Void) throws -> Int? {
        let count = bytes.count
        guard count >= 57 else { return nil }
        var position = 56
        guard let currency = try Self.string(bytes, &position), let channel = try Self.string(bytes, &position),
            let status = try Self.string(bytes, &position)
        else {
            return nil
        }
        guard count >= position + 10 else { return nil }
        var row = StoredRow(txnID: bytes.littleEndianInt64(at: 0))
        row.userID = bytes.littleEndianInt64(at: 8)
        row.merchantID = bytes.littleEndianInt64(at: 16)
        row.deviceID = bytes.littleEndianInt64(at: 24)
        row.locationID = bytes.littleEndianInt64(at: 32)
        row.amountCents = bytes.littleEndianInt64(at: 40)
        row.timestampMillis = bytes.littleEndianInt64(at: 48)
        row.fraudScoreMillis = bytes.littleEndianInt64(at: position)
        let fraud = bytes[position + 8]
        row.isFraud = fraud <= 1 ? fraud == 1 : nil
        switch bytes[position + 9] {
        case 1:
            row.ringID = -1
            position += 10
        case 0:
            guard count >= position + 14 else { return nil }
            row.ringID = Int64(bytes.littleEndianInt32(at: position + 10))
            position += 14
        default:
            throw StreamFraming.FormatError(
                store: "clickhouse", source: "RowBinary", detail: "bad Nullable flag: not rows of the scan query")
        }
        row.currency = bytes.string(at: currency.start, count: currency.count)
        row.channel = bytes.string(at: channel.start, count: channel.count)
        row.status = bytes.string(at: status.start, count: status.count)
        rows += 1
        try deliver(row)
        return position
    }

    /// Reads a LEB128 length and skips the bytes; nil when the string is not complete in `bytes`.
    @inline(__always)
    private static func string(
        _ bytes: UnsafeRawBufferPointer, _ position: inout Int
    ) throws -> (start: Int, count: Int)? {
        var length = 0
        var shift = 0
        var cursor = position
        while true {
            guard cursor < bytes.count else { return nil }
            let byte = bytes[cursor]
            cursor += 1
            length |= Int(byte & 0x7F) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
            guard shift < 28 else { break }
        }
        guard length <= maximumStringLength else {
            throw StreamFraming.FormatError(
                store: "clickhouse", source: "RowBinary",
                detail: "string of \(length) bytes: not rows of the scan query")
        }
        guard bytes.count >= cursor + length else { return nil }
        position = cursor + length
        return (cursor, length)
    }
}
