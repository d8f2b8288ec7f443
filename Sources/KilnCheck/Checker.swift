import Foundation
import KilnCore
import KilnScenario
import KilnStores

/// Everything the checkers of one `kiln check` are given: what the history says was written, the places chosen for
/// scanning, the stores, and the run directory. Built once by the caller (CheckCommand), read by every checker.
public struct CheckContext: Sendable {
    /// The stack, the dataset (the oracle) and the namespace the run wrote.
    public var client: ClientContext
    /// Per place id: the rows the history says ended ok / info / fail (`WrittenRows.fromHistory`, or a range).
    public var written: [String: WrittenRows]
    /// The row places to scan (scanner registry and black-box places), chosen from `written` or `--places`.
    public var drivers: [ScannerDriver]
    /// The per-user aggregate scanners (`redis.features`), empty when that place is not checked.
    public var featureDrivers: [FeatureScannerDriver]
    /// The run directory; nil for `kiln check --scenario F --range a..b` (no history, no report).
    public var runDirectory: URL?
    /// The scenario's reference pipeline, when it ran one.
    public var pipeline: PipelineSpec?
    /// True when the scenario ran in black-box mode (its staleness probes are judged).
    public var blackbox: Bool
    /// False with `--no-invariants`: the cross-store invariants are skipped.
    public var invariants: Bool
    /// `--places` as given (nil: every place the run wrote).
    public var requestedPlaces: [String]?

    public init(
        client: ClientContext, written: [String: WrittenRows], drivers: [ScannerDriver],
        featureDrivers: [FeatureScannerDriver] = [], runDirectory: URL? = nil, pipeline: PipelineSpec? = nil,
        blackbox: Bool = false, invariants: Bool = true, requestedPlaces: [String]? = nil
    ) {
        self.client = client
        self.written = written
        self.drivers = drivers
        self.featureDrivers = featureDrivers
        self.runDirectory = runDirectory
        self.pipeline = pipeline
        self.blackbox = blackbox
        self.invariants = invariants
        self.requestedPlaces = requestedPlaces
    }

    /// The place ids the scan checkers will read.
    public var scannedPlaces: Set<String> { Set(drivers.map(\.place.id)) }
}

/// What one checker found: its validity, a result per place it judged (each with its anomalies), and numbers.
public struct CheckResult: Sendable {
    public var validity: Validity
    public var places: [PlaceResult]
    /// e.g. `seconds`.
    public var metrics: [String: Double]

    public init(validity: Validity, places: [PlaceResult], metrics: [String: Double] = [:]) {
        self.validity = validity
        self.places = places
        self.metrics = metrics
    }

    /// A result judged by its places alone: the worst of theirs (valid when there are none: nothing to find wrong).
    public init(places: [PlaceResult], metrics: [String: Double] = [:]) {
        self.init(validity: Validity.worst(places.map(\.validity)), places: places, metrics: metrics)
    }

    /// Every anomaly of every place (the first `PlaceResult.keptPerKind` of each kind per place).
    public var anomalies: [Anomaly] { places.flatMap(\.anomalies) }
}

/// One checker (Jepsen's `checker/Checker`): judges a run from its context. It may block (scans run on their own
/// threads) and may throw; `ComposedChecker` turns a throw into `unknown`, never `valid`.
public protocol Checker: Sendable {
    /// The registry name; also the place of the `unknown` result when `check` throws.
    var name: String { get }
    func check(_ context: CheckContext) throws -> CheckResult
}

/// Several checkers as one (Jepsen's `checker/compose`): each runs in order on the caller's thread; its places follow
/// the previous ones'. Guarantees: a checker that throws contributes one `unknown` place named after it with the
/// error's message (check-safe), never `valid`; the composite validity is the worst of the parts (invalid > unknown
/// > valid); a composition of no checker is `unknown` — nothing was checked, so nothing may read as a pass.
public struct ComposedChecker: Checker {
    public var name: String
    public var parts: [any Checker]

    public init(_ parts: [any Checker], name: String = "compose") {
        self.parts = parts
        self.name = name
    }

    public func check(_ context: CheckContext) -> CheckResult {
        let started = Date()
        guard !parts.isEmpty else {
            return CheckResult(validity: .unknown, places: [], metrics: ["seconds": 0])
        }
        var validities: [Validity] = []
        var places: [PlaceResult] = []
        var metrics: [String: Double] = [:]
        for part in parts {
            let partStarted = Date()
            do {
                let result = try part.check(context)
                validities.append(result.validity)
                places.append(contentsOf: result.places)
                for (key, value) in result.metrics { metrics["\(part.name).\(key)"] = value }
            } catch {
                validities.append(.unknown)
                places.append(.undecided(part.name, source: "checker \(part.name)", error: error, since: partStarted))
            }
        }
        metrics["seconds"] = Date().timeIntervalSince(started)
        return CheckResult(validity: Validity.worst(validities), places: places, metrics: metrics)
    }
}
