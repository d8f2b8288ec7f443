/// Parses one transaction as the `jsonl` RowEncoder writes it (the Kafka message value and the Redis
/// `<ns>:txn:<id>` string):
/// `{"txn_id":1,"user_id":2,"merchant_id":3,"device_id":4,"location_id":5,"amount":12.34,"currency":"EUR",
/// "ts":"2026-01-01T00:00:00.000Z","channel":"web","status":"approved","fraud_score":0.123,"is_fraud":false,
/// "ring_id":null}`.
///
/// Guarantees: integers, amounts and scores are read from the bytes (no String, no Double), so `12.34` is exactly
/// 1234 cents and `0.123` exactly 123 millis. Keys may come in any order; unknown keys are skipped; a repeated key
/// keeps its last value. A field whose value has the wrong shape (a string for a number, an amount with more than two
/// non-zero decimals, a timestamp in another format, a string with escapes) is nil. When the object itself is broken
/// (truncated, not JSON) parsing stops there: fields read before the break are kept, the rest stay nil. `txnID` is
/// -1 when no valid `txn_id` was read. `ringID` is -1 for `null`, and for a key that is absent from a complete
/// object; nil when the value is unreadable or the object broke before it. Never traps on any input.
public enum TransactionJSON {
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> StoredRow {
        var row = StoredRow(txnID: -1)
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return row }
        var parser = Parser(base: base.assumingMemoryBound(to: UInt8.self), end: bytes.count)
        if parser.object(into: &row), row.ringID == nil, !parser.sawRing {
            row.ringID = -1
        }
        return row
    }

    public static func parse(_ bytes: [UInt8]) -> StoredRow {
        bytes.withUnsafeBytes { parse($0) }
    }

    /// `YYYY-MM-DDThh:mm:ss.fffZ` (the encoder's `ts`) as Unix milliseconds; nil for any other shape or an
    /// out-of-range field.
    public static func timestampMillis(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        guard bytes.count == 24, let base = bytes.baseAddress else { return nil }
        let p = base.assumingMemoryBound(to: UInt8.self)
        guard p[4] == 0x2D, p[7] == 0x2D, p[10] == 0x54, p[13] == 0x3A, p[16] == 0x3A, p[19] == 0x2E, p[23] == 0x5A,
            let year = digits(p, 0, 4), let month = digits(p, 5, 2), let day = digits(p, 8, 2),
            let hour = digits(p, 11, 2), let minute = digits(p, 14, 2), let second = digits(p, 17, 2),
            let millisecond = digits(p, 20, 3),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 60
        else { return nil }
        let days = daysSinceEpoch(year: year, month: month, day: day)
        return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millisecond
    }

    @inline(__always)
    private static func digits(_ p: UnsafePointer<UInt8>, _ start: Int, _ count: Int) -> Int64? {
        var value: Int64 = 0
        for i in start..<(start + count) {
            let digit = p[i] &- 0x30
            guard digit < 10 else { return nil }
            value = value * 10 + Int64(digit)
        }
        return value
    }

    /// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil; the inverse of
    /// KilnData's CivilDate).
    static func daysSinceEpoch(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}

/// A cursor over one JSON text. Every read checks `position < end` first.
private struct Parser {
    let base: UnsafePointer<UInt8>
    let end: Int
    var position = 0
    var sawRing = false

    init(base: UnsafePointer<UInt8>, end: Int) {
        self.base = base
        self.end = end
    }

    @inline(__always)
    var current: UInt8? { position < end ? base[position] : nil }

    @inline(__always)
    mutating func skipSpace() {
        while position < end {
            switch base[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    @inline(__always)
    mutating func take(_ byte: UInt8) -> Bool {
        skipSpace()
        guard current == byte else { return false }
        position += 1
        return true
    }

    /// Reads the whole object into `row`; false when the text is not a complete object.
    mutating func object(into row: inout StoredRow) -> Bool {
        guard take(0x7B) else { return false }
        if take(0x7D) { return true }
        while true {
            guard take(0x22), let key = rawString(), take(0x3A) else { return false }
            skipSpace()
            guard field(key, into: &row) else { return false }
            if take(0x2C) { continue }
            return take(0x7D)
        }
    }

    /// The bytes of a string whose opening quote was consumed, up to its closing quote (consumed); nil when the
    /// string holds an escape (the cursor is then at the backslash) or is unterminated.
    mutating func rawString() -> UnsafeRawBufferPointer? {
        let start = position
        while position < end {
            let byte = base[position]
            if byte == 0x22 {
                position += 1
                return UnsafeRawBufferPointer(start: base + start, count: position - 1 - start)
            }
            if byte == 0x5C { return nil }
            position += 1
        }
        return nil
    }

    /// Reads one value for `key`; false when the value is structurally broken.
    mutating func field(_ key: UnsafeRawBufferPointer, into row: inout StoredRow) -> Bool {
        let start = position
        switch key.count {
        case 2 where Self.equal(key, "ts"):
            row.timestampMillis = ended(string().flatMap(TransactionJSON.timestampMillis))
        case 6 where Self.equal(key, "txn_id"):
            row.txnID = ended(integer()) ?? -1
        case 6 where Self.equal(key, "amount"):
            row.amountCents = ended(fixed(scale: 2))
        case 6 where Self.equal(key, "status"):
            row.status = ended(text())
        case 7 where Self.equal(key, "user_id"):
            row.userID = ended(integer())
        case 7 where Self.equal(key, "channel"):
            row.channel = ended(text())
        case 7 where Self.equal(key, "ring_id"):
            sawRing = true
            row.ringID = ended(literal("null") ? -1 : integer())
        case 8 where Self.equal(key, "currency"):
            row.currency = ended(text())
        case 8 where Self.equal(key, "is_fraud"):
            row.isFraud = ended(literal("true") ? true : (literal("false") ? false : nil))
        case 9 where Self.equal(key, "device_id"):
            row.deviceID = ended(integer())
        case 11 where Self.equal(key, "merchant_id"):
            row.merchantID = ended(integer())
        case 11 where Self.equal(key, "location_id"):
            row.locationID = ended(integer())
        case 11 where Self.equal(key, "fraud_score"):
            row.fraudScoreMillis = ended(fixed(scale: 3))
        default:
            break
        }
        // A typed read that did not match leaves the cursor inside the value (or before it): skip it whole.
        if !atValueEnd || position == start {
            position = start
            return skipValue()
        }
        return true
    }

    /// `value` when the cursor is at the end of the value just read, else nil (e.g. `12abc` is no integer).
    /// Mutating on purpose: the access to `self` then begins after the argument (which moves the cursor) is
    /// evaluated; a non-mutating method would read a copy of `self` taken before it.
    @inline(__always)
    mutating func ended<T>(_ value: T?) -> T? {
        guard let value, atValueEnd else { return nil }
        return value
    }

    /// After a value: the next non-space byte ends it (`,` `}` `]`) or the text ends.
    var atValueEnd: Bool {
        var i = position
        while i < end {
            switch base[i] {
            case 0x20, 0x09, 0x0A, 0x0D: i += 1
            case 0x2C, 0x7D, 0x5D: return true
            default: return false
            }
        }
        return true
    }

    static func equal(_ bytes: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
        text.withUTF8Buffer { expected in
            expected.count == bytes.count && memcmpEqual(bytes.baseAddress!, expected.baseAddress!, expected.count)
        }
    }

    @inline(__always)
    static func memcmpEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Bool {
        for i in 0..<count where a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) {
            return false
        }
        return true
    }

    /// A string value without escapes; on failure the cursor may have moved (the caller skips the value).
    mutating func string() -> UnsafeRawBufferPointer? {
        guard current == 0x22 else { return nil }
        position += 1
        return rawString()
    }

    /// A string value as text (valid UTF-8 is copied; small strings such as `EUR` are stored inline).
    mutating func text() -> String? {
        string().map { String(decoding: $0, as: UTF8.self) }
    }

    mutating func literal(_ word: StaticString) -> Bool {
        let length = word.utf8CodeUnitCount
        guard end - position >= length,
            word.withUTF8Buffer({ Self.memcmpEqual(base + position, $0.baseAddress!, length) })
        else { return false }
        position += length
        return true
    }

    /// An integer of at most 18 digits (no fraction, no exponent).
    mutating func integer() -> Int64? {
        let negative = current == 0x2D
        if negative { position += 1 }
        let first = position
        var value: Int64 = 0
        while position < end, case let digit = base[position] &- 0x30, digit < 10 {
            guard position - first < 18 else { return nil }
            value = value &* 10 &+ Int64(digit)
            position += 1
        }
        guard position > first else { return nil }
        return negative ? -value : value
    }

    /// A decimal number with at most `scale` significant fraction digits, as an integer in units of 10^-scale.
    /// Extra fraction digits are accepted only when they are zeros; exponents are not accepted.
    mutating func fixed(scale: Int) -> Int64? {
        let negative = current == 0x2D
        guard let whole = integer() else { return nil }
        var value = negative ? -whole : whole
        var places = 0
        if current == 0x2E {
            position += 1
            let first = position
            while position < end, case let digit = base[position] &- 0x30, digit < 10 {
                if places < scale {
                    value = value * 10 + Int64(digit)
                    places += 1
                } else if digit != 0 {
                    return nil
                }
                position += 1
            }
            guard position > first else { return nil }
        }
        for _ in places..<scale { value *= 10 }
        guard value.magnitude < 1 << 62 else { return nil }
        return negative ? -value : value
    }

    /// Skips any JSON value (strings with escapes, numbers, literals, nested arrays and objects); false when the
    /// value is broken or unterminated.
    mutating func skipValue() -> Bool {
        skipSpace()
        guard let byte = current else { return false }
        switch byte {
        case 0x22:
            position += 1
            while position < end {
                let b = base[position]
                position += b == 0x5C ? 2 : 1
                if b == 0x22 { return position <= end }
            }
            return false
        case 0x7B, 0x5B:
            let close: UInt8 = byte == 0x7B ? 0x7D : 0x5D
            position += 1
            if take(close) { return true }
            while true {
                if byte == 0x7B {
                    guard take(0x22) else { return false }
                    position -= 1
                    guard skipValue(), take(0x3A) else { return false }
                }
                guard skipValue() else { return false }
                if take(0x2C) { continue }
                return take(close)
            }
        default:
            let start = position
            while position < end {
                switch base[position] {
                case 0x2C, 0x7D, 0x5D, 0x20, 0x09, 0x0A, 0x0D: return position > start
                default: position += 1
                }
            }
            return position > start
        }
    }
}
