/// The columns a SQL scanner (`PostgresScanner`, `ClickHouseScanner`) reads from a table of transactions: the table,
/// 13 expressions in the scanners' order (txn_id, user_id, merchant_id, device_id, location_id, amount, ts, currency,
/// channel, status, fraud_score, is_fraud, ring_id; each store's parser says which wire types it expects of them), and
/// the key expression a txn_id range filters on. Each store's folder defines Kiln's own table as a static
/// (`PostgresScanner.kilnProjection`, `ClickHouseScanner.kilnProjection`); a black-box place maps them onto the user's
/// columns (BlackBoxPlaces.swift).
public struct TransactionTableProjection: Sendable, Equatable {
    public var table: String
    public var columns: [String]
    public var key: String

    public init(table: String, columns: [String], key: String) {
        precondition(columns.count == 13, "a projection has the parser's 13 columns")
        self.table = table
        self.columns = columns
        self.key = key
    }

    /// `SELECT <columns> FROM <table>`, with ` WHERE <key> BETWEEN <lower> AND <upper>` for a range: the query a
    /// scanner wraps in its store's streaming form (COPY binary, FORMAT RowBinary).
    public func select(txnIDs: ClosedRange<Int64>?) -> String {
        let filter = txnIDs.map { " WHERE \(key) BETWEEN \($0.lowerBound) AND \($0.upperBound)" } ?? ""
        return "SELECT \(columns.joined(separator: ", ")) FROM \(table)\(filter)"
    }

    /// What a scan of `txnIDs` (nil: the whole table) is called in its errors and reports.
    public func scanSource(txnIDs: ClosedRange<Int64>?) -> String {
        txnIDs.map { "\(table) txn_id \($0.lowerBound)...\($0.upperBound)" } ?? table
    }
}

/// An incremental parser of a SQL scanner's byte stream (COPY binary, RowBinary) into `StoredRow`s. Chunks may split
/// the stream anywhere: `feed` frames it with `StreamFraming`, keeping the bytes of a unit that straddles two chunks
/// in `carry`. Threading: a value owned by the one scan that feeds it.
public protocol StoredRowStreamParser {
    /// A parser at the start of a stream.
    init()
    /// Bytes of a unit that straddles two chunks (`StreamFraming.feed`'s carry); empty between units.
    var carry: [UInt8] { get set }
    /// Handles the unit (a header, a row, a trailer) at the start of `bytes`, delivering a row through `deliver`, and
    /// returns its byte count; nil, without side effects, when `bytes` holds only part of one.
    /// - Throws: `StreamFraming.FormatError` when the bytes cannot be the stream's, or the error of `deliver`.
    mutating func unit(_ bytes: UnsafeRawBufferPointer, _ deliver: (StoredRow) throws -> Void) throws -> Int?
    /// Throws `StreamFraming.FormatError` naming `source` unless the stream ended where a complete stream ends.
    func finish(source: String) throws
}

extension StoredRowStreamParser {
    /// Parses `chunk`, the next bytes of the stream, delivering every row it completes.
    /// - Throws: what `unit` throws; the bytes after the failing unit are not parsed.
    @inlinable
    public mutating func feed(_ chunk: UnsafeRawBufferPointer, _ deliver: (StoredRow) throws -> Void) throws {
        var carry = self.carry
        self.carry = []
        defer { self.carry = carry }
        try StreamFraming.feed(chunk, carry: &carry) { bytes in try unit(bytes, deliver) }
    }
}
