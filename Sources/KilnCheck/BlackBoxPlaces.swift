import Foundation
import KilnData
import KilnRedis
import KilnScenario
import KilnStores

/// Black-box mode of `kiln check` (a scenario's `blackbox:` block): what each mapped place must hold, and the
/// scanners that read it. The reconcile checker runs on them unchanged.
public enum BlackBoxPlaces {
    /// The entry store's own place (what the load wrote, under Kiln's names).
    public static func entryPlace(_ store: BlackBoxSpec.Store) -> String {
        switch store {
        case .postgres: RowPlace.postgresRows.id
        case .clickhouse: RowPlace.clickhouseRows.id
        case .kafka: RowPlace.kafkaMessages.id
        case .falkordb: RowPlace.falkordbPaidEdges.id
        case .redis: RowPlace.redisTxnKeys.id
        }
    }

    public static func rowPlace(_ place: BlackBoxSpec.Place) -> RowPlace {
        RowPlace(store: place.store.rawValue, name: place.name, writtenBy: [])
    }

    /// `written` plus, for every mapped place, what the entry acknowledged: `ok` rows must be present exactly once,
    /// `info` rows at most once, failed rows never; with `posted: approved` a declined row must be absent too.
    public static func expected(
        _ written: [String: WrittenRows], spec: BlackBoxSpec, dataset: Dataset
    ) -> [String: WrittenRows] {
        let entryID = entryPlace(spec.entry)
        let entry =
            written[entryID]
            ?? WrittenRows(
                place: RowPlace(store: spec.entry.rawValue, name: "rows", writtenBy: []), datasetRows: dataset.rows)
        var expected = entry
        if spec.posted == .approved {
            expected = WrittenRows(place: entry.place, datasetRows: dataset.rows)
            entry.ok.forEach { row in
                if !dataset.transaction(row).declined { expected.ok.insert(row) } else { expected.failed.insert(row) }
            }
            entry.info.forEach { row in
                if !dataset.transaction(row).declined { expected.info.insert(row) } else { expected.failed.insert(row) }
            }
            entry.failed.forEach { expected.failed.insert($0) }
        }
        var result = written
        for place in spec.places {
            var rows = expected
            rows.place = rowPlace(place)
            result[rows.place.id] = rows
        }
        return result
    }

    /// One driver per mapped place, after reading each SQL table's column types from its store (so a mapping error
    /// is found before any scan).
    /// - Throws: `SpecError` naming the scenario line of a bad mapping; `StoreError` when a store cannot be
    ///   reached.
    public static func drivers(_ spec: BlackBoxSpec, context: ClientContext) throws -> [(ScannerDriver, FieldMapping)] {
        try spec.places.map { place in
            let rowPlace = rowPlace(place)
            switch place.store {
            case .postgres:
                let (projection, mapping) = try postgres(place, context: context)
                return (
                    ScannerDriver(place: rowPlace) { context in
                        MappedScanner(try PostgresScanner(context: context, projection: projection), mapping, context)
                    }, mapping
                )
            case .clickhouse:
                let (projection, mapping) = try clickhouse(place, context: context)
                return (
                    ScannerDriver(place: rowPlace) { context in
                        MappedScanner(try ClickHouseScanner(context: context, projection: projection), mapping, context)
                    }, mapping
                )
            case .kafka:
                let kilnFormat = place.columns.isEmpty && place.units.isEmpty
                let mapping = FieldMapping(schemaless: place)
                let topic = place.name
                return (
                    ScannerDriver(place: rowPlace) { context in
                        let scanner =
                            kilnFormat
                            ? try KafkaScanner(context: context, topic: topic)
                            : try KafkaScanner(context: context, topic: topic) { mapping.row(json: $0) }
                        return MappedScanner(scanner, mapping, context)
                    }, mapping
                )
            case .falkordb:
                let (query, mapping) = graph(place)
                let name = place.name
                return (
                    ScannerDriver(place: rowPlace) { context in
                        MappedScanner(
                            try FalkorDBScanner(context: context, graph: name, edges: query), mapping, context)
                    }, mapping
                )
            case .redis:
                let mapping = FieldMapping(schemaless: place)
                let pattern = place.name
                return (
                    ScannerDriver(place: rowPlace) { context in
                        MappedScanner(
                            try RedisKeyScanner(context: context, pattern: pattern, mapping: mapping), mapping, context)
                    }, mapping
                )
            }
        }
    }

    // MARK: - SQL tables

    static func postgres(
        _ place: BlackBoxSpec.Place, context: ClientContext
    ) throws -> (PostgresScanner.Projection, FieldMapping) {
        let parts = place.name.split(separator: ".").map(String.init)
        let (schema, table) = parts.count == 2 ? (parts[0], parts[1]) : ("public", parts[0])
        let qualified = "\"\(schema)\".\"\(table)\""
        let connection = try PostgresScanner.connect(context)
        defer { connection.close() }
        let result = try connection.execute(
            """
            SELECT a.attname, t.typname, NOT a.attnotnull FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
            """, [qualified])
        var columns: [BlackBoxSQL.Column] = []
        for row in 0..<result.rowCount {
            guard let name = result.value(row: row, column: 0), let type = result.value(row: row, column: 1) else {
                continue
            }
            columns.append(BlackBoxSQL.Column(name: name, kind: BlackBoxSQL.postgresKind(type)))
        }
        guard !columns.isEmpty else {
            throw place.error(
                field: nil, "postgres database \(context.stack.postgres.database) has no table \(schema).\(table)")
        }
        let resolved = try BlackBoxSQL.resolve(place, columns: columns, dialect: .postgres)
        return (
            PostgresScanner.Projection(table: qualified, columns: resolved.expressions, key: resolved.key),
            resolved.mapping
        )
    }

    static func clickhouse(
        _ place: BlackBoxSpec.Place, context: ClientContext
    ) throws -> (ClickHouseScanner.Projection, FieldMapping) {
        let parts = place.name.split(separator: ".").map(String.init)
        let (database, table) = parts.count == 2 ? (parts[0], parts[1]) : (context.stack.timeseries.database, parts[0])
        let http = try ClickHouseScanner.connect(context)
        let query =
            "SELECT name, type FROM system.columns WHERE database = '\(database)' AND table = '\(table)' "
            + "FORMAT TabSeparated"
        let text: String
        do {
            text = try http.post("http://\(context.stack.timeseries.endpoint)/", body: Array(query.utf8)).expectOK()
                .text
        } catch {
            throw StoreError(
                store: "clickhouse", address: context.stack.timeseries.endpoint.description, detail: "\(error)")
        }
        var columns: [BlackBoxSQL.Column] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 2 else { continue }
            var type = fields[1]
            let nullable = type.hasPrefix("Nullable(") && type.hasSuffix(")")
            if nullable { type = String(type.dropFirst("Nullable(".count).dropLast()) }
            columns.append(
                BlackBoxSQL.Column(name: fields[0], kind: BlackBoxSQL.clickhouseKind(type), nullable: nullable))
        }
        guard !columns.isEmpty else {
            throw place.error(field: nil, "clickhouse has no table \(database).\(table)")
        }
        let resolved = try BlackBoxSQL.resolve(place, columns: columns, dialect: .clickhouse)
        return (
            ClickHouseScanner.Projection(
                table: "`\(database)`.`\(table)`", columns: resolved.expressions, key: resolved.key),
            resolved.mapping
        )
    }

    // MARK: - Graph

    /// `MATCH (u:Source)-[p:REL]->(m:Target)`: `user_id` is a property of `u` (default `id`), `merchant_id` of `m`
    /// (default `id`), every other field a property of the edge (default: Kiln's names; `amount` defaults to
    /// `amount_cents` in cents). Missing properties are NULL, hence not compared.
    static func graph(_ place: BlackBoxSpec.Place) -> (FalkorDBScanner.EdgeQuery, FieldMapping) {
        var defaults = ["user_id": "id", "merchant_id": "id"]
        var units = place.units
        if place.mapping(of: "amount") == nil {
            defaults["amount"] = "amount_cents"
            units["amount"] = "cents"
        }
        var mapping = FieldMapping(schemaless: place, defaults: defaults)
        mapping.units = units
        let fields = BlackBoxSpec.fields.filter { mapping.names[$0] != nil }
        let returns = fields.map { field in
            let variable = field == "user_id" ? "u" : (field == "merchant_id" ? "m" : "p")
            return "\(variable).\(mapping.names[field]!)"
        }
        let edge = place.edge ?? ("", "PAID", "")
        func node(_ variable: String, _ label: String) -> String {
            label.isEmpty ? "(\(variable))" : "(\(variable):\(label))"
        }
        let match = "MATCH \(node("u", edge.source))-[p:\(edge.relation)]->\(node("m", edge.target))"
        let description = "\(node("", edge.source))-[:\(edge.relation)]->\(node("", edge.target))"
        let frozen = mapping
        let query = FalkorDBScanner.EdgeQuery(
            match: match, returns: returns.joined(separator: ", "), description: description
        ) { columns in
            var values: [String: LooseValue] = [:]
            for (field, reply) in zip(fields, columns) {
                switch reply {
                case .integer(let number): values[field] = .integer(number)
                case .bulk, .status: values[field] = reply.string.map { LooseValue.text($0) }
                default: break  // NULL (a missing property) is not compared
                }
            }
            var row = FieldMapping(
                names: Dictionary(uniqueKeysWithValues: fields.map { ($0, $0) }), units: frozen.units
            )
            .row { values[$0] }
            if columns.count != fields.count { row = StoredRow(txnID: -1) }
            return row
        }
        return (query, mapping)
    }
}

/// A scanner of a black-box place: the inner scanner's rows with every field the mapping does not keep set to nil
/// (so it is not compared), timestamps of coarser precision compared at that precision, and a source that names
/// the fields compared (`…; compared: txn_id=id, amount=amount_usd`), listing those present in at least one row.
/// Not Sendable, like every scanner.
final class MappedScanner: StoreScanner {
    private let inner: any StoreScanner
    private let mapping: FieldMapping
    private let dataset: Dataset
    private var present: Set<String> = []

    init(_ inner: any StoreScanner, _ mapping: FieldMapping, _ context: ClientContext) {
        self.inner = inner
        self.mapping = mapping
        dataset = context.dataset
    }

    var source: String {
        let shown = present.isEmpty ? Set(mapping.names.keys) : present
        let fields = BlackBoxSpec.fields.filter { shown.contains($0) }.map { field in
            mapping.names[field] == field ? field : "\(field)=\(mapping.names[field] ?? "?")"
        }
        let every = fields.count == BlackBoxSpec.fields.count && fields == BlackBoxSpec.fields
        return "\(inner.source); compared: \(every ? "every field" : fields.joined(separator: ", "))"
    }

    func close() { inner.close() }

    func scan(_ body: (StoredRow) throws -> Void) throws {
        let kept = Set(mapping.names.keys)
        try inner.scan { stored in
            var row = stored
            if !kept.contains("user_id") { row.userID = nil }
            if !kept.contains("merchant_id") { row.merchantID = nil }
            if !kept.contains("device_id") { row.deviceID = nil }
            if !kept.contains("location_id") { row.locationID = nil }
            if !kept.contains("amount") { row.amountCents = nil }
            if !kept.contains("ts") { row.timestampMillis = nil }
            if !kept.contains("currency") { row.currency = nil }
            if !kept.contains("channel") { row.channel = nil }
            if !kept.contains("status") { row.status = nil }
            if !kept.contains("fraud_score") { row.fraudScoreMillis = nil }
            if !kept.contains("is_fraud") { row.isFraud = nil }
            if !kept.contains("ring_id") { row.ringID = nil }
            let precision = mapping.timestampPrecisionMillis
            if precision > 1, let stored = row.timestampMillis, row.txnID >= 1, row.txnID <= dataset.rows {
                let expected = dataset.transaction(row.txnID - 1).timestampMillis
                if stored == expected - expected % precision { row.timestampMillis = expected }
            }
            note(row)
            try body(row)
        }
    }

    private func note(_ row: StoredRow) {
        guard present.count < mapping.names.count else { return }
        if row.txnID != -1 { present.insert("txn_id") }
        if row.userID != nil { present.insert("user_id") }
        if row.merchantID != nil { present.insert("merchant_id") }
        if row.deviceID != nil { present.insert("device_id") }
        if row.locationID != nil { present.insert("location_id") }
        if row.amountCents != nil { present.insert("amount") }
        if row.timestampMillis != nil { present.insert("ts") }
        if row.currency != nil { present.insert("currency") }
        if row.channel != nil { present.insert("channel") }
        if row.status != nil { present.insert("status") }
        if row.fraudScoreMillis != nil { present.insert("fraud_score") }
        if row.isFraud != nil { present.insert("is_fraud") }
        if row.ringID != nil { present.insert("ring_id") }
    }
}
