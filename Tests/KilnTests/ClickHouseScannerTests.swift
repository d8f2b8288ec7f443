import Foundation
import KilnData
import KilnHTTP
import KilnStores
import Testing

@testable import KilnBackends
@testable import KilnCheck

@Suite("ClickHouse scanner")
struct ClickHouseScannerTests {
    /// A created `kiln.<ns>_transactions` holding dataset rows `rows` (txn_id = row + 1); the caller tears it down.
    private func loaded(_ rows: Range<Int64>) throws -> (ClickHouseClient, ClientContext) {
        let context = StoreFixtures.context(namespace: TestStack.uniqueName("kiln_chs"))
        let client = try ClickHouseClient(context: context)
        try client.setup()
        if !rows.isEmpty {
            #expect(client.invoke(.bulk, Request(rows: rows)) == .ok)
        }
        return (client, context)
    }

    /// Runs a statement on the test server, throwing on a non-2xx answer.
    private func run(_ sql: String) throws {
        try HTTPClient().post(TestStack.clickhouseHTTP + "/", body: Array(sql.utf8)).expectOK()
    }

    @Test func deliversEveryLoadedRowWithEveryFieldEqualToTheGenerator() throws {
        let (client, context) = try loaded(0..<20_000)
        defer { try? client.teardown() }
        let scanner = try ClickHouseScanner(context: context)
        defer { scanner.close() }
        #expect(scanner.source == client.table)
        try ScannerFixtures.expectDeliversEveryGeneratedRow(scanner, count: 20_000)
    }

    @Test func deliversDuplicatedAndTamperedRowsAsStored() throws {
        let (client, context) = try loaded(0..<2_000)
        defer { try? client.teardown() }
        let table = client.table
        let ring = ScannerFixtures.ringRows()
        #expect(ring.withRing >= 0 && ring.withRing < 2_000)
        let ringTxn = ring.withRing + 1
        try run("INSERT INTO \(table) SELECT * FROM \(table) WHERE txn_id = 5")
        try run(
            """
            INSERT INTO \(table) SELECT txn_id, user_id, merchant_id, device_id, location_id, amount, currency, ts,
              channel, 'tampered', fraud_score, 7, NULL FROM \(table) WHERE txn_id = \(ringTxn)
            """)
        let scanner = try ClickHouseScanner(context: context)
        defer { scanner.close() }
        let rows = try ScannerFixtures.scanAll(scanner)
        #expect(rows.count == 2_002)
        let byID = Dictionary(grouping: rows, by: \.txnID)
        #expect(byID[5] == [ScannerFixtures.expected(5), ScannerFixtures.expected(5)])
        var tampered = ScannerFixtures.expected(ringTxn)
        tampered.status = "tampered"
        tampered.ringID = -1
        tampered.isFraud = nil  // 7 is neither 0 nor 1
        let copies = byID[ringTxn] ?? []
        #expect(copies.count == 2)
        #expect(copies.contains(ScannerFixtures.expected(ringTxn)))
        #expect(copies.contains(tampered))
        #expect(ScannerFixtures.mismatches(rows, excluding: [ringTxn]).isEmpty)
    }

    @Test func aRangeScanCoversExactlyItsTxnIDsAndTwoHalvesMakeTheWhole() throws {
        let (client, context) = try loaded(0..<3_000)
        defer { try? client.teardown() }
        let low = try ClickHouseScanner(context: context, txnIDs: 1...1_500)
        let high = try ClickHouseScanner(context: context, txnIDs: 1_501...Int64.max)
        let middle = try ClickHouseScanner(context: context, txnIDs: 100...199)
        let lowRows = try ScannerFixtures.scanAll(low)
        let highRows = try ScannerFixtures.scanAll(high)
        let middleRows = try ScannerFixtures.scanAll(middle)
        #expect(lowRows.count == 1_500)
        #expect(highRows.count == 1_500)
        #expect(Set(lowRows.map(\.txnID) + highRows.map(\.txnID)) == Set(1...3_000))
        #expect(middleRows.count == 100)
        #expect(Set(middleRows.map(\.txnID)) == Set(100...199))
        #expect(ScannerFixtures.mismatches(lowRows + highRows + middleRows).isEmpty)
        #expect(middle.query.contains("WHERE txn_id BETWEEN 100 AND 199"))
    }

    /// `toInt64(amount*100)` on ClickHouse 18.16: Decimal times an integer keeps the scale, so it is exact.
    @Test func decimalConversionIsExact() throws {
        let (client, context) = try loaded(0..<0)
        defer { try? client.teardown() }
        try run(
            """
            INSERT INTO \(client.table) VALUES
              (1, 1, 1, 1, 1, 0.01, 'EUR', 1, 'web', 'approved', 0.001, 0, NULL),
              (2, 1, 1, 1, 1, 12345678.99, 'EUR', 1700000000123, 'web', 'approved', 0.999, 1, 2147483647),
              (3, 1, 1, 1, 1, 9999999999999.99, 'EUR', 4102444800999, 'web', 'declined', 0.5, 0, 0),
              (4, 1, 1, 1, 1, 100000000000.00, 'EUR', 0, 'web', 'declined', 0.123, 0, -5)
            """)
        let scanner = try ClickHouseScanner(context: context)
        let rows = try ScannerFixtures.scanAll(scanner).sorted { $0.txnID < $1.txnID }
        #expect(rows.map(\.amountCents) == [1, 1_234_567_899, 999_999_999_999_999, 10_000_000_000_000])
        #expect(rows.map(\.timestampMillis) == [1, 1_700_000_000_123, 4_102_444_800_999, 0])
        #expect(rows.map(\.fraudScoreMillis) == [1, 999, 500, 123])
        #expect(rows.map(\.ringID) == [-1, 2_147_483_647, 0, -5])
        #expect(rows.map(\.isFraud) == [false, true, false, false])
    }

    @Test func parsesTheSameRowsWhateverTheChunkBoundaries() throws {
        let (client, context) = try loaded(0..<300)
        defer { try? client.teardown() }
        let scanner = try ClickHouseScanner(context: context)
        var stream: [UInt8] = []
        try HTTPClient().streamPost(TestStack.clickhouseHTTP + "/", body: Array(scanner.query.utf8)) {
            stream.append(contentsOf: $0)
        }
        let whole = try ScannerFixtures.scanAll(scanner)
        #expect(whole.count == 300)
        for size in [1, 2, 3, 5, 7, 56, 57, 58, 64, 97, 100, 255, 256, 257, 1000, 4096, stream.count] {
            let rows = try ScannerFixtures.parse(stream, with: RowBinaryTransactionParser.self, chunkSize: size)
            #expect(rows == whole, "chunk size \(size)")
        }
        #expect(try ScannerFixtures.deliveredBeforeCut(stream, with: RowBinaryTransactionParser.self, cutBytes: 3) == 299)
        // Text where rows should be (an appended exception) does not frame as rows.
        var garbage = RowBinaryTransactionParser()
        let text = Array("Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded\n".utf8)
        #expect(throws: StreamFraming.FormatError.self) {
            try text.withUnsafeBytes { bytes in try garbage.feed(bytes) { _ in } }
            try garbage.finish(source: "test")
        }
    }

    @Test func aMissingTableThrowsTheStatus() throws {
        let scanner = try ClickHouseScanner(
            context: StoreFixtures.context(namespace: TestStack.uniqueName("kiln_chs_missing")))
        var delivered = 0
        #expect {
            try scanner.scan { _ in delivered += 1 }
        } throws: { error in
            (error as? HTTPError)?.status != nil
        }
        #expect(delivered == 0)
    }

    @Test func anUnreachableServerThrowsNamingStoreAndAddress() throws {
        let context = StoreFixtures.context(
            namespace: TestStack.uniqueName("kiln_chs"), timeout: .seconds(2), stack: StoreFixtures.unreachableStack)
        #expect {
            _ = try ClickHouseScanner(context: context)
        } throws: { error in
            String(describing: error).hasPrefix("clickhouse at 127.0.0.1:9")
        }
    }
}
