/// Output formats of `kiln generate`, each loadable by the stock tool named.
public enum RowFormat: String, Sendable, CaseIterable {
    /// `psql \copy transactions FROM FILE (FORMAT csv)`
    case csv
    /// `psql \copy transactions FROM FILE (FORMAT binary)`
    case copyBinary = "copy-binary"
    /// One JSON object per line, for `kcat -P -l` (Kafka message values keyed by user_id).
    case jsonl
    /// `clickhouse-client --query "INSERT INTO transactions FORMAT TabSeparated"`
    case tsv
}

/// Streams rows into a reusable byte buffer with hand-rolled number formatting: no allocation per row once the
/// buffer has grown to its working size. Not thread-safe; one encoder per writer thread.
public struct RowEncoder {
    public let format: RowFormat
    public let channelNames: [[UInt8]]
    public let currency: [UInt8]
    public private(set) var bytes: [UInt8] = []

    public init(format: RowFormat, dataset: Dataset, capacity: Int = 1 << 20) {
        self.format = format
        self.channelNames = dataset.channelNames.map { Array($0.utf8) }
        self.currency = Array(dataset.spec.currency.utf8)
        bytes.reserveCapacity(capacity)
    }

    /// Column order of every format; `TransactionSchema` creates matching tables.
    public static let columns = [
        "txn_id", "user_id", "merchant_id", "device_id", "location_id", "amount", "currency", "ts", "channel", "status",
        "fraud_score", "is_fraud", "ring_id",
    ]

    public mutating func removeAll() { bytes.removeAll(keepingCapacity: true) }

    /// Bytes that must precede the first row (the COPY binary signature), empty for text formats.
    public mutating func header() {
        guard format == .copyBinary else { return }
        bytes.append(contentsOf: [0x50, 0x47, 0x43, 0x4F, 0x50, 0x59, 0x0A, 0xFF, 0x0D, 0x0A, 0x00])
        appendBigEndian(Int32(0))  // flags
        appendBigEndian(Int32(0))  // header extension length
    }

    /// Bytes that must follow the last row (the COPY binary trailer), empty for text formats.
    public mutating func trailer() {
        if format == .copyBinary { appendBigEndian(Int16(-1)) }
    }

    public mutating func append(_ row: Transaction) {
        switch format {
        case .csv: appendText(row, separator: 0x2C, timestampText: true)
        case .tsv: appendText(row, separator: 0x09, timestampText: false)
        case .jsonl: appendJSON(row)
        case .copyBinary: appendBinary(row)
        }
    }

    // MARK: text

    private mutating func appendText(_ row: Transaction, separator: UInt8, timestampText: Bool) {
        appendInt(row.txnID); bytes.append(separator)
        appendInt(row.userID); bytes.append(separator)
        appendInt(row.merchantID); bytes.append(separator)
        appendInt(row.deviceID); bytes.append(separator)
        appendInt(row.locationID); bytes.append(separator)
        appendFixed(row.amountCents, scale: 2); bytes.append(separator)
        bytes.append(contentsOf: currency); bytes.append(separator)
        if timestampText {
            appendTimestamp(row.timestampMillis)
        } else {
            appendTimestamp(row.timestampMillis, zone: false)
        }
        bytes.append(separator)
        bytes.append(contentsOf: channelNames[Int(row.channel)]); bytes.append(separator)
        appendStatus(row); bytes.append(separator)
        appendFixed(Int64(row.fraudScoreMillis), scale: 3); bytes.append(separator)
        if timestampText { appendASCII(row.isFraud ? "true" : "false") } else { bytes.append(row.isFraud ? 0x31 : 0x30) }
        bytes.append(separator)
        if row.ringID >= 0 { appendInt(Int64(row.ringID)) } else if !timestampText { appendASCII("\\N") }
        bytes.append(0x0A)
    }

    private mutating func appendJSON(_ row: Transaction) {
        appendASCII("{\"txn_id\":"); appendInt(row.txnID)
        appendASCII(",\"user_id\":"); appendInt(row.userID)
        appendASCII(",\"merchant_id\":"); appendInt(row.merchantID)
        appendASCII(",\"device_id\":"); appendInt(row.deviceID)
        appendASCII(",\"location_id\":"); appendInt(row.locationID)
        appendASCII(",\"amount\":"); appendFixed(row.amountCents, scale: 2)
        appendASCII(",\"currency\":\""); bytes.append(contentsOf: currency)
        appendASCII("\",\"ts\":\""); appendISO(row.timestampMillis)
        appendASCII("\",\"channel\":\""); bytes.append(contentsOf: channelNames[Int(row.channel)])
        appendASCII("\",\"status\":\""); appendStatus(row)
        appendASCII("\",\"fraud_score\":"); appendFixed(Int64(row.fraudScoreMillis), scale: 3)
        appendASCII(row.isFraud ? ",\"is_fraud\":true,\"ring_id\":" : ",\"is_fraud\":false,\"ring_id\":")
        if row.ringID >= 0 { appendInt(Int64(row.ringID)) } else { appendASCII("null") }
        appendASCII("}\n")
    }

    private mutating func appendStatus(_ row: Transaction) { appendASCII(row.declined ? "declined" : "approved") }

    @inline(__always)
    private mutating func appendASCII(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// Decimal digits of `value` without going through String.
    @inline(__always)
    mutating func appendInt(_ value: Int64) {
        if value < 0 { bytes.append(0x2D) }
        var magnitude = value.magnitude
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
            UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[19 - count] = UInt8(truncatingIfNeeded: magnitude % 10) &+ 0x30
                magnitude /= 10
                count += 1
            } while magnitude > 0
            bytes.append(contentsOf: buffer[(20 - count)...])
        }
    }

    /// `value / 10^scale` with exactly `scale` decimals: 1205 (scale 2) -> "12.05".
    mutating func appendFixed(_ value: Int64, scale: Int) {
        var divisor: Int64 = 1
        for _ in 0..<scale { divisor *= 10 }
        if value < 0 { bytes.append(0x2D) }
        let magnitude = Int64(value.magnitude)
        appendInt(magnitude / divisor)
        bytes.append(0x2E)
        var fraction = magnitude % divisor
        var place = divisor / 10
        while place > 0 {
            bytes.append(UInt8(fraction / place) + 0x30)
            fraction %= place
            place /= 10
        }
    }

    /// `2026-01-01 00:00:00.000+00` (CSV, PostgreSQL timestamptz) or `2026-01-01 00:00:00` (TSV, ClickHouse
    /// DateTime in UTC, whole seconds).
    mutating func appendTimestamp(_ millis: Int64, zone: Bool = true) {
        let civil = CivilTime(millis: millis)
        appendPadded(civil.year, 4); bytes.append(0x2D)
        appendPadded(civil.month, 2); bytes.append(0x2D)
        appendPadded(civil.day, 2); bytes.append(0x20)
        appendPadded(civil.hour, 2); bytes.append(0x3A)
        appendPadded(civil.minute, 2); bytes.append(0x3A)
        appendPadded(civil.second, 2)
        if zone {
            bytes.append(0x2E)
            appendPadded(civil.millisecond, 3)
            appendASCII("+00")
        }
    }

    /// `2026-01-01T00:00:00.000Z`
    mutating func appendISO(_ millis: Int64) {
        let civil = CivilTime(millis: millis)
        appendPadded(civil.year, 4); bytes.append(0x2D)
        appendPadded(civil.month, 2); bytes.append(0x2D)
        appendPadded(civil.day, 2); bytes.append(0x54)
        appendPadded(civil.hour, 2); bytes.append(0x3A)
        appendPadded(civil.minute, 2); bytes.append(0x3A)
        appendPadded(civil.second, 2); bytes.append(0x2E)
        appendPadded(civil.millisecond, 3); bytes.append(0x5A)
    }

    @inline(__always)
    private mutating func appendPadded(_ value: Int, _ width: Int) {
        var place = 1
        for _ in 1..<width { place *= 10 }
        var rest = value
        while place > 0 {
            bytes.append(UInt8(rest / place % 10) + 0x30)
            rest %= place
            place /= 10
        }
    }

    // MARK: COPY binary

    private mutating func appendBinary(_ row: Transaction) {
        appendBigEndian(Int16(13))
        appendBinaryInt64(row.txnID)
        appendBinaryInt64(row.userID)
        appendBinaryInt64(row.merchantID)
        appendBinaryInt64(row.deviceID)
        appendBinaryInt64(row.locationID)
        appendBinaryNumeric(row.amountCents, scale: 2)
        appendBinaryText(currency)
        // timestamptz: microseconds since 2000-01-01 00:00:00 UTC.
        appendBigEndian(Int32(8))
        appendBigEndian((row.timestampMillis - 946_684_800_000) * 1000)
        appendBinaryText(channelNames[Int(row.channel)])
        appendBinaryText(row.declined ? Self.declined : Self.approved)
        appendBinaryNumeric(Int64(row.fraudScoreMillis), scale: 3)
        appendBigEndian(Int32(1))
        bytes.append(row.isFraud ? 1 : 0)
        if row.ringID >= 0 {
            appendBigEndian(Int32(4))
            appendBigEndian(row.ringID)
        } else {
            appendBigEndian(Int32(-1))  // NULL
        }
    }

    static let approved = Array("approved".utf8)
    static let declined = Array("declined".utf8)

    private mutating func appendBinaryInt64(_ value: Int64) {
        appendBigEndian(Int32(8))
        appendBigEndian(value)
    }

    private mutating func appendBinaryText(_ text: [UInt8]) {
        appendBigEndian(Int32(text.count))
        bytes.append(contentsOf: text)
    }

    /// PostgreSQL's binary numeric: base-10000 digit groups with a weight, sign and display scale (scale <= 4,
    /// so the fraction is at most one group). Zero groups at either end are omitted, as PostgreSQL does.
    mutating func appendBinaryNumeric(_ value: Int64, scale: Int) {
        var divisor: Int64 = 1
        for _ in 0..<scale { divisor *= 10 }
        let magnitude = Int64(value.magnitude)
        let integer = magnitude / divisor
        var fraction = magnitude % divisor
        for _ in scale..<4 { fraction *= 10 }
        var integerGroups = 0
        var top: Int64 = 1  // 10000^(integerGroups - 1)
        var rest = integer
        while rest > 0 {
            integerGroups += 1
            rest /= 10_000
            if rest > 0 { top *= 10_000 }
        }
        var trailingZeroGroups = 0
        if fraction == 0 {
            rest = integer
            while rest > 0 && rest % 10_000 == 0 {
                trailingZeroGroups += 1
                rest /= 10_000
            }
        }
        let emitted = integerGroups - trailingZeroGroups
        let groups = emitted + (fraction != 0 ? 1 : 0)
        appendBigEndian(Int32(8 + 2 * groups))
        appendBigEndian(Int16(groups))
        appendBigEndian(Int16(groups == 0 ? 0 : integerGroups - 1))
        appendBigEndian(UInt16(value < 0 ? 0x4000 : 0x0000))
        appendBigEndian(Int16(scale))
        var place = top
        for _ in 0..<emitted {
            appendBigEndian(Int16(integer / place % 10_000))
            place /= 10_000
        }
        if fraction != 0 { appendBigEndian(Int16(fraction)) }
    }

    @inline(__always)
    private mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Proleptic Gregorian calendar fields of a Unix-millisecond instant in UTC (Howard Hinnant's civil_from_days).
struct CivilTime {
    var year: Int
    var month: Int
    var day: Int
    var hour: Int
    var minute: Int
    var second: Int
    var millisecond: Int

    init(millis: Int64) {
        let totalSeconds = Int(millis >= 0 ? millis / 1000 : (millis - 999) / 1000)
        millisecond = Int(millis - Int64(totalSeconds) * 1000)
        var days = totalSeconds >= 0 ? totalSeconds / 86_400 : (totalSeconds - 86_399) / 86_400
        let secondOfDay = totalSeconds - days * 86_400
        hour = secondOfDay / 3600
        minute = secondOfDay % 3600 / 60
        second = secondOfDay % 60
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        day = dayOfYear - (153 * mp + 2) / 5 + 1
        month = mp < 10 ? mp + 3 : mp - 9
        year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    }
}

/// Tables matching the encoders' column order, for loading generated files with the stock tools.
public enum TransactionSchema {
    public static func postgres(table: String) -> String {
        """
        CREATE TABLE \(table) (txn_id bigint PRIMARY KEY, user_id bigint NOT NULL, merchant_id bigint NOT NULL,
          device_id bigint NOT NULL, location_id bigint NOT NULL, amount numeric(15,2) NOT NULL, currency text NOT NULL,
          ts timestamptz NOT NULL, channel text NOT NULL, status text NOT NULL, fraud_score numeric(4,3) NOT NULL,
          is_fraud boolean NOT NULL, ring_id integer)
        """
    }

    public static func clickhouse(table: String) -> String {
        """
        CREATE TABLE \(table) (txn_id Int64, user_id Int64, merchant_id Int64, device_id Int64, location_id Int64,
          amount Decimal(15,2), currency String, ts DateTime('UTC'), channel String, status String,
          fraud_score Decimal(4,3), is_fraud UInt8, ring_id Nullable(Int32)) ENGINE = MergeTree() ORDER BY txn_id
        """
    }
}
