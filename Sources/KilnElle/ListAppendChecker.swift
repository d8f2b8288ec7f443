import Foundation
import KilnCore

/// Elle's list-append checker: infers version orders and the dependency graph of a list-append history, finds
/// every non-predicate anomaly of Adya's taxonomy (and Elle's extensions), and judges the history against one
/// consistency model.
public struct ListAppendChecker: ElleChecker {
    public typealias History = ListAppendHistory
    public typealias Result = ListAppendCheckResult

    public var options: ElleCheckOptions

    public init(options: ElleCheckOptions) { self.options = options }

    public func check(_ history: ListAppendHistory) -> ListAppendCheckResult {
        let started = ContinuousClock.now
        var inference = ListAppendInference(history: history)
        do {
            try inference.indexAppends()
        } catch {
            return .undecidable(model: model, because: "\(error)", transactions: history.count)
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
        var tally = recorder.tally
        return searchAndJudge(
            history, keys: inference.keyCount, graph: graph, started: started, tally: &tally,
            explain: recorder.explain)
    }
}
