import Foundation
import KilnData
import KilnScenario

/// One value as a schema-less store keeps it: a JSON scalar, a Redis hash field, a graph property.
public enum LooseValue: Sendable, Equatable, Decodable {
    case null
    case bool(Bool)
    case integer(Int64)
    case decimal(Decimal)
    case text(String)
    /// An object or array: never a transaction field.
    case other

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Decimal.self) {
            self = .decimal(value)
        } else if let value = try? container.decode(String.self) {
            self = .text(value)
        } else {
            self = .other
        }
    }
}

/// Which Kiln fields a black-box place keeps, under which names and in which units, and how a schema-less value
/// becomes a `StoredRow` field. A field the mapping does not keep is never compared (nil in every row).
///
/// Units of schema-less values (JSON, hash fields, properties): an amount or fraud score is in currency units /
/// whole score (`12.05`, `0.123`; exact, from the decimal text) unless `units:` says `cents` / `millis` (integers);
/// a timestamp is `YYYY-MM-DDThh:mm:ss.fffZ` or ISO-8601 text, or a number of `ms` (default), `s` or `us`.
/// A value of the wrong shape is nil (then not compared for that row); an amount with more decimals than cents is
/// `Int64.min`, so it reads as corrupted.
public struct FieldMapping: Sendable {
    /// Kiln field -> the place's name for it, for every kept field.
    public var names: [String: String]
    public var units: [String: String]
    /// Timestamps kept at a coarser precision (seconds: 1000) compare at that precision.
    public var timestampPrecisionMillis: Int64 = 1

    public init(names: [String: String], units: [String: String] = [:], timestampPrecisionMillis: Int64 = 1) {
        self.names = names
        self.units = units
        self.timestampPrecisionMillis = timestampPrecisionMillis
    }

    /// A schema-less place: every explicit mapping, and every other Kiln field under `defaults[field]` or its own
    /// name (compared wherever a record has it); `null` mappings are dropped.
    public init(schemaless place: BlackBoxSpec.Place, defaults: [String: String] = [:]) {
        var names: [String: String] = [:]
        for field in BlackBoxSpec.fields {
            if let mapping = place.mapping(of: field) {
                if let column = mapping.column { names[field] = column }
            } else {
                names[field] = defaults[field] ?? field
            }
        }
        self.init(names: names, units: place.units)
    }

    /// The row of one record; `value(name)` answers the record's value under a name, nil when it has none.
    public func row(_ value: (String) -> LooseValue?) -> StoredRow {
        func get(_ field: String) -> LooseValue? { names[field].flatMap(value) }
        var row = StoredRow(txnID: get("txn_id").flatMap(Self.integer) ?? -1)
        row.userID = get("user_id").flatMap(Self.integer)
        row.merchantID = get("merchant_id").flatMap(Self.integer)
        row.deviceID = get("device_id").flatMap(Self.integer)
        row.locationID = get("location_id").flatMap(Self.integer)
        row.amountCents = get("amount").flatMap { Self.scaled($0, units["amount"] == "cents" ? 0 : 2) }
        row.timestampMillis = get("ts").flatMap { Self.millis($0, unit: units["ts"] ?? "ms") }
        row.currency = get("currency").flatMap(Self.text)
        row.channel = get("channel").flatMap(Self.text)
        row.status = get("status").flatMap(Self.text)
        row.fraudScoreMillis = get("fraud_score").flatMap { Self.scaled($0, units["fraud_score"] == "millis" ? 0 : 3) }
        row.isFraud = get("is_fraud").flatMap(Self.bool)
        switch get("ring_id") {
        case .null?: row.ringID = -1
        case let value?: row.ringID = Self.integer(value)
        case nil: break
        }
        return row
    }

    /// A JSON object's row (Kafka values, Redis strings); a value that is not an object gives a row of nils.
    public func row(json bytes: UnsafeRawBufferPointer) -> StoredRow {
        guard let object = try? JSONDecoder().decode([String: LooseValue].self, from: Data(bytes)) else {
            return StoredRow(txnID: -1)
        }
        return row { object[$0] }
    }

    static func integer(_ value: LooseValue) -> Int64? {
        switch value {
        case .integer(let number): number
        case .text(let text): Int64(text)
        case .decimal(let number): isIntegral(number) ? NSDecimalNumber(decimal: number).int64Value : nil
        default: nil
        }
    }

    /// `value` × 10^scale as an exact integer; `Int64.min` when it has more decimals than that.
    static func scaled(_ value: LooseValue, _ scale: Int) -> Int64? {
        let number: Decimal
        switch value {
        case .integer(let integer): number = Decimal(integer)
        case .decimal(let decimal): number = decimal
        case .text(let text):
            guard let parsed = Decimal(string: text, locale: Locale(identifier: "en_US_POSIX")) else { return nil }
            number = parsed
        default: return nil
        }
        var multiplier = Decimal(1)
        for _ in 0..<scale { multiplier *= 10 }
        let product = number * multiplier
        guard isIntegral(product) else { return Int64.min }
        return NSDecimalNumber(decimal: product).int64Value
    }

    static func millis(_ value: LooseValue, unit: String) -> Int64? {
        if case .text(let text) = value, Int64(text) == nil {
            let exact = Array(text.utf8).withUnsafeBytes { TransactionJSON.timestampMillis($0) }
            if let exact { return exact }
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let date = formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text)
            return date.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
        }
        guard let number = integer(value) else { return nil }
        switch unit {
        case "s": return number.multipliedReportingOverflow(by: 1000).overflow ? nil : number * 1000
        case "us": return number / 1000
        default: return number
        }
    }

    static func text(_ value: LooseValue) -> String? {
        if case .text(let text) = value { return text }
        return nil
    }

    static func bool(_ value: LooseValue) -> Bool? {
        switch value {
        case .bool(let flag): flag
        case .integer(let number) where number == 0 || number == 1: number == 1
        case .text("true"), .text("1"): true
        case .text("false"), .text("0"): false
        default: nil
        }
    }

    static func isIntegral(_ number: Decimal) -> Bool {
        var value = number
        var rounded = Decimal()
        NSDecimalRound(&rounded, &value, 0, .plain)
        return rounded == number
    }
}
