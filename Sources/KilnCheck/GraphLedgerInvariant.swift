import Foundation
import KilnPostgres
import KilnRedis
import KilnScenario
import KilnStores

/// Invariant: the graph's PAID edges agree with the ledger per (user, merchant) — edge count = PostgreSQL's
/// transaction count and sum of `amount_cents` = its exact sum — for every pair either side has. Checked in pages
/// of user ids (one GROUP BY in PostgreSQL and one aggregating MATCH in the graph per page), so memory stays at one
/// page of pairs. Meaningful when the graph and the ledger were given the same transactions (the pipeline's flow).
/// A pair whose numbers differ is `corrupted`, one only the ledger has `lost`, one only the graph has `phantom`.
public enum GraphLedgerInvariant {
    public static let place = "invariant.graph-ledger"
    static let usersPerPage: Int64 = 50_000

    struct Totals: Equatable {
        var count: Int64
        var cents: Int64
    }

    public static func check(context: ClientContext) -> PlaceResult {
        let started = Date()
        let ns = context.namespace
        let source = "graph \(ns)_graph PAID per user→merchant = postgres \(ns)_transactions per (user_id, merchant_id)"
        do {
            let ledger = try PostgresScanner.connect(context)
            defer { ledger.close() }
            let endpoint = context.stack.graph.endpoint
            let graph = try context.stack.graph.credentials(in: context.environment)
                .connect(host: endpoint.host, port: endpoint.port, timeoutSeconds: 300)
            defer { graph.close() }
            let table = try PostgresScanner.tableName(ns)
            let bounds = try ledger.execute("SELECT coalesce(max(user_id), 0) FROM \(table)")
            let ledgerMax = bounds.rowCount > 0 ? bounds.value(row: 0, column: 0).flatMap { Int64($0) } ?? 0 : 0
            let graphMaxReply = try graph.command(["GRAPH.RO_QUERY", "\(ns)_graph", "MATCH (u:User) RETURN max(u.id)"])
            let graphMax = graphMaxReply.array.flatMap { $0.count == 3 ? $0[1].array?.first?.array?.first?.integer : nil } ?? 0
            var counts: [String: Int64] = [:]
            var anomalies: [Anomaly] = []
            var pairs: Int64 = 0
            var scanned: Int64 = 0
            func record(_ kind: Anomaly.Kind, _ key: String, _ detail: String) {
                counts[kind.rawValue, default: 0] += 1
                if anomalies.filter({ $0.kind == kind }).count < PlaceResult.keptPerKind {
                    anomalies.append(Anomaly(kind: kind, txnID: 0, key: key, detail: detail))
                }
            }
            var low: Int64 = 0
            while low <= max(ledgerMax, graphMax) {
                let high = low + usersPerPage
                var expected: [String: Totals] = [:]
                let rows = try ledger.execute(
                    "SELECT user_id, merchant_id, count(*), (sum(amount) * 100)::bigint FROM \(table) "
                        + "WHERE user_id >= \(low) AND user_id < \(high) GROUP BY 1, 2")
                for row in 0..<rows.rowCount {
                    guard let user = rows.value(row: row, column: 0), let merchant = rows.value(row: row, column: 1),
                        let count = rows.value(row: row, column: 2).flatMap({ Int64($0) }),
                        let cents = rows.value(row: row, column: 3).flatMap({ Int64($0) })
                    else { continue }
                    expected["\(user)→\(merchant)"] = Totals(count: count, cents: cents)
                }
                pairs += Int64(expected.count)
                let reply = try graph.command([
                    "GRAPH.RO_QUERY", "\(ns)_graph",
                    "MATCH (u:User)-[p:PAID]->(m:Merchant) WHERE u.id >= \(low) AND u.id < \(high) "
                        + "RETURN u.id, m.id, count(p), sum(p.amount_cents)",
                ])
                guard let parts = reply.array, parts.count == 3, let found = parts[1].array else {
                    throw GraphLedgerError(reason: "unexpected GRAPH.RO_QUERY reply")
                }
                for entry in found {
                    guard let fields = entry.array, fields.count == 4, let user = fields[0].integer,
                        let merchant = fields[1].integer, let count = fields[2].integer
                    else { continue }
                    let cents = fields[3].integer ?? fields[3].string.flatMap { Double($0) }.map { Int64($0) } ?? -1
                    scanned += 1
                    let key = "\(user)→\(merchant)"
                    let actual = Totals(count: count, cents: cents)
                    if let ledgerTotals = expected.removeValue(forKey: key) {
                        if ledgerTotals != actual {
                            record(
                                .corrupted, "user \(user) merchant \(merchant)",
                                "graph \(count) PAID / \(cents) cents, ledger \(ledgerTotals.count) txns / \(ledgerTotals.cents) cents")
                        }
                    } else {
                        record(.phantom, "user \(user) merchant \(merchant)", "graph \(count) PAID / \(cents) cents, ledger none")
                    }
                }
                for (key, totals) in expected.sorted(by: { $0.key < $1.key }) {
                    record(.lost, "pair \(key)", "ledger \(totals.count) txns / \(totals.cents) cents, graph no PAID edge")
                }
                low = high
            }
            return .invariant(
                place, source: source, expected: pairs, scanned: scanned, counts: counts, anomalies: anomalies,
                since: started)
        } catch {
            return .undecided(place, source: source, error: error, since: started)
        }
    }
}

struct GraphLedgerError: Error, CustomStringConvertible {
    var reason: String
    var description: String { "graph-ledger invariant: \(reason)" }
}
