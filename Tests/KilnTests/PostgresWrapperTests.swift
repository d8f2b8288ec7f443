import Foundation
import KilnPostgres
import Testing

/// Integration tests of KilnPostgres against the real server of `TestStack.postgres`; they fail when it is down.
@Suite("PostgreSQL wrapper")
struct PostgresWrapperTests {
    private func connect() throws -> PostgresConnection {
        try PostgresConnection(TestStack.postgres, connectTimeoutSeconds: 5)
    }

    @Test func copyCSVHundredThousandRows() throws {
        let connection = try connect()
        let table = TestStack.uniqueName("kiln_pgw_csv")
        try connection.execute("CREATE TABLE \(table) (id bigint PRIMARY KEY, amount bigint NOT NULL, note text)")
        defer { _ = try? connection.execute("DROP TABLE IF EXISTS \(table)") }

        let rowCount = 100_000
        let copied = try connection.copyIn("COPY \(table) (id, amount, note) FROM STDIN (FORMAT csv)") { writer in
            for id in 0..<rowCount {
                // Every 7th note needs CSV quoting; every 10th is NULL (an unquoted empty field).
                let note = id % 10 == 0 ? "" : id % 7 == 0 ? "\"note, \"\"\(id)\"\"\"" : "note-\(id)"
                try writer.write("\(id),\(id * 3),\(note)\n")
            }
        }
        #expect(copied == rowCount)

        let result = try connection.execute(
            "SELECT count(*), sum(amount), count(note), max(note) FILTER (WHERE id = 14) FROM \(table)"
        )
        #expect(result.value(row: 0, column: 0) == "100000")
        #expect(result.value(row: 0, column: 1) == String(3 * (rowCount - 1) * rowCount / 2))
        #expect(result.value(row: 0, column: 2) == String(rowCount - rowCount / 10))
        #expect(result.value(row: 0, column: 3) == "note, \"14\"")
    }

    @Test func copyBinaryRoundTrip() throws {
        let connection = try connect()
        let table = TestStack.uniqueName("kiln_pgw_bin")
        try connection.execute("CREATE TABLE \(table) (id integer, amount bigint, note text, flag boolean)")
        defer { _ = try? connection.execute("DROP TABLE IF EXISTS \(table)") }

        let rows: [(Int32, Int64, String?, Bool?)] = [
            (1, -42, "plain", true),
            (2, Int64.max, "comma, \"quote\" and ünïcødé ✓\n", nil),
            (3, 0, nil, false),
        ]
        var data = BinaryCopy.header
        for (id, amount, note, flag) in rows {
            data.appendBigEndian(Int16(4))
            data.appendField(bigEndianBytes(id))
            data.appendField(bigEndianBytes(amount))
            data.appendField(note.map { Array($0.utf8) })
            data.appendField(flag.map { [$0 ? 1 : 0] })
        }
        data.appendBigEndian(Int16(-1))

        let copied = try connection.copyIn("COPY \(table) FROM STDIN (FORMAT binary)") { writer in
            // Split the stream at an odd offset: COPY data need not be aligned to rows.
            try writer.write(Array(data[..<13]))
            try data[13...].withUnsafeBytes { try writer.write($0) }
        }
        #expect(copied == rows.count)

        let result = try connection.execute("SELECT id, amount, note, flag FROM \(table) ORDER BY id")
        #expect(result.rowCount == rows.count)
        #expect(result.columnCount == 4)
        #expect(result.columnName(2) == "note")
        for (index, (id, amount, note, flag)) in rows.enumerated() {
            #expect(result.value(row: index, column: 0) == String(id))
            #expect(result.value(row: index, column: 1) == String(amount))
            #expect(result.value(row: index, column: 2) == note)
            #expect(result.value(row: index, column: 3) == flag.map { $0 ? "t" : "f" })
        }
    }

    @Test func copyRejectedDataAndAbortedClosureCopyNothing() throws {
        let connection = try connect()
        let table = TestStack.uniqueName("kiln_pgw_copyerr")
        try connection.execute("CREATE TABLE \(table) (id bigint, amount bigint)")
        defer { _ = try? connection.execute("DROP TABLE IF EXISTS \(table)") }

        let rejected = #expect(throws: PostgresError.self) {
            try connection.copyIn("COPY \(table) FROM STDIN (FORMAT csv)") { writer in
                try writer.write("1,10\n2,kiln-secret-amount\n3,30\n")
            }
        }
        #expect(rejected?.kind == .server)
        #expect(rejected?.sqlState == "22P02")
        #expect(rejected.map { !String(describing: $0).contains("kiln-secret") } ?? false)

        struct Stop: Error {}
        #expect(throws: Stop.self) {
            try connection.copyIn("COPY \(table) FROM STDIN (FORMAT csv)") { writer in
                try writer.write("1,10\n")
                throw Stop()
            }
        }

        #expect(connection.isOpen)
        #expect(try connection.execute("SELECT count(*) FROM \(table)").value(row: 0, column: 0) == "0")

        let notCopy = #expect(throws: PostgresError.self) {
            try connection.copyIn("SELECT 1") { _ in }
        }
        #expect(notCopy?.kind == .unexpectedResult)
        #expect(try connection.execute("SELECT 2").value(row: 0, column: 0) == "2")
    }

    @Test func preparedStatementRoundTrip() throws {
        let connection = try connect()
        let table = TestStack.uniqueName("kiln_pgw_prep")
        try connection.execute("CREATE TABLE \(table) (id bigint PRIMARY KEY, name text, amount numeric)")
        defer { _ = try? connection.execute("DROP TABLE IF EXISTS \(table)") }

        try connection.prepare("insert_row", "INSERT INTO \(table) (id, name, amount) VALUES ($1, $2, $3)")
        try connection.prepare("select_row", "SELECT name, amount FROM \(table) WHERE id = $1")
        let inserted = try connection.executePrepared("insert_row", ["1", "O'Brien \\ \"x\"", "12.50"])
        #expect(inserted.affectedRows == 1)
        try connection.executePrepared("insert_row", ["2", nil, nil])

        let first = try connection.executePrepared("select_row", ["1"])
        #expect(first.rowCount == 1)
        #expect(first.value(row: 0, column: 0) == "O'Brien \\ \"x\"")
        #expect(first.value(row: 0, column: 1) == "12.50")
        let second = try connection.executePrepared("select_row", ["2"])
        #expect(second.value(row: 0, column: 0) == nil)
        #expect(second.value(row: 0, column: 1) == nil)
        #expect(try connection.executePrepared("select_row", ["3"]).rowCount == 0)

        let updated = try connection.execute("UPDATE \(table) SET amount = $1 WHERE id >= $2", ["1", "1"])
        #expect(updated.affectedRows == 2)
        #expect(try connection.execute("CREATE INDEX ON \(table) (name)").affectedRows == nil)
    }

    @Test func badSQLIsRedactedServerError() throws {
        let connection = try connect()
        let missing = TestStack.uniqueName("kiln_pgw_missing")

        let undefined = #expect(throws: PostgresError.self) {
            try connection.execute("SELECT 'kiln-secret-literal-4711' FROM \(missing)")
        }
        let syntax = #expect(throws: PostgresError.self) {
            try connection.execute("SELEKT 'kiln-secret-literal-4711', $1", ["kiln-secret-parameter"])
        }
        for error in [undefined, syntax] {
            let error = try #require(error)
            #expect(error.kind == .server)
            #expect(error.operation == .execute)
            let description = String(describing: error)
            for secret in ["kiln-secret", "4711", missing, "SELEKT"] {
                #expect(!description.contains(secret), "description leaks \(secret): \(description)")
            }
            #expect(description.contains(error.sqlState ?? "none"))
            #expect(description.contains("\(TestStack.postgres.host):\(TestStack.postgres.port)"))
        }
        #expect(undefined?.sqlState == "42P01")
        #expect(syntax?.sqlState == "42601")
        // The message is kept for debugging only, which shows the redaction above is not vacuous.
        #expect(undefined.map { String(reflecting: $0).contains(missing) } ?? false)

        // Server messages can echo values (`Key (id)=(…) already exists`); the description must not.
        let table = TestStack.uniqueName("kiln_pgw_unique")
        try connection.execute("CREATE TABLE \(table) (id text PRIMARY KEY)")
        defer { _ = try? connection.execute("DROP TABLE IF EXISTS \(table)") }
        try connection.execute("INSERT INTO \(table) VALUES ($1)", ["kiln-secret-key"])
        let duplicate = #expect(throws: PostgresError.self) {
            try connection.execute("INSERT INTO \(table) VALUES ($1)", ["kiln-secret-key"])
        }
        #expect(duplicate?.sqlState == "23505")
        #expect(duplicate.map { !String(describing: $0).contains("kiln-secret") } ?? false)

        // A server error leaves the connection usable.
        #expect(connection.isOpen)
        #expect(try connection.execute("SELECT 1").value(row: 0, column: 0) == "1")
    }

    @Test func unreachableServerThrowsConnectWithinTimeout() {
        let endpoint = PostgresEndpoint(host: "127.0.0.1", port: 1, database: "kiln", user: "postgres", password: "pw")
        let clock = ContinuousClock()
        let start = clock.now
        let error = #expect(throws: PostgresError.self) {
            _ = try PostgresConnection(endpoint, connectTimeoutSeconds: 2)
        }
        #expect(clock.now - start < .seconds(5))
        #expect(error?.kind == .connect)
        #expect(error?.sqlState == nil)
        #expect(error.map { String(describing: $0).contains("127.0.0.1:1") } ?? false)
        #expect(error?.reason == "connection refused")
    }

    @Test func rejectedLoginIsConnectErrorWithFixedReason() {
        var endpoint = TestStack.postgres
        endpoint.database = TestStack.uniqueName("kiln_pgw_nodb")
        let error = #expect(throws: PostgresError.self) {
            _ = try PostgresConnection(endpoint)
        }
        #expect(error?.kind == .connect)
        #expect(error?.reason == "database or role does not exist")
        #expect(error.map { !String(describing: $0).contains(endpoint.database) } ?? false)
    }

    @Test func lostConnectionIsReportedAsSuch() throws {
        let victim = try connect()
        let pid = try #require(victim.execute("SELECT pg_backend_pid()").value(row: 0, column: 0))
        let killer = try connect()
        try killer.execute("SELECT pg_terminate_backend($1::int, 5000)", [pid])

        let error = #expect(throws: PostgresError.self) {
            try victim.execute("SELECT 1")
        }
        #expect(error?.kind == .connectionLost)
        #expect(!victim.isOpen)
    }

    @Test func closeIsIdempotentAndLaterCallsThrowClosed() throws {
        let connection = try connect()
        #expect(connection.serverVersion >= 100_000)
        connection.close()
        connection.close()
        #expect(!connection.isOpen)
        let error = #expect(throws: PostgresError.self) {
            try connection.execute("SELECT 1")
        }
        #expect(error?.kind == .closed)
    }

    @Test func endpointEscapesConninfoAndHidesPassword() {
        let endpoint = PostgresEndpoint(
            host: "db.example", port: 5433, database: "k'iln", user: "u\\ser", password: "pa' ss\\word"
        )
        let conninfo = endpoint.conninfo(connectTimeoutSeconds: 1)
        #expect(conninfo.contains("password='pa\\' ss\\\\word'"))
        #expect(conninfo.contains("dbname='k\\'iln'"))
        #expect(conninfo.contains("user='u\\\\ser'"))
        #expect(conninfo.contains("connect_timeout='2'"))

        var dumped = ""
        dump(endpoint, to: &dumped)
        for text in [String(describing: endpoint), String(reflecting: endpoint), dumped, "\(endpoint)"] {
            #expect(!text.contains("pa'"), "password leaked: \(text)")
            #expect(text.contains("db.example"))
        }
    }
}

/// Building blocks of PostgreSQL's binary COPY format: all integers are big-endian.
private enum BinaryCopy {
    /// Signature, flags (0) and header-extension length (0).
    static let header: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] + [0, 0, 0, 0] + [0, 0, 0, 0]
}

private func bigEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

extension [UInt8] {
    fileprivate mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        append(contentsOf: bigEndianBytes(value))
    }

    /// One field: its length, then its bytes; `nil` is SQL NULL (length -1).
    fileprivate mutating func appendField(_ bytes: [UInt8]?) {
        guard let bytes else {
            appendBigEndian(Int32(-1))
            return
        }
        appendBigEndian(Int32(bytes.count))
        append(contentsOf: bytes)
    }
}
