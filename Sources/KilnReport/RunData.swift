import Foundation
import Histogram
import KilnCheck
import KilnCore

/// Bad input to a report command: a file that is missing or not what it should be. The message names the path.
public struct ReportInputError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "\(path): \(reason)" }
}

/// One operation's values in one second of `timeline.jsonl`.
public struct TimelineSample: Sendable, Codable, Equatable {
    public var phase: String
    /// Seconds since the phase started (the end of the second).
    public var second: Int
    public var operation: String
    public var ok: Int64
    public var fail: Int64
    public var info: Int64
    public var dropped: Int64
    public var rows: Int64
    public var p50Ms: Double?
    public var p99Ms: Double?
    public var maxMs: Double?

    public var completed: Int64 { ok + fail + info }
    public var store: String { String(operation.split(separator: ".").first ?? Substring(operation)) }

    public init(
        phase: String, second: Int, operation: String, ok: Int64, fail: Int64 = 0, info: Int64 = 0,
        dropped: Int64 = 0, rows: Int64 = 0, p50Ms: Double?, p99Ms: Double?, maxMs: Double? = nil
    ) {
        self.phase = phase
        self.second = second
        self.operation = operation
        self.ok = ok
        self.fail = fail
        self.info = info
        self.dropped = dropped
        self.rows = rows
        self.p50Ms = p50Ms
        self.p99Ms = p99Ms
        self.maxMs = maxMs
    }
}

/// The latency distribution of one operation in one phase (`histograms/<phase>/<op>.json`), as an HDR
/// percentile curve: (percentile, milliseconds) at 0, 50, 75, 90, 99, 99.9, … up to the recorded maximum.
public struct PercentileCurve: Sendable, Equatable {
    public var phase: String
    public var operation: String
    public var count: UInt64
    public var points: [(percentile: Double, ms: Double)]

    public static func == (lhs: PercentileCurve, rhs: PercentileCurve) -> Bool {
        lhs.phase == rhs.phase && lhs.operation == rhs.operation && lhs.count == rhs.count
            && lhs.points.map(\.percentile) == rhs.points.map(\.percentile) && lhs.points.map(\.ms) == rhs.points.map(\.ms)
    }

    public static let percentiles: [Double] = [
        0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100,
    ]

    /// Histogram values are microseconds (OperationStats).
    public init(phase: String, operation: String, histogram: Histogram<UInt64>) {
        self.phase = phase
        self.operation = operation
        count = histogram.totalCount
        var points: [(Double, Double)] = []
        for percentile in Self.percentiles {
            // Beyond the resolution the count gives, the curve would only repeat the maximum.
            if percentile > 0, percentile < 100, Double(histogram.totalCount) * (1 - percentile / 100) < 1 { continue }
            let micros = percentile >= 100 ? histogram.max : histogram.valueAtPercentile(percentile)
            points.append((percentile, Double(micros) / 1000))
        }
        self.points = points
    }
}

/// Everything the writers read from one run directory. Every part is optional, so a crashed or interrupted run
/// (no final report.json, a truncated last timeline line, no histograms) still gives a report marked partial.
public struct RunData: Sendable {
    public var directory: URL
    public var report: RunReport?
    public var timeline: [TimelineSample]
    public var histograms: [PercentileCurve]
    public var check: CheckReport?
    /// What was missing or unreadable (shown in the report, never fatal).
    public var problems: [String]

    public init(
        directory: URL, report: RunReport?, timeline: [TimelineSample], histograms: [PercentileCurve] = [],
        check: CheckReport? = nil, problems: [String] = []
    ) {
        self.directory = directory
        self.report = report
        self.timeline = timeline
        self.histograms = histograms
        self.check = check
        self.problems = problems
    }

    public var id: String { report?.identity.id ?? directory.lastPathComponent }

    /// True when the report covers less than the whole scenario: no report.json, a report without an end, an
    /// interrupted run, or a phase that did not finish.
    public var isPartial: Bool {
        guard let report else { return true }
        return report.endedAt == nil || report.interrupted || !report.complete || report.verdict == .running
            || report.phases.contains { $0.indexBuildError != nil }
    }

    /// Why the run is partial, for the banner.
    public var partialReason: String? {
        guard isPartial else { return nil }
        guard let report else { return "report.json is missing or unreadable: built from timeline.jsonl only" }
        if report.interrupted { return "the run was interrupted; the report covers only what ran" }
        if report.endedAt == nil || report.verdict == .running {
            return "the run did not finish (no end in report.json): it crashed or is still running"
        }
        if let phase = report.phases.first(where: { $0.indexBuildError != nil }) {
            return "phase \(phase.name): rebuilding the secondary indexes after the bulk load failed "
                + "(\(phase.indexBuildError!)): the store is left without them, and what ran after measured that"
        }
        return "not every phase ran to its end"
    }

    /// Why the run's verdict is NOT CHECKED: its check was required (a run with faults, or `--check`) and
    /// check.json is absent. Nil when the check ran or was not required.
    public var notCheckedReason: String? {
        guard let report, report.needsCheck, check == nil else { return nil }
        if let reason = report.notChecked { return reason }
        if report.interrupted { return "the run was interrupted before the check" }
        if report.endedAt == nil || report.verdict == .running {
            return "the run did not finish (crashed or still running), so its check did not run"
        }
        return "no check.json: the check did not run (kiln stopped before it?); run `kiln check \(directory.path)`"
    }

    /// Accepts a run directory or a report.json inside one.
    public static func load(_ path: URL) throws(ReportInputError) -> RunData {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path.path, isDirectory: &isDirectory) else {
            throw ReportInputError(path: path.path, reason: "no such run directory or report.json")
        }
        let directory = isDirectory.boolValue ? path : path.deletingLastPathComponent()
        var problems: [String] = []
        let reportFile = isDirectory.boolValue ? directory.appendingPathComponent("report.json") : path
        var report: RunReport?
        if let data = try? Data(contentsOf: reportFile) {
            do {
                report = try RunReport.decode(data)
            } catch {
                if !isDirectory.boolValue {
                    throw ReportInputError(path: reportFile.path, reason: "not a Kiln report.json (\(error))")
                }
                problems.append("report.json is not readable as \(RunReport.schemaVersion): \(error)")
            }
        } else if !isDirectory.boolValue {
            throw ReportInputError(path: reportFile.path, reason: "cannot read the file")
        } else {
            problems.append("report.json is missing")
        }
        let timelineFile = directory.appendingPathComponent("timeline.jsonl")
        var timeline: [TimelineSample] = []
        if let data = try? Data(contentsOf: timelineFile) {
            let parsed = TimelineFile.parse(data)
            timeline = parsed.samples
            if parsed.skippedLines > 0 {
                problems.append("timeline.jsonl: \(parsed.skippedLines) unreadable line(s) skipped (truncated write?)")
            }
        } else {
            problems.append("timeline.jsonl is missing")
        }
        if report == nil, timeline.isEmpty {
            throw ReportInputError(
                path: directory.path, reason: "not a run directory (neither report.json nor timeline.jsonl is readable)")
        }
        var check: CheckReport?
        let checkFile = directory.appendingPathComponent("check.json")
        if let data = try? Data(contentsOf: checkFile) {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            do {
                check = try decoder.decode(CheckReport.self, from: data)
            } catch {
                problems.append("check.json is not readable as \(CheckReport.schemaVersion): \(error)")
            }
        }
        return RunData(
            directory: directory, report: report, timeline: timeline,
            histograms: Self.loadHistograms(directory.appendingPathComponent("histograms"), problems: &problems),
            check: check, problems: problems)
    }

    static func loadHistograms(_ root: URL, problems: inout [String]) -> [PercentileCurve] {
        let manager = FileManager.default
        guard let phases = try? manager.contentsOfDirectory(atPath: root.path) else { return [] }
        var curves: [PercentileCurve] = []
        for phase in phases.sorted() {
            let phaseDirectory = root.appendingPathComponent(phase)
            guard let files = try? manager.contentsOfDirectory(atPath: phaseDirectory.path) else { continue }
            for file in files.sorted() where file.hasSuffix(".json") {
                let url = phaseDirectory.appendingPathComponent(file)
                guard let data = try? Data(contentsOf: url),
                    let histogram = try? JSONDecoder().decode(Histogram<UInt64>.self, from: data)
                else {
                    problems.append("histograms/\(phase)/\(file) is not readable")
                    continue
                }
                guard histogram.totalCount > 0 else { continue }
                curves.append(
                    PercentileCurve(phase: phase, operation: String(file.dropLast(5)), histogram: histogram))
            }
        }
        return curves
    }
}

/// `timeline.jsonl`: `{"phase":P,"second":S,"ops":{OP:{"ok":…,"fail":…,"info":…,"dropped":…,"late":…,"rows":…,
/// "p50_ms":…,"p99_ms":…,"max_ms":…}}}` per line (RunDirectory.appendTimeline).
public enum TimelineFile {
    struct Line: Decodable {
        struct Values: Decodable {
            var ok: Int64
            var fail: Int64
            var info: Int64
            var dropped: Int64?
            var rows: Int64?
            var p50Ms: Double?
            var p99Ms: Double?
            var maxMs: Double?
        }
        var phase: String
        var second: Int
        var ops: [String: Values]
    }

    /// Samples in file order (ops of one line by name); lines that do not parse are counted, not fatal.
    public static func parse(_ data: Data) -> (samples: [TimelineSample], skippedLines: Int) {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        var samples: [TimelineSample] = []
        var skipped = 0
        for line in data.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
            guard let parsed = try? decoder.decode(Line.self, from: Data(line)) else {
                skipped += 1
                continue
            }
            for (name, values) in parsed.ops.sorted(by: { $0.key < $1.key }) {
                samples.append(
                    TimelineSample(
                        phase: parsed.phase, second: parsed.second, operation: name, ok: values.ok, fail: values.fail,
                        info: values.info, dropped: values.dropped ?? 0, rows: values.rows ?? 0, p50Ms: values.p50Ms,
                        p99Ms: values.p99Ms, maxMs: values.maxMs))
            }
        }
        return (samples, skipped)
    }
}
