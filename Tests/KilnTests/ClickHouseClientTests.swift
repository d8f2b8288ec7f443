import Foundation
import KilnCore
import KilnData
import KilnHTTP
import Testing

@testable import KilnBackends
@testable import KilnStores

@Suite("ClickHouse store client")
struct ClickHouseClientTests {
    private func client() throws -> ClickHouseClient {
        let client = try ClickHouseClient(context: StoreFixtures.context(namespace: TestStack.uniqueName("kiln_chc")))
        try client.setup()
        return client
    }

    /// Runs `sql` on the client's server and returns the TabSeparated answer.
    private func select(_ sql: String) throws -> String {
        let http = try HTTPClient()
        return try http.post(TestStack.clickhouseHTTP + "/", body: Array(sql.utf8)).expectOK().text
    }

    /// Row `index` as `kiln generate --format tsv` writes it (ClickHouse prints SELECT * the same way).
    private func tsvLine(_ index: Int64) -> String {
        var encoder = RowEncoder(format: .tsv, dataset: StoreFixtures.dataset)
        encoder.append(StoreFixtures.dataset.transaction(index))
        return String(decoding: encoder.bytes, as: UTF8.self)
    }

    @Test func bulkInsertsTheGeneratorsRowsAndFeedsTheAggregate() throws {
        let client = try client()
        defer { try? client.teardown() }
        try client.setup()  // idempotent
        let rows: Range<Int64> = 2_000..<22_000
        #expect(client.invoke(.bulk, Request(rows: rows)) == .ok)
        let totals = try select("SELECT count(), sum(amount) FROM \(client.table) FORMAT TabSeparated")
        let fields = totals.split(separator: "\t").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(fields.first == "20000")
        #expect(StoreFixtures.cents(fields.last) == StoreFixtures.cents(rows))

        // The aggregate holds the same totals.
        let viewTotals = try select("SELECT sum(txns), sum(amount) FROM \(client.aggregate) FORMAT TabSeparated")
        let viewFields = viewTotals.split(separator: "\t").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(viewFields.first == "20000")
        #expect(StoreFixtures.cents(viewFields.last) == StoreFixtures.cents(rows))

        // point-read returns the generator's row, byte for byte.
        #expect(client.invoke(.pointRead, Request(row: 12_345)) == .ok)
        #expect(try client.query(.pointRead, row: 12_345).text == tsvLine(12_345))
        #expect(client.invoke(.pointRead, Request(row: 50_000)) == .fail("not-found"))

        // minute-aggregate: per-minute counts and cents of the 60 minutes ending with the row's minute.
        let probeIndex: Int64 = 15_000
        let probe = StoreFixtures.dataset.transaction(probeIndex)
        #expect(client.invoke(.minuteAggregate, Request(row: probeIndex)) == .ok)
        let answer = try client.query(.minuteAggregate, row: probeIndex).text
        let lastMinute = probe.timestampMillis / 60_000 * 60_000
        let expected = rows.map { StoreFixtures.dataset.transaction($0) }.filter {
            $0.merchantID == probe.merchantID && $0.timestampMillis / 60_000 * 60_000 > lastMinute - 3_600_000
                && $0.timestampMillis / 60_000 * 60_000 <= lastMinute
        }
        let lines = answer.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        #expect(lines.reduce(0) { $0 + (Int($1[1]) ?? 0) } == expected.count)
        #expect(
            lines.reduce(Int64(0)) { $0 + (StoreFixtures.cents($1[2]) ?? 0) }
                == expected.reduce(0) { $0 + $1.amountCents })
        #expect(!lines.isEmpty)
    }

    @Test func singleRowInsertsAreReadBack() throws {
        let client = try client()
        defer { try? client.teardown() }
        for row in Int64(0)..<20 {
            #expect(client.invoke(.insert, Request(row: row)) == .ok)
        }
        #expect(try client.query(.pointRead, row: 7).text == tsvLine(7))
        #expect(client.invoke(.minuteAggregate, Request(row: 19)) == .ok)
    }

    @Test func unreachableServerFailsWithConnection() throws {
        let context = StoreFixtures.context(
            namespace: TestStack.uniqueName("kiln_chc"), timeout: .seconds(2), stack: StoreFixtures.unreachableStack)
        #expect {
            _ = try ClickHouseClient(context: context)
        } throws: { error in
            String(describing: error).hasPrefix("clickhouse at 127.0.0.1:9")
        }
        // A refused connection, as the client classifies it for a write and a read.
        var refused: HTTPError?
        do {
            _ = try HTTPClient(timeoutSeconds: 2).get("http://127.0.0.1:9/")
        } catch {
            refused = error
        }
        let error = try #require(refused)
        #expect(ClickHouseClient.outcome(error, isRead: false) == .fail("connection"))
        #expect(ClickHouseClient.outcome(error, isRead: true) == .fail("connection"))
    }

    @Test func statusClasses() {
        #expect(ClickHouseClient.outcome(status: 200, isRead: false) == .ok)
        #expect(ClickHouseClient.outcome(status: 500, isRead: false) == .info("http-500"))
        #expect(ClickHouseClient.outcome(status: 500, isRead: true) == .fail("http-500"))
        #expect(ClickHouseClient.outcome(status: 400, isRead: false) == .fail("http-400"))
        #expect(
            ClickHouseClient.percentEncoded("INSERT INTO a.b FORMAT RowBinary")
                == "INSERT%20INTO%20a.b%20FORMAT%20RowBinary")
    }

    @Test func aWriteTheServerRejectsIsNotOK() throws {
        // Before setup the table does not exist: ClickHouse 18.16 answers 500 for it, which after sending a write
        // is reported as unknown.
        let client = try ClickHouseClient(context: StoreFixtures.context(namespace: TestStack.uniqueName("kiln_chc")))
        let outcome = client.invoke(.insert, Request(row: 1))
        #expect(outcome.kind == "info" || outcome.kind == "fail")
        #expect(outcome.errorClass?.hasPrefix("http-") == true)
        #expect(client.invoke(.pointRead, Request(row: 1)).kind == "fail")
    }
}
