import KilnRedis

/// Output formats of `kiln generate` and the load engine, each loadable by the stock tool named.
public enum RowFormat: String, Sendable, CaseIterable {
    /// `psql \copy transactions FROM FILE (FORMAT csv)`
    case csv
    /// `psql \copy transactions FROM FILE (FORMAT binary)`
    case copyBinary = "copy-binary"
    /// One JSON object per line: the Kafka message value (`kcat -P -l`).
    case jsonl
    /// `user_id<TAB>json` per line: key and value for `kcat -P -K '\t' -l`, keyed by user as the platform
    /// partitions its transactions topic.
    case kafka
    /// `clickhouse-client --query "INSERT INTO transactions FORMAT TabSeparated"` (ts as Unix milliseconds)
    case tsv
    /// `clickhouse-client --query "INSERT INTO transactions FORMAT RowBinary"`
    case rowBinary = "rowbinary"
    /// Redis commands: `HSET txn:<id> user_id … merchant_id … device_id … amount_cents … ts … is_fraud …` and
    /// `ZADD user:<user_id>:txns <ts> <txn_id>` per row, for `redis-cli --pipe`.
    case resp
    /// One Cypher map literal per line, the row of an `UNWIND $rows AS r …` write (Neo4j parameters, FalkorDB
    /// `CYPHER rows=[…]`): `{txn_id: 1, user_id: 2, …, amount_cents: 1205, currency: 'EUR', ts: 1767225600000, …}`.
    case cypher
}

/// Streams rows into a buffer it owns, with hand-rolled number formatting: nothing is allocated per row, and the
/// buffer only grows (to the largest chunk between `removeAll()` calls). Noncopyable, so the buffer has exactly
/// one owner; not thread-safe — one encoder per writer thread. The bytes are valid until the next mutation.
public struct RowEncoder: ~Copyable {
    public let format: RowFormat
    private let names: EncodingNames
    /// The encoded rows (KilnRedis's `GrowableByteBuffer`, the buffer `RESPBuffer` grows too).
    private var buffer: GrowableByteBuffer
    /// The last day formatted, and its `YYYY-MM-DD` bytes (rows arrive in time order, so this almost always hits).
    private var cachedDay = Int64.min
    private var cachedDate: (UInt64, UInt16) = (0, 0)

    /// Upper bound of one encoded row in any format (names are at most 32 bytes, numbers at most 20 digits).
    static let maximumRowBytes = 1024

    public init(format: RowFormat, dataset: Dataset, capacity: Int = 1 << 20) {
        self.format = format
        names = EncodingNames(dataset: dataset)
        buffer = GrowableByteBuffer(capacity: max(capacity, 4 * Self.maximumRowBytes))
    }

    /// Column order of every format; `TransactionSchema` creates matching tables.
    public static let columns = [
        "txn_id", "user_id", "merchant_id", "device_id", "location_id", "amount", "currency", "ts", "channel", "status",
        "fraud_score", "is_fraud", "ring_id",
    ]

    /// Bytes encoded since the last `removeAll()`.
    public var count: Int { buffer.count }

    public var isEmpty: Bool { buffer.isEmpty }

    /// The encoded bytes, valid inside `body` only.
    public func withBytes<Result, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> Result) throws(E) -> Result {
        try buffer.withBytes(body)
    }

    /// A copy of the encoded bytes (for tests and small outputs).
    public var bytes: [UInt8] { buffer.bytes }

    public mutating func removeAll() { buffer.removeAll() }

    /// Bytes that must precede the first row (the COPY binary signature), nothing for the other formats.
    public mutating func header() {
        guard format == .copyBinary else { return }
        reserve(32)
        var out = writer()
        // "PGCOPY\n\xFF\r\n\0" (a StaticString would encode 0xFF as UTF-8).
        for byte: UInt8 in [0x50, 0x47, 0x43, 0x4F, 0x50, 0x59, 0x0A, 0xFF, 0x0D, 0x0A, 0x00] { out.byte(byte) }
        out.bigEndian(Int32(0))  // flags
        out.bigEndian(Int32(0))  // header extension length
        commit(out)
    }

    /// Bytes that must follow the last row (the COPY binary trailer), nothing for the other formats.
    public mutating func trailer() {
        guard format == .copyBinary else { return }
        reserve(2)
        var out = writer()
        out.bigEndian(Int16(-1))
        commit(out)
    }

    /// Generates and encodes rows `range` of `dataset` (the loop runs inside this module, fully inlined, with the
    /// format chosen once per call rather than per row).
    public mutating func append(_ dataset: Dataset, rows range: Range<Int64>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= dataset.rows, "rows \(range) outside the dataset")
        let tables = dataset.tables
        switch format {
        case .csv: encode(tables, range) { $0.text($1, &$2, separator: 0x2C) }
        case .tsv: encode(tables, range) { $0.text($1, &$2, separator: 0x09) }
        case .jsonl: encode(tables, range) { $0.json($1, &$2) }
        case .kafka: encode(tables, range) { $0.kafka($1, &$2) }
        case .copyBinary: encode(tables, range) { $0.copyBinary($1, &$2) }
        case .rowBinary: encode(tables, range) { $0.rowBinary($1, &$2) }
        case .resp: encode(tables, range) { $0.resp($1, &$2) }
        case .cypher: encode(tables, range) { $0.cypher($1, &$2) }
        }
    }

    @inline(__always)
    private mutating func encode(
        _ tables: GenerationTables, _ range: Range<Int64>, _ body: (inout RowEncoder, Transaction, inout ByteWriter) -> Void
    ) {
        for index in range {
            reserve(Self.maximumRowBytes)
            var out = writer()
            body(&self, tables.transaction(index), &out)
            commit(out)
        }
    }

    public mutating func append(_ row: Transaction) {
        reserve(Self.maximumRowBytes)
        var out = writer()
        switch format {
        case .csv: text(row, &out, separator: 0x2C)
        case .tsv: text(row, &out, separator: 0x09)
        case .jsonl: json(row, &out)
        case .kafka: kafka(row, &out)
        case .copyBinary: copyBinary(row, &out)
        case .rowBinary: rowBinary(row, &out)
        case .resp: resp(row, &out)
        case .cypher: cypher(row, &out)
        }
        commit(out)
    }

    // MARK: buffer

    @inline(__always)
    private mutating func reserve(_ bytes: Int) { buffer.reserve(bytes) }

    @inline(__always)
    private func writer() -> ByteWriter { ByteWriter(buffer.end, names) }

    @inline(__always)
    private mutating func commit(_ out: ByteWriter) { buffer.commit(out.cursor) }

    // MARK: text formats

    /// CSV for PostgreSQL (timestamptz with zone, booleans true/false, NULL as nothing) or TabSeparated for
    /// ClickHouse (ts as Unix milliseconds, booleans 0/1, NULL as \N).
    @inline(__always)
    private mutating func text(_ row: Transaction, _ out: inout ByteWriter, separator: UInt8) {
        let csv = separator == 0x2C
        out.decimal(row.txnID); out.byte(separator)
        out.decimal(row.userID); out.byte(separator)
        out.decimal(row.merchantID); out.byte(separator)
        out.decimal(row.deviceID); out.byte(separator)
        out.decimal(row.locationID); out.byte(separator)
        out.fixed(row.amountCents, scale: 2); out.byte(separator)
        out.name(names.currencies, Int(row.currency)); out.byte(separator)
        if csv {
            timestamp(row.timestampMillis, &out, dateTimeSeparator: 0x20)
            out.ascii("+00")
        } else {
            out.decimal(row.timestampMillis)
        }
        out.byte(separator)
        out.name(names.channels, Int(row.channel)); out.byte(separator)
        out.status(row.declined); out.byte(separator)
        out.fixed(Int64(row.fraudScoreMillis), scale: 3); out.byte(separator)
        if csv { out.boolean(row.isFraud) } else { out.byte(row.isFraud ? 0x31 : 0x30) }
        out.byte(separator)
        if row.ringID >= 0 { out.decimal(Int64(row.ringID)) } else if !csv { out.ascii("\\N") }
        out.byte(0x0A)
    }

    @inline(__always)
    private mutating func kafka(_ row: Transaction, _ out: inout ByteWriter) {
        out.decimal(row.userID)
        out.byte(0x09)
        json(row, &out)
    }

    @inline(__always)
    private mutating func json(_ row: Transaction, _ out: inout ByteWriter) {
        out.ascii("{\"txn_id\":"); out.decimal(row.txnID)
        out.ascii(",\"user_id\":"); out.decimal(row.userID)
        out.ascii(",\"merchant_id\":"); out.decimal(row.merchantID)
        out.ascii(",\"device_id\":"); out.decimal(row.deviceID)
        out.ascii(",\"location_id\":"); out.decimal(row.locationID)
        out.ascii(",\"amount\":"); out.fixed(row.amountCents, scale: 2)
        out.ascii(",\"currency\":\""); out.name(names.currencies, Int(row.currency))
        out.ascii("\",\"ts\":\""); timestamp(row.timestampMillis, &out, dateTimeSeparator: 0x54); out.byte(0x5A)
        out.ascii("\",\"channel\":\""); out.name(names.channels, Int(row.channel))
        out.ascii("\",\"status\":\""); out.status(row.declined)
        out.ascii("\",\"fraud_score\":"); out.fixed(Int64(row.fraudScoreMillis), scale: 3)
        out.ascii(",\"is_fraud\":"); out.boolean(row.isFraud)
        out.ascii(",\"ring_id\":")
        if row.ringID >= 0 { out.decimal(Int64(row.ringID)) } else { out.ascii("null") }
        out.ascii("}\n")
    }

    @inline(__always)
    private mutating func cypher(_ row: Transaction, _ out: inout ByteWriter) {
        out.ascii("{txn_id: "); out.decimal(row.txnID)
        out.ascii(", user_id: "); out.decimal(row.userID)
        out.ascii(", merchant_id: "); out.decimal(row.merchantID)
        out.ascii(", device_id: "); out.decimal(row.deviceID)
        out.ascii(", location_id: "); out.decimal(row.locationID)
        out.ascii(", amount_cents: "); out.decimal(row.amountCents)
        out.ascii(", currency: '"); out.name(names.currencies, Int(row.currency))
        out.ascii("', ts: "); out.decimal(row.timestampMillis)
        out.ascii(", channel: '"); out.name(names.channels, Int(row.channel))
        out.ascii("', status: '"); out.status(row.declined)
        out.ascii("', fraud_score: "); out.fixed(Int64(row.fraudScoreMillis), scale: 3)
        out.ascii(", is_fraud: "); out.boolean(row.isFraud)
        out.ascii(", ring_id: ")
        if row.ringID >= 0 { out.decimal(Int64(row.ringID)) } else { out.ascii("null") }
        out.ascii("}\n")
    }

    /// Through KilnRedis's `RESPWriter`, the RESP encoder the Redis client sends with.
    @inline(__always)
    private mutating func resp(_ row: Transaction, _ out: inout ByteWriter) {
        let noPrefix = UnsafeRawBufferPointer(start: nil, count: 0)
        var resp = RESPWriter(out.cursor)
        resp.arrayHeader(14)
        resp.bulk("HSET")
        resp.bulkKey(noPrefix, "txn:", row.txnID, "")
        resp.bulk("user_id"); resp.bulk(row.userID)
        resp.bulk("merchant_id"); resp.bulk(row.merchantID)
        resp.bulk("device_id"); resp.bulk(row.deviceID)
        resp.bulk("amount_cents"); resp.bulk(row.amountCents)
        resp.bulk("ts"); resp.bulk(row.timestampMillis)
        resp.bulk("is_fraud"); resp.bulk(row.isFraud ? 1 : 0)
        resp.arrayHeader(4)
        resp.bulk("ZADD")
        resp.bulkKey(noPrefix, "user:", row.userID, ":txns")
        resp.bulk(row.timestampMillis)
        resp.bulk(row.txnID)
        out.cursor = resp.cursor
    }

    /// `YYYY-MM-DD hh:mm:ss.fff` (separator 0x20) or `YYYY-MM-DDThh:mm:ss.fff` (0x54), UTC.
    @inline(__always)
    private mutating func timestamp(_ millis: Int64, _ out: inout ByteWriter, dateTimeSeparator: UInt8) {
        let day = ArrivalSchedule.floorDivide(millis, 86_400_000)
        if day != cachedDay { cacheDate(day) }
        withUnsafeBytes(of: cachedDate.0) { out.copy($0.baseAddress!, 8) }
        withUnsafeBytes(of: cachedDate.1) { out.copy($0.baseAddress!, 2) }
        let inDay = Int(millis - day * 86_400_000)
        out.byte(dateTimeSeparator)
        out.twoDigits(inDay / 3_600_000); out.byte(0x3A)
        out.twoDigits(inDay / 60_000 % 60); out.byte(0x3A)
        out.twoDigits(inDay / 1000 % 60); out.byte(0x2E)
        let millisecond = inDay % 1000
        out.byte(UInt8(truncatingIfNeeded: millisecond / 100) &+ 0x30)
        out.twoDigits(millisecond % 100)
    }

    @inline(never)
    private mutating func cacheDate(_ day: Int64) {
        let civil = CivilDate(daysSinceEpoch: day)
        var text: [UInt8] = []
        for (value, width) in [(civil.year, 4), (civil.month, 2), (civil.day, 2)] {
            if !text.isEmpty { text.append(0x2D) }
            var place = 1
            for _ in 1..<width { place *= 10 }
            for _ in 0..<width {
                text.append(UInt8(value / place % 10) + 0x30)
                place /= 10
            }
        }
        text.withUnsafeBytes {
            cachedDate = ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
        }
        cachedDay = day
    }

    // MARK: binary formats

    @inline(__always)
    private func copyBinary(_ row: Transaction, _ out: inout ByteWriter) {
        out.bigEndian(Int16(13))
        out.binaryInt8(row.txnID)
        out.binaryInt8(row.userID)
        out.binaryInt8(row.merchantID)
        out.binaryInt8(row.deviceID)
        out.binaryInt8(row.locationID)
        out.binaryNumeric(row.amountCents, scale: 2)
        out.binaryText(names.currencies, Int(row.currency))
        // timestamptz: microseconds since 2000-01-01 00:00:00 UTC.
        out.binaryInt8((row.timestampMillis - 946_684_800_000) * 1000)
        out.binaryText(names.channels, Int(row.channel))
        out.bigEndian(Int32(8))
        out.status(row.declined)
        out.binaryNumeric(Int64(row.fraudScoreMillis), scale: 3)
        out.bigEndian(Int32(1))
        out.byte(row.isFraud ? 1 : 0)
        if row.ringID >= 0 {
            out.bigEndian(Int32(4))
            out.bigEndian(row.ringID)
        } else {
            out.bigEndian(Int32(-1))  // NULL
        }
    }

    /// ClickHouse RowBinary for the table of `TransactionSchema.clickhouse`: Int64 little-endian, Decimal as its
    /// scaled integer, String as LEB128 length + bytes, ts as Int64 Unix ms (the same bytes as a DateTime64(3)),
    /// Nullable as a null flag byte.
    @inline(__always)
    private func rowBinary(_ row: Transaction, _ out: inout ByteWriter) {
        out.littleEndian(row.txnID)
        out.littleEndian(row.userID)
        out.littleEndian(row.merchantID)
        out.littleEndian(row.deviceID)
        out.littleEndian(row.locationID)
        out.littleEndian(row.amountCents)  // Decimal(15,2) = Decimal64
        out.byte(3); out.name(names.currencies, Int(row.currency))
        out.littleEndian(row.timestampMillis)
        let channel = Int(row.channel)
        out.byte(UInt8(names.channels.length(channel))); out.name(names.channels, channel)
        out.byte(8); out.status(row.declined)
        out.littleEndian(Int32(row.fraudScoreMillis))  // Decimal(4,3) = Decimal32
        out.byte(row.isFraud ? 1 : 0)
        if row.ringID >= 0 {
            out.byte(0)
            out.littleEndian(row.ringID)
        } else {
            out.byte(1)
        }
    }
}

/// Writes through a raw cursor into space the encoder has reserved; every method assumes room.
struct ByteWriter {
    var cursor: UnsafeMutablePointer<UInt8>
    /// "00" ... "99", 200 bytes.
    let digitPairs: UnsafePointer<UInt8>
    /// 10^0 ... 10^19.
    let powersOfTen: UnsafePointer<UInt64>

    @inline(__always)
    init(_ cursor: UnsafeMutablePointer<UInt8>, _ names: EncodingNames) {
        self.cursor = cursor
        self.digitPairs = names.digitPairs
        self.powersOfTen = names.powersOfTen
    }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        cursor.pointee = value
        cursor += 1
    }

    @inline(__always)
    mutating func copy(_ source: UnsafeRawPointer, _ length: Int) {
        UnsafeMutableRawPointer(cursor).copyMemory(from: source, byteCount: length)
        cursor += length
    }

    @inline(__always)
    mutating func ascii(_ text: StaticString) { copy(text.utf8Start, text.utf8CodeUnitCount) }

    /// Copies a whole 32-byte slot (a fixed-size move, no memcpy call) and keeps the name's length of it; the
    /// encoder reserves far more room than a row needs, so the overhang is overwritten by what follows.
    @inline(__always)
    mutating func name(_ table: NameTable, _ index: Int) {
        UnsafeMutableRawPointer(cursor).copyMemory(from: table.start(index), byteCount: 32)
        cursor += table.length(index)
    }

    @inline(__always)
    mutating func status(_ declined: Bool) { declined ? ascii("declined") : ascii("approved") }

    @inline(__always)
    mutating func boolean(_ value: Bool) { value ? ascii("true") : ascii("false") }

    @inline(__always)
    mutating func twoDigits(_ value: Int) { copy(digitPairs + 2 * value, 2) }

    /// Number of decimal digits of `value` (1 for 0), from its bit length and one table compare: no branch and a
    /// short latency, so the cursor advance of a number does not wait for its digits to be computed.
    @inline(__always)
    func digitCount(_ value: UInt64) -> Int {
        let bits = 64 &- (value | 1).leadingZeroBitCount
        let estimate = (bits &* 1233) >> 12  // ⌊log10⌋ or one more
        return estimate &- ((value | 1) < powersOfTen[estimate] ? 1 : 0) &+ 1
    }

    @inline(__always)
    mutating func decimal(_ value: Int64) {
        if value < 0 { byte(0x2D) }
        unsigned(value.magnitude)
    }

    /// The eight decimal digits of `value` < 10^8 as byte values 0...9, first digit in the lowest byte (SWAR:
    /// two 4-digit halves, split into pairs, then into digits, all lanes at once).
    @inline(__always)
    static func eightDigits(_ value: UInt64) -> UInt64 {
        var x = (value / 10_000) | ((value % 10_000) << 32)
        let hundreds = ((x &* 10_486) >> 20) & 0x0000_007F_0000_007F
        x = hundreds | ((x &- hundreds &* 100) << 16)
        let tens = ((x &* 103) >> 10) & 0x000F_000F_000F_000F
        return tens | ((x &- tens &* 10) << 8)
    }

    /// Up to eight digits without leading zeros: one unaligned 8-byte store, advanced by the digit count.
    @inline(__always)
    mutating func upToEightDigits(_ value: UInt64) {
        let count = digitCount(value)
        let digits = Self.eightDigits(value)
        UnsafeMutableRawPointer(cursor).storeBytes(
            of: ((digits | 0x3030_3030_3030_3030) >> ((8 &- count) << 3)).littleEndian, as: UInt64.self)
        cursor += count
    }

    @inline(__always)
    mutating func exactlyEightDigits(_ value: UInt64) {
        UnsafeMutableRawPointer(cursor).storeBytes(
            of: (Self.eightDigits(value) | 0x3030_3030_3030_3030).littleEndian, as: UInt64.self)
        cursor += 8
    }

    @inline(__always)
    mutating func unsigned(_ value: UInt64) {
        if value < 100_000_000 {
            upToEightDigits(value)
        } else if value < 10_000_000_000_000_000 {
            upToEightDigits(value / 100_000_000)
            exactlyEightDigits(value % 100_000_000)
        } else {
            upToEightDigits(value / 10_000_000_000_000_000)
            exactlyEightDigits(value / 100_000_000 % 100_000_000)
            exactlyEightDigits(value % 100_000_000)
        }
    }

    /// `value / 10^scale` with exactly `scale` decimals: 1205 (scale 2) -> `12.05`, 7 (scale 3) -> `0.007`.
    @inline(__always)
    mutating func fixed(_ value: Int64, scale: Int) {
        if value < 0 { byte(0x2D) }
        let magnitude = value.magnitude
        let divisor: UInt64 = scale == 2 ? 100 : 1000
        unsigned(magnitude / divisor)
        byte(0x2E)
        let fraction = Int(magnitude % divisor)
        if scale == 2 {
            twoDigits(fraction)
        } else {
            byte(UInt8(truncatingIfNeeded: fraction / 100) &+ 0x30)
            twoDigits(fraction % 100)
        }
    }

    @inline(__always)
    mutating func bigEndian<T: FixedWidthInteger>(_ value: T) {
        UnsafeMutableRawPointer(cursor).storeBytes(of: value.bigEndian, as: T.self)
        cursor += MemoryLayout<T>.size
    }

    @inline(__always)
    mutating func littleEndian<T: FixedWidthInteger>(_ value: T) {
        UnsafeMutableRawPointer(cursor).storeBytes(of: value.littleEndian, as: T.self)
        cursor += MemoryLayout<T>.size
    }

    @inline(__always)
    mutating func binaryInt8(_ value: Int64) {
        bigEndian(Int32(8))
        bigEndian(value)
    }

    @inline(__always)
    mutating func binaryText(_ table: NameTable, _ index: Int) {
        bigEndian(Int32(table.length(index)))
        name(table, index)
    }

    /// PostgreSQL's binary numeric for `value / 10^scale` (`PostgresNumeric`, the one encoder).
    @inline(__always)
    mutating func binaryNumeric(_ value: Int64, scale: Int) {
        PostgresNumeric.write(value, scale: scale) { bigEndian($0) } int16: { bigEndian($0) }
    }
}

/// Short names (at most 32 bytes each: channels, currencies) in fixed 32-byte slots, plus the digit-pair table.
/// Immutable after init; owns its buffers.
final class NameTable: @unchecked Sendable {
    // @unchecked: the buffers are written only in init.
    private let slots: UnsafeMutablePointer<UInt8>
    private let lengths: UnsafeMutablePointer<Int>

    init(_ names: [String]) {
        slots = .allocate(capacity: max(1, names.count) * 32)
        lengths = .allocate(capacity: max(1, names.count))
        for (index, name) in names.enumerated() {
            let bytes = Array(name.utf8.prefix(32))
            (slots + index * 32).initialize(from: bytes, count: bytes.count)
            lengths[index] = bytes.count
        }
    }

    deinit {
        slots.deallocate()
        lengths.deallocate()
    }

    @inline(__always) func start(_ index: Int) -> UnsafeRawPointer { UnsafeRawPointer(slots + index &* 32) }
    @inline(__always) func length(_ index: Int) -> Int { lengths[index] }
}

/// The name tables of one dataset and the digit pairs, shared by an encoder's writers.
final class EncodingNames: @unchecked Sendable {
    // @unchecked: immutable after init.
    let channels: NameTable
    let currencies: NameTable
    private let pairs: UnsafeMutablePointer<UInt8>
    private let powers: UnsafeMutablePointer<UInt64>
    var digitPairs: UnsafePointer<UInt8> { UnsafePointer(pairs) }
    var powersOfTen: UnsafePointer<UInt64> { UnsafePointer(powers) }

    init(dataset: Dataset) {
        channels = NameTable(dataset.channelNames)
        currencies = NameTable(dataset.currencyCodes)
        pairs = .allocate(capacity: 200)
        for value in 0..<100 {
            pairs[2 * value] = UInt8(value / 10) + 0x30
            pairs[2 * value + 1] = UInt8(value % 10) + 0x30
        }
        powers = .allocate(capacity: 20)
        var power: UInt64 = 1
        for exponent in 0..<20 {
            powers[exponent] = power
            power = power &* 10
        }
    }

    deinit {
        pairs.deallocate()
        powers.deallocate()
    }
}

/// Proleptic Gregorian date of a day number since 1970-01-01 (Howard Hinnant's civil_from_days).
struct CivilDate {
    var year: Int
    var month: Int
    var day: Int

    init(daysSinceEpoch: Int64) {
        let days = Int(daysSinceEpoch) + 719_468
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

    /// `ts` is Unix milliseconds (Int64, exact and loadable by every ClickHouse version, including the
    /// embedded stack's 18.16 which has no DateTime64); `time` is derived from it for time functions.
    public static func clickhouse(table: String) -> String {
        """
        CREATE TABLE \(table) (txn_id Int64, user_id Int64, merchant_id Int64, device_id Int64, location_id Int64,
          amount Decimal(15,2), currency String, ts Int64, channel String, status String, fraud_score Decimal(4,3),
          is_fraud UInt8, ring_id Nullable(Int32), time DateTime('UTC') MATERIALIZED toDateTime(intDiv(ts, 1000)))
          ENGINE = MergeTree() ORDER BY txn_id
        """
    }
}
