import Foundation
import Glibc
import KilnCore

/// `Reports/runs/<id>/` of one run, written incrementally so an interrupted or crashed run leaves what it had:
/// `scenario.yaml` (the file as run), `timeline.jsonl` (one line per phase-second, appended each second),
/// `history.jsonl` (every write and bulk op, appended each second), `histograms/<phase>/<op>.json` (HDR
/// histograms of latency, Codable — every bucket's count, so adding two is exact — at each phase end; service times
/// in `histograms/<phase>/service/<op>.json`) and `report.json` (rewritten after each phase and at the end).
/// Used by the controller's thread only.
public final class RunDirectory {
    public let url: URL
    private let timeline: FileHandle
    private let history: FileHandle

    public struct CannotWrite: Error, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "cannot write the run directory \(path): \(reason)" }
    }

    /// Creates `<root>/<id>`; fails if it exists (a run never overwrites another).
    public init(root: URL, id: String, scenarioFile: URL) throws(CannotWrite) {
        url = root.appendingPathComponent(id, isDirectory: true)
        do {
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
            try FileManager.default.createDirectory(
                at: url.appendingPathComponent("histograms"), withIntermediateDirectories: false)
            try Data(contentsOf: scenarioFile).write(to: url.appendingPathComponent("scenario.yaml"))
            timeline = try Self.create(url.appendingPathComponent("timeline.jsonl"))
            history = try Self.create(url.appendingPathComponent("history.jsonl"))
        } catch let error as CannotWrite {
            throw error
        } catch {
            throw CannotWrite(path: url.path, reason: "\(error.localizedDescription)")
        }
    }

    deinit {
        try? timeline.close()
        try? history.close()
    }

    private static func create(_ file: URL) throws -> FileHandle {
        guard FileManager.default.createFile(atPath: file.path, contents: nil) else {
            throw CannotWrite(path: file.path, reason: "cannot create the file")
        }
        return try FileHandle(forWritingTo: file)
    }

    /// A run id: UTC time plus the scenario name, e.g. `20261123T154452Z-nightly-regression`.
    public static func makeID(scenario: String, date: Date = Date()) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let safe = scenario.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "-" }
        return "\(formatter.string(from: date))-\(String(safe))"
    }

    func appendTimeline(_ second: TimelineSecond, phase: String, operations: [PlannedOperation]) {
        var line = #"{"phase":"\#(Self.escape(phase))","second":\#(second.second),"ops":{"#
        var first = true
        for (index, stats) in second.stats.enumerated() where !stats.isEmpty {
            if !first { line += "," }
            first = false
            func ms(_ percentile: Double) -> String {
                stats.latency.totalCount == 0
                    ? "null" : String(format: "%.3f", Double(stats.latency.valueAtPercentile(percentile)) / 1000)
            }
            let maximum = stats.latency.totalCount == 0 ? "null" : String(format: "%.3f", Double(stats.latency.max) / 1000)
            line += #""\#(operations[index].name)":{"ok":\#(stats.ok),"fail":\#(stats.fail),"info":\#(stats.info),"#
            line += #""dropped":\#(stats.dropped),"late":\#(stats.late),"rows":\#(stats.rows),"#
            line += #""p50_ms":\#(ms(50)),"p99_ms":\#(ms(99)),"max_ms":\#(maximum)}"#
        }
        line += "}}\n"
        timeline.write(Data(line.utf8))
    }

    /// Appends `entries` (one phase's, in the order the workers recorded them) as history lines, in one write.
    func appendHistory(_ entries: [CompletedOperation], phase: String, operations: [PlannedOperation]) {
        guard !entries.isEmpty else { return }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(entries.count * 200)
        for entry in entries {
            entry.historyEntry(phase: phase, operations: operations).appendJSONLine(to: &buffer)
        }
        history.write(Data(buffer))
    }

    func writeHistograms(_ measurement: PhaseMeasurement) {
        let directory = url.appendingPathComponent("histograms/\(measurement.phase.name)", isDirectory: true)
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        let service = directory.appendingPathComponent("service", isDirectory: true)
        try? FileManager.default.createDirectory(at: service, withIntermediateDirectories: true)
        for (index, operation) in measurement.operations.enumerated() where measurement.totals[index].completed > 0 {
            if let data = try? encoder.encode(measurement.totals[index].latency) {
                try? data.write(to: directory.appendingPathComponent("\(operation.name).json"))
            }
            // Service times too, so `kiln merge` adds them exactly (the report's `service_ms`).
            if let data = try? encoder.encode(measurement.totals[index].service) {
                try? data.write(to: service.appendingPathComponent("\(operation.name).json"))
            }
        }
    }

    /// Writes `report.json` atomically (temporary file + rename), so a reader never sees half a report.
    public func writeReport(_ report: RunReport) throws {
        let data = try RunReport.encoder.encode(report)
        try data.write(to: url.appendingPathComponent("report.json"), options: .atomic)
    }

    /// JSON string content (`JSONText`, the one escaper).
    static func escape(_ text: String) -> String { JSONText.escaped(text) }
}
