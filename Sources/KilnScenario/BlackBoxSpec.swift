import Foundation

/// A scenario's `blackbox:` block: the load writes only the entry store (Kiln's own names there, e.g. topic
/// `<ns>.transactions`), the user's own services carry each transaction on, and `kiln check` reads the places
/// listed here and holds each to what the entry acknowledged. Parsed strictly: unknown keys, unknown Kiln fields,
/// bad identifiers and bad units are `SpecError`s naming file:line:column and the field. Whether a named table or
/// column exists, and what type it has, is learned from the store when `kiln check` starts; a mapping error found
/// then still names the line here (`Place.origin`, `ColumnMapping.line`).
///
/// ```yaml
/// blackbox:
///   entry: kafka            # the store the load writes; its acks define what must appear downstream
///   posted: approved        # all | approved (declined entry rows must then be absent downstream)
///   places:
///     - {store: postgres, table: payments.ledger, key: id, columns: {amount: amount_usd, ts: created_at}}
///     - {store: clickhouse, table: analytics.txns, units: {amount: cents, ts: ms}}
///     - {store: kafka, topic: txns.enriched, columns: {txn_id: id}}
///     - {store: falkordb, graph: fraud, edge: "(:User)-[:PAID]->(:Merchant)", columns: {amount: amount_cents},
///        units: {amount: cents}}
///     - {store: redis, key: "txn:{txn_id}", columns: {amount: amt}}
///   staleness:              # optional: `kiln run` probes a sample of the entry's acks in every place
///     sample: 2             # acknowledged entry writes probed per second
///     slo: {redis: 5s, clickhouse.analytics.txns: 30s}   # by store or place id
///     timeout: 60s          # a probe not visible by then is recorded never-visible
/// ```
public struct BlackBoxSpec: Sendable {
    public enum Store: String, Sendable, CaseIterable {
        case postgres, clickhouse, kafka, falkordb, redis
    }

    public enum Posted: String, Sendable, CaseIterable {
        /// Every acknowledged entry row must appear downstream.
        case all
        /// Only approved ones; a declined entry row must be absent downstream (the ledger posts approved only).
        case approved
    }

    /// The fields Kiln compares, by the names `columns:` and `units:` use.
    public static let fields = [
        "txn_id", "user_id", "merchant_id", "device_id", "location_id", "amount", "ts", "currency", "channel", "status",
        "fraud_score", "is_fraud", "ring_id",
    ]

    /// Units a field may be stated in (`units: {amount: cents}`), first = what a decimal/timestamp value means.
    public static let units: [String: [String]] = [
        "amount": ["units", "cents"], "fraud_score": ["units", "millis"], "ts": ["ms", "s", "us"],
    ]

    /// One Kiln field mapped to the user's column / JSON key / property / hash field; `column` nil = `null` in the
    /// file: the place does not keep the field (never compared, never defaulted).
    public struct ColumnMapping: Sendable, Equatable {
        public var field: String
        public var column: String?
        public var line: Int
        public var columnNumber: Int
    }

    public struct Place: Sendable {
        public var store: Store
        /// `postgres`/`clickhouse`: `table` (`schema.table` / `database.table`; default schema `public`, default
        /// database the stack's); `kafka`: `topic`; `falkordb`: `graph`; `redis`: the key pattern.
        public var name: String
        /// FalkorDB: labels and relationship type of `(:A)-[:R]->(:B)`; empty label = any node.
        public var edge: (source: String, relation: String, target: String)?
        /// Explicit mappings (`key:` of a table is the `txn_id` mapping), in file order.
        public var columns: [ColumnMapping]
        /// Stated units by field (`amount: cents`).
        public var units: [String: String]
        /// Where the place was written, for errors found when the store is read.
        public var file: String
        public var line: Int
        public var column: Int
        /// `blackbox.places[i]`.
        public var path: String

        /// The place's id in check results: `postgres.payments.ledger`, `kafka.txns.enriched`, …
        public var id: String { "\(store.rawValue).\(name)" }

        public func mapping(of field: String) -> ColumnMapping? { columns.first { $0.field == field } }

        /// An error about this place found after parsing (a column the table does not have, a type that cannot hold
        /// a field): located at the field's mapping when it was written, else at the place.
        public func error(field: String?, _ message: String) -> SpecError {
            if let field, let mapping = mapping(of: field) {
                return SpecError(
                    file: file, line: mapping.line, column: mapping.columnNumber, field: "\(path).columns.\(field)",
                    message: message)
            }
            return SpecError(file: file, line: line, column: column, field: path, message: message)
        }
    }

    public var entry: Store
    public var posted: Posted
    public var places: [Place]
    /// `staleness:`: probe each place for a sample of the entry's acknowledged writes during `kiln run`; nil when
    /// the block is absent (no probes).
    public var staleness: Staleness?

    public init(entry: Store, posted: Posted, places: [Place], staleness: Staleness? = nil) {
        self.entry = entry
        self.posted = posted
        self.places = places
        self.staleness = staleness
    }

    static func parse(_ fields: YAMLFields) throws(SpecError) -> BlackBoxSpec {
        let entry: Store = try fields.enumeration("entry")
        let posted: Posted = try fields.enumeration("posted", default: .approved)
        var places: [Place] = []
        for place in try fields.mappings("places") {
            let parsed = try parsePlace(place)
            if places.contains(where: { $0.id == parsed.id }) {
                throw SpecError(
                    file: place.file, line: place.line, column: 1, field: place.path,
                    message: "\(parsed.id) is listed twice")
            }
            places.append(parsed)
        }
        if places.isEmpty { throw fields.error("places", "needs at least one place") }
        let staleness = try fields.optionalMapping("staleness").map { (block) throws(SpecError) in
            try Staleness.parse(block, places: places)
        }
        try fields.finish()
        return BlackBoxSpec(entry: entry, posted: posted, places: places, staleness: staleness)
    }

    static func parsePlace(_ fields: YAMLFields) throws(SpecError) -> Place {
        let store: Store = try fields.enumeration("store")
        let (line, column) = fields.location("store")
        var columns: [ColumnMapping] = []
        var edge: (String, String, String)?
        let name: String
        switch store {
        case .postgres, .clickhouse:
            name = try fields.string("table")
            guard
                name.range(of: #"^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$"#, options: .regularExpression)
                    != nil
            else {
                throw fields.error("table", "expected name or schema.name of letters, digits and _, found '\(name)'")
            }
            if let key = try fields.optionalString("key") {
                try identifier(key, fields, "key")
                let (keyLine, keyColumn) = fields.location("key")
                columns.append(ColumnMapping(field: "txn_id", column: key, line: keyLine, columnNumber: keyColumn))
            }
        case .kafka:
            name = try fields.string("topic")
            guard name.range(of: #"^[A-Za-z0-9._-]{1,249}$"#, options: .regularExpression) != nil else {
                throw fields.error("topic", "expected letters, digits, '.', '_' or '-', found '\(name)'")
            }
        case .falkordb:
            name = try fields.string("graph")
            guard name.range(of: #"^[A-Za-z0-9_.:-]{1,200}$"#, options: .regularExpression) != nil else {
                throw fields.error("graph", "expected letters, digits, '_', '.', ':' or '-', found '\(name)'")
            }
            let pattern = try fields.optionalString("edge") ?? "()-[:PAID]->()"
            let label = #"\((?::([A-Za-z_][A-Za-z0-9_]*))?\)"#
            let regex = try? NSRegularExpression(pattern: "^\(label)-\\[:([A-Za-z_][A-Za-z0-9_]*)\\]->\(label)$")
            let range = NSRange(pattern.startIndex..., in: pattern)
            guard let match = regex?.firstMatch(in: pattern, range: range) else {
                throw fields.error(
                    "edge", "expected a pattern such as (:User)-[:PAID]->(:Merchant), found '\(pattern)'")
            }
            func group(_ index: Int) -> String {
                Range(match.range(at: index), in: pattern).map { String(pattern[$0]) } ?? ""
            }
            edge = (group(1), group(2), group(3))
        case .redis:
            name = try fields.string("key")
            guard name.components(separatedBy: "{txn_id}").count == 2, !name.contains("*"), !name.contains("?"),
                !name.contains("[")
            else {
                throw fields.error(
                    "key", "expected a key pattern with {txn_id} once and no glob characters, found '\(name)'")
            }
        }
        if let mapped = try fields.optionalMapping("columns") {
            for field in mapped.keys {
                guard Self.fields.contains(field) else {
                    throw mapped.error(
                        field, "unknown Kiln field '\(field)' (fields: \(Self.fields.joined(separator: ", ")))")
                }
                if columns.contains(where: { $0.field == field }) {
                    throw mapped.error(field, "txn_id is already mapped by `key`")
                }
                let target = try mapped.optionalString(field)
                if let target { try identifier(target, mapped, field) }
                let (fieldLine, fieldColumn) = mapped.location(field)
                columns.append(ColumnMapping(field: field, column: target, line: fieldLine, columnNumber: fieldColumn))
            }
            try mapped.finish()
        }
        var units: [String: String] = [:]
        if let stated = try fields.optionalMapping("units") {
            for field in stated.keys {
                guard let allowed = Self.units[field] else {
                    throw stated.error(
                        field, "no unit to state for '\(field)' (units apply to amount, ts, fraud_score)")
                }
                let unit = try stated.string(field)
                guard allowed.contains(unit) else {
                    throw stated.error(
                        field, "unknown unit '\(unit)' for \(field) (expected \(allowed.joined(separator: ", ")))")
                }
                units[field] = unit
            }
            try stated.finish()
        }
        try fields.finish()
        return Place(
            store: store, name: name, edge: edge, columns: columns, units: units, file: fields.file, line: line,
            column: column, path: fields.path)
    }

    /// Column, key, property and field names: letters, digits and `_` (so they can be quoted safely everywhere).
    static func identifier(_ text: String, _ fields: YAMLFields, _ key: String) throws(SpecError) {
        guard text.range(of: #"^[A-Za-z_][A-Za-z0-9_]{0,62}$"#, options: .regularExpression) != nil else {
            throw fields.error(key, "expected a name of letters, digits and _, found '\(text)'")
        }
    }
}
