import Foundation

/// Where an anomaly was found and what it was: a checker place (`clickhouse.rows`) and an anomaly class
/// (`duplicated`, or Elle's `G-single`). "Same anomaly in the same place" means the same site.
public struct AnomalySite: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var place: String
    public var kind: String
    public init(place: String, kind: String) {
        self.place = place
        self.kind = kind
    }
    public var description: String { "\(place) \(kind)" }
    public static func < (a: AnomalySite, b: AnomalySite) -> Bool { (a.place, a.kind) < (b.place, b.kind) }

    /// `PLACE:KIND`, e.g. `postgres.rows:lost`.
    public static func parse(_ text: String) -> AnomalySite? {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
        return AnomalySite(place: parts[0], kind: parts[1])
    }
}

/// What a finished run found, read from its run directory (check.json and report.json): the judgement a replay must
/// reproduce. Reads only the fields it needs, so it does not follow the report types' refactors.
public struct RunOutcome: Sendable, Equatable {
    public enum Judgement: Sendable, Equatable {
        /// check.json exists: the places were compared with the oracle.
        case checked(validity: String)
        /// No check.json (the check did not run, was skipped or the run was interrupted): nothing about anomalies
        /// can be said, and a replay judged so never counts as reproduced.
        case notChecked(reason: String)
    }

    public var judgement: Judgement
    /// Anomaly count per site (only sites with at least one).
    public var anomalies: [AnomalySite: Int64]
    /// The keys check.json kept per site (the first 100 of each kind): `txn 42` for a row, the aggregate's own key
    /// (`user 7`, `(merchant 3, minute …)`) when it has no transaction.
    public var keys: [AnomalySite: Set<String>]
    /// `phase scope: expression` of each failed threshold.
    public var failedThresholds: Set<String>
    /// Drills whose verdict is `failed`.
    public var failedDrills: Set<String>
    /// Places whose check was `unknown`.
    public var unknownPlaces: Set<String>
    public var interrupted: Bool
    public var verdict: String

    /// Failed: an anomaly, a failed threshold or a failed drill.
    public init(
        judgement: Judgement, anomalies: [AnomalySite: Int64], keys: [AnomalySite: Set<String>],
        failedThresholds: Set<String>, failedDrills: Set<String>, unknownPlaces: Set<String>, interrupted: Bool,
        verdict: String
    ) {
        self.judgement = judgement
        self.anomalies = anomalies
        self.keys = keys
        self.failedThresholds = failedThresholds
        self.failedDrills = failedDrills
        self.unknownPlaces = unknownPlaces
        self.interrupted = interrupted
        self.verdict = verdict
    }

    public var failed: Bool { !anomalies.isEmpty || !failedThresholds.isEmpty || !failedDrills.isEmpty }
    public var checked: Bool { if case .checked = judgement { true } else { false } }

    public static func read(_ runDirectory: URL) throws(BundleError) -> RunOutcome {
        let report: RecordedRun.ReportFacts
        do {
            report = try RecordedRun.readReport(runDirectory)
        } catch let error as BundleError {
            throw error
        } catch {
            throw BundleError(file: runDirectory.appendingPathComponent("report.json").path, message: "\(error)")
        }
        var outcome = RunOutcome(
            judgement: .notChecked(reason: report.notChecked ?? "no check.json: the check did not run"),
            anomalies: [:], keys: [:], failedThresholds: report.failedThresholds, failedDrills: report.failedDrills,
            unknownPlaces: [], interrupted: report.interrupted, verdict: report.verdict)
        let checkFile = runDirectory.appendingPathComponent("check.json")
        guard FileManager.default.fileExists(atPath: checkFile.path) else { return outcome }
        let check: RecordedRun.CheckFacts
        do {
            check = try RecordedRun.decoder.decode(RecordedRun.CheckFacts.self, from: Data(contentsOf: checkFile))
        } catch {
            throw BundleError(file: checkFile.path, message: "cannot read check.json: \(error)")
        }
        outcome.judgement = .checked(validity: check.validity)
        for place in check.places {
            if place.validity == "unknown" { outcome.unknownPlaces.insert(place.place) }
            for (kind, count) in place.counts where count > 0 {
                outcome.anomalies[AnomalySite(place: place.place, kind: kind), default: 0] += count
            }
            for anomaly in place.anomalies ?? [] {
                let key = anomaly.txnId != 0 ? "txn \(anomaly.txnId)" : (anomaly.key ?? "txn 0")
                outcome.keys[AnomalySite(place: place.place, kind: anomaly.kind), default: []].insert(key)
            }
        }
        return outcome
    }
}

/// Minimal readers of report.json and check.json (snake-case JSON).
public enum RecordedRun {
    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    struct ReportFile: Decodable {
        struct Threshold: Decodable {
            var phase: String
            var scope: String
            var expression: String
            var passed: Bool
        }
        struct Phase: Decodable {
            var name: String
            var startedAt: Int64
            var thresholds: [Threshold]
        }
        struct Fault: Decodable {
            var name: String
            var kind: String
            var target: String
            var startedAt: Int64?
            /// A shard's planned-only entry (another shard ran the fault): not a fault that happened here.
            var plannedOnly: Bool?
            var stoppedAt: Int64?
            var verified: String
        }
        struct Drill: Decodable {
            var name: String
            var verdict: String
        }
        var verdict: String
        var interrupted: Bool
        var phases: [Phase]
        var faults: [Fault]?
        var drills: [Drill]?
        var notChecked: String?
    }

    public struct ReportFacts: Sendable {
        public var verdict: String
        public var interrupted: Bool
        public var notChecked: String?
        public var firstPhaseStartedAt: Int64?
        public var failedThresholds: Set<String>
        public var failedDrills: Set<String>
        public var faults: [(name: String, kind: String, target: String, startedAt: Int64?, stoppedAt: Int64?, verified: String)]
    }

    struct CheckFacts: Decodable {
        struct Place: Decodable {
            struct Anomaly: Decodable {
                var kind: String
                var txnId: Int64
                var key: String?
            }
            var place: String
            var validity: String
            var counts: [String: Int64]
            var anomalies: [Anomaly]?
        }
        var validity: String
        var places: [Place]
    }

    public static func readReport(_ runDirectory: URL) throws -> ReportFacts {
        let file = runDirectory.appendingPathComponent("report.json")
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw BundleError(file: file.path, message: "missing: not a finished run directory")
        }
        let report: ReportFile
        do {
            report = try decoder.decode(ReportFile.self, from: Data(contentsOf: file))
        } catch {
            throw BundleError(file: file.path, message: "cannot read report.json: \(error)")
        }
        return ReportFacts(
            verdict: report.verdict, interrupted: report.interrupted, notChecked: report.notChecked,
            firstPhaseStartedAt: report.phases.first?.startedAt,
            failedThresholds: Set(report.phases.flatMap { $0.thresholds.filter { !$0.passed } }.map {
                "\($0.phase) \($0.scope): \($0.expression)"
            }),
            failedDrills: Set((report.drills ?? []).filter { $0.verdict == "failed" }.map(\.name)),
            faults: (report.faults ?? []).filter { $0.plannedOnly != true }.map {
                ($0.name, $0.kind, $0.target, $0.startedAt, $0.stoppedAt, $0.verified)
            })
    }
}
