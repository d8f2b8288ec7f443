import KilnData
import KilnPostgres
import KilnScenario
import KilnBackend

/// Reads `<ns>_transactions` (what `PostgresClient` writes; any table through a `Projection`) back from the
/// PostgreSQL primary in one `COPY (SELECT …) TO STDOUT (FORMAT binary)`, parsed incrementally from libpq's
/// buffers: integers straight from the bytes, no whole-result buffering, one heap allocation per row at most
/// (libpq's CopyData buffer).
///
/// Amount and fraud score arrive as binary `numeric` and the timestamp as binary `timestamptz`; the parser turns
/// them into exact integers (cents, thousandths, Unix ms) on the client, which keeps the server's per-row work to
/// copying columns (a value with more decimals than that cannot be exact and arrives as `Int64.min`, so it reads
/// as corrupted). A NULL `ring_id` is delivered as -1. With `txnIDs` the scan covers only `txn_id BETWEEN lower AND upper`, so a
/// checker can split one scan over several connections (one scanner each, on its own thread).
///
/// Threading: not Sendable; `scan` blocks the calling thread for the whole COPY. Ownership: owns one connection,
/// closed by `close()` or deinit. Timeouts: connecting is bounded by `context.timeout`; the scan itself is not
/// (`statement_timeout = 0` on this connection: a 100M-row scan takes minutes), so a server that stops sending
/// blocks `scan` until the TCP connection breaks, which then throws `PostgresError` of kind `connectionLost`.
public final class PostgresScanner: StoreScanner {
    public let source: String
    /// The exact statement `scan` runs.
    public let copyStatement: String
    private let connection: PostgresConnection

    /// The columns `scan` reads: a table and 13 SQL expressions in the parser's order (txn_id, user_id,
    /// merchant_id, device_id, location_id, amount numeric, ts timestamptz, currency, channel, status, fraud_score
    /// numeric, is_fraud boolean, ring_id), and the key expression that `txnIDs` filters on.
    public typealias Projection = TransactionTableProjection

    /// `<ns>_transactions` as `PostgresClient` writes it.
    public static func kilnProjection(namespace: String) throws -> Projection {
        Projection(
            table: try tableName(namespace),
            columns: [
                "txn_id", "user_id", "merchant_id", "device_id", "location_id", "amount", "ts", "currency", "channel",
                "status", "fraud_score", "is_fraud", "ring_id",
            ], key: "txn_id")
    }

    /// Connects to `context.stack.postgres.primary` to read `<ns>_transactions`.
    /// - Throws: `StoreError` naming `postgres` and the address when the server cannot be reached.
    public convenience init(context: ClientContext, txnIDs: ClosedRange<Int64>? = nil) throws {
        try self.init(context: context, projection: try Self.kilnProjection(namespace: context.namespace), txnIDs: txnIDs)
    }

    /// Connects to `context.stack.postgres.primary` to read `projection`.
    /// - Throws: `StoreError` naming `postgres` and the address when the server cannot be reached.
    public init(context: ClientContext, projection: Projection, txnIDs: ClosedRange<Int64>? = nil) throws {
        source = projection.scanSource(txnIDs: txnIDs)
        copyStatement = Self.statement(projection, txnIDs: txnIDs)
        connection = try Self.connect(context)
    }

    /// A connection to the primary with no statement timeout.
    /// - Throws: `StoreError` naming `postgres` and the address when the server cannot be reached.
    public static func connect(_ context: ClientContext) throws -> PostgresConnection {
        let pg = context.stack.postgres
        do {
            let connection = try PostgresConnection(
                context.postgresPrimaryEndpoint, connectTimeoutSeconds: max(2, Int(context.timeout.seconds)))
            try connection.execute("SET statement_timeout = 0")
            return connection
        } catch {
            throw StoreError(store: "postgres", address: pg.primary.description, detail: String(describing: error))
        }
    }

    /// Runs the COPY once and delivers every row; see the type's documentation.
    /// - Throws: the error of `body` (the COPY is then cancelled), `PostgresError` for connection or server errors,
    ///   `StreamFraming.FormatError` when the data is not the COPY binary stream of the statement's 13 columns.
    public func scan(_ body: (StoredRow) throws -> Void) throws {
        var parser = PostgresCopyParser()
        try connection.copyOut(copyStatement) { chunk in
            try parser.feed(chunk, body)
        }
        try parser.finish(source: source)
    }

    public func close() {
        connection.close()
    }

    public static func tableName(_ namespace: String) throws -> String {
        try StoreError.identifier(namespace, store: "postgres") + "_transactions"
    }

    static func statement(_ projection: Projection, txnIDs: ClosedRange<Int64>?) -> String {
        "COPY (\(projection.select(txnIDs: txnIDs))) TO STDOUT (FORMAT binary)"
    }
}

/// Incremental parser of the COPY binary stream of `PostgresScanner.statement`: the 19-byte signature header,
/// tuples of 13 length-prefixed big-endian fields, and the `-1` trailer. Chunks may split it anywhere.
///
/// A field whose length does not fit its column's type is delivered nil (integers of 2, 4 or 8 bytes are
/// accepted, so a wider or narrower column still reads); a tuple is never dropped, since every tuple carries its
/// own lengths.
struct PostgresCopyParser: StoredRowStreamParser {
    private enum State { case header, rows, finished }

    private var state = State.header
    var carry: [UInt8] = []
    private(set) var rows = 0
    private var trailingBytes = false

    static let signature: [UInt8] = [0x50, 0x47, 0x43, 0x4F, 0x50, 0x59, 0x0A, 0xFF, 0x0D, 0x0A, 0x00]

    /// Throws unless the stream was complete: header, whole tuples, trailer, nothing after it.
    func finish(source: String) throws {
        let problem: String? =
            switch state {
            case .header: "COPY data ended before its header"
            case .rows: "COPY data ended without its trailer (\(carry.count) bytes of a partial row)"
            case .finished: trailingBytes ? "bytes after the COPY trailer" : nil
            }
        if let problem {
            throw StreamFraming.FormatError(store: "postgres", source: source, detail: problem)
        }
    }

    mutating func unit(
        _ bytes: UnsafeRawBufferPointer, _ deliver: (StoredRow) throws -> Void
    ) throws -> Int? {
        switch state {
        case .rows:
            return try row(bytes, deliver)
        case .header:
            guard bytes.count >= 19 else { return nil }
            guard bytes.prefix(11).elementsEqual(Self.signature) else {
                throw StreamFraming.FormatError(store: "postgres", source: "COPY", detail: "not COPY binary data")
            }
            let extensionLength = Int(bytes.bigEndianInt32(at: 15))
            guard extensionLength >= 0 else {
                throw StreamFraming.FormatError(store: "postgres", source: "COPY", detail: "bad COPY header")
            }
            guard bytes.count >= 19 + extensionLength else { return nil }
            state = .rows
            return 19 + extensionLength
        case .finished:
            trailingBytes = true
            return bytes.count
        }
    }

    @inline(__always)
    private mutating func row(_ bytes: UnsafeRawBufferPointer, _ deliver: (StoredRow) throws -> Void) throws -> Int? {
        guard bytes.count >= 2 else { return nil }
        let fieldCount = Int(bytes.bigEndianInt16(at: 0))
        if fieldCount == -1 {
            state = .finished
            return 2
        }
        var row = StoredRow(txnID: -1)
        var position = 2
        for field in 0..<max(0, fieldCount) {
            guard bytes.count >= position + 4 else { return nil }
            let length = Int(bytes.bigEndianInt32(at: position))
            position += 4
            if length == -1 {
                if field == 12 {
                    row.ringID = -1
                }
                continue
            }
            guard length >= 0 else {
                throw StreamFraming.FormatError(store: "postgres", source: "COPY", detail: "negative field length")
            }
            guard bytes.count >= position + length else { return nil }
            switch field {
            case 0: row.txnID = Self.integer(bytes, position, length) ?? -1
            case 1: row.userID = Self.integer(bytes, position, length)
            case 2: row.merchantID = Self.integer(bytes, position, length)
            case 3: row.deviceID = Self.integer(bytes, position, length)
            case 4: row.locationID = Self.integer(bytes, position, length)
            case 5: row.amountCents = Self.numeric(bytes, position, length, scale: 2)
            case 6: row.timestampMillis = Self.timestampMillis(bytes, position, length)
            case 7: row.currency = bytes.string(at: position, count: length)
            case 8: row.channel = bytes.string(at: position, count: length)
            case 9: row.status = bytes.string(at: position, count: length)
            case 10: row.fraudScoreMillis = Self.numeric(bytes, position, length, scale: 3)
            case 11: row.isFraud = length == 1 && bytes[position] <= 1 ? bytes[position] == 1 : nil
            case 12: row.ringID = Self.integer(bytes, position, length)
            default: break
            }
            position += length
        }
        rows += 1
        try deliver(row)
        return position
    }

    /// A binary `numeric` as an integer count of 10^-scale units: 12.05 at scale 2 is 1205. Digits are base-10000
    /// groups, the first worth 10000^weight. Nil when it is not a numeric (or NaN, or beyond Int64);
    /// `Int64.min` when it has more decimals than `scale`, so it cannot equal any expected value.
    static func numeric(_ bytes: UnsafeRawBufferPointer, _ position: Int, _ length: Int, scale: Int) -> Int64? {
        guard length >= 8 else { return nil }
        let digits = Int(bytes.bigEndianInt16(at: position))
        let weight = Int(bytes.bigEndianInt16(at: position + 2))
        let sign = UInt16(bitPattern: bytes.bigEndianInt16(at: position + 4))
        guard digits >= 0, length == 8 + 2 * digits, sign == 0 || sign == 0x4000 else { return nil }
        var value: Int64 = 0
        for index in 0..<digits {
            let digit = Int64(bytes.bigEndianInt16(at: position + 8 + 2 * index))
            let exponent = 4 * (weight - index) + scale
            if exponent >= 0 {
                guard exponent <= 18 else { return nil }
                var multiplier: Int64 = 1
                for _ in 0..<exponent { multiplier *= 10 }
                let (product, overflow) = digit.multipliedReportingOverflow(by: multiplier)
                guard !overflow else { return nil }
                let (sum, carry) = value.addingReportingOverflow(product)
                guard !carry else { return nil }
                value = sum
            } else {
                guard exponent > -4 else { return digit == 0 ? value : Int64.min }
                var divisor: Int64 = 1
                for _ in 0..<(-exponent) { divisor *= 10 }
                guard digit % divisor == 0 else { return Int64.min }
                value += digit / divisor
            }
        }
        return sign == 0x4000 ? -value : value
    }

    /// Microseconds since 2000-01-01 UTC (binary `timestamptz`) as Unix milliseconds; `Int64.min` when it is not a
    /// whole millisecond (no generated timestamp is), nil when it is not 8 bytes.
    static func timestampMillis(_ bytes: UnsafeRawBufferPointer, _ position: Int, _ length: Int) -> Int64? {
        guard length == 8 else { return nil }
        let micros = bytes.bigEndianInt64(at: position)
        guard micros % 1000 == 0 else { return Int64.min }
        return micros / 1000 + 946_684_800_000
    }

    /// A big-endian int2/int4/int8 field; nil for any other length.
    @inline(__always)
    private static func integer(_ bytes: UnsafeRawBufferPointer, _ position: Int, _ length: Int) -> Int64? {
        switch length {
        case 8: bytes.bigEndianInt64(at: position)
        case 4: Int64(bytes.bigEndianInt32(at: position))
        case 2: Int64(bytes.bigEndianInt16(at: position))
        default: nil
        }
    }
}
