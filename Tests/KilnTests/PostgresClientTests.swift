import Foundation
import KilnCore
import KilnData
import KilnPostgres
import KilnScenario
import Logging
import Testing

@testable import KilnBackends
@testable import KilnStores

/// Shared by the SQL store client tests: a 100k-row dataset and contexts against the embedded stack.
enum StoreFixtures {
    static let dataset: Dataset = try! Dataset(spec: Fixtures.spec, seed: 7, rows: 100_000)

    static func context(
        namespace: String, timeout: Duration = .seconds(10), stack: StackDefinition = TestStack.definition
    ) -> ClientContext {
        ClientContext(
            stack: stack, dataset: dataset, namespace: namespace, timeout: timeout, environment: [:],
            logger: Logger(label: "kiln.tests"))
    }

    /// The embedded stack with every server moved to a closed port of 127.0.0.1.
    static var unreachableStack: StackDefinition {
        var stack = TestStack.definition
        stack.postgres.primary = HostPort(host: "127.0.0.1", port: 9)
        stack.timeseries.endpoint = HostPort(host: "127.0.0.1", port: 9)
        stack.graph.endpoint = HostPort(host: "127.0.0.1", port: 9)
        return stack
    }

    /// Sum of `amountCents` over `rows`, from the generator.
    static func cents(_ rows: Range<Int64>) -> Int64 {
        rows.reduce(0) { $0 + dataset.transaction($1).amountCents }
    }

    /// `12.05` -> 1205 (decimal text with at most two decimals).
    static func cents(_ text: String?) -> Int64? {
        guard let text else { return nil }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard let whole = Int64(parts[0]) else { return nil }
        let fraction =
            parts.count > 1 ? String(parts[1].prefix(2)).padding(toLength: 2, withPad: "0", startingAt: 0) : "00"
        guard let cents = Int64(fraction) else { return nil }
        return whole * 100 + cents
    }
}

@Suite("PostgreSQL store client")
struct PostgresClientTests {
    private func client() throws -> PostgresClient {
        let client = try PostgresClient(context: StoreFixtures.context(namespace: TestStack.uniqueName("kiln_pgc")))
        try client.setup()
        return client
    }

    @Test func bulkCopiesTheGeneratorsRowsInChunks() throws {
        let client = try client()
        defer {
            try? client.teardown()
            client.close()
        }
        try client.setup()  // idempotent
        let rows: Range<Int64> = 1_000..<21_000  // more than two 8192-row chunks
        #expect(client.invoke(.bulk, Request(rows: rows)) == .ok)
        let connection = try #require(client.connection)
        let totals = try connection.execute("SELECT count(*), (sum(amount) * 100)::bigint FROM \(client.table)")
        #expect(totals.value(row: 0, column: 0) == "20000")
        #expect(totals.value(row: 0, column: 1) == String(StoreFixtures.cents(rows)))

        // A sampled row, column by column, equals the generator's.
        let sample = StoreFixtures.dataset.transaction(12_345)
        let result = try client.read(.pointRead, row: 12_345)
        #expect(result.rowCount == 1)
        let expected = PostgresClient.insertParameters(sample, StoreFixtures.dataset)
        let actual = (0..<13).map { result.value(row: 0, column: $0) }
        #expect(actual[0..<7] == expected[0..<7])
        #expect(actual[7] == String(sample.timestampMillis))
        #expect(actual[8..<10] == expected[8..<10])
        #expect(actual[10] == expected[10])
        #expect(actual[11] == (sample.isFraud ? "t" : "f"))
        #expect(actual[12] == expected[12])

        // The same rows again are a definite refusal (primary key), and nothing more is copied.
        #expect(client.invoke(.bulk, Request(rows: 1_000..<1_010)) == .fail("sqlstate-23505"))
        #expect(client.invoke(.bulk, Request(rows: 0..<0)) == .ok)
    }

    @Test func insertThenReadsFindTheRows() throws {
        let client = try client()
        defer {
            try? client.teardown()
            client.close()
        }
        let dataset = StoreFixtures.dataset
        for row in Int64(0)..<200 {
            #expect(client.invoke(.insert, Request(row: row)) == .ok)
        }
        #expect(client.invoke(.insert, Request(row: 5)) == .fail("sqlstate-23505"))

        #expect(client.invoke(.pointRead, Request(row: 77)) == .ok)
        #expect(client.invoke(.pointRead, Request(row: 5_000)) == .fail("not-found"))
        let point = try client.read(.pointRead, row: 77)
        #expect(point.value(row: 0, column: 0) == "78")
        #expect(point.value(row: 0, column: 7) == String(dataset.transaction(77).timestampMillis))

        // user-recent: the user's rows among those written, newest first, at most 50.
        let probe = dataset.transaction(150)
        #expect(client.invoke(.userRecent, Request(row: 150)) == .ok)
        let recent = try client.read(.userRecent, row: 150)
        let expectedUser = (Int64(0)..<200).map { dataset.transaction($0) }.filter { $0.userID == probe.userID }
        #expect(recent.rowCount == min(50, expectedUser.count))
        #expect(recent.rowCount >= 1)

        // merchant-hourly: counts and cents per hour over (ts - 24 h, ts], as the generator says.
        #expect(client.invoke(.merchantHourly, Request(row: 150)) == .ok)
        let hourly = try client.read(.merchantHourly, row: 150)
        let merchantRows = (Int64(0)..<200).map { dataset.transaction($0) }.filter {
            $0.merchantID == probe.merchantID && $0.timestampMillis > probe.timestampMillis - 86_400_000
                && $0.timestampMillis <= probe.timestampMillis
        }
        let counted = (0..<hourly.rowCount).reduce(0) { $0 + (Int(hourly.value(row: $1, column: 1) ?? "") ?? 0) }
        let summed = (0..<hourly.rowCount).reduce(Int64(0)) {
            $0 + (StoreFixtures.cents(hourly.value(row: $1, column: 2)) ?? 0)
        }
        #expect(counted == merchantRows.count)
        #expect(summed == merchantRows.reduce(0) { $0 + $1.amountCents })
    }

    @Test func lostConnectionDuringAWriteIsInfoThenReconnects() throws {
        let client = try client()
        defer {
            try? client.teardown()
            client.close()
        }
        let connection = try #require(client.connection)
        let pid = try #require(connection.execute("SELECT pg_backend_pid()").value(row: 0, column: 0))
        let killer = try PostgresConnection(TestStack.postgres)
        defer { killer.close() }
        try killer.execute("SELECT pg_terminate_backend($1::int)", [pid])
        #expect(client.invoke(.insert, Request(row: 1)) == .info("connection"))
        // The next op reconnects; the row of the lost write is written once (or fails 23505 if it did land).
        let retry = client.invoke(.insert, Request(row: 1))
        #expect(retry == .ok || retry == .fail("sqlstate-23505"))
        #expect(client.invoke(.pointRead, Request(row: 1)) == .ok)
    }

    /// Sends one multiplexed op and waits for its socket until the client says how it ended.
    private func multiplexed(_ client: PostgresClient, row: Int64) -> Outcome {
        if let outcome = client.begin(.pointRead, Request(row: row)) { return outcome }
        while true {
            var poller = pollfd(fd: client.descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 5_000) == 1 else { return .fail("test: no reply within 5 s") }
            if let outcome = client.poll() { return outcome }
        }
    }

    @Test(arguments: [false, true])
    func multiplexedPointReadsSurviveALostConnection(binaryResults: Bool) throws {
        var context = StoreFixtures.context(namespace: TestStack.uniqueName("kiln_pgm"))
        if binaryResults { context.environment["KILN_PG_BINARY_RESULTS"] = "1" }
        let client = try PostgresClient(context: context)
        defer {
            try? client.teardown()
            client.close()
        }
        try client.setup()
        #expect(client.binaryReadResults == binaryResults)
        #expect(client.invoke(.bulk, Request(rows: 0..<100)) == .ok)
        client.prepareMultiplexed()
        #expect(multiplexed(client, row: 7) == .ok)
        #expect(multiplexed(client, row: 99) == .ok)
        #expect(multiplexed(client, row: 5_000) == .fail("not-found"))

        // The server ends the idle connection: the next op finds it gone (a read: fail), the one after reconnects
        // on a new socket and re-prepares.
        let pid = try #require(client.connection?.execute("SELECT pg_backend_pid()").value(row: 0, column: 0))
        let killer = try PostgresConnection(TestStack.postgres)
        defer { killer.close() }
        try killer.execute("SELECT pg_terminate_backend($1::int)", [pid])
        Thread.sleep(forTimeInterval: 0.2)
        #expect(multiplexed(client, row: 8) == .fail("connection"))
        #expect(multiplexed(client, row: 9) == .ok)
        #expect(client.descriptor >= 0)
    }

    @Test func binaryResultsHoldTheRawValue() throws {
        let connection = try PostgresConnection(TestStack.postgres)
        defer { connection.close() }
        try connection.prepare("kiln_test_binary", "SELECT $1::bigint AS v, 'x'::text AS t")
        for binary in [false, true] {
            try connection.startPrepared("kiln_test_binary", ["258"], binaryResults: binary)
            var result: PostgresResult?
            while result == nil {
                var poller = pollfd(fd: connection.descriptor, events: Int16(POLLIN), revents: 0)
                #expect(poll(&poller, 1, 5_000) == 1)
                result = try connection.readResult()
            }
            let value = try #require(result?.value(row: 0, column: 0))
            // int8 in binary is 8 big-endian bytes (0x…0102), in text the digits.
            #expect(binary ? Array(value.utf8) == [0, 0, 0, 0, 0, 0, 1, 2] : value == "258")
            #expect(result?.rowCount == 1)
        }
    }

    @Test func anIntegerParameterIsSentAsItsDecimalText() throws {
        // The open model's allocation-free point-read start: the server must see exactly String(value).
        let connection = try PostgresConnection(TestStack.postgres)
        defer { connection.close() }
        try connection.prepare("kiln_test_integer", "SELECT $1::text AS v")
        for value: Int64 in [0, 7, 10, 19_999, -1, -450, Int64.max, Int64.min] {
            try connection.startPrepared("kiln_test_integer", integer: value)
            var result: PostgresResult?
            while result == nil {
                var poller = pollfd(fd: connection.descriptor, events: Int16(POLLIN), revents: 0)
                #expect(poll(&poller, 1, 5_000) == 1)
                result = try connection.readResult()
            }
            #expect(result?.value(row: 0, column: 0) == String(value))
        }
    }

    @Test func pipelinedStatementsAnswerInOrderAndAFailureSkipsOnlyTheRestOfItsBatch() throws {
        // Eight statements outstanding at once on one connection in pipeline mode, sent as batches of 1, 1, 4 and
        // 2 (one Sync each); the fourth divides by zero. Results come back in the order sent; the failing one throws
        // its SQLSTATE (22012), the server skips the rest of its batch (notRun), the next batch runs; nothing is
        // left outstanding. Unsent statements get no answer until their Sync.
        let connection = try PostgresConnection(TestStack.postgres)
        defer { connection.close() }
        try connection.prepare("kiln_test_pipeline", "SELECT 100 / $1::int AS v")
        try connection.enterPipelineMode()
        try connection.enterPipelineMode()  // idempotent
        let batches: [[Int64]] = [[1], [2], [4, 0, 5, 10], [20, 50]]
        for batch in batches {
            for divisor in batch { try connection.startPrepared("kiln_test_pipeline", integer: divisor) }
            if batch == [20, 50] {
                // Queued, not sent: nothing can arrive for them (the earlier batches may answer).
                #expect(connection.pipelineUnsynced == 2)
            }
            try connection.syncPipeline()
        }
        try connection.syncPipeline()  // nothing queued: a no-op
        #expect(connection.pipelineOutstanding == 8 && connection.pipelineUnsynced == 0)
        /// The oldest statement's value or error, nil while its reply is incomplete.
        func answer() -> String? {
            let result: PostgresResult?
            do {
                result = try connection.readResult()
            } catch {
                #expect(error.sqlState != nil || error.kind == .notRun, "\(error)")
                return "error \(error.sqlState ?? "none")"
            }
            return result.map { $0.value(row: 0, column: 0) ?? "nil" }
        }
        var answers: [String] = []
        while answers.count < 8 {
            if let next = answer() {
                answers.append(next)
                continue
            }
            var poller = pollfd(fd: connection.descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 5_000) == 1 else {
                Issue.record("no reply within 5 s after \(answers)")
                return
            }
        }
        #expect(answers == ["100", "50", "25", "error 22012", "error none", "error none", "5", "2"])
        #expect(connection.pipelineOutstanding == 0)
        #expect(try connection.readResult() == nil)
    }

    @Test func statementTimeoutMakesAWriteInfo() throws {
        let namespace = TestStack.uniqueName("kiln_pgc")
        let owner = try PostgresClient(context: StoreFixtures.context(namespace: namespace))
        try owner.setup()
        defer {
            try? owner.teardown()
            owner.close()
        }
        let client = try PostgresClient(context: StoreFixtures.context(namespace: namespace, timeout: .milliseconds(1)))
        defer { client.close() }
        #expect(client.invoke(.bulk, Request(rows: 0..<100_000)) == .info("timeout"))
        let count = try #require(owner.connection).execute("SELECT count(*) FROM \(owner.table)")
        #expect(count.value(row: 0, column: 0) == "0")
    }

    @Test func unreachableServerThrowsNamingTheStore() throws {
        let context = StoreFixtures.context(
            namespace: TestStack.uniqueName("kiln_pgc"), timeout: .seconds(2), stack: StoreFixtures.unreachableStack)
        #expect {
            _ = try PostgresClient(context: context)
        } throws: { error in
            String(describing: error).hasPrefix("postgres at 127.0.0.1:9")
        }
        #expect(throws: StoreError.self) {
            _ = try PostgresClient(context: StoreFixtures.context(namespace: "Bad-Name"))
        }
    }

    @Test func decimalText() {
        #expect(PostgresClient.decimal(1205, scale: 2) == "12.05")
        #expect(PostgresClient.decimal(7, scale: 3) == "0.007")
        #expect(PostgresClient.decimal(-7, scale: 3) == "-0.007")
        #expect(PostgresClient.decimal(100, scale: 2) == "1.00")
    }
}
