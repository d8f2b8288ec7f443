import CLibPQ

/// The successful result of one statement, in text format.
///
/// Owns its libpq result and frees it when the last reference goes away; it does not reference the connection,
/// so it stays valid after the connection is closed. Immutable: reading it from several threads is safe in
/// libpq, but the type is not declared `Sendable`, so hand rows across threads as Swift values.
public final class PostgresResult {
    private let handle: OpaquePointer

    /// Takes ownership of `handle`.
    init(owning handle: OpaquePointer) {
        self.handle = handle
    }

    deinit {
        PQclear(handle)
    }

    /// Number of rows returned (0 for statements that return no rows).
    public var rowCount: Int {
        Int(PQntuples(handle))
    }

    public var columnCount: Int {
        Int(PQnfields(handle))
    }

    /// Name of column `column` (0-based). Precondition: `0 <= column < columnCount`.
    public func columnName(_ column: Int) -> String {
        precondition(column >= 0 && column < columnCount, "column \(column) out of range 0..<\(columnCount)")
        return String(cString: PQfname(handle, Int32(column)))
    }

    /// Index of the column named `name`, or `nil`.
    public func columnIndex(_ name: String) -> Int? {
        (0..<columnCount).first { columnName($0) == name }
    }

    /// The text value at (`row`, `column`), both 0-based; `nil` for SQL NULL.
    /// Precondition: both indices are in range.
    public func value(row: Int, column: Int) -> String? {
        precondition(row >= 0 && row < rowCount, "row \(row) out of range 0..<\(rowCount)")
        precondition(column >= 0 && column < columnCount, "column \(column) out of range 0..<\(columnCount)")
        let r = Int32(row)
        let c = Int32(column)
        if PQgetisnull(handle, r, c) != 0 {
            return nil
        }
        let length = Int(PQgetlength(handle, r, c))
        guard let bytes = PQgetvalue(handle, r, c) else {
            return nil
        }
        return bytes.withMemoryRebound(to: UInt8.self, capacity: length) { pointer in
            String(decoding: UnsafeBufferPointer(start: pointer, count: length), as: UTF8.self)
        }
    }

    /// Rows affected by INSERT/UPDATE/DELETE/MERGE/SELECT/COPY/…, from the command tag; `nil` when the command
    /// has no row count (e.g. `CREATE TABLE`).
    public var affectedRows: Int? {
        guard let tuples = PQcmdTuples(handle) else {
            return nil
        }
        return Int(String(cString: tuples))
    }

    /// The command tag, e.g. `INSERT 0 1`. Contains no values.
    public var commandTag: String {
        String(cString: PQcmdStatus(handle))
    }
}
