import Foundation
import KilnScenario

/// What the black-box staleness probes measured in one run (`StalenessProber`), written by `kiln run` as
/// `blackbox-staleness.json` in the run directory (snake_case keys) and read by `kiln check`.
public struct BlackBoxStalenessReport: Codable, Sendable {
    public static let fileName = "blackbox-staleness.json"
    public static let schemaVersion = "kiln.blackbox-staleness/1"

    /// One path `entry→place`. Latencies are ms from the entry's ack to the first lookup answer showing the txn.
    public struct Path: Codable, Sendable {
        public var place: String
        /// `kafka.messages→postgres.payments.ledger`.
        public var path: String
        /// The lookup used (`SELECT … WHERE "id" IN (…)`); nil when it never opened or the place has none.
        public var probe: String?
        /// Why the place has no per-transaction probe (it keeps no txn_id); nil when it has one.
        public var noProbe: String?
        public var sloMs: Double
        /// Sampled transactions this place was asked about.
        public var probes: Int64
        /// Of those, seen within the timeout, and the staleness of those (nil when none was seen).
        public var visible: Int64
        public var p50Ms: Double?
        public var p99Ms: Double?
        public var maxMs: Double?
        /// Not visible by the timeout although the place answered lookups; the first 100 txn_ids.
        public var neverVisible: Int64
        public var neverVisibleTxnIds: [Int64]
        /// Timed out while the place could not be asked (store down, table not there): undecided, not lost.
        public var unprobed: Int64
        /// Still pending when the run was interrupted.
        public var abandoned: Int64
        public var lookupErrors: Int64
        public var lastError: String?
    }

    public var schema = BlackBoxStalenessReport.schemaVersion
    /// The entry's place (`kafka.messages`).
    public var entry: String
    public var sample: Double
    public var pollMs: Double
    public var timeoutMs: Double
    /// Acknowledged entry writes sampled.
    public var sampled: Int64
    public var paths: [Path]

    public init(entry: String, sample: Double, pollMs: Double, timeoutMs: Double, sampled: Int64, paths: [Path]) {
        self.entry = entry
        self.sample = sample
        self.pollMs = pollMs
        self.timeoutMs = timeoutMs
        self.sampled = sampled
        self.paths = paths
    }

    public func write(to directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: directory.appendingPathComponent(Self.fileName), options: .atomic)
    }

    /// The run's report; nil when the run wrote none (no `staleness:` block, or a run before this file existed).
    /// - Throws: when the file exists but is not this report.
    public static func load(from directory: URL) throws -> BlackBoxStalenessReport? {
        let file = directory.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: file.path) else { return nil }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(BlackBoxStalenessReport.self, from: Data(contentsOf: file))
    }
}

/// Check results of the black-box staleness probes, shaped like the pipeline's `StalenessCheck`: one
/// `staleness.<place id>` result per path, invalid with a `stale` anomaly when p99 exceeds the path's SLO and one
/// `lost` anomaly per sampled txn_id never visible within the timeout (the ack said `ok`, the place never showed
/// it). A place that could not be asked for any of its probes is `unknown`; a place without a per-transaction
/// probe is valid and says so in its source.
public enum BlackBoxStalenessCheck {
    public static func results(_ report: BlackBoxStalenessReport) -> [PlaceResult] {
        report.paths.map { result(of: $0, timeoutMs: report.timeoutMs) }
    }

    static func result(of path: BlackBoxStalenessReport.Path, timeoutMs: Double) -> PlaceResult {
        let started = Date()
        let place = "staleness.\(path.place)"
        func ms(_ value: Double?) -> String { value.map { String(format: "%.0f ms", $0) } ?? "-" }
        if let reason = path.noProbe {
            return .invariant(
                place, source: "\(path.path): \(reason)", expected: 0, scanned: 0, counts: [:], anomalies: [],
                since: started)
        }
        var source =
            "\(path.path): p50 \(ms(path.p50Ms)) p99 \(ms(path.p99Ms)) max \(ms(path.maxMs)) (SLO \(ms(path.sloMs))); "
            + "\(path.visible) of \(path.probes) sampled txns seen"
        if path.neverVisible > 0 { source += ", \(path.neverVisible) never within \(ms(timeoutMs))" }
        if path.unprobed > 0 { source += ", \(path.unprobed) unprobed (place not answering)" }
        if path.abandoned > 0 { source += ", \(path.abandoned) abandoned (run interrupted)" }
        if let probe = path.probe { source += "; probe: \(probe)" }
        if path.visible == 0, path.neverVisible == 0, path.unprobed > 0 {
            struct Unprobed: Error, CustomStringConvertible { var description: String }
            return .undecided(
                place, source: source,
                error: Unprobed(
                    description: "no lookup of the place answered (\(path.lookupErrors) errors; last: "
                        + "\(path.lastError ?? "none"))"),
                since: started)
        }
        var counts: [String: Int64] = [:]
        var anomalies: [Anomaly] = []
        if path.neverVisible > 0 {
            counts[Anomaly.Kind.lost.rawValue] = path.neverVisible
            for txnID in path.neverVisibleTxnIds {
                anomalies.append(
                    Anomaly(
                        kind: .lost, txnID: txnID, key: nil,
                        detail: "acknowledged ok by the entry, not visible in \(path.place) within \(ms(timeoutMs))"))
            }
        }
        if let p99 = path.p99Ms, p99 > path.sloMs {
            counts[Anomaly.Kind.stale.rawValue] = 1
            anomalies.append(
                Anomaly(
                    kind: .stale, txnID: 0, key: path.path,
                    detail: "p99 \(ms(p99)) over the SLO of \(ms(path.sloMs)) "
                        + "(p50 \(ms(path.p50Ms)), max \(ms(path.maxMs)))"))
        }
        return .invariant(
            place, source: source, expected: path.probes, scanned: path.visible, counts: counts, anomalies: anomalies,
            since: started)
    }
}
