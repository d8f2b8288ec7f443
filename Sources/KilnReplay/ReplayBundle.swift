import Foundation

/// `bundle.json` of a run directory (schema `kiln.bundle/1`): everything a replay holds constant. The rows and the
/// operations are not stored one by one: row i is `txn(spec, seed, rows, i)`, op k of phase p is drawn from
/// `SplitMix64(seed, k, stream 1000 + p)` over the mix's cumulative weights and is due at the arrival schedule's
/// `time(k)`, and fault jitter comes from the seed, so the spec copy, the seed and the resolved scenario are the plan.
/// The copies it names (scenario, dataset spec, stack) sit beside it, so a bundle directory is self-contained.
public struct ReplayBundle: Codable, Sendable, Equatable {
    public static let schemaVersion = "kiln.bundle/1"
    public static let fileName = "bundle.json"
    /// The scenario as run, its `stack:` and `dataset.spec:` pointing at the copies beside it and `fresh: true`.
    public static let scenarioFileName = "bundle-scenario.yaml"
    public static let specFileName = "bundle-dataset-spec.yaml"
    public static let stackFileName = "bundle-stack.yaml"

    public struct KilnBuild: Codable, Sendable, Equatable {
        public var version: String
        /// `git rev-parse --short HEAD` of the checkout that ran, nil outside a git checkout.
        public var commit: String?
        public init(version: String, commit: String?) {
            self.version = version
            self.commit = commit
        }
    }

    public struct Scenario: Codable, Sendable, Equatable {
        public var name: String
        /// Relative to the bundle's directory.
        public var file: String
        /// The file `kiln run` was given.
        public var originalFile: String
        public var namespace: String
    }

    public struct Dataset: Codable, Sendable, Equatable {
        /// Relative to the bundle's directory.
        public var specFile: String
        /// `sha256:<hex>` of the spec copy's bytes.
        public var specHash: String
        public var seed: UInt64
        public var rows: Int64
    }

    public struct Stack: Codable, Sendable, Equatable {
        /// Relative to the bundle's directory; nil when the scenario's stack is an inline mapping.
        public var file: String?
        public var name: String
        public var kind: String
        public var network: String
        /// Settings that change outcomes: replication mode of PostgreSQL failovers, Redis server settings
        /// (`min-replicas-to-write`, …), Sentinel master name; `key: value` text.
        public var settings: [String: String]
        /// Server name (`postgres-primary`, `sentinel-1`, …) → its version as a client read it when the run started
        /// (`PostgreSQL 16.4`, `Redis 7.2.4`, `FalkorDB 4.2.1 (graph module), Redis 7.2.4`, `ClickHouse 24.8.1.1`,
        /// the Kafka broker's ApiVersions fingerprint), or `unknown: <why>`. Nil in bundles made before it existed.
        public var serverVersions: [String: String]?
    }

    /// One fault instance as the schedule planned it: offsets in ms from the first phase's start.
    public struct PlannedFault: Codable, Sendable, Equatable {
        public var name: String
        public var kind: String
        public var target: String
        public var startMs: Int64
        public var stopMs: Int64
        public var options: [String: String]
    }

    /// One fault as it happened (from report.json): offsets in ms from the first phase's start, nil when it did not
    /// start or stop; `verified` yes / no / unknown.
    public struct HappenedFault: Codable, Sendable, Equatable {
        public var name: String
        public var kind: String
        public var target: String
        public var startedMs: Int64?
        public var stoppedMs: Int64?
        public var verified: String
    }

    public struct ArrivalStage: Codable, Sendable, Equatable {
        public var fromRate: Double
        public var toRate: Double
        public var seconds: Double
    }

    public struct MixEntry: Codable, Sendable, Equatable {
        public var operation: String
        public var weight: Double
    }

    /// Dataset rows `[first, end)` a phase's writes to one store took (from history.jsonl, after the run).
    public struct RowRange: Codable, Sendable, Equatable {
        public var first: Int64
        public var end: Int64
    }

    /// The operation plan of one phase.
    public struct Phase: Codable, Sendable, Equatable {
        public var name: String
        /// 0-based, the stream number of its op choice.
        public var number: Int
        public var executor: String
        public var workers: Int
        /// Open model: ops due (⌊∫ rate dt⌋); bulk: rows per store; closed: nil (as many as the workers manage).
        public var plannedOps: Int64?
        public var arrival: [ArrivalStage]
        public var seconds: Double?
        public var mix: [MixEntry]
        /// How op k's operation and row are derived (text for people; the code is PhaseContext in KilnLoad).
        public var operationChoice: String
        /// Filled after the run; nil while it runs or when the history could not be read.
        public var writeRows: [String: RowRange]?
    }

    public var schema = ReplayBundle.schemaVersion
    public var kiln: KilnBuild
    public var run: String
    public var createdAt: Int64
    public var scenario: Scenario
    public var dataset: Dataset
    public var stack: Stack
    public var faultsPlanned: [PlannedFault]
    /// Nil until the run has ended (or when it had no faults report).
    public var faultsHappened: [HappenedFault]?
    /// The first phase's start, Unix ms (nil until it started).
    public var firstPhaseStartedAt: Int64?
    public var phases: [Phase]
    /// True once the run ended and the "as happened" fields are filled.
    public var complete: Bool

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }

    public func write(to directory: URL) throws {
        try Self.encoder.encode(self).write(to: directory.appendingPathComponent(Self.fileName), options: .atomic)
    }
}

/// A bundle that cannot be replayed: the file, where in it (a JSON path such as `dataset.seed`, empty for the whole
/// file) and what is wrong. Exit 64.
public struct BundleError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var path: String
    public var message: String

    public init(file: String, path: String = "", message: String) {
        self.file = file
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? "\(file): \(message)" : "\(file): \(path): \(message)" }
}

extension ReplayBundle {
    /// Reads `bundle.json` from a run directory or the file itself, strictly: not JSON (truncated), a missing or
    /// mistyped field, an unknown schema, a non-positive row count, a malformed hash, or a copy it names that is
    /// missing is a `BundleError` naming the file and the field.
    public static func read(_ location: URL) throws(BundleError) -> (bundle: ReplayBundle, directory: URL) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: location.path, isDirectory: &isDirectory) else {
            throw BundleError(file: location.path, message: "no such file or directory")
        }
        let file = isDirectory.boolValue ? location.appendingPathComponent(fileName) : location
        let directory = file.deletingLastPathComponent()
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw BundleError(
                file: file.path,
                message: "no bundle.json in this run directory (runs made before bundles existed cannot be replayed)")
        }
        let data: Data
        do {
            data = try Data(contentsOf: file)
        } catch {
            throw BundleError(file: file.path, message: "cannot read: \(error.localizedDescription)")
        }
        do {
            _ = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw BundleError(
                file: file.path, message: "not valid JSON (truncated or malformed, \(data.count) bytes): \(error.localizedDescription)")
        }
        // Whole numbers the decoder would reject without saying where (a negative or fractional seed or row count).
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let dataset = object["dataset"] as? [String: Any]
        {
            for key in ["seed", "rows"] {
                guard let value = dataset[key] else { continue }
                guard let number = value as? NSNumber,
                    let whole = Int64(exactly: number.doubleValue), whole >= 0 || key == "rows"
                else {
                    throw BundleError(
                        file: file.path, path: "dataset.\(key)",
                        message: "expected a whole number\(key == "seed" ? " from 0 to 2^64-1" : ""), found \(value)")
                }
            }
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let bundle: ReplayBundle
        do {
            bundle = try decoder.decode(ReplayBundle.self, from: data)
        } catch let error as DecodingError {
            throw Self.describe(error, file: file.path)
        } catch {
            throw BundleError(file: file.path, message: "\(error)")
        }
        try bundle.validate(file: file.path, directory: directory)
        return (bundle, directory)
    }

    func validate(file: String, directory: URL) throws(BundleError) {
        guard schema == Self.schemaVersion else {
            throw BundleError(file: file, path: "schema", message: "'\(schema)' is not \(Self.schemaVersion)")
        }
        guard dataset.rows > 0 else {
            throw BundleError(file: file, path: "dataset.rows", message: "must be above 0, found \(dataset.rows)")
        }
        guard ContentHash.isWellFormed(dataset.specHash) else {
            throw BundleError(
                file: file, path: "dataset.spec_hash",
                message: "expected sha256: and 64 hex digits, found '\(dataset.specHash.prefix(80))'")
        }
        for (index, phase) in phases.enumerated() {
            if let planned = phase.plannedOps, planned < 0 {
                throw BundleError(file: file, path: "phases[\(index)].planned_ops", message: "negative: \(planned)")
            }
            for (stage, arrival) in phase.arrival.enumerated()
            where !(arrival.fromRate.isFinite && arrival.toRate.isFinite && arrival.seconds.isFinite)
                || arrival.fromRate < 0 || arrival.toRate < 0 || arrival.seconds < 0
            {
                throw BundleError(
                    file: file, path: "phases[\(index)].arrival[\(stage)]",
                    message: "rates and seconds must be finite and not negative")
            }
        }
        let copies: [(String, String?)] = [
            ("scenario.file", scenario.file), ("dataset.spec_file", dataset.specFile), ("stack.file", stack.file),
        ]
        for (path, name) in copies {
            guard let name else { continue }
            guard !name.isEmpty, !name.contains("/") else {
                throw BundleError(
                    file: file, path: path, message: "'\(name)' must be a file name beside bundle.json")
            }
            let copy = directory.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: copy.path) else {
                throw BundleError(
                    file: file, path: path, message: "names \(name), which is missing from \(directory.path)")
            }
        }
    }

    static func describe(_ error: DecodingError, file: String) -> BundleError {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.map { key in
                key.intValue.map { "[\($0)]" } ?? ".\(snake(key.stringValue))"
            }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = path(context.codingPath)
            return BundleError(
                file: file, path: parent.isEmpty ? snake(key.stringValue) : "\(parent).\(snake(key.stringValue))",
                message: "missing")
        case .typeMismatch(let type, let context):
            return BundleError(file: file, path: path(context.codingPath), message: "expected \(type): \(context.debugDescription)")
        case .valueNotFound(let type, let context):
            return BundleError(file: file, path: path(context.codingPath), message: "expected \(type), found null")
        case .dataCorrupted(let context):
            return BundleError(file: file, path: path(context.codingPath), message: context.debugDescription)
        @unknown default:
            return BundleError(file: file, message: "\(error)")
        }
    }

    /// `specHash` → `spec_hash`, as the file spells it.
    static func snake(_ name: String) -> String {
        var result = ""
        for character in name {
            if character.isUppercase {
                result += "_" + character.lowercased()
            } else {
                result.append(character)
            }
        }
        return result
    }
}
