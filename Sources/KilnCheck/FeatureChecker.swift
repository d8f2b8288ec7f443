import Foundation
import KilnBackend
import KilnData

/// Checks per-user aggregates (Redis feature hashes and fraud scores) against the oracle: for each user, the
/// rows applied to it are the history's `ok` rows of that user (exact) plus its `info` rows (each may or may not
/// have been applied), so `txn_count`, `amount_cents_total` and the score must lie in the range those allow — and
/// equal the `ok` sum when there is no `info` row. `last_txn` must be one of the user's applied rows, and
/// `last_amount_cents`, `last_merchant`, `last_ts` must be that row's. A user with applied rows but no hash is
/// lost; a hash for a user with no applied row is phantom. Not thread-safe.
public final class FeatureChecker {
    struct Bounds {
        var okCount: Int64 = 0
        var infoCount: Int64 = 0
        var okAmount: Int64 = 0
        var infoAmount: Int64 = 0
        var okScore: Int64 = 0
        var infoScore: Int64 = 0
        var scoreRows: Int64 = 0
        var seen = false
    }

    let dataset: Dataset
    let features: WrittenRows
    let scores: WrittenRows
    private var users: [Int64: Bounds] = [:]
    private var counts: [Anomaly.Kind: Int64] = [:]
    private var kept: [Anomaly] = []
    private(set) var scanned: Int64 = 0

    public init(features: WrittenRows, scores: WrittenRows, dataset: Dataset) {
        self.dataset = dataset
        self.features = features
        self.scores = scores
        features.ok.forEach { index in
            let row = dataset.transaction(index)
            users[row.userID, default: Bounds()].okCount += 1
            users[row.userID]!.okAmount += row.amountCents
        }
        features.info.forEach { index in
            let row = dataset.transaction(index)
            users[row.userID, default: Bounds()].infoCount += 1
            users[row.userID]!.infoAmount += row.amountCents
        }
        scores.ok.forEach { index in
            let row = dataset.transaction(index)
            users[row.userID, default: Bounds()].okScore += Int64(row.fraudScoreMillis)
            users[row.userID]!.scoreRows += 1
        }
        scores.info.forEach { index in
            let row = dataset.transaction(index)
            users[row.userID, default: Bounds()].infoScore += Int64(row.fraudScoreMillis)
            users[row.userID]!.scoreRows += 1
        }
    }

    private func record(_ kind: Anomaly.Kind, user: Int64, _ detail: String) {
        counts[kind, default: 0] += 1
        if kept.filter({ $0.kind == kind }).count < PlaceResult.keptPerKind {
            kept.append(Anomaly(kind: kind, txnID: 0, key: "user \(user)", detail: detail))
        }
    }

    public func add(_ stored: StoredUserFeatures) {
        scanned += 1
        guard var bounds = users[stored.userID] else {
            record(.phantom, user: stored.userID, "features for a user no applied row belongs to")
            return
        }
        if bounds.seen {
            record(.duplicated, user: stored.userID, "two feature entries for one user")
            return
        }
        bounds.seen = true
        users[stored.userID] = bounds
        var problems: [String] = []
        func within(_ name: String, _ text: String?, _ low: Int64, _ high: Int64) {
            guard let text else {
                if high > 0 { problems.append("\(name): missing, expected \(low == high ? "\(low)" : "\(low)...\(high)")") }
                return
            }
            guard let value = Int64(text) else { problems.append("\(name): '\(text)' is not an integer"); return }
            if value < low || value > high {
                problems.append("\(name): stored \(value), expected \(low == high ? "\(low)" : "\(low)...\(high)")")
            }
        }
        let hasFeatures = bounds.okCount + bounds.infoCount > 0
        if hasFeatures || !stored.fields.isEmpty {
            within("txn_count", stored.fields["txn_count"], bounds.okCount, bounds.okCount + bounds.infoCount)
            within("amount_cents_total", stored.fields["amount_cents_total"], bounds.okAmount, bounds.okAmount + bounds.infoAmount)
            if let lastText = stored.fields["last_txn"] {
                if let last = Int64(lastText), last >= 1, last <= dataset.rows,
                    features.ok.contains(last - 1) || features.info.contains(last - 1),
                    dataset.transaction(last - 1).userID == stored.userID
                {
                    let row = dataset.transaction(last - 1)
                    for (name, wanted) in [
                        ("last_amount_cents", row.amountCents), ("last_merchant", row.merchantID),
                        ("last_ts", row.timestampMillis),
                    ] where stored.fields[name] != String(wanted) {
                        problems.append("\(name): stored \(stored.fields[name] ?? "nothing"), expected \(wanted) (of last_txn \(last))")
                    }
                } else {
                    problems.append("last_txn: \(lastText) is not a row applied to this user")
                }
            } else if hasFeatures {
                problems.append("last_txn: missing")
            }
        }
        if bounds.scoreRows > 0 || stored.score != nil {
            let low = Double(bounds.okScore)
            let high = Double(bounds.okScore + bounds.infoScore)
            if let score = stored.score {
                if score < low || score > high {
                    problems.append("score: stored \(score), expected \(low == high ? "\(Int64(low))" : "\(Int64(low))...\(Int64(high))")")
                }
            } else if bounds.okScore > 0 {
                problems.append("score: missing, expected \(Int64(low))")
            }
        }
        if !problems.isEmpty { record(.corrupted, user: stored.userID, problems.joined(separator: "; ")) }
    }

    public func finish(source: String, seconds: Double) -> PlaceResult {
        for (user, bounds) in users.sorted(by: { $0.key < $1.key }) where !bounds.seen && bounds.okCount + bounds.okScore > 0 {
            record(.lost, user: user, "\(bounds.okCount) rows acknowledged ok, no features stored")
        }
        return PlaceResult(
            place: "redis.features", source: source, validity: counts.isEmpty ? .valid : .invalid,
            expected: Int64(users.values.filter { $0.okCount + $0.okScore > 0 }.count),
            indeterminate: Int64(users.values.filter { $0.infoCount > 0 }.count), failedWrites: features.failed.population,
            scanned: scanned, indeterminatePresent: 0,
            counts: Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) }),
            anomalies: Anomaly.Kind.allCases.flatMap { kind in kept.filter { $0.kind == kind } }, error: nil,
            seconds: seconds)
    }
}
