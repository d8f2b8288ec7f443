import Foundation
import KilnHTTP
import KilnPostgres
import KilnScenario
import KilnStores

/// Invariant: ClickHouse's per-minute aggregate (`<ns>_merchant_minute`, what the platform's dashboards read)
/// equals PostgreSQL's ledger summed per minute — count and exact cents for every minute. Both sides are
/// aggregated inside their server (one GROUP BY each), so this costs two scans but moves only one row per minute.
/// A minute whose numbers differ is reported `corrupted` with both values; a minute only one side has is `lost`
/// (missing from ClickHouse) or `phantom` (missing from PostgreSQL). Blocking; one call per check.
public enum MinuteTotalsInvariant {
    public static let place = "invariant.minute-totals"

    struct Totals: Equatable {
        var count: Int64
        var cents: Int64
    }

    public static func check(context: ClientContext) -> PlaceResult {
        let started = Date()
        let source = "postgres \(context.namespace)_transactions per minute = clickhouse \(context.namespace)_merchant_minute"
        do {
            let ledger = try postgresMinutes(context)
            let aggregate = try clickhouseMinutes(context)
            var counts: [String: Int64] = [:]
            var anomalies: [Anomaly] = []
            func record(_ kind: Anomaly.Kind, _ minute: Int64, _ detail: String) {
                counts[kind.rawValue, default: 0] += 1
                if anomalies.filter({ $0.kind == kind }).count < PlaceResult.keptPerKind {
                    let text = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(minute) / 1000))
                    anomalies.append(Anomaly(kind: kind, txnID: 0, key: "minute \(text)", detail: detail))
                }
            }
            for minute in Set(ledger.keys).union(aggregate.keys).sorted() {
                switch (ledger[minute], aggregate[minute]) {
                case let (pg?, ch?) where pg != ch:
                    record(.corrupted, minute, "postgres \(pg.count) txns / \(pg.cents) cents, clickhouse \(ch.count) / \(ch.cents)")
                case let (pg?, nil):
                    record(.lost, minute, "postgres \(pg.count) txns / \(pg.cents) cents, clickhouse has no row")
                case let (nil, ch?):
                    record(.phantom, minute, "clickhouse \(ch.count) txns / \(ch.cents) cents, postgres has none")
                default: break
                }
            }
            return .invariant(
                place, source: source, expected: Int64(ledger.count), scanned: Int64(aggregate.count), counts: counts,
                anomalies: anomalies, since: started)
        } catch {
            return .undecided(place, source: source, error: error, since: started)
        }
    }

    static func postgresMinutes(_ context: ClientContext) throws -> [Int64: Totals] {
        let connection = try PostgresScanner.connect(context)
        defer { connection.close() }
        let table = try PostgresScanner.tableName(context.namespace)
        let result = try connection.execute(
            "SELECT (extract(epoch FROM date_trunc('minute', ts)) * 1000)::bigint, count(*), (sum(amount) * 100)::bigint "
                + "FROM \(table) GROUP BY 1")
        var minutes: [Int64: Totals] = [:]
        minutes.reserveCapacity(result.rowCount)
        for row in 0..<result.rowCount {
            guard let minute = result.value(row: row, column: 0).flatMap({ Int64($0) }),
                let count = result.value(row: row, column: 1).flatMap({ Int64($0) }),
                let cents = result.value(row: row, column: 2).flatMap({ Int64($0) })
            else { continue }
            minutes[minute] = Totals(count: count, cents: cents)
        }
        return minutes
    }

    static func clickhouseMinutes(_ context: ClientContext) throws -> [Int64: Totals] {
        let ts = context.stack.timeseries
        let http = try HTTPClient(
            timeoutSeconds: 600, connectTimeoutSeconds: 5, user: ts.user,
            password: StackDefinition.secret(ts.passwordEnvironmentVariable, in: context.environment),
            caFile: ts.caFile(in: context.environment))
        let view = "\(ts.database).\(context.namespace)_merchant_minute"
        let query = "SELECT toInt64(toUInt32(minute)) * 1000, toInt64(sum(txns)), toInt64(sum(amount) * 100) "
            + "FROM \(view) GROUP BY minute FORMAT TabSeparated"
        let text = try http.post(ts.baseURL, body: Array(query.utf8)).expectOK().text
        var minutes: [Int64: Totals] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: "\t")
            guard fields.count == 3, let minute = Int64(fields[0]), let count = Int64(fields[1]),
                let cents = Int64(fields[2])
            else { continue }
            minutes[minute] = Totals(count: count, cents: cents)
        }
        return minutes
    }
}
