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

/// The list-append and rw-register checkers: a history checker configured by `ElleCheckOptions`.
public protocol ElleChecker: HistoryChecker {
    var options: ElleCheckOptions { get set }
    init(options: ElleCheckOptions)
}

extension ElleChecker {
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

/// Elle's list-append checker: infers version orders and the dependency graph of a list-append history, finds
/// every non-predicate anomaly of Adya's taxonomy (and Elle's extensions), and judges the history against one
/// consistency model.
public struct ListAppendChecker: ElleChecker {
    public typealias History = ListAppendHistory
    public typealias Result = ListAppendCheckResult

    public var options: ElleCheckOptions

    public init(options: ElleCheckOptions) { self.options = options }

    public func check(_ transactions: [ListAppendTransaction]) -> ListAppendCheckResult {
        do {
            return check(try ListAppendHistory(transactions))
        } catch {
            return unknown(because: "\(error)", transactions: transactions.count)
        }
    }

    public func check(_ history: ListAppendHistory) -> ListAppendCheckResult {
        let started = ContinuousClock.now
        var inference = ListAppendInference(history: history)
        do {
            try inference.indexAppends()
        } catch {
            return unknown(because: "\(error)", transactions: history.count)
        }
        inference.inferVersionOrders()
        var recorder = AnomalyRecorder(inference: inference, witnessesPerKind: witnessesPerKind)
        recorder.findNonCycleAnomalies()
        inference.incompatibleReads = recorder.incompatibleReads
        // Both copies share the append index; free it in both before the graph is built.
        inference.releaseAppendIndex()
        recorder.releaseAppendIndex()
        let edges = DependencyEdges(inference: inference, realtime: model.needsRealtimeEdges)
        let graph = DependencyGraph(nodeCount: edges.nodeCount) { emit in edges.enumerate(emit) }
        let outcome = options.search.run(graph: graph, started: started) { kind, cycle in recorder.recordCycle(kind, cycle) }
        return .judged(
            model: model, counts: recorder.counts, timedOut: outcome.timedOut, witnesses: recorder.witnesses,
            statistics: .init(
                transactions: history.count, microOps: history.opCount, keys: inference.keyCount,
                edges: graph.edgeCount, cyclicComponents: outcome.components.count,
                largestComponent: outcome.components.map(\.count).max() ?? 0,
                seconds: Self.seconds(ContinuousClock.now - started)))
    }

    func unknown(because message: String, transactions: Int) -> ListAppendCheckResult {
        .undecidable(model: model, because: message, transactions: transactions)
    }

    static func seconds(_ duration: Duration) -> Double {
        duration.seconds
    }
}
