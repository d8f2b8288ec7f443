import Foundation
import Testing

@testable import KilnData

/// What a row looks like once parsed back from any format, field for field.
struct DecodedRow: Equatable, CustomStringConvertible {
    var txnID: Int64
    var userID: Int64
    var merchantID: Int64
    var deviceID: Int64
    var locationID: Int64
    var amountCents: Int64
    var currency: String
    var timestampMillis: Int64
    var channel: String
    var status: String
    var fraudScoreMillis: Int64
    var isFraud: Bool
    var ringID: Int32?

    init(
        txnID: Int64, userID: Int64, merchantID: Int64, deviceID: Int64, locationID: Int64, amountCents: Int64,
        currency: String, timestampMillis: Int64, channel: String, status: String, fraudScoreMillis: Int64,
        isFraud: Bool, ringID: Int32?
    ) {
        self.txnID = txnID
        self.userID = userID
        self.merchantID = merchantID
        self.deviceID = deviceID
        self.locationID = locationID
        self.amountCents = amountCents
        self.currency = currency
        self.timestampMillis = timestampMillis
        self.channel = channel
        self.status = status
        self.fraudScoreMillis = fraudScoreMillis
        self.isFraud = isFraud
        self.ringID = ringID
    }

    init(_ row: Transaction, _ dataset: Dataset) {
        self.init(
            txnID: row.txnID, userID: row.userID, merchantID: row.merchantID, deviceID: row.deviceID,
            locationID: row.locationID, amountCents: row.amountCents, currency: dataset.currencyCodes[Int(row.currency)],
            timestampMillis: row.timestampMillis, channel: dataset.channelNames[Int(row.channel)],
            status: row.declined ? "declined" : "approved", fraudScoreMillis: Int64(row.fraudScoreMillis),
            isFraud: row.isFraud, ringID: row.ringID >= 0 ? row.ringID : nil)
    }

    var description: String { "\(txnID) \(userID) \(amountCents) \(timestampMillis) \(ringID.map(String.init) ?? "-")" }
}

/// Text parsing shared by the CSV/TSV/JSON readers: strict, so a formatting slip fails the test.
enum TextFields {
    static let formatter: DateFormatter = {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss.SSS"
        return formatter
    }()

    /// `12.05` -> 1205 with exactly `scale` decimals required.
    static func fixed(_ text: Substring, scale: Int) -> Int64? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].count == scale, let whole = Int64(parts[0]), let fraction = Int64(parts[1]),
            !parts[0].isEmpty
        else { return nil }
        var factor: Int64 = 1
        for _ in 0..<scale { factor *= 10 }
        return whole * factor + fraction
    }

    /// `2026-01-01 00:00:00.123` (or with `T`) -> Unix ms, checked against Foundation's calendar.
    static func millis(_ text: Substring) -> Int64? {
        let normalized = text.replacingOccurrences(of: "T", with: " ")
        guard let date = formatter.date(from: normalized) else { return nil }
        return Int64((date.timeIntervalSince1970 * 1000).rounded())
    }
}

enum CSVReader {
    /// PostgreSQL CSV (`separator` ",") or ClickHouse TabSeparated ("\t").
    static func rows(_ text: String, separator: Character) -> [DecodedRow?] {
        let csv = separator == ","
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { line in
            let cells = line.split(separator: separator, omittingEmptySubsequences: false)
            guard cells.count == 13 else { return nil }
            // PostgreSQL: `2026-01-01 00:00:00.000+00`; ClickHouse: Unix milliseconds.
            let millis = csv ? (cells[7].hasSuffix("+00") ? TextFields.millis(cells[7].dropLast(3)) : nil) : Int64(cells[7])
            guard let ids = Optional(cells[0..<5].compactMap { Int64($0) }), ids.count == 5,
                let amount = TextFields.fixed(cells[5], scale: 2), let millis,
                let score = TextFields.fixed(cells[10], scale: 3)
            else { return nil }
            let fraud: Bool? = csv ? ["true": true, "false": false][String(cells[11])] : ["1": true, "0": false][String(cells[11])]
            let nullText = csv ? "" : "\\N"
            guard let fraud, cells[12] == nullText || Int32(cells[12]) != nil else { return nil }
            return DecodedRow(
                txnID: ids[0], userID: ids[1], merchantID: ids[2], deviceID: ids[3], locationID: ids[4],
                amountCents: amount, currency: String(cells[6]), timestampMillis: millis, channel: String(cells[8]),
                status: String(cells[9]), fraudScoreMillis: score, isFraud: fraud,
                ringID: cells[12] == nullText ? nil : Int32(cells[12]))
        }
    }
}

enum JSONReader {
    static func row(_ line: Substring) -> DecodedRow? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            object.count == 13,
            let amountText = Self.rawNumber(line, "amount"), let scoreText = Self.rawNumber(line, "fraud_score"),
            let amount = TextFields.fixed(amountText, scale: 2), let score = TextFields.fixed(scoreText, scale: 3),
            let ts = object["ts"] as? String, ts.hasSuffix("Z"), let millis = TextFields.millis(ts.dropLast()),
            let fraud = object["is_fraud"] as? Bool
        else { return nil }
        func int(_ key: String) -> Int64 { (object[key] as? NSNumber)?.int64Value ?? -1 }
        return DecodedRow(
            txnID: int("txn_id"), userID: int("user_id"), merchantID: int("merchant_id"), deviceID: int("device_id"),
            locationID: int("location_id"), amountCents: amount, currency: object["currency"] as? String ?? "?",
            timestampMillis: millis, channel: object["channel"] as? String ?? "?", status: object["status"] as? String ?? "?",
            fraudScoreMillis: score, isFraud: fraud, ringID: (object["ring_id"] as? NSNumber).map { Int32($0.int32Value) })
    }

    /// The literal text of a number field (JSONSerialization would turn 12.10 into a binary double).
    static func rawNumber(_ line: Substring, _ key: String) -> Substring? {
        guard let start = line.range(of: "\"\(key)\":") else { return nil }
        let rest = line[start.upperBound...]
        return rest.prefix { $0 == "." || $0.isNumber || $0 == "-" }
    }
}

/// PostgreSQL COPY BINARY: signature, flags, extension, then per row an Int16 field count and length-prefixed
/// fields, then the -1 trailer. Decodes the 13 columns of `TransactionSchema.postgres` by their binary layouts.
enum CopyBinaryReader {
    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    static func rows(_ data: Data) throws -> [DecodedRow] {
        var reader = BigEndianReader(bytes: Array(data))
        let signature = try reader.bytes(11)
        guard signature == Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] else { throw Malformed(description: "signature") }
        guard try reader.int32() == 0, try reader.int32() == 0 else { throw Malformed(description: "flags/extension") }
        var rows: [DecodedRow] = []
        while true {
            let fields = try reader.int16()
            if fields == -1 { break }
            guard fields == 13 else { throw Malformed(description: "field count \(fields)") }
            func int8() throws -> Int64 {
                guard try reader.int32() == 8 else { throw Malformed(description: "int8 length") }
                return try reader.int64()
            }
            func text() throws -> String {
                let length = try reader.int32()
                return String(decoding: try reader.bytes(Int(length)), as: UTF8.self)
            }
            let ids = [try int8(), try int8(), try int8(), try int8(), try int8()]
            let amount = try numeric(&reader, scale: 2)
            let currency = try text()
            let micros = try int8()
            let channel = try text()
            let status = try text()
            let score = try numeric(&reader, scale: 3)
            guard try reader.int32() == 1 else { throw Malformed(description: "bool length") }
            let fraud = try reader.bytes(1)[0]
            let ringLength = try reader.int32()
            let ring: Int32? = ringLength == -1 ? nil : try reader.int32()
            guard micros % 1000 == 0, fraud <= 1, ringLength == -1 || ringLength == 4 else {
                throw Malformed(description: "field values")
            }
            rows.append(
                DecodedRow(
                    txnID: ids[0], userID: ids[1], merchantID: ids[2], deviceID: ids[3], locationID: ids[4],
                    amountCents: amount, currency: currency, timestampMillis: micros / 1000 + 946_684_800_000,
                    channel: channel, status: status, fraudScoreMillis: score, isFraud: fraud == 1, ringID: ring))
        }
        guard reader.isAtEnd else { throw Malformed(description: "bytes after the trailer") }
        return rows
    }

    /// A binary numeric as an integer in units of 10^-scale (PostgreSQL's layout: ndigits, weight, sign, dscale,
    /// then base-10000 digits), requiring dscale == scale and no leading/trailing zero groups.
    static func numeric(_ reader: inout BigEndianReader, scale: Int) throws -> Int64 {
        let length = try reader.int32()
        let groups = Int(try reader.int16())
        let weight = Int(try reader.int16())
        let sign = try reader.int16()
        let displayScale = Int(try reader.int16())
        guard length == 8 + 2 * Int32(groups), displayScale == scale, sign == 0 || sign == 0x4000 else {
            throw Malformed(description: "numeric header")
        }
        var digits: [Int64] = []
        for _ in 0..<groups { digits.append(Int64(try reader.int16())) }
        guard digits.first != 0, digits.last != 0, digits.allSatisfy({ (0..<10_000).contains($0) }) else {
            throw Malformed(description: "numeric digits \(digits)")
        }
        // value · 10^scale = Σ digit · 10000^(weight - i) · 10^scale; the fraction has at most one group here.
        var value: Int64 = 0
        for (i, digit) in digits.enumerated() {
            let exponent = 4 * (weight - i) + scale
            var term = digit
            if exponent >= 0 {
                for _ in 0..<exponent { term *= 10 }
            } else {
                for _ in 0..<(-exponent) {
                    guard term % 10 == 0 else { throw Malformed(description: "numeric beyond its scale") }
                    term /= 10
                }
            }
            value += term
        }
        return sign == 0x4000 ? -value : value
    }
}

struct BigEndianReader {
    let bytes: [UInt8]
    var position = 0

    var isAtEnd: Bool { position == bytes.count }

    mutating func bytes(_ count: Int) throws -> [UInt8] {
        guard count >= 0, position + count <= bytes.count else {
            throw CopyBinaryReader.Malformed(description: "truncated at \(position)")
        }
        defer { position += count }
        return Array(bytes[position..<position + count])
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type, bigEndian: Bool = true) throws -> T {
        let raw = try bytes(MemoryLayout<T>.size)
        var value: T = 0
        for byte in (bigEndian ? raw : raw.reversed()) { value = value << 8 | T(byte) }
        return value
    }

    mutating func int16() throws -> Int16 { try integer(Int16.self) }
    mutating func int32() throws -> Int32 { try integer(Int32.self) }
    mutating func int64() throws -> Int64 { try integer(Int64.self) }
}

/// ClickHouse RowBinary for `TransactionSchema.clickhouse`.
enum RowBinaryReader {
    static func rows(_ data: [UInt8]) throws -> [DecodedRow] {
        var reader = BigEndianReader(bytes: data)
        var rows: [DecodedRow] = []
        func string() throws -> String {
            let length = Int(try reader.bytes(1)[0])  // LEB128, one byte below 128
            guard length < 128 else { throw CopyBinaryReader.Malformed(description: "long string") }
            return String(decoding: try reader.bytes(length), as: UTF8.self)
        }
        while !reader.isAtEnd {
            var ids: [Int64] = []
            for _ in 0..<5 { ids.append(try reader.integer(Int64.self, bigEndian: false)) }
            let amount = try reader.integer(Int64.self, bigEndian: false)
            let currency = try string()
            let millis = try reader.integer(Int64.self, bigEndian: false)
            let channel = try string()
            let status = try string()
            let score = try reader.integer(Int32.self, bigEndian: false)
            let fraud = try reader.bytes(1)[0]
            let isNull = try reader.bytes(1)[0]
            let ring: Int32? = isNull == 1 ? nil : try reader.integer(Int32.self, bigEndian: false)
            rows.append(
                DecodedRow(
                    txnID: ids[0], userID: ids[1], merchantID: ids[2], deviceID: ids[3], locationID: ids[4],
                    amountCents: amount, currency: currency, timestampMillis: millis, channel: channel, status: status,
                    fraudScoreMillis: Int64(score), isFraud: fraud == 1, ringID: ring))
        }
        return rows
    }
}

/// A RESP command stream: arrays of bulk strings.
enum RESPReader {
    static func commands(_ data: [UInt8]) throws -> [[String]] {
        var reader = BigEndianReader(bytes: data)
        func line() throws -> String {
            var text: [UInt8] = []
            while true {
                let byte = try reader.bytes(1)[0]
                if byte == 0x0D {
                    guard try reader.bytes(1)[0] == 0x0A else { throw CopyBinaryReader.Malformed(description: "CR without LF") }
                    return String(decoding: text, as: UTF8.self)
                }
                text.append(byte)
            }
        }
        var commands: [[String]] = []
        while !reader.isAtEnd {
            let header = try line()
            guard header.hasPrefix("*"), let count = Int(header.dropFirst()) else {
                throw CopyBinaryReader.Malformed(description: "array header \(header)")
            }
            var command: [String] = []
            for _ in 0..<count {
                let bulk = try line()
                guard bulk.hasPrefix("$"), let length = Int(bulk.dropFirst()) else {
                    throw CopyBinaryReader.Malformed(description: "bulk header \(bulk)")
                }
                command.append(String(decoding: try reader.bytes(length), as: UTF8.self))
                guard try reader.bytes(2) == [0x0D, 0x0A] else { throw CopyBinaryReader.Malformed(description: "bulk end") }
            }
            commands.append(command)
        }
        return commands
    }
}

@Suite("Row encoders")
struct EncoderTests {
    static let dataset = try! Dataset(spec: Fixtures.spec, seed: 3, rows: 200_000)
    /// Rows that cover ring rows, NULL ring ids, both statuses and amounts of every magnitude.
    static let sample: [Int64] = Array(0..<3_000) + Array(stride(from: 3_000, to: 200_000, by: 37))
    static let expected: [DecodedRow] = sample.map { DecodedRow(dataset.transaction($0), dataset) }

    static func encode(_ format: RowFormat, _ indexes: [Int64] = sample, bulk: Bool = false) -> [UInt8] {
        var encoder = RowEncoder(format: format, dataset: dataset, capacity: 4096)  // small: forces growth
        encoder.header()
        if bulk {
            encoder.append(dataset, rows: 0..<Int64(indexes.count))
        } else {
            for index in indexes { encoder.append(dataset.transaction(index)) }
        }
        encoder.trailer()
        return encoder.bytes
    }

    @Test func theSampleCoversTheInterestingCases() {
        let rows = Self.sample.map { Self.dataset.transaction($0) }
        #expect(rows.contains { $0.ringID >= 0 } && rows.contains { $0.ringID < 0 })
        #expect(rows.contains { $0.declined } && rows.contains { $0.isFraud && $0.ringID < 0 })
        #expect(rows.contains { $0.amountCents < 300 } && rows.contains { $0.amountCents >= 100_000 })
        #expect(rows.contains { $0.fraudScoreMillis < 10 } && rows.contains { $0.fraudScoreMillis % 100 == 0 })
        #expect(Set(rows.map(\.channel)).count == Self.dataset.channelNames.count)
    }

    @Test func csvAndTSVParseBackToEveryField() {
        for (format, separator) in [(RowFormat.csv, Character(",")), (.tsv, "\t")] {
            let decoded = CSVReader.rows(String(decoding: Self.encode(format), as: UTF8.self), separator: separator)
            #expect(decoded.count == Self.expected.count)
            #expect(decoded == Self.expected.map { Optional($0) }, "\(format)")
        }
    }

    @Test func jsonLinesAndKafkaKeyedLinesParseBack() {
        let lines = String(decoding: Self.encode(.jsonl), as: UTF8.self).split(separator: "\n")
        #expect(lines.map(JSONReader.row) == Self.expected.map { Optional($0) })
        let keyed = String(decoding: Self.encode(.kafka), as: UTF8.self).split(separator: "\n")
        #expect(keyed.count == Self.expected.count)
        for (line, row) in zip(keyed, Self.expected) {
            let parts = line.split(separator: "\t", maxSplits: 1)
            #expect(parts.count == 2 && Int64(parts[0]) == row.userID)
            #expect(JSONReader.row(parts[1]) == row)
        }
    }

    @Test func copyBinaryHasHeaderRowsAndTrailerInPostgresLayout() throws {
        let bytes = Self.encode(.copyBinary)
        #expect(Array(bytes.prefix(19)) == Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] + [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes.suffix(2)) == [0xFF, 0xFF])
        #expect(try CopyBinaryReader.rows(Data(bytes)) == Self.expected)
    }

    @Test func rowBinaryParsesBack() throws {
        #expect(try RowBinaryReader.rows(Self.encode(.rowBinary)) == Self.expected)
    }

    @Test func respCommandsCarryTheRow() throws {
        let commands = try RESPReader.commands(Self.encode(.resp))
        #expect(commands.count == 2 * Self.expected.count)
        for (index, row) in Self.expected.enumerated() {
            let hset = commands[2 * index]
            let zadd = commands[2 * index + 1]
            #expect(hset == [
                "HSET", "txn:\(row.txnID)", "user_id", "\(row.userID)", "merchant_id", "\(row.merchantID)", "device_id",
                "\(row.deviceID)", "amount_cents", "\(row.amountCents)", "ts", "\(row.timestampMillis)", "is_fraud",
                row.isFraud ? "1" : "0",
            ])
            #expect(zadd == ["ZADD", "user:\(row.userID):txns", "\(row.timestampMillis)", "\(row.txnID)"])
        }
    }

    @Test func cypherMapsCarryTheRow() {
        let lines = String(decoding: Self.encode(.cypher), as: UTF8.self).split(separator: "\n")
        #expect(lines.count == Self.expected.count)
        for (line, row) in zip(lines, Self.expected) {
            let score = String(format: "%d.%03d", row.fraudScoreMillis / 1000, row.fraudScoreMillis % 1000)
            let expected = "{txn_id: \(row.txnID), user_id: \(row.userID), merchant_id: \(row.merchantID), "
                + "device_id: \(row.deviceID), location_id: \(row.locationID), amount_cents: \(row.amountCents), "
                + "currency: '\(row.currency)', ts: \(row.timestampMillis), channel: '\(row.channel)', "
                + "status: '\(row.status)', fraud_score: \(score), is_fraud: \(row.isFraud), "
                + "ring_id: \(row.ringID.map(String.init) ?? "null")}"
            #expect(String(line) == expected)
        }
    }

    @Test(arguments: RowFormat.allCases)
    func bulkEncodingEqualsRowByRow(format: RowFormat) {
        let indexes = Array(Int64(0)..<5_000)
        #expect(Self.encode(format, indexes, bulk: true) == Self.encode(format, indexes))
    }

    @Test func integersOfEveryWidthFormatExactly() {
        var values: [Int64] = [0, 1, 9, 10, 99, 100, 999, 1000, Int64.max, -1, -10, -99_999_999, Int64.min + 1]
        var power: Int64 = 1
        for _ in 0..<18 {
            power *= 10
            values += [power - 1, power, power + 1]
        }
        var generator = SystemRandomNumberGenerator()
        values += (0..<2_000).map { _ in Int64.random(in: Int64.min + 1...Int64.max, using: &generator) >> Int64.random(in: 0...62) }
        let names = EncodingNames(dataset: Self.dataset)
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 64)
        defer { buffer.deallocate() }
        for value in values {
            var writer = ByteWriter(buffer, names)
            writer.decimal(value)
            let text = String(decoding: UnsafeBufferPointer(start: buffer, count: writer.cursor - buffer), as: UTF8.self)
            #expect(text == String(value))
            #expect(writer.digitCount(value.magnitude) == String(value.magnitude).count)
        }
    }

    @Test(arguments: [
        (Int64(1205), [0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x0C, 0x01, 0xF4]),  // 12.05: [12, 0500]
        (Int64(5), [0x00, 0x01, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x02, 0x01, 0xF4]),  // 0.05: weight -1, [0500]
        (Int64(1_000_000), [0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01]),  // 10000.00: weight 1, [1]
        (Int64(100_000_000_000_000), [0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01]),  // 10^12: [1]
        (Int64(123_400_000_005), [0x00, 0x04, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x0C, 0x0D, 0x48, 0x00, 0x00,
            0x01, 0xF4]),  // 1234000000.05: [12, 3400, 0000, 0500]
        (Int64(0), [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02]),
        (Int64(-250), [0x00, 0x02, 0x00, 0x00, 0x40, 0x00, 0x00, 0x02, 0x00, 0x02, 0x13, 0x88]),  // -2.50: [2, 5000]
    ])
    func binaryNumericMatchesPostgresLayout(cents: Int64, body: [Int]) {
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 64)
        defer { buffer.deallocate() }
        var writer = ByteWriter(buffer, EncodingNames(dataset: Self.dataset))
        writer.binaryNumeric(cents, scale: 2)
        let bytes = Array(UnsafeBufferPointer(start: buffer, count: writer.cursor - buffer))
        #expect(Array(bytes.dropFirst(4)) == body.map(UInt8.init), "\(cents) -> \(bytes)")
        #expect(Int(bytes[3]) == bytes.count - 4)
        var reader = BigEndianReader(bytes: bytes)
        #expect((try? CopyBinaryReader.numeric(&reader, scale: 2)) == cents)
    }

    @Test func timestampsMatchFoundationsCalendar() {
        var generator = SystemRandomNumberGenerator()
        let instants: [Int64] = [0, 951_782_400_123, 1_767_225_600_000, 1_772_323_199_999, 4_102_444_800_000, 86_399_999]
            + (0..<500).map { _ in Int64.random(in: 0...4_102_444_800_000, using: &generator) }
        for millis in instants {
            var row = Self.dataset.transaction(0)
            row.timestampMillis = millis
            var encoder = RowEncoder(format: .csv, dataset: Self.dataset)
            encoder.append(row)
            let decoded = CSVReader.rows(String(decoding: encoder.bytes, as: UTF8.self), separator: ",")
            #expect(decoded.first??.timestampMillis == millis, "\(millis)")
        }
    }

    @Test func theBufferGrowsAndIsReused() {
        var encoder = RowEncoder(format: .jsonl, dataset: Self.dataset, capacity: 1)
        encoder.append(Self.dataset, rows: 0..<10_000)
        let first = encoder.bytes
        #expect(first.count > 10_000 * 200)
        encoder.removeAll()
        let empty = encoder.isEmpty
        #expect(empty)
        encoder.append(Self.dataset, rows: 0..<10_000)
        #expect(encoder.bytes == first)
    }
}
