import Foundation
import KilnPostgres
import Testing

@Suite("PostgreSQL COPY OUT")
struct PostgresCopyOutTests {
    private struct Stop: Error {}

    @Test func streamsTheDataBlockByBlockAndReturnsTheRowCount() throws {
        let connection = try PostgresConnection(TestStack.postgres)
        defer { connection.close() }
        var text: [UInt8] = []
        var blocks = 0
        let rows = try connection.copyOut("COPY (SELECT g, 'row ' || g FROM generate_series(1, 1000) g) TO STDOUT") {
            text.append(contentsOf: $0)
            blocks += 1
        }
        #expect(rows == 1000)
        let expected = (1...1000).map { "\($0)\trow \($0)\n" }.joined()
        #expect(String(decoding: text, as: UTF8.self) == expected)
        #expect(blocks == 1000)  // one CopyData message per row: nothing is accumulated

        // Binary format: signature first, -1 trailer last.
        var binary: [UInt8] = []
        let binaryRows = try connection.copyOut("COPY (SELECT 42::bigint) TO STDOUT (FORMAT binary)") {
            binary.append(contentsOf: $0)
        }
        #expect(binaryRows == 1)
        #expect(Array(binary.prefix(6)) == Array("PGCOPY".utf8))
        #expect(Array(binary.suffix(2)) == [0xFF, 0xFF])
        #expect(binary.count == 19 + 2 + 4 + 8 + 2)
    }

    @Test func anEmptyResultCopiesNothing() throws {
        let connection = try PostgresConnection(TestStack.postgres)
        defer { connection.close() }
        var bytes = 0
        let rows = try connection.copyOut("COPY (SELECT 1 WHERE false) TO STDOUT") { bytes += $0.count }
        #expect(rows == 0)
        #expect(bytes == 0)
    }

    @Test func aThrowingBodyCancelsTheCopyAndLeavesTheConnectionUsable() throws {
        let connection = try PostgresConnection(TestStack.postgres)
        defer { connection.close() }
        var seen = 0
        let started = ContinuousClock.now
        #expect(throws: Stop.self) {
            // Far more rows than are read: the COPY must be cancelled, not read to the end.
            try connection.copyOut("COPY (SELECT generate_series(1, 1000000000)) TO STDOUT") { _ in
                seen += 1
                if seen == 10 { throw Stop() }
            }
        }
        #expect(seen == 10)
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(try connection.execute("SELECT 7").value(row: 0, column: 0) == "7")
    }

    @Test func errorsAreClassified() throws {
        let connection = try PostgresConnection(TestStack.postgres)
        defer { connection.close() }
        #expect {
            try connection.copyOut("COPY kiln_no_such_table_copy_out TO STDOUT") { _ in }
        } throws: { error in
            (error as? PostgresError)?.sqlState == "42P01" && (error as? PostgresError)?.operation == .copyOut
        }
        #expect {
            try connection.copyOut("SELECT 1") { _ in }
        } throws: { error in
            (error as? PostgresError)?.kind == .unexpectedResult
        }
        // A failure during the COPY (division by zero at row 3) is a server error after the first rows.
        var rows = 0
        #expect {
            try connection.copyOut("COPY (SELECT 1 / (3 - g) FROM generate_series(1, 5) g) TO STDOUT") { _ in
                rows += 1
            }
        } throws: { error in
            (error as? PostgresError)?.sqlState == "22012"
        }
        #expect(rows <= 2)
        #expect(try connection.execute("SELECT 1").rowCount == 1)
        connection.close()
        #expect {
            try connection.copyOut("COPY (SELECT 1) TO STDOUT") { _ in }
        } throws: { error in
            (error as? PostgresError)?.kind == .closed
        }
    }
}
