import Foundation
import KilnCore
import KilnData
import KilnStores
import Logging

/// Runs the reconcile checker over several places at once: one OS thread per place (each scan blocks in its C
/// library), each with its own scanner and checker; the results are collected when all are done. A scan that
/// throws makes its place `unknown`, never `valid` (Jepsen's check-safe).
public struct ConsistencyCheck: Sendable {
    public var context: ClientContext
    public var drivers: [ScannerDriver]
    public var featureDrivers: [FeatureScannerDriver]
    /// Cross-store checks (e.g. `MinuteTotalsInvariant.check`) that need no scan: each runs on its own thread beside
    /// the scans, and its result follows theirs in the report.
    public var invariants: [@Sendable () -> PlaceResult]

    public init(
        context: ClientContext, drivers: [ScannerDriver], featureDrivers: [FeatureScannerDriver] = [],
        invariants: [@Sendable () -> PlaceResult] = []
    ) {
        self.context = context
        self.drivers = drivers
        self.featureDrivers = featureDrivers
        self.invariants = invariants
    }

    public func run(written: [String: WrittenRows], runName: String) -> CheckReport {
        let started = Date()
        let results = ResultSlots(count: drivers.count + featureDrivers.count + invariants.count)
        let group = DispatchGroup()
        for (offset, invariant) in invariants.enumerated() {
            group.enter()
            Thread {
                results.set(drivers.count + featureDrivers.count + offset, invariant())
                group.leave()
            }.start()
        }
        for (offset, driver) in featureDrivers.enumerated() {
            let datasetRows = context.dataset.rows
            let features = written[RowPlace.redisFeatures.id]
                ?? WrittenRows(place: RowPlace.redisFeatures, datasetRows: datasetRows)
            let scores = written[RowPlace.redisScores.id]
                ?? WrittenRows(place: RowPlace.redisScores, datasetRows: datasetRows)
            let context = self.context
            group.enter()
            Thread {
                results.set(drivers.count + offset, Self.checkFeatures(driver, features, scores, context))
                group.leave()
            }.start()
        }
        for (index, driver) in drivers.enumerated() {
            let rows = written[driver.place.id] ?? WrittenRows(place: driver.place, datasetRows: context.dataset.rows)
            let context = self.context
            group.enter()
            let thread = Thread {
                results.set(index, Self.check(driver, rows, context))
                group.leave()
            }
            thread.name = "kiln-check-\(driver.place.id)"
            thread.start()
        }
        group.wait()
        let places = results.all
        let validity: Validity =
            places.contains { $0.validity == .invalid }
            ? .invalid : (places.contains { $0.validity == .unknown } ? .unknown : .valid)
        return CheckReport(
            run: runName, datasetRows: context.dataset.rows, places: places, validity: validity,
            seconds: Date().timeIntervalSince(started))
    }

    static func checkFeatures(
        _ driver: FeatureScannerDriver, _ features: WrittenRows, _ scores: WrittenRows, _ context: ClientContext
    ) -> PlaceResult {
        let started = Date()
        let scanner: any UserFeatureScanner
        do {
            scanner = try driver.open(context)
        } catch {
            return ReconcileChecker.unknown(
                features, source: "\(driver.store) features", error: "\(error)", seconds: Date().timeIntervalSince(started))
        }
        let checker = FeatureChecker(features: features, scores: scores, dataset: context.dataset)
        do {
            try scanner.scanUserFeatures { checker.add($0) }
        } catch {
            return ReconcileChecker.unknown(
                features, source: scanner.featureSource, error: "scan failed after \(checker.scanned) users: \(error)",
                seconds: Date().timeIntervalSince(started))
        }
        return checker.finish(source: scanner.featureSource, seconds: Date().timeIntervalSince(started))
    }

    static func check(_ driver: ScannerDriver, _ written: WrittenRows, _ context: ClientContext) -> PlaceResult {
        let started = Date()
        let source = "\(driver.place.store) \(driver.place.name)"
        let scanner: any StoreScanner
        do {
            scanner = try driver.open(context)
        } catch {
            return ReconcileChecker.unknown(
                written, source: source, error: "\(error)", seconds: Date().timeIntervalSince(started))
        }
        defer { scanner.close() }
        let checker = ReconcileChecker(written: written, dataset: context.dataset)
        do {
            try scanner.scan { checker.add($0) }
        } catch {
            return ReconcileChecker.unknown(
                written, source: scanner.source, error: "scan failed after \(checker.scanned) rows: \(error)",
                seconds: Date().timeIntervalSince(started))
        }
        return checker.finish(source: scanner.source, seconds: Date().timeIntervalSince(started))
    }
}

/// Results written by the check threads. Thread-safe.
final class ResultSlots: @unchecked Sendable {
    // @unchecked: `slots` is only touched under `lock`.
    private let lock = NSLock()
    private var slots: [PlaceResult?]

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ result: PlaceResult) { lock.withLock { slots[index] = result } }
    var all: [PlaceResult] { lock.withLock { slots.compactMap { $0 } } }
}
