import Foundation
import KilnData
import KilnPostgres
import KilnStores
import Testing

@testable import KilnBackends
@testable import KilnCheck

/// Expected scanner output, from the generator.
enum ScannerFixtures {
    /// The generator's row for `txnID`, as a scanner of a store that keeps every column delivers it.
    static func expected(_ txnID: Int64, _ dataset: Dataset = StoreFixtures.dataset) -> StoredRow {
        StoredRow(dataset.transaction(txnID - 1), in: dataset)
    }

    /// Every row `scanner` delivers, in delivery order (small test tables only).
    static func scanAll(_ scanner: any StoreScanner) throws -> [StoredRow] {
        var rows: [StoredRow] = []
        try scanner.scan { rows.append($0) }
        return rows
    }

    /// The rows a fresh `Parser` delivers from `stream` fed in chunks of `chunkSize` bytes, after `finish`: a
    /// scanner's parser must deliver the same rows whatever the chunk boundaries.
    static func parse<Parser: StoredRowStreamParser>(
        _ stream: [UInt8], with _: Parser.Type, chunkSize: Int
    ) throws -> [StoredRow] {
        var parser = Parser()
        var rows: [StoredRow] = []
        try stream.withUnsafeBytes { bytes in
            var start = 0
            while start < bytes.count {
                let end = min(bytes.count, start + chunkSize)
                try parser.feed(UnsafeRawBufferPointer(rebasing: bytes[start..<end])) { rows.append($0) }
                start = end
            }
        }
        try parser.finish(source: "test")
        return rows
    }

    /// How many rows a fresh `Parser` delivers from `stream` cut short by `cutBytes`, and that `finish` then throws
    /// (a stream cut inside a row is an error, never a silently shorter scan).
    static func deliveredBeforeCut<Parser: StoredRowStreamParser>(
        _ stream: [UInt8], with _: Parser.Type, cutBytes: Int
    ) throws -> Int {
        var parser = Parser()
        var delivered = 0
        try stream.dropLast(cutBytes).withUnsafeBytes { bytes in try parser.feed(bytes) { _ in delivered += 1 } }
        #expect(throws: StreamFraming.FormatError.self) { try parser.finish(source: "test") }
        return delivered
    }

    /// Expects `scanner` (over a table loaded with dataset rows `0..<count`) to deliver txn ids 1...count, each row
    /// equal to the generator's and both ring cases among them (a NULL ring_id reads -1), and a second scan on the
    /// same connection to deliver as many.
    static func expectDeliversEveryGeneratedRow(_ scanner: any StoreScanner, count: Int) throws {
        let rows = try scanAll(scanner)
        #expect(rows.count == count)
        #expect(Set(rows.map(\.txnID)) == Set(1...Int64(count)))
        #expect(mismatches(rows).isEmpty)
        #expect(rows.contains { $0.ringID == -1 })
        #expect(rows.contains { ($0.ringID ?? -1) >= 0 })
        var again = 0
        try scanner.scan { _ in again += 1 }
        #expect(again == count)
    }

    /// Rows whose txnID is in `txnIDs` and whose every field equals the generator's.
    static func mismatches(_ rows: [StoredRow], excluding ignored: Set<Int64> = []) -> [Int64] {
        rows.filter { !ignored.contains($0.txnID) && $0 != expected($0.txnID) }.map(\.txnID)
    }

    /// The first dataset index (>= `from`) with a planted ring, and the first without one.
    static func ringRows(from: Int64 = 0) -> (withRing: Int64, withoutRing: Int64) {
        let dataset = StoreFixtures.dataset
        let with = (from..<dataset.rows).first { dataset.transaction($0).ringID >= 0 } ?? -1
        let without = (from..<dataset.rows).first { dataset.transaction($0).ringID < 0 } ?? -1
        return (with, without)
    }
}

@Suite("PostgreSQL scanner")
struct PostgresScannerTests {
    /// A loaded `<ns>_transactions` of dataset rows `rows` (txn_id = row + 1); the caller tears it down.
    private func loaded(_ rows: Range<Int64>) throws -> (PostgresClient, ClientContext) {
        let context = StoreFixtures.context(namespace: TestStack.uniqueName("kiln_pgs"))
        let client = try PostgresClient(context: context)
        try client.setup()
        #expect(client.invoke(.bulk, Request(rows: rows)) == .ok)
        return (client, context)
    }

    @Test func deliversEveryLoadedRowWithEveryFieldEqualToTheGenerator() throws {
        let (client, context) = try loaded(0..<20_000)
        defer {
            try? client.teardown()
            client.close()
        }
        let scanner = try PostgresScanner(context: context)
        defer { scanner.close() }
        #expect(scanner.source == "\(context.namespace)_transactions")
        try ScannerFixtures.expectDeliversEveryGeneratedRow(scanner, count: 20_000)
    }

    @Test func deliversTamperedAndExtraRowsAsStored() throws {
        let (client, context) = try loaded(0..<2_000)
        defer {
            try? client.teardown()
            client.close()
        }
        let table = client.table
        let ring = ScannerFixtures.ringRows()
        #expect(ring.withRing >= 0 && ring.withRing < 2_000)
        let sql = try PostgresConnection(TestStack.postgres)
        defer { sql.close() }
        try sql.execute(
            """
            UPDATE \(table) SET amount = amount + 0.01, status = 'tampered', is_fraud = NOT is_fraud WHERE txn_id = 10;
            UPDATE \(table) SET ring_id = NULL WHERE txn_id = \(ring.withRing + 1);
            INSERT INTO \(table) SELECT 5000000, user_id, merchant_id, device_id, location_id, amount, currency, ts,
              channel, status, fraud_score, is_fraud, 77 FROM \(table) WHERE txn_id = 3
            """)
        let scanner = try PostgresScanner(context: context)
        defer { scanner.close() }
        let rows = try ScannerFixtures.scanAll(scanner)
        #expect(rows.count == 2_001)
        let byID = Dictionary(grouping: rows, by: \.txnID)
        var tampered = ScannerFixtures.expected(10)
        tampered.amountCents = (tampered.amountCents ?? 0) + 1
        tampered.status = "tampered"
        tampered.isFraud = !(tampered.isFraud ?? false)
        #expect(byID[10] == [tampered])
        var ringLost = ScannerFixtures.expected(ring.withRing + 1)
        ringLost.ringID = -1
        #expect(byID[ring.withRing + 1] == [ringLost])
        var extra = ScannerFixtures.expected(3)
        extra.txnID = 5_000_000
        extra.ringID = 77
        #expect(byID[5_000_000] == [extra])
        let untouched = ScannerFixtures.mismatches(rows, excluding: [10, ring.withRing + 1, 5_000_000])
        #expect(untouched.isEmpty)
    }

    @Test func aRangeScanCoversExactlyItsTxnIDsAndTwoHalvesMakeTheWhole() throws {
        let (client, context) = try loaded(0..<3_000)
        defer {
            try? client.teardown()
            client.close()
        }
        let low = try PostgresScanner(context: context, txnIDs: 1...1_500)
        let high = try PostgresScanner(context: context, txnIDs: 1_501...Int64.max)
        let middle = try PostgresScanner(context: context, txnIDs: 100...199)
        defer { [low, high, middle].forEach { $0.close() } }
        let lowRows = try ScannerFixtures.scanAll(low)
        let highRows = try ScannerFixtures.scanAll(high)
        let middleRows = try ScannerFixtures.scanAll(middle)
        #expect(lowRows.count == 1_500)
        #expect(highRows.count == 1_500)
        #expect(Set(lowRows.map(\.txnID) + highRows.map(\.txnID)) == Set(1...3_000))
        #expect(Set(middleRows.map(\.txnID)) == Set(100...199))
        #expect(middleRows.count == 100)
        #expect(ScannerFixtures.mismatches(lowRows + highRows + middleRows).isEmpty)
        #expect(middle.copyStatement.contains("WHERE txn_id BETWEEN 100 AND 199"))
    }

    @Test func decimalsAndTimestampsConvertExactly() throws {
        let context = StoreFixtures.context(namespace: TestStack.uniqueName("kiln_pgs"))
        let client = try PostgresClient(context: context)
        try client.setup()
        defer {
            try? client.teardown()
            client.close()
        }
        let sql = try PostgresConnection(TestStack.postgres)
        defer { sql.close() }
        try sql.execute(
            """
            INSERT INTO \(client.table) VALUES
              (1, 1, 1, 1, 1, 0.01, 'EUR', timestamptz 'epoch' + 1 * interval '1 millisecond', 'web', 'approved',
               0.001, false, NULL),
              (2, 1, 1, 1, 1, 12345678.99, 'EUR', timestamptz 'epoch' + 1700000000123 * interval '1 millisecond',
               'web', 'approved', 0.999, true, 2147483647),
              (3, 1, 1, 1, 1, 9999999999999.99, 'EUR', timestamptz 'epoch' + 4102444800999 * interval '1 millisecond',
               'web', 'declined', 0.5, false, 0)
            """)
        let scanner = try PostgresScanner(context: context)
        defer { scanner.close() }
        let rows = try ScannerFixtures.scanAll(scanner).sorted { $0.txnID < $1.txnID }
        #expect(rows.map(\.amountCents) == [1, 1_234_567_899, 999_999_999_999_999])
        #expect(rows.map(\.timestampMillis) == [1, 1_700_000_000_123, 4_102_444_800_999])
        #expect(rows.map(\.fraudScoreMillis) == [1, 999, 500])
        #expect(rows.map(\.ringID) == [-1, 2_147_483_647, 0])
        #expect(rows.map(\.isFraud) == [false, true, false])
    }

    @Test func parsesTheSameRowsWhateverTheChunkBoundaries() throws {
        let (client, context) = try loaded(0..<300)
        defer {
            try? client.teardown()
            client.close()
        }
        let scanner = try PostgresScanner(context: context)
        defer { scanner.close() }
        // The raw COPY stream, as the server sends it.
        let sql = try PostgresConnection(TestStack.postgres)
        defer { sql.close() }
        var stream: [UInt8] = []
        try sql.copyOut(scanner.copyStatement) { stream.append(contentsOf: $0) }
        let whole = try ScannerFixtures.scanAll(scanner)
        #expect(whole.count == 300)
        for size in [1, 2, 3, 5, 7, 19, 20, 64, 97, 100, 255, 256, 257, 1000, 4096, stream.count] {
            let rows = try ScannerFixtures.parse(stream, with: PostgresCopyParser.self, chunkSize: size)
            #expect(rows == whole, "chunk size \(size)")
        }
        #expect(try ScannerFixtures.deliveredBeforeCut(stream, with: PostgresCopyParser.self, cutBytes: 10) == 299)
    }

    @Test func aMissingTableIsAServerError() throws {
        let scanner = try PostgresScanner(
            context: StoreFixtures.context(namespace: TestStack.uniqueName("kiln_pgs_missing")))
        defer { scanner.close() }
        #expect {
            try scanner.scan { _ in }
        } throws: { error in
            (error as? PostgresError)?.sqlState == "42P01"
        }
    }

    @Test func anUnreachableServerThrowsNamingStoreAndAddress() throws {
        let context = StoreFixtures.context(
            namespace: TestStack.uniqueName("kiln_pgs"), timeout: .seconds(2), stack: StoreFixtures.unreachableStack)
        #expect {
            _ = try PostgresScanner(context: context)
        } throws: { error in
            String(describing: error).hasPrefix("postgres at 127.0.0.1:9")
        }
    }
}

@Suite("binary numeric and timestamptz decoding")
struct PostgresBinaryDecodingTests {
    /// A binary `numeric`: ndigits, weight, sign, dscale, then base-10000 digits (all big-endian int16).
    static func numeric(weight: Int16, negative: Bool = false, scale: Int16, _ digits: [Int16]) -> [UInt8] {
        var header: [Int16] = [Int16(digits.count), weight, negative ? 0x4000 : 0, scale]
        header += digits
        return header.flatMap { value in [UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)] }
    }

    static func decode(_ bytes: [UInt8], scale: Int) -> Int64? {
        bytes.withUnsafeBytes { PostgresCopyParser.numeric($0, 0, bytes.count, scale: scale) }
    }

    @Test func numericsBecomeExactScaledIntegers() {
        #expect(Self.decode(Self.numeric(weight: 0, scale: 2, [12, 500]), scale: 2) == 1205)  // 12.05
        #expect(Self.decode(Self.numeric(weight: 1, scale: 2, [123, 4567, 8900]), scale: 2) == 123_456_789)  // 1234567.89
        #expect(Self.decode(Self.numeric(weight: -1, negative: true, scale: 3, [70]), scale: 3) == -7)  // -0.007
        #expect(Self.decode(Self.numeric(weight: 0, scale: 0, []), scale: 2) == 0)  // 0
        #expect(Self.decode(Self.numeric(weight: 2, scale: 0, [1]), scale: 2) == 10_000_000_000)  // 100000000
    }

    @Test func moreDecimalsThanTheScaleCannotMatchAndGarbageIsNil() {
        // 12.051 read as cents is not exact: it must read as a value no row has.
        #expect(Self.decode(Self.numeric(weight: 0, scale: 3, [12, 510]), scale: 2) == Int64.min)
        #expect(Self.decode(Self.numeric(weight: -2, scale: 8, [1]), scale: 2) == Int64.min)
        #expect(Self.decode([0, 1, 0, 0], scale: 2) == nil)
        var nan = Self.numeric(weight: 0, scale: 0, [])
        nan[4] = 0xC0
        #expect(Self.decode(nan, scale: 2) == nil)
    }

    @Test func timestampsBecomeUnixMilliseconds() {
        func decode(_ micros: Int64) -> Int64? {
            let bytes = withUnsafeBytes(of: micros.bigEndian) { Array($0) }
            return bytes.withUnsafeBytes { PostgresCopyParser.timestampMillis($0, 0, 8) }
        }
        #expect(decode(0) == 946_684_800_000)
        #expect(decode(1_000) == 946_684_800_001)
        #expect(decode(-946_684_800_000_000) == 0)
        #expect(decode(1_500) == Int64.min)
    }
}
