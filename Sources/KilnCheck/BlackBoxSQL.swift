import KilnScenario
import KilnStores

/// Maps a black-box SQL place (PostgreSQL or ClickHouse table) onto the scanners' fixed 13-column projections,
/// from the column types the store reports: each Kiln field is read from its mapped column (or the column of the
/// same name), converted on the server to what the parser reads. Pure: the column types come in as a dictionary.
///
/// Units: a decimal or floating column holds an amount / fraud score in currency units / whole score; a timestamp
/// column is a point in time (PostgreSQL `timestamp` without time zone is read as UTC; ClickHouse `DateTime` has
/// whole seconds, so it compares at second precision). An integer column's unit cannot be guessed: an integer
/// amount, fraud score or timestamp needs `units:` (`cents`/`units`, `millis`/`units`, `ms`/`s`/`us`), else the
/// mapping is an error naming the line.
enum BlackBoxSQL {
    enum Kind: Equatable {
        case integer, decimal, float, timestamp, timestampUTC, seconds, text, bool, other(String)
    }

    struct Column {
        var name: String
        var kind: Kind
        var nullable = false
    }

    struct Resolved {
        /// 13 expressions in the parser's order.
        var expressions: [String]
        var key: String
        var mapping: FieldMapping
    }

    /// Kinds of PostgreSQL `pg_type.typname`s.
    static func postgresKind(_ typname: String) -> Kind {
        switch typname {
        case "int2", "int4", "int8": .integer
        case "numeric": .decimal
        case "float4", "float8": .float
        case "timestamptz": .timestamp
        case "timestamp": .timestampUTC
        case "text", "varchar", "bpchar", "name": .text
        case "bool": .bool
        default: .other(typname)
        }
    }

    /// Kinds of ClickHouse `system.columns.type`s (`Nullable(…)` unwrapped by the caller).
    static func clickhouseKind(_ type: String) -> Kind {
        if type.hasPrefix("Int") || type.hasPrefix("UInt") { return .integer }
        if type.hasPrefix("Decimal") { return .decimal }
        if type.hasPrefix("Float") { return .float }
        if type == "DateTime" || type.hasPrefix("DateTime(") { return .seconds }
        if type == "String" || type.hasPrefix("FixedString") || type.hasPrefix("Enum") { return .text }
        return .other(type)
    }

    enum Dialect { case postgres, clickhouse }

    /// The projection of `place` over a table with `columns`.
    /// - Throws: `SpecError` at the field's mapping (or the place) for an unknown column, a type that cannot hold
    ///   the field, or an integer without a stated unit.
    static func resolve(_ place: BlackBoxSpec.Place, columns: [Column], dialect: Dialect) throws -> Resolved {
        let byName = Dictionary(columns.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var expressions: [String] = []
        var names: [String: String] = [:]
        var precision: Int64 = 1
        var key = ""
        for field in BlackBoxSpec.fields {
            let column: Column?
            if let mapping = place.mapping(of: field) {
                if let name = mapping.column {
                    guard let found = byName[name] else {
                        let known = columns.map(\.name).joined(separator: ", ")
                        throw place.error(field: field, "\(place.name) has no column '\(name)' (columns: \(known))")
                    }
                    column = found
                } else {
                    column = nil
                }
            } else {
                column = byName[field]
            }
            guard let column else {
                if field == "txn_id" {
                    throw place.error(field: nil, "\(place.name) has no txn_id column: name it with `key: COLUMN`")
                }
                expressions.append(unmapped(field, dialect))
                continue
            }
            let (expression, fieldPrecision) = try convert(field, column, place, dialect)
            names[field] = column.name
            precision = max(precision, fieldPrecision)
            expressions.append(expression)
            if field == "txn_id" { key = quoted(column.name, dialect) }
        }
        return Resolved(
            expressions: expressions, key: key,
            mapping: FieldMapping(names: names, units: place.units, timestampPrecisionMillis: precision))
    }

    static func quoted(_ name: String, _ dialect: Dialect) -> String {
        dialect == .postgres ? "\"\(name)\"" : "`\(name)`"
    }

    static func unmapped(_ field: String, _ dialect: Dialect) -> String {
        switch (field, dialect) {
        case ("amount", .postgres), ("fraud_score", .postgres): "NULL::numeric"
        case ("ts", .postgres): "NULL::timestamptz"
        case ("currency", .postgres), ("channel", .postgres), ("status", .postgres): "NULL::text"
        case ("is_fraud", .postgres): "NULL::bool"
        case (_, .postgres): "NULL::int8"
        case ("currency", _), ("channel", _), ("status", _): "''"
        case ("is_fraud", _): "toUInt8(0)"
        case ("ring_id", _): "CAST(NULL AS Nullable(Int32))"
        default: "toInt64(0)"
        }
    }

    /// The expression reading `field` from `column`, and the timestamp precision in ms it implies.
    static func convert(
        _ field: String, _ column: Column, _ place: BlackBoxSpec.Place, _ dialect: Dialect
    ) throws -> (String, Int64) {
        let c = quoted(column.name, dialect)
        let pg = dialect == .postgres
        func refuse() -> SpecError {
            let type: String =
                switch column.kind {
                case .other(let name): name
                default: "\(column.kind)"
                }
            return place.error(field: field, "column '\(column.name)' (\(type)) cannot hold \(field)")
        }
        func unit(_ allowed: [String]) throws -> String {
            guard let stated = place.units[field] else {
                throw place.error(
                    field: field,
                    "column '\(column.name)' is an integer: state its unit with units: {\(field): "
                        + "\(allowed.joined(separator: " | "))}")
            }
            return stated
        }
        let expression: String
        var precision: Int64 = 1
        switch field {
        case "txn_id", "user_id", "merchant_id", "device_id", "location_id", "ring_id":
            switch column.kind {
            case .integer:
                expression =
                    pg ? "\(c)::int8" : (field == "ring_id" ? "CAST(\(c) AS Nullable(Int32))" : "toInt64(\(c))")
            case .text, .decimal:
                expression =
                    pg
                    ? "\(c)::int8"
                    : (field == "ring_id"
                        ? "CAST(toInt64OrZero(toString(\(c))) AS Nullable(Int32))" : "toInt64OrZero(toString(\(c)))")
            default: throw refuse()
            }
        case "amount", "fraud_score":
            let scale = field == "amount" ? 100 : 1000
            let small = field == "amount" ? "cents" : "millis"
            switch column.kind {
            case .decimal, .float:
                if pg {
                    expression = "\(c)::numeric"
                } else {
                    expression = column.kind == .decimal ? "toInt64(\(c)*\(scale))" : "toInt64(round(\(c)*\(scale)))"
                }
            case .integer:
                let stated = try unit([small, "units"])
                if stated == small {
                    expression = pg ? "(\(c)::numeric / \(scale))" : "toInt64(\(c))"
                } else {
                    expression = pg ? "\(c)::numeric" : "toInt64(\(c))*\(scale)"
                }
            default: throw refuse()
            }
        case "ts":
            switch column.kind {
            case .timestamp where pg: expression = c
            case .timestampUTC where pg: expression = "(\(c) AT TIME ZONE 'UTC')"
            case .seconds where !pg:
                expression = "toInt64(toUInt32(\(c)))*1000"
                precision = 1000
            case .integer:
                switch try unit(["ms", "s", "us"]) {
                case "s":
                    expression = pg ? "(timestamptz 'epoch' + \(c) * interval '1 second')" : "toInt64(\(c))*1000"
                    precision = 1000
                case "us":
                    expression =
                        pg ? "(timestamptz 'epoch' + \(c) * interval '1 microsecond')" : "intDiv(toInt64(\(c)), 1000)"
                default:
                    expression = pg ? "(timestamptz 'epoch' + \(c) * interval '1 millisecond')" : "toInt64(\(c))"
                }
            default: throw refuse()
            }
        case "currency", "channel", "status":
            guard column.kind == .text else { throw refuse() }
            expression = pg ? "\(c)::text" : "toString(\(c))"
        case "is_fraud":
            switch column.kind {
            case .bool where pg: expression = c
            case .integer: expression = pg ? "(\(c) <> 0)" : "toUInt8(\(c) != 0)"
            default: throw refuse()
            }
        default:
            throw refuse()
        }
        // RowBinary has no NULL in the fixed columns: a NULL reads as the type's zero (so it differs, unless the
        // expected value is zero); ring_id keeps its Nullable.
        if !pg, column.nullable, field != "ring_id" {
            let zero = ["currency", "channel", "status"].contains(field) ? "''" : "0"
            return ("ifNull(\(expression), \(zero))", precision)
        }
        return (expression, precision)
    }
}
