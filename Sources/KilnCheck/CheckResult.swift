import Foundation
import KilnCore

public struct Anomaly: Sendable, Codable, Hashable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// Acknowledged `ok` but absent.
        case lost
        /// Present more than once.
        case duplicated
        /// Present, but a field differs from the oracle's row.
        case corrupted
        /// Present, but never acknowledged: never written, its write failed, or not a transaction of the dataset.
        case phantom
        /// A log's offsets are not contiguous (Kafka: a partition's messages do not run start...end without holes).
        case gap
        /// Visible downstream later than the path's staleness SLO allows.
        case stale
        /// Two servers of one store acknowledged writes in the same window (split-brain; `DualPrimaryAnalysis`).
        case dualPrimary = "dual-primary"
    }

    public var kind: Kind
    /// The transaction, or 0 for an anomaly of a per-user aggregate (then `key` names it).
    public var txnID: Int64
    /// The stored key for aggregates, e.g. `user 42`; nil for row anomalies.
    public var key: String? = nil
    /// What differs or where the copy is, e.g. `amount_cents: stored 1234, expected 1243` or `partition 2 offset 17`.
    public var detail: String

    /// `txnId` so that snake-case JSON (`txn_id`) round-trips.
    enum CodingKeys: String, CodingKey {
        case kind, txnID = "txnId", key, detail
    }
}

/// The reconcile result of one place (a store's rows, messages, edges or keys).
public struct PlaceResult: Sendable, Codable {
    public static let keptPerKind = 100

    public var place: String
    public var source: String
    public var validity: Validity
    /// Rows the history says were acknowledged `ok` / ended `info` / failed.
    public var expected: Int64
    public var indeterminate: Int64
    public var failedWrites: Int64
    /// Copies the scan delivered, and of the `info` rows how many turned out present.
    public var scanned: Int64
    public var indeterminatePresent: Int64
    /// Anomaly counts by kind, and the first `keptPerKind` of each kind (in scan order; lost in txn order).
    public var counts: [String: Int64]
    public var anomalies: [Anomaly]
    /// Why the result is `unknown` (the scan's error), nil otherwise.
    public var error: String?
    public var seconds: Double
    /// A transactional checker's findings (`elle.list-append`): the model judged and each anomaly's witness. Its
    /// anomalies are counted in `counts` by Elle's names (`G-single`, `lost-update`…), not in `anomalies`.
    public var transactional: TransactionalFindings? = nil

    public var anomalyCount: Int64 { counts.values.reduce(0, +) }
}

/// Everything `kiln check` found, written as `check.json` in the run directory.
public struct CheckReport: Sendable, Codable {
    public static let schemaVersion = "kiln.check/1"
    public var schema = CheckReport.schemaVersion
    public var run: String
    public var datasetRows: Int64
    public var places: [PlaceResult]
    public var validity: Validity
    public var seconds: Double

    public init(run: String, datasetRows: Int64, places: [PlaceResult], validity: Validity, seconds: Double) {
        self.run = run
        self.datasetRows = datasetRows
        self.places = places
        self.validity = validity
        self.seconds = seconds
    }
}

extension CheckReport {
    /// The report with `result` appended and the overall validity recomputed (invalid beats unknown beats valid).
    public func adding(_ result: PlaceResult) -> CheckReport {
        var copy = self
        copy.places.append(result)
        copy.validity = Validity.worst(copy.places.map(\.validity))
        copy.seconds = max(copy.seconds, result.seconds)
        return copy
    }
}

extension PlaceResult {
    /// The result of an invariant (no writes of its own): valid when `counts` is empty.
    static func invariant(
        _ place: String, source: String, expected: Int64, scanned: Int64, counts: [String: Int64],
        anomalies: [Anomaly], since started: Date
    ) -> PlaceResult {
        PlaceResult(
            place: place, source: source, validity: counts.isEmpty ? .valid : .invalid, expected: expected,
            indeterminate: 0, failedWrites: 0, scanned: scanned, indeterminatePresent: 0, counts: counts,
            anomalies: anomalies, error: nil, seconds: Date().timeIntervalSince(started))
    }

    /// An invariant that could not be decided: `unknown`, never `valid` (a store did not answer, a query failed).
    static func undecided(_ place: String, source: String, error: any Error, since started: Date) -> PlaceResult {
        PlaceResult(
            place: place, source: source, validity: .unknown, expected: 0, indeterminate: 0, failedWrites: 0,
            scanned: 0, indeterminatePresent: 0, counts: [:], anomalies: [], error: "\(error)",
            seconds: Date().timeIntervalSince(started))
    }
}

extension Anomaly {
    /// For results judged outside KilnCheck (durability drills); the memberwise init stays internal.
    public static func judged(kind: Kind, txnID: Int64, key: String? = nil, detail: String) -> Anomaly {
        Anomaly(kind: kind, txnID: txnID, key: key, detail: detail)
    }
}

extension PlaceResult {
    /// For results judged outside KilnCheck (durability drills); the memberwise init stays internal.
    public static func judged(
        place: String, source: String, validity: Validity, expected: Int64, indeterminate: Int64, failedWrites: Int64,
        scanned: Int64, indeterminatePresent: Int64, counts: [String: Int64], anomalies: [Anomaly], error: String?,
        seconds: Double
    ) -> PlaceResult {
        PlaceResult(
            place: place, source: source, validity: validity, expected: expected, indeterminate: indeterminate,
            failedWrites: failedWrites, scanned: scanned, indeterminatePresent: indeterminatePresent, counts: counts,
            anomalies: anomalies, error: error, seconds: seconds)
    }
}
