import Foundation
import KilnCore
import KilnData
import KilnPipeline
import KilnPostgres
import KilnScenario
import KilnStores

/// What each sink of the reference pipeline must hold: the transactions Kafka acknowledged (`ok`: exactly once;
/// `info`: at most once) that the ledger posts (approved), and nothing else — a declined transaction or a failed
/// produce must be absent everywhere downstream.
public enum PipelinePlaces {
    /// The places the sinks fill, in `RowPlace` terms.
    /// Derived from the backends' sinks (`SinkDriver.fills`); empty for a name no backend provides.
    public static func places(of sink: PipelineSpec.Sink) -> [RowPlace] {
        Pipeline.driver(for: sink)?.fills ?? []
    }

    /// `written` with every sink place replaced by what the Kafka place implies for it.
    public static func derive(
        _ written: [String: WrittenRows], sinks: [PipelineSpec.Sink], dataset: Dataset
    ) -> [String: WrittenRows] {
        guard let kafka = written[RowPlace.kafkaMessages.id] else { return written }
        var expected = WrittenRows(place: kafka.place, datasetRows: dataset.rows)
        kafka.ok.forEach { row in
            if dataset.transaction(row).posted { expected.ok.insert(row..<(row + 1)) } else {
                expected.failed.insert(row..<(row + 1))
            }
        }
        kafka.info.forEach { row in
            if dataset.transaction(row).posted { expected.info.insert(row..<(row + 1)) } else {
                expected.failed.insert(row..<(row + 1))
            }
        }
        kafka.failed.forEach { expected.failed.insert($0..<($0 + 1)) }
        var result = written
        for sink in sinks {
            for place in places(of: sink) {
                var rows = expected
                rows.place = place
                result[place.id] = rows
            }
        }
        return result
    }
}

/// Staleness of each pipeline path (Kafka → sink), from the workers' measurements in `pipeline.json`: the time
/// from a message's Kafka timestamp to the commit of its batch in the sink, p50/p99/max against the path's SLO.
/// Invalid when p99 exceeds the SLO or the sink never caught up with the topic.
public enum StalenessCheck {
    public static func results(_ reports: [SinkReport]) -> [PlaceResult] {
        reports.map { report in
            let s = report.staleness
            func ms(_ value: Double?) -> String { value.map { String(format: "%.0f ms", $0) } ?? "-" }
            var anomalies: [Anomaly] = []
            var counts: [String: Int64] = [:]
            if !report.converged {
                counts["lost", default: 0] += 1
                anomalies.append(
                    Anomaly(kind: .lost, txnID: 0, key: "kafka→\(report.sink)",
                        detail: "the sink had not caught up with the topic when the run ended"))
            }
            if let p99 = s.p99, p99 > report.sloMs {
                counts["stale", default: 0] += 1
                anomalies.append(
                    Anomaly(kind: .stale, txnID: 0, key: "kafka→\(report.sink)",
                        detail: "p99 \(ms(s.p99)) over the SLO of \(ms(report.sloMs)) (p50 \(ms(s.p50)), max \(ms(s.max)))"))
            }
            return .invariant(
                "staleness.\(report.sink)",
                source: "kafka→\(report.sink): p50 \(ms(s.p50)) p99 \(ms(s.p99)) max \(ms(s.max)) (SLO \(ms(report.sloMs)))",
                expected: s.count, scanned: s.count, counts: counts, anomalies: anomalies, since: Date())
        }
    }
}

/// Invariant of the ledger: every user's balance (`<ns>_balances`) equals the sum of its posted transactions in
/// `<ns>_transactions` (count too), and so the sum of balances equals the sum of amounts. Mismatched users are
/// `corrupted`, a balance without transactions `phantom`, transactions without a balance `lost`; both sides are
/// aggregated in PostgreSQL (one GROUP BY).
public enum BalanceInvariant {
    public static let place = "invariant.balances"

    public static func check(context: ClientContext) -> PlaceResult {
        let started = Date()
        let ns = context.namespace
        let source = "postgres \(ns)_balances = sum(amount) of \(ns)_transactions per user"
        do {
            let connection = try PostgresScanner.connect(context)
            defer { connection.close() }
            let mismatches = """
                FROM \(ns)_balances b FULL OUTER JOIN
                  (SELECT user_id, sum(amount) AS amount, count(*) AS txns FROM \(ns)_transactions GROUP BY user_id) t
                  ON b.user_id = t.user_id
                WHERE b.balance IS DISTINCT FROM t.amount OR b.txns IS DISTINCT FROM t.txns
                """
            let totals = try connection.execute(
                "SELECT count(*) FILTER (WHERE b.user_id IS NULL), count(*) FILTER (WHERE t.user_id IS NULL), "
                    + "count(*) FILTER (WHERE b.user_id IS NOT NULL AND t.user_id IS NOT NULL) \(mismatches)")
            let result = try connection.execute(
                "SELECT coalesce(b.user_id, t.user_id), b.balance, b.txns, t.amount, t.txns \(mismatches) "
                    + "ORDER BY 1 LIMIT \(PlaceResult.keptPerKind)")
            let users = try connection.execute("SELECT count(*) FROM \(ns)_balances")
            var counts: [String: Int64] = [:]
            for (column, kind) in [(0, Anomaly.Kind.lost), (1, .phantom), (2, .corrupted)] {
                let count = totals.value(row: 0, column: column).flatMap { Int64($0) } ?? 0
                if count > 0 { counts[kind.rawValue] = count }
            }
            var anomalies: [Anomaly] = []
            for row in 0..<result.rowCount {
                let user = result.value(row: row, column: 0) ?? "?"
                let balance = result.value(row: row, column: 1)
                let amount = result.value(row: row, column: 3)
                let kind: Anomaly.Kind = balance == nil ? .lost : (amount == nil ? .phantom : .corrupted)
                anomalies.append(
                    Anomaly(kind: kind, txnID: 0, key: "user \(user)",
                        detail: "balance \(balance ?? "none") over \(result.value(row: row, column: 2) ?? "0") txns; "
                            + "ledger \(amount ?? "none") over \(result.value(row: row, column: 4) ?? "0") txns"))
            }
            let scanned = users.rowCount > 0 ? users.value(row: 0, column: 0).flatMap { Int64($0) } ?? 0 : 0
            return .invariant(
                place, source: source, expected: scanned, scanned: scanned, counts: counts, anomalies: anomalies,
                since: started)
        } catch {
            return .undecided(place, source: source, error: error, since: started)
        }
    }
}
