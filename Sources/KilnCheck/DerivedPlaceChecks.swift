import Foundation
import KilnData
import KilnHTTP
import KilnRedis
import KilnScenario
import KilnStores

/// Derived places — aggregates a store computes from the transactions it was given — checked against the oracle on
/// their own, not only against another store: per key, the count and exact cents the oracle gives for the rows that
/// store's row place must hold (`written`: acknowledged `ok` exactly once, `info` at most once). So a deleted or
/// altered aggregate row is found in any run, also when the stores were given different rows.
///
/// A key whose expected rows are all `ok` must match exactly; a key with `info` rows must lie between the `ok` rows
/// alone and `ok` + `info` (count and cents). A key only the oracle has is `lost`, one only the store has `phantom`,
/// different numbers `corrupted`; each with the exact difference. Blocking; one call per check. Memory: one entry
/// per key (merchant × minute, user, merchant) of the rows written.
public enum DerivedPlaceChecks {
    /// Count and exact sum in cents of some transactions.
    public struct Totals: Sendable, Equatable {
        public var count: Int64
        public var cents: Int64

        public init(count: Int64 = 0, cents: Int64 = 0) {
            self.count = count
            self.cents = cents
        }

        mutating func add(_ transaction: Transaction) {
            count += 1
            cents += transaction.amountCents
        }
    }

    /// What the oracle says one key must hold: `ok` rows for sure, plus at most the `info` rows.
    public struct Expected: Sendable, Equatable {
        public var ok: Totals
        public var info: Totals

        public init(ok: Totals = Totals(), info: Totals = Totals()) {
            self.ok = ok
            self.info = info
        }
    }

    /// The oracle's totals per key over the rows `written` says the place must (ok) or may (info) hold; with
    /// `rows`, only those of that index range.
    public static func expected<Key: Hashable>(
        _ written: WrittenRows, dataset: Dataset, rows: Range<Int64>? = nil, key: (Transaction) -> Key
    ) -> [Key: Expected] {
        var result: [Key: Expected] = [:]
        guard let rows else {
            written.ok.forEach { row in
                let transaction = dataset.transaction(row)
                result[key(transaction), default: Expected()].ok.add(transaction)
            }
            written.info.forEach { row in
                let transaction = dataset.transaction(row)
                result[key(transaction), default: Expected()].info.add(transaction)
            }
            return result
        }
        for row in rows {
            let ok = written.ok.contains(row)
            guard ok || written.info.contains(row) else { continue }
            let transaction = dataset.transaction(row)
            if ok {
                result[key(transaction), default: Expected()].ok.add(transaction)
            } else {
                result[key(transaction), default: Expected()].info.add(transaction)
            }
        }
        return result
    }

    /// `12.50`, `-0.07`: cents as a decimal amount.
    public static func amount(_ cents: Int64) -> String {
        let sign = cents < 0 ? "-" : ""
        let magnitude = cents.magnitude
        return "\(sign)\(magnitude / 100).\(String(format: "%02d", Int(magnitude % 100)))"
    }

    static func describe(_ expected: Expected) -> String {
        guard expected.info.count > 0 else {
            return "expected count \(expected.ok.count) sum \(amount(expected.ok.cents))"
        }
        let most = Totals(count: expected.ok.count + expected.info.count, cents: expected.ok.cents + expected.info.cents)
        return "expected count \(expected.ok.count)…\(most.count) sum \(amount(expected.ok.cents))…\(amount(most.cents)) "
            + "(\(expected.info.count) unknown writes)"
    }

    static func matches(_ expected: Expected, _ found: Totals) -> Bool {
        guard expected.info.count > 0 else { return expected.ok == found }
        let most = Totals(count: expected.ok.count + expected.info.count, cents: expected.ok.cents + expected.info.cents)
        func within(_ value: Int64, _ a: Int64, _ b: Int64) -> Bool { value >= min(a, b) && value <= max(a, b) }
        return within(found.count, expected.ok.count, most.count) && within(found.cents, expected.ok.cents, most.cents)
    }

    /// Compares every key either side has; `label` names a key, e.g. `(merchant 17, minute 2026-…)`.
    public static func compare<Key: Hashable & Comparable>(
        place: String, source: String, expected: [Key: Expected], found: [Key: Totals], label: (Key) -> String,
        since started: Date
    ) -> PlaceResult {
        var tally = Tally()
        tally.compare(expected: expected, found: found, label: label)
        return tally.result(place: place, source: source, since: started)
    }

    /// Anomalies of one derived place, gathered over pages of keys (first `PlaceResult.keptPerKind` per kind kept).
    public struct Tally {
        var counts: [String: Int64] = [:]
        var anomalies: [Anomaly] = []
        var kept: [Anomaly.Kind: Int] = [:]
        var expectedKeys: Int64 = 0
        var foundKeys: Int64 = 0

        public init() {}

        mutating func record(_ kind: Anomaly.Kind, _ key: String, _ detail: String) {
            counts[kind.rawValue, default: 0] += 1
            if kept[kind, default: 0] < PlaceResult.keptPerKind {
                kept[kind, default: 0] += 1
                anomalies.append(Anomaly(kind: kind, txnID: 0, key: key, detail: detail))
            }
        }

        public func result(place: String, source: String, since started: Date) -> PlaceResult {
            .invariant(
                place, source: source, expected: expectedKeys, scanned: foundKeys, counts: counts,
                anomalies: anomalies, since: started)
        }

        /// Adds one page: every key either side has.
        public mutating func compare<Key: Hashable & Comparable>(
            expected: [Key: Expected], found: [Key: Totals], label: (Key) -> String
        ) {
            expectedKeys += Int64(expected.count)
            foundKeys += Int64(found.count)
            for key in Set(expected.keys).union(found.keys).sorted() {
                switch (expected[key], found[key]) {
                case let (wanted?, actual?) where !matches(wanted, actual):
                    record(
                        .corrupted, label(key),
                        "\(describe(wanted)), found count \(actual.count) sum \(amount(actual.cents)) (difference "
                            + "\(actual.count - wanted.ok.count) / \(amount(actual.cents - wanted.ok.cents)))")
                case let (wanted?, nil) where wanted.ok.count > 0:
                    record(.lost, label(key), "\(describe(wanted)), found no row")
                case let (nil, actual?):
                    record(
                        .phantom, label(key), "expected nothing, found count \(actual.count) sum \(amount(actual.cents))")
                default: break
                }
            }
        }
    }
}

/// ClickHouse's per-minute merchant aggregate (`<ns>_merchant_minute`, the materialized view the dashboards read)
/// against the oracle's sums of the rows ClickHouse must hold (`clickhouse.rows`): per (merchant, minute), count and
/// exact cents.
public enum MerchantMinuteOracleCheck {
    public static let place = "clickhouse.merchant-minute"

    /// (merchant id, minute start in Unix ms).
    public struct Key: Hashable, Comparable, Sendable {
        public var merchant: Int64
        public var minute: Int64
        public static func < (a: Key, b: Key) -> Bool { (a.merchant, a.minute) < (b.merchant, b.minute) }
    }

    public static func label(_ key: Key) -> String {
        let formatter = ISO8601DateFormatter()
        return "(merchant \(key.merchant), minute \(formatter.string(from: Date(timeIntervalSince1970: Double(key.minute) / 1000))))"
    }

    /// Rows of the oracle per page: the dataset's timestamps never decrease with the index, so a page is a span of
    /// whole minutes (`Dataset.indexRange`) and memory stays at one page of keys, also for 100M rows.
    public static let rowsPerPage: Int64 = 2_000_000

    public static func check(
        context: ClientContext, written: WrittenRows, rowsPerPage: Int64 = rowsPerPage
    ) -> PlaceResult {
        let started = Date()
        let ts = context.stack.timeseries
        let view = "\(ts.database).\(context.namespace)_merchant_minute"
        let source = "clickhouse \(view) per (merchant, minute) = oracle over \(written.place.id)"
        let dataset = context.dataset
        do {
            let http = try HTTPClient(
                timeoutSeconds: 600, connectTimeoutSeconds: 5, user: ts.user,
                password: StackDefinition.secret(ts.passwordEnvironmentVariable, in: context.environment),
                caFile: ts.caFile(in: context.environment))
            /// The aggregate's rows whose minute (`toUInt32(minute)`, Unix seconds) matches `filter`.
            func aggregate(_ filter: String) throws -> [Key: DerivedPlaceChecks.Totals] {
                let query = "SELECT merchant_id, toInt64(toUInt32(minute)) * 1000, toInt64(sum(txns)), "
                    + "toInt64(sum(amount) * 100) FROM \(view) WHERE \(filter) GROUP BY merchant_id, minute "
                    + "FORMAT TabSeparated"
                let text = try http.post(ts.baseURL, body: Array(query.utf8)).expectOK().text
                var found: [Key: DerivedPlaceChecks.Totals] = [:]
                for line in text.split(separator: "\n") {
                    let fields = line.split(separator: "\t")
                    guard fields.count == 4, let merchant = Int64(fields[0]), let minute = Int64(fields[1]),
                        let count = Int64(fields[2]), let cents = Int64(fields[3])
                    else { throw DerivedPlaceError(reason: "unexpected row from \(view): \(line.prefix(120))") }
                    found[Key(merchant: merchant, minute: minute)] = .init(count: count, cents: cents)
                }
                return found
            }
            func minute(_ ms: Int64) -> Int64 { ms - ((ms % 60_000) + 60_000) % 60_000 }
            var tally = DerivedPlaceChecks.Tally()
            let first = minute(dataset.timestamp(of: 0))
            let end = minute(dataset.timestamp(of: dataset.rows - 1)) + 60_000
            var from = first
            while from < end {
                // Whole minutes from `from` up to the one holding the page's last row.
                let startRow = dataset.indexRange(fromMillis: from, toMillis: end).lowerBound
                let lastRow = min(dataset.rows, startRow + max(1, rowsPerPage)) - 1
                let to = max(from + 60_000, minute(dataset.timestamp(of: lastRow)) + 60_000)
                let rows = dataset.indexRange(fromMillis: from, toMillis: to)
                let expected = DerivedPlaceChecks.expected(written, dataset: dataset, rows: rows) { transaction in
                    // toStartOfMinute(toDateTime(intDiv(ts, 1000))): whole minutes of Unix time.
                    Key(merchant: transaction.merchantID, minute: minute(transaction.timestampMillis))
                }
                tally.compare(expected: expected, found: try aggregate("toUInt32(minute) >= \(from / 1000) AND toUInt32(minute) < \(to / 1000)"), label: label)
                from = to
            }
            // Minutes outside the dataset's span hold nothing the oracle knows.
            tally.compare(
                expected: [Key: DerivedPlaceChecks.Expected](), found: try aggregate("toUInt32(minute) < \(first / 1000) OR toUInt32(minute) >= \(end / 1000)"),
                label: label)
            return tally.result(place: place, source: source, since: started)
        } catch {
            return .undecided(place, source: source, error: error, since: started)
        }
    }
}

/// The reference pipeline's balances (`<ns>_balances(user_id, balance, txns)`) against the oracle's per-user sums
/// of the approved transactions the ledger must hold (`postgres.rows` as the pipeline derives it).
public enum BalanceOracleCheck {
    public static let place = "postgres.balances"

    public static func check(context: ClientContext, written: WrittenRows) -> PlaceResult {
        let started = Date()
        let ns = context.namespace
        let source = "postgres \(ns)_balances per user = oracle over \(written.place.id)"
        let expected = DerivedPlaceChecks.expected(written, dataset: context.dataset) { $0.userID }
        do {
            let connection = try PostgresScanner.connect(context)
            defer { connection.close() }
            _ = try PostgresScanner.tableName(ns)
            let result = try connection.execute("SELECT user_id, txns, (balance * 100)::bigint FROM \(ns)_balances")
            var found: [Int64: DerivedPlaceChecks.Totals] = [:]
            for row in 0..<result.rowCount {
                guard let user = result.value(row: row, column: 0).flatMap({ Int64($0) }),
                    let count = result.value(row: row, column: 1).flatMap({ Int64($0) }),
                    let cents = result.value(row: row, column: 2).flatMap({ Int64($0) })
                else { throw DerivedPlaceError(reason: "unexpected row \(row) of \(ns)_balances") }
                // A user whose balance row exists with no transactions is what the oracle calls absent.
                if count == 0, cents == 0 { continue }
                found[user] = .init(count: count, cents: cents)
            }
            return DerivedPlaceChecks.compare(
                place: place, source: source, expected: expected, found: found, label: { "user \($0)" },
                since: started)
        } catch {
            return .undecided(place, source: source, error: error, since: started)
        }
    }
}

/// The graph's PAID edges per user or per merchant (edge count and sum of `amount_cents`) against the oracle's sums
/// of the rows the graph must hold (`falkordb.paid-edges`): places `falkordb.paid-per-user` and
/// `falkordb.paid-per-merchant`. Users are read in pages of ids (one aggregating MATCH each).
public enum PaidEdgeOracleCheck {
    /// Which end of the PAID edges the totals are grouped by.
    public enum Side: Sendable, CaseIterable {
        case user
        case merchant

        public var place: String { self == .user ? "falkordb.paid-per-user" : "falkordb.paid-per-merchant" }
    }

    public static let userPlace = Side.user.place
    public static let merchantPlace = Side.merchant.place
    static let usersPerPage: Int64 = 50_000

    public static func check(context: ClientContext, written: WrittenRows, by side: Side) -> PlaceResult {
        let started = Date()
        let graphName = "\(context.namespace)_graph"
        let source = "graph \(graphName) PAID per \(side) = oracle over \(written.place.id)"
        let expected = DerivedPlaceChecks.expected(written, dataset: context.dataset) {
            side == .user ? $0.userID : $0.merchantID
        }
        do {
            let endpoint = context.stack.graph.endpoint
            let graph = try context.stack.graph.credentials(in: context.environment)
                .connect(host: endpoint.host, port: endpoint.port, timeoutSeconds: 300)
            defer { graph.close() }
            func rows(_ cypher: String) throws -> [(Int64, DerivedPlaceChecks.Totals)] {
                let reply = try graph.command(["GRAPH.RO_QUERY", graphName, cypher])
                guard let parts = reply.array, parts.count == 3, let found = parts[1].array else {
                    throw DerivedPlaceError(reason: "unexpected GRAPH.RO_QUERY reply to \(cypher)")
                }
                return try found.map { entry in
                    guard let fields = entry.array, fields.count == 3, let id = fields[0].integer,
                        let count = fields[1].integer, let cents = fields[2].integer
                    else { throw DerivedPlaceError(reason: "unexpected row in the reply to \(cypher)") }
                    return (id, .init(count: count, cents: cents))
                }
            }
            var found: [Int64: DerivedPlaceChecks.Totals] = [:]
            // A graph nothing was written to has no key (GRAPH.RO_QUERY would answer an error): it holds no edge.
            if try graph.command(["EXISTS", graphName]).integer == 1 {
                switch side {
                case .merchant:
                    for (merchant, totals) in try rows(
                        "MATCH (:User)-[p:PAID]->(m:Merchant) RETURN m.id, count(p), toInteger(sum(p.amount_cents))")
                    {
                        found[merchant] = totals
                    }
                case .user:
                    let top = try rows("MATCH (u:User) RETURN max(u.id) AS top, 0 AS count, 0 AS cents").first?.0 ?? 0
                    let highest = max(top, expected.keys.max() ?? 0)
                    var low: Int64 = 0
                    while low <= highest {
                        let high = low + usersPerPage
                        for (user, totals) in try rows(
                            "MATCH (u:User)-[p:PAID]->(:Merchant) WHERE u.id >= \(low) AND u.id < \(high) "
                                + "RETURN u.id, count(p), toInteger(sum(p.amount_cents))")
                        {
                            found[user] = totals
                        }
                        low = high
                    }
                }
            }
            return DerivedPlaceChecks.compare(
                place: side.place, source: source, expected: expected, found: found, label: { "\(side) \($0)" },
                since: started)
        } catch {
            return .undecided(side.place, source: source, error: error, since: started)
        }
    }
}

struct DerivedPlaceError: Error, CustomStringConvertible {
    var reason: String
    var description: String { "derived place: \(reason)" }
}
