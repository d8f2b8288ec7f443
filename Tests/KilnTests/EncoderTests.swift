import Foundation
@testable import KilnData
import KilnScenario
import Testing

@Suite("Row encoders")
struct EncoderTests {
    static let dataset = try! Dataset(spec: Fixtures.spec, seed: 3, rows: 50_000)

    static func encode(_ format: RowFormat, _ rows: Range<Int64>) -> [UInt8] {
        var encoder = RowEncoder(format: format, dataset: dataset)
        encoder.header()
        for index in rows { encoder.append(dataset.transaction(index)) }
        encoder.trailer()
        return encoder.bytes
    }

    @Test func csvAndTSVCarryEveryFieldExactly() {
        for format in [RowFormat.csv, .tsv] {
            let text = String(decoding: Self.encode(format, 0..<2_000), as: UTF8.self)
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            #expect(lines.count == 2_000)
            for (index, line) in lines.enumerated() {
                let row = Self.dataset.transaction(Int64(index))
                let cells = line.split(separator: format == .csv ? "," : "\t", omittingEmptySubsequences: false)
                #expect(cells.count == RowEncoder.columns.count)
                let ids = cells[0..<3].map { Int64($0) }
                #expect(ids == [row.txnID, row.userID, row.merchantID])
                #expect(Int64(cells[5].replacingOccurrences(of: ".", with: "")) == row.amountCents, "\(cells[5])")
                #expect(cells[5].split(separator: ".").last?.count == 2)
                let ring: Int32 = cells[12].isEmpty || cells[12] == "\\N" ? -1 : Int32(cells[12]) ?? -2
                #expect(ring == row.ringID)
            }
        }
    }

    @Test func jsonLinesParseBack() throws {
        let text = String(decoding: Self.encode(.jsonl, 0..<500), as: UTF8.self)
        for (index, line) in text.split(separator: "\n").enumerated() {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let row = Self.dataset.transaction(Int64(index))
            #expect((object["txn_id"] as? NSNumber)?.int64Value == row.txnID)
            #expect((object["user_id"] as? NSNumber)?.int64Value == row.userID)
            #expect(((object["amount"] as? NSNumber)?.doubleValue ?? 0) * 100 - Double(row.amountCents) < 0.5)
            #expect(object["is_fraud"] as? Bool == row.isFraud)
            #expect((object["ts"] as? String)?.hasSuffix("Z") == true)
        }
    }

    @Test func timestampsMatchFoundationsCalendar() {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss.SSS"
        for millis: Int64 in [0, 951_782_400_123, 1_767_225_600_000, 1_772_323_199_999, 4_102_444_800_000, -86_400_001] {
            var encoder = RowEncoder(format: .csv, dataset: Self.dataset)
            encoder.appendTimestamp(millis)
            let expected = formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000)) + "+00"
            #expect(String(decoding: encoder.bytes, as: UTF8.self) == expected)
        }
    }

    @Test(arguments: [
        (Int64(1205), [0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x0C, 0x01, 0xF4]),  // 12.05: [12, 0500]
        (Int64(5), [0x00, 0x01, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x02, 0x01, 0xF4]),  // 0.05: weight -1, [0500]
        (Int64(1_000_000), [0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01]),  // 10000.00: weight 1, [1]
        (Int64(0), [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02]),
    ])
    func binaryNumericMatchesPostgresLayout(cents: Int64, body: [Int]) {
        var encoder = RowEncoder(format: .copyBinary, dataset: Self.dataset)
        encoder.appendBinaryNumeric(cents, scale: 2)
        let bytes = encoder.bytes
        #expect(Array(bytes.dropFirst(4)) == body.map(UInt8.init), "\(cents) -> \(bytes)")
        #expect(Int(bytes[3]) == body.count)
    }
}

@Suite("Dataset spec errors")
struct DatasetSpecErrorTests {
    static let text = try! String(contentsOf: Fixtures.specURL, encoding: .utf8)

    static func error(replacing old: String, with new: String) -> SpecError? {
        precondition(text.contains(old), old)
        do {
            _ = try DatasetSpec.parse(text.replacingOccurrences(of: old, with: new), file: "spec.yaml")
            return nil
        } catch {
            return error
        }
    }

    @Test func negativeCountsNameTheirField() {
        let error = Self.error(replacing: "merchants: 50K", with: "merchants: -5")
        #expect(error?.field == "entities.merchants")
        #expect(error?.line == 9)
    }

    @Test func aRingLargerThanTheUsersIsRejected() {
        let error = Self.error(replacing: "users: 1M", with: "users: 50")
        #expect(error?.field == "fraud.rings.size")
        #expect(error?.message.contains("more than entities.users") == true)
    }

    @Test func anUnknownDistributionIsRejected() {
        let error = Self.error(replacing: "distribution: lognormal, median: 28.00", with: "distribution: pareto, median: 28.00")
        #expect(error?.field == "categories[1].amount.distribution")
        #expect(error?.message.contains("pareto") == true)
    }

    @Test func defaultRowsBeyondTheLimitAreRejected() {
        let error = Self.error(replacing: "max_rows: 1B", with: "max_rows: 1M")
        #expect(error?.field == "rows")
    }

    @Test func unknownKeysAreErrors() {
        let error = Self.error(replacing: "decline_share: 0.02", with: "decline_share: 0.02\ndecline_rate: 0.1")
        #expect(error?.field == "decline_rate")
    }

    @Test func tooManyRowsForTheSpecIsAnError() {
        #expect(throws: Dataset.RowLimitExceeded.self) { _ = try Dataset(spec: Fixtures.spec, seed: 1, rows: 2_000_000_000) }
    }
}
