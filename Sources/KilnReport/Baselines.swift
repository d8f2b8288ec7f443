import Foundation
import KilnCore

/// Named baselines in `Reports/baselines/<name>/` (committed): a copy of a run's report.json, timeline.jsonl,
/// check.json, scenario.yaml and histograms/ (not history.jsonl: large, and compare does not read it), plus
/// `baseline.json` saying where it came from. A baseline directory is itself a run directory for every reader.
public struct BaselineStore: Sendable {
    public struct Metadata: Codable, Sendable {
        public static let schemaVersion = "kiln.baseline/1"
        public var schema = Metadata.schemaVersion
        public var name: String
        public var runId: String
        public var source: String
        public var savedAt: Int64
        public var scenario: String?
        public var kilnRevision: String?
        public var verdict: RunVerdict?
    }

    public let root: URL

    public init(root: URL) { self.root = root }

    static let copied = ["report.json", "timeline.jsonl", "check.json", "scenario.yaml", "histograms"]

    public static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 80 && !name.hasPrefix(".")
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    /// Saves `run` as `name`. Refuses a partial run unless `allowPartial`, and an existing name unless `replace`.
    public func save(name: String, run directory: URL, replace: Bool, allowPartial: Bool) throws(ReportInputError)
        -> Metadata
    {
        guard Self.validName(name) else {
            throw ReportInputError(path: name, reason: "a baseline name is letters, digits, '-', '_' and '.' only")
        }
        let run = try RunData.load(directory)
        guard run.report != nil else {
            throw ReportInputError(path: run.directory.path, reason: "has no readable report.json; cannot be a baseline")
        }
        if run.isPartial, !allowPartial {
            throw ReportInputError(
                path: run.directory.path,
                reason: "is a partial run (\(run.partialReason ?? "incomplete")); pass --allow-partial to save it anyway")
        }
        let target = root.appendingPathComponent(name, isDirectory: true)
        let manager = FileManager.default
        if manager.fileExists(atPath: target.path) {
            guard replace else {
                throw ReportInputError(path: target.path, reason: "baseline '\(name)' exists; pass --replace to overwrite it")
            }
        }
        // Build beside the target, then swap, so a failed copy never leaves half a baseline under the name.
        let staging = root.appendingPathComponent(".\(name).saving-\(ProcessInfo.processInfo.processIdentifier)")
        let metadata = Metadata(
            name: name, runId: run.id, source: run.directory.path,
            savedAt: Int64(Date().timeIntervalSince1970 * 1000), scenario: run.report?.identity.scenario,
            kilnRevision: run.report?.identity.kilnRevision, verdict: ReportResult.of(run).verdict)
        do {
            try? manager.removeItem(at: staging)
            try manager.createDirectory(at: staging, withIntermediateDirectories: true)
            for file in Self.copied where manager.fileExists(atPath: run.directory.appendingPathComponent(file).path) {
                try manager.copyItem(
                    at: run.directory.appendingPathComponent(file), to: staging.appendingPathComponent(file))
            }
            try Self.encoder.encode(metadata).write(to: staging.appendingPathComponent("baseline.json"))
            if manager.fileExists(atPath: target.path) { try manager.removeItem(at: target) }
            try manager.moveItem(at: staging, to: target)
        } catch {
            try? manager.removeItem(at: staging)
            throw ReportInputError(path: target.path, reason: "cannot write the baseline: \(error.localizedDescription)")
        }
        return metadata
    }

    public func metadata(_ name: String) throws(ReportInputError) -> Metadata {
        let file = root.appendingPathComponent(name).appendingPathComponent("baseline.json")
        guard let data = try? Data(contentsOf: file) else {
            let known = (try? list().map(\.name).joined(separator: ", ")) ?? ""
            throw ReportInputError(
                path: file.path, reason: "no baseline '\(name)'\(known.isEmpty ? "" : " (known: \(known))")")
        }
        do {
            return try Self.decoder.decode(Metadata.self, from: data)
        } catch {
            throw ReportInputError(path: file.path, reason: "not a baseline.json (\(error))")
        }
    }

    public func list() throws(ReportInputError) -> [Metadata] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root.path) else { return [] }
        var result: [Metadata] = []
        for name in names.sorted() where !name.hasPrefix(".") {
            if let metadata = try? metadata(name) { result.append(metadata) }
        }
        return result
    }

    /// A run directory, a report.json, or the name of a saved baseline.
    public func resolve(_ argument: String) throws(ReportInputError) -> RunData {
        if FileManager.default.fileExists(atPath: argument) { return try RunData.load(URL(fileURLWithPath: argument)) }
        if Self.validName(argument), FileManager.default.fileExists(atPath: root.appendingPathComponent(argument).path) {
            return try RunData.load(root.appendingPathComponent(argument))
        }
        throw ReportInputError(
            path: argument, reason: "neither a run directory, a report.json, nor a baseline in \(root.path)")
    }

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }

    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }
}
