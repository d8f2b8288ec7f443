import Foundation
import KilnCore
import KilnElle
import KilnScenario

/// Every checker `kiln check` can run, by name (k6's `name -> constructor` table; one line per checker). Each factory
/// looks at the run and returns its checker, or nil when the checker has nothing to judge in this run (e.g. no
/// pipeline, no black-box staleness probes). A factory throws only for input the run cannot be checked with (a
/// malformed file of the run directory): that is invalid input, not an unknown result. The order is the order of
/// the places in check.json.
public enum CheckerRegistry {
    public typealias Factory = @Sendable (CheckContext) throws -> (any Checker)?

    public static let all: [(name: String, make: Factory)] = [
        (ReconcileCheck.name, { ReconcileCheck.make($0) }),
        (PipelineInvariantsCheck.name, { PipelineInvariantsCheck.make($0) }),
        (PipelineStalenessCheck.name, { try PipelineStalenessCheck.make($0) }),
        (BlackBoxStalenessChecker.name, { try BlackBoxStalenessChecker.make($0) }),
        (DualPrimaryCheck.name, { DualPrimaryCheck.make($0) }),
        (ListAppendPlace.id(.listAppend), { ElleHistoryCheck.make(.listAppend)($0) }),
        (ListAppendPlace.id(.rwRegister), { ElleHistoryCheck.make(.rwRegister)($0) }),
    ]

    public static var names: [String] { all.map(\.name) }

    /// The checkers that apply to `context`, in registry order, composed. Throws what a factory throws.
    public static func checker(for context: CheckContext) throws -> ComposedChecker {
        ComposedChecker(try all.compactMap { try $0.make(context) })
    }
}

/// The reconcile checker over every scanned place (ConsistencyCheck: one thread per place) with the derived-place
/// invariants that run beside the scans: ClickHouse's per-minute totals against PostgreSQL's, and each derived place
/// (ClickHouse's per-minute merchant aggregate, the pipeline's balances, the graph's PAID edges per user and per
/// merchant) against the oracle's sums of the rows its store must hold.
public struct ReconcileCheck: Checker {
    public static let name = "reconcile"
    public var name: String { Self.name }

    static func make(_ context: CheckContext) -> ReconcileCheck? {
        context.drivers.isEmpty && context.featureDrivers.isEmpty ? nil : ReconcileCheck()
    }

    public func check(_ context: CheckContext) -> CheckResult {
        let client = context.client
        let written = context.written
        let checked = context.scannedPlaces
        var invariants: [@Sendable () -> PlaceResult] = []
        if context.invariants, checked.contains("postgres.rows"), checked.contains("clickhouse.rows") {
            // Per-minute totals agree only when both stores were given the same transactions (the pipeline's
            // flow); the load engine gives each store its own rows, and each is then checked against the oracle.
            let pg = written["postgres.rows"]
            let ch = written["clickhouse.rows"]
            if let pg, let ch, pg.ok.sameMembers(as: ch.ok), pg.info.population == 0, ch.info.population == 0 {
                invariants.append { MinuteTotalsInvariant.check(context: client) }
            } else {
                client.logger.info("invariant minute-totals skipped: postgres and clickhouse were given different rows")
            }
        }
        // Derived places against the oracle on their own, beside the scans: each aggregate must equal the oracle's
        // sums of the rows its store must hold, whatever any other store got.
        if checked.contains("clickhouse.rows"), let rows = written["clickhouse.rows"] {
            invariants.append { MerchantMinuteOracleCheck.check(context: client, written: rows) }
        }
        if checked.contains("postgres.rows"), context.pipeline?.sinks.contains(.postgres) == true,
            let rows = written["postgres.rows"]
        {
            invariants.append { BalanceOracleCheck.check(context: client, written: rows) }
        }
        if checked.contains("falkordb.paid-edges"), let rows = written["falkordb.paid-edges"] {
            for side in PaidEdgeOracleCheck.Side.allCases {
                invariants.append { PaidEdgeOracleCheck.check(context: client, written: rows, by: side) }
            }
        }
        let report = ConsistencyCheck(
            context: client, drivers: context.drivers, featureDrivers: context.featureDrivers, invariants: invariants
        ).run(written: written, runName: "")
        return CheckResult(validity: report.validity, places: report.places, metrics: ["seconds": report.seconds])
    }
}

/// The reference pipeline's own invariants (a run directory whose scenario ran the pipeline into PostgreSQL): the
/// ledger balances, and with the graph sink the graph's ledger against them.
public struct PipelineInvariantsCheck: Checker {
    public static let name = "pipeline-invariants"
    public var name: String { Self.name }

    static func make(_ context: CheckContext) -> PipelineInvariantsCheck? {
        guard let pipeline = context.pipeline, context.runDirectory != nil, context.invariants,
            pipeline.sinks.contains(.postgres)
        else { return nil }
        return PipelineInvariantsCheck()
    }

    public func check(_ context: CheckContext) -> CheckResult {
        var places = [BalanceInvariant.check(context: context.client)]
        if context.pipeline?.sinks.contains(.falkordb) == true {
            places.append(GraphLedgerInvariant.check(context: context.client))
        }
        return CheckResult(places: places)
    }
}

/// The reference pipeline's staleness per sink, from report.json's `pipeline` section (each path within its SLO).
public struct PipelineStalenessCheck: Checker {
    public static let name = "pipeline-staleness"
    public var name: String { Self.name }
    var sinks: [SinkReport]

    static func make(_ context: CheckContext) throws -> PipelineStalenessCheck? {
        guard context.pipeline != nil, let directory = context.runDirectory else { return nil }
        // As before the registry: a report.json that cannot be read gives no staleness results.
        let report = try? RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        return PipelineStalenessCheck(sinks: report?.pipeline ?? [])
    }

    public func check(_ context: CheckContext) -> CheckResult {
        CheckResult(places: StalenessCheck.results(sinks))
    }
}

/// The black-box run's staleness probes (`blackbox.staleness`): one `staleness.<place>` result per path.
public struct BlackBoxStalenessChecker: Checker {
    public static let name = "blackbox-staleness"
    public var name: String { Self.name }
    var report: BlackBoxStalenessReport?

    /// The input error of a staleness file that is not one: names the file.
    public struct UnreadableFile: Error, CustomStringConvertible {
        public var description: String
    }

    static func make(_ context: CheckContext) throws -> BlackBoxStalenessChecker? {
        guard context.blackbox, let directory = context.runDirectory else { return nil }
        do {
            return BlackBoxStalenessChecker(report: try BlackBoxStalenessReport.load(from: directory))
        } catch {
            throw UnreadableFile(
                description: "\(directory.appendingPathComponent(BlackBoxStalenessReport.fileName).path): \(error)")
        }
    }

    public func check(_ context: CheckContext) -> CheckResult {
        CheckResult(places: report.map(BlackBoxStalenessCheck.results) ?? [])
    }
}

/// Split-brain from the history alone: two servers of one store acknowledging writes in overlapping windows.
public struct DualPrimaryCheck: Checker {
    public static let name = "dual-primary"
    public var name: String { Self.name }

    static func make(_ context: CheckContext) -> DualPrimaryCheck? {
        context.runDirectory == nil ? nil : DualPrimaryCheck()
    }

    public func check(_ context: CheckContext) -> CheckResult {
        guard let directory = context.runDirectory else { return CheckResult(validity: .unknown, places: []) }
        return CheckResult(places: DualPrimaryAnalysis.results(history: directory.appendingPathComponent("history.jsonl")))
    }
}

/// Elle's checker of one transactional workload (list-append or rw-register) on a run directory holding that
/// workload's history (`elle-history.jsonl`, `elle-rw-register-history.jsonl`), unless `--places` leaves it out.
public struct ElleHistoryCheck: Checker {
    public let workload: ElleWorkload
    public var name: String { ListAppendPlace.id(workload) }

    static func make(_ workload: ElleWorkload) -> @Sendable (CheckContext) -> ElleHistoryCheck? {
        { context in
            guard let directory = context.runDirectory, ListAppendPlace.present(in: directory, workload: workload),
                context.requestedPlaces.map({ $0.contains(ListAppendPlace.id(workload)) }) ?? true
            else { return nil }
            return ElleHistoryCheck(workload: workload)
        }
    }

    public func check(_ context: CheckContext) -> CheckResult {
        guard let directory = context.runDirectory else { return CheckResult(validity: .unknown, places: []) }
        return CheckResult(places: [ListAppendPlace.check(directory: directory, workload: workload)])
    }
}
