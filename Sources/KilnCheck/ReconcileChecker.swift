import Foundation
import KilnBackend
import KilnData

/// Reconciles one place of one store against the oracle: every copy the scanner delivers is compared field by
/// field with the generator's row for its txn_id, and the copies are matched against what the history says was
/// written. One streaming pass; memory is two bits per dataset row plus the kept anomalies.
///
/// Rules (ARCHITECTURE.md, Outcomes): an `ok` row must be present exactly once with equal fields (else lost /
/// duplicated / corrupted); an `info` row may be present once or absent; a row whose write failed, a row never
/// written and a txn_id outside the dataset must be absent (else phantom). Not thread-safe; one per place.
public final class ReconcileChecker {
    public let written: WrittenRows
    public let dataset: Dataset
    private var seen: RowBitmap
    private var seenTwice: RowBitmap
    private var counts: [Anomaly.Kind: Int64] = [:]
    private var kept: [Anomaly.Kind: [Anomaly]] = [:]
    private(set) var scanned: Int64 = 0
    private var indeterminatePresent: Int64 = 0
    /// Per log partition: copies seen and the lowest/highest offset (for the contiguity invariant).
    private var partitions: [Int32: (count: Int64, low: Int64, high: Int64)] = [:]

    public init(written: WrittenRows, dataset: Dataset) {
        self.written = written
        self.dataset = dataset
        seen = RowBitmap(count: dataset.rows)
        seenTwice = RowBitmap(count: dataset.rows)
    }

    private func record(_ kind: Anomaly.Kind, _ txnID: Int64, _ detail: @autoclosure () -> String) {
        counts[kind, default: 0] += 1
        if kept[kind, default: []].count < PlaceResult.keptPerKind {
            kept[kind, default: []].append(Anomaly(kind: kind, txnID: txnID, detail: detail()))
        }
    }

    private static func location(_ row: StoredRow) -> String {
        var parts: [String] = []
        if let key = row.key { parts.append("key \(key)") }
        if let partition = row.partition { parts.append("partition \(partition)") }
        if let offset = row.offset { parts.append("offset \(offset)") }
        return parts.joined(separator: " ")
    }

    /// Checks one stored copy.
    public func add(_ row: StoredRow) {
        scanned += 1
        if let partition = row.partition, let offset = row.offset {
            let seen = partitions[partition] ?? (0, offset, offset)
            partitions[partition] = (seen.count + 1, min(seen.low, offset), max(seen.high, offset))
        }
        let index = row.txnID - 1
        guard index >= 0, index < dataset.rows else {
            record(.phantom, row.txnID, "txn_id not in the dataset (\(dataset.rows) rows) \(Self.location(row))")
            return
        }
        if seen.contains(index) {
            if !seenTwice.contains(index) { seenTwice.insert(index) }
            record(.duplicated, row.txnID, "another copy \(Self.location(row))")
            return
        }
        seen.insert(index)
        if written.ok.contains(index) {
            // expected
        } else if written.info.contains(index) {
            indeterminatePresent += 1
        } else if written.failed.contains(index) {
            record(.phantom, row.txnID, "present although its write failed \(Self.location(row))")
            return
        } else {
            record(.phantom, row.txnID, "present but never written in this run \(Self.location(row))")
            return
        }
        let differences = Self.differences(row, dataset.transaction(index), dataset)
        if !differences.isEmpty {
            record(.corrupted, row.txnID, differences.joined(separator: "; ") + " " + Self.location(row))
        }
    }

    /// The fields of `stored` that differ from `expected`, as `field: stored X, expected Y`.
    public static func differences(_ stored: StoredRow, _ expected: Transaction, _ dataset: Dataset) -> [String] {
        var result: [String] = []
        func check<T: Equatable>(_ name: String, _ value: T?, _ wanted: T) {
            if let value, value != wanted { result.append("\(name): stored \(value), expected \(wanted)") }
        }
        check("user_id", stored.userID, expected.userID)
        check("merchant_id", stored.merchantID, expected.merchantID)
        check("device_id", stored.deviceID, expected.deviceID)
        check("location_id", stored.locationID, expected.locationID)
        check("amount_cents", stored.amountCents, expected.amountCents)
        check("ts_millis", stored.timestampMillis, expected.timestampMillis)
        check("currency", stored.currency, dataset.currencyCodes[Int(expected.currency)])
        check("channel", stored.channel, dataset.channelNames[Int(expected.channel)])
        check("status", stored.status, expected.declined ? "declined" : "approved")
        check("fraud_score_millis", stored.fraudScoreMillis, Int64(expected.fraudScoreMillis))
        check("is_fraud", stored.isFraud, expected.isFraud)
        check("ring_id", stored.ringID, Int64(expected.ringID))
        return result
    }

    /// Ends the pass: ok rows never seen are lost; a partition whose offsets do not run low...high without holes
    /// has a gap (messages missing from the log, whatever the history says).
    public func finish(source: String, seconds: Double) -> PlaceResult {
        for (partition, seen) in partitions.sorted(by: { $0.key < $1.key }) where seen.high - seen.low + 1 != seen.count {
            counts[.gap, default: 0] += 1
            kept[.gap, default: []].append(
                Anomaly(
                    kind: .gap, txnID: 0, key: "partition \(partition)",
                    detail: "\(seen.count) messages at offsets \(seen.low)...\(seen.high): \(seen.high - seen.low + 1 - seen.count) missing"))
        }
        var lost: [Anomaly] = []
        var lostCount: Int64 = 0
        written.ok.forEach { index in
            if !seen.contains(index) {
                lostCount += 1
                if lost.count < PlaceResult.keptPerKind {
                    lost.append(Anomaly(kind: .lost, txnID: index + 1, detail: "acknowledged ok, absent"))
                }
            }
        }
        if lostCount > 0 {
            counts[.lost] = lostCount
            kept[.lost] = lost
        }
        let anomalies = Anomaly.Kind.allCases.flatMap { kept[$0] ?? [] }
        return PlaceResult(
            place: written.place.id, source: source, validity: counts.isEmpty ? .valid : .invalid,
            expected: written.ok.population, indeterminate: written.info.population,
            failedWrites: written.failed.population, scanned: scanned, indeterminatePresent: indeterminatePresent,
            counts: Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) }), anomalies: anomalies,
            error: nil, seconds: seconds)
    }

    /// A place whose scan failed: unknown, with the error.
    public static func unknown(_ written: WrittenRows, source: String, error: String, seconds: Double) -> PlaceResult {
        PlaceResult(
            place: written.place.id, source: source, validity: .unknown, expected: written.ok.population,
            indeterminate: written.info.population, failedWrites: written.failed.population, scanned: 0,
            indeterminatePresent: 0, counts: [:], anomalies: [], error: error, seconds: seconds)
    }
}
