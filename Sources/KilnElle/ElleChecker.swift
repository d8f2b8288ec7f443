import Foundation
import KilnCore

/// Jepsen's checker protocol: one function from a history to a result. A checker that cannot decide says
/// `unknown`, never `valid`.
public protocol HistoryChecker {
    associatedtype History
    associatedtype Result
    func check(_ history: History) -> Result
}

/// What an Elle checker is told: the model it judges against and the limits of its cycle searches.
public struct ElleCheckOptions: Sendable {
    public var model: ConsistencyModel
    /// The cycle searches stop here; a forbidden kind whose search was cut short makes the verdict `unknown`
    /// unless some forbidden anomaly was found anyway.
    public var searchTimeLimit: Duration
    /// The searches for kinds the model allows (reported, but not part of the verdict) run after the forbidden
    /// ones, within what remains of `searchTimeLimit` and at most this long.
    public var allowedSearchTimeLimit: Duration
    /// Witnesses kept per kind (all are counted).
    public var witnessesPerKind: Int

    public init(
        model: ConsistencyModel, searchTimeLimit: Duration = .seconds(60),
        allowedSearchTimeLimit: Duration = .seconds(5), witnessesPerKind: Int = 10
    ) {
        self.model = model
        self.searchTimeLimit = searchTimeLimit
        self.allowedSearchTimeLimit = allowedSearchTimeLimit
        self.witnessesPerKind = witnessesPerKind
    }

    var search: CycleAnomalySearch {
        CycleAnomalySearch(model: model, searchTimeLimit: searchTimeLimit, allowedSearchTimeLimit: allowedSearchTimeLimit)
    }
}

/// A history an Elle checker reads (`ListAppendHistory`, `RWRegisterHistory`): built in columns from the recorded
/// transactions, and able to give each back in its JSON form for witnesses.
public protocol ElleHistory: ColumnarHistory {
    /// Builds the history; throws `HistoryFormatError` when a transaction is not of the workload's kind.
    init(_ transactions: [ElleTransaction]) throws
    /// Transaction `index` in its JSON form (for witnesses and explanations).
    func transaction(_ index: Int) -> ElleTransaction
}

/// The list-append and rw-register checkers: a history checker configured by `ElleCheckOptions`, answering with an
/// `ElleCheckResult`.
public protocol ElleChecker: HistoryChecker where History: ElleHistory, Result == ElleCheckResult {
    var options: ElleCheckOptions { get set }
    init(options: ElleCheckOptions)
}

extension ElleChecker {
    /// Checks `transactions`; `unknown` (undecidable) when they do not form a history of the checker's workload.
    public func check(_ transactions: [ElleTransaction]) -> ElleCheckResult {
        do {
            return check(try History(transactions))
        } catch {
            return .undecidable(model: model, because: "\(error)", transactions: transactions.count)
        }
    }

    /// The end every Elle check shares, once the history's dependency `graph` is built (`started` is when the check
    /// began): searches it for cycle anomalies within the options' limits (each recorded into `tally` with
    /// `explain` saying why each step's edge exists) and judges the anomalies `tally` holds against the model.
    func searchAndJudge(
        _ history: History, keys: Int, graph: DependencyGraph, started: ContinuousClock.Instant,
        tally: inout AnomalyTally, explain: (_ from: Int, _ to: Int, _ label: EdgeLabels) -> DependencyStep
    ) -> ElleCheckResult {
        let outcome = options.search.run(graph: graph, started: started) { kind, cycle in
            tally.recordCycle(kind, cycle, in: history, explain: explain)
        }
        return .judged(
            model: model, counts: tally.counts, timedOut: outcome.timedOut, witnesses: tally.witnesses,
            statistics: .init(
                transactions: history.count, microOps: history.opCount, keys: keys, edges: graph.edgeCount,
                cyclicComponents: outcome.components.count,
                largestComponent: outcome.components.map(\.count).max() ?? 0,
                seconds: (ContinuousClock.now - started).seconds))
    }

    public init(
        model: ConsistencyModel, searchTimeLimit: Duration = .seconds(60),
        allowedSearchTimeLimit: Duration = .seconds(5), witnessesPerKind: Int = 10
    ) {
        self.init(
            options: ElleCheckOptions(
                model: model, searchTimeLimit: searchTimeLimit, allowedSearchTimeLimit: allowedSearchTimeLimit,
                witnessesPerKind: witnessesPerKind))
    }

    public var model: ConsistencyModel {
        get { options.model }
        set { options.model = newValue }
    }

    public var witnessesPerKind: Int {
        get { options.witnessesPerKind }
        set { options.witnessesPerKind = newValue }
    }
}
