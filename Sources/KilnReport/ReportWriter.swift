import Foundation
import KilnCheck
import KilnCore

/// One output file of a run directory, written the way k6's outputs are: `start` with what is known before
/// the samples, `add` per batch of per-second samples (in timeline order), `finish` with the result. Writers are
/// values owned by one caller (not shared across threads); `finish` returns the file's bytes and never writes.
public protocol ReportWriter {
    /// The file name inside the run directory, e.g. `report.html`.
    var fileName: String { get }
    mutating func start(_ run: ReportContext)
    mutating func add(_ samples: [TimelineSample])
    func finish(_ result: ReportResult) -> Data
}

/// What a writer knows before the samples: the run's identity, report and check results.
public struct ReportContext: Sendable {
    public var run: RunData
    /// The comparison against a baseline, when one was given.
    public var comparison: ComparisonReport?

    public init(run: RunData, comparison: ComparisonReport? = nil) {
        self.run = run
        self.comparison = comparison
    }
}

/// The run's combined verdict: thresholds (report.json), checkers (check.json), drills and completeness.
public struct ReportResult: Sendable, Equatable {
    /// `passed`, `anomaly`, `thresholds-failed`, `not-checked`, `unknown`, `partial`.
    public var verdict: RunVerdict
    /// The exit code the verdict maps to (`RunVerdict.exitCode`).
    public var exitCode: KilnExitCode
    /// One line per reason the verdict is not `passed`.
    public var reasons: [String]
    public var partial: Bool
    /// Why the run's required check did not run; set whenever it did not, also when a definite failure (a threshold,
    /// a drill) outranks `not-checked` as the verdict.
    public var notChecked: String? = nil

    /// The verdict as a banner shows it: `NOT CHECKED`, `PASSED`, `THRESHOLDS-FAILED`, …
    public var title: String { verdict.title }
    /// The verdict as the console prints it after `verdict:` — `passed`, `anomaly`, … and `NOT CHECKED (why)`.
    public var consoleVerdict: String {
        guard verdict == .notChecked else { return verdict.rawValue }
        return "NOT CHECKED" + (notChecked.map { " (\($0))" } ?? "")
    }

    /// The verdict of a run directory: its load, thresholds, drills, faults and check judged by `RunResults`.
    public static func of(_ run: RunData) -> ReportResult {
        var reasons: [String] = []
        let notChecked = run.notCheckedReason
        if let notChecked { reasons.append("NOT CHECKED: \(notChecked)") }
        let failedThresholds = (run.report?.phases ?? []).flatMap(\.thresholds).filter { !$0.passed }
        for verdict in failedThresholds {
            reasons.append("threshold failed: \(verdict.phase) \(verdict.scope): \(verdict.expression) (observed \(verdict.observedText))")
        }
        let places = run.check?.places ?? []
        for place in places where place.validity == .invalid {
            reasons.append("anomaly in \(place.place): \(CheckSummary.counts(place))")
        }
        for place in places where place.validity == .unknown {
            reasons.append("checker unknown for \(place.place): \(place.error ?? "could not decide")")
        }
        let drills = run.report?.drills ?? []
        for drill in drills where drill.verdict != .passed {
            reasons.append("drill \(drill.name) \(drill.verdict.rawValue)\(drill.reason.map { ": \($0)" } ?? "")")
        }
        for fault in run.report?.faults ?? [] where !fault.ranHere {
            reasons.append(
                "fault \(fault.name) (\(fault.kind) on \(fault.target)) not run here: planned only, run by shard "
                    + "\(fault.runByShard.map(String.init) ?? "?") (judged on the merged run)")
        }
        for fault in run.report?.faults ?? [] where fault.ranHere && fault.verified != .yes {
            reasons.append("fault \(fault.name) (\(fault.kind) on \(fault.target)) verified: \(fault.verified.rawValue)")
        }
        if let reason = run.partialReason { reasons.append("partial: \(reason)") }
        let results = RunResults(
            check: places.isEmpty ? nil : Validity.worst(places.map(\.validity)),
            thresholdsFailed: !failedThresholds.isEmpty, drills: drills.map(\.verdict), notChecked: notChecked != nil,
            partial: run.isPartial)
        return ReportResult(
            verdict: results.verdict, exitCode: results.exitCode, reasons: reasons, partial: run.isPartial,
            notChecked: notChecked)
    }
}

/// The writers `kiln report` and `kiln run` use, by name (one line per writer).
public enum ReportWriters {
    public static let all: [(name: String, make: @Sendable () -> any ReportWriter)] = [
        ("html", { HTMLReportWriter() }),
        ("markdown", { MarkdownSummaryWriter() }),
        ("junit", { JUnitWriter() }),
    ]

    /// Runs every writer over `run` and writes its file into the run directory (each atomically: a reader never
    /// sees half a file). Returns the files written.
    @discardableResult
    public static func writeAll(_ run: RunData, comparison: ComparisonReport? = nil) throws -> [URL] {
        let context = ReportContext(run: run, comparison: comparison)
        let result = ReportResult.of(run)
        var written: [URL] = []
        for entry in all {
            var writer = entry.make()
            writer.start(context)
            var index = 0
            // Samples go in per-second batches, in file order, as a live output would receive them.
            while index < run.timeline.count {
                var end = index + 1
                while end < run.timeline.count, run.timeline[end].phase == run.timeline[index].phase,
                    run.timeline[end].second == run.timeline[index].second
                {
                    end += 1
                }
                writer.add(Array(run.timeline[index..<end]))
                index = end
            }
            let file = run.directory.appendingPathComponent(writer.fileName)
            try writer.finish(result).write(to: file, options: .atomic)
            written.append(file)
        }
        return written
    }
}

/// Number formatting shared by the writers (fixed, locale-independent).
enum Format {
    static func number(_ value: Double?, digits: Int = 3) -> String {
        guard let value, value.isFinite else { return "-" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        if abs(value) >= 1000 { return String(format: "%.0f", value) }
        return String(format: "%.\(digits)g", value)
    }

    static func ms(_ value: Double?) -> String {
        guard let value else { return "-" }
        return value >= 100 ? String(format: "%.0f", value) : String(format: "%.2f", value)
    }

    static func percent(_ value: Double?) -> String {
        guard let value, value.isFinite else { return "-" }
        return String(format: "%+.1f%%", value * 100)
    }

    static func date(_ millis: Int64?) -> String {
        guard let millis else { return "-" }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }
}

enum CheckSummary {
    /// e.g. `lost 3, corrupted 1` (kinds with a count only).
    static func counts(_ place: PlaceResult) -> String {
        if place.transactional != nil {
            // Elle's names: every kind found, forbidden by the model or not.
            let found = place.counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            return found.isEmpty ? "no anomalies" : found.joined(separator: ", ")
        }
        let parts = Anomaly.Kind.allCases.compactMap { kind -> String? in
            guard let count = place.counts[kind.rawValue], count > 0 else { return nil }
            return "\(kind.rawValue) \(count)"
        }
        return parts.isEmpty ? "no anomalies" : parts.joined(separator: ", ")
    }

    /// The first few anomaly keys of a place, e.g. `lost txn_id 17; corrupted txn_id 9 (amount …)`.
    static func keys(_ place: PlaceResult, limit: Int) -> [String] {
        place.anomalies.prefix(limit).map { anomaly in
            "\(anomaly.kind.rawValue) \(anomaly.key ?? "txn_id \(anomaly.txnID)"): \(anomaly.detail)"
        }
    }
}
