import Foundation
import KilnCore

/// Jepsen's checker protocol: one function from a history to a result. A checker that cannot decide says
/// `unknown`, never `valid`.
public protocol HistoryChecker {
    associatedtype History
    associatedtype Result
    func check(_ history: History) -> Result
}

/// Elle's list-append checker: infers version orders and the dependency graph of a list-append history, finds
/// every non-predicate anomaly of Adya's taxonomy (and Elle's extensions), and judges the history against one
/// consistency model.
public struct ListAppendChecker: HistoryChecker {
    public typealias History = ListAppendHistory
    public typealias Result = ListAppendCheckResult

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
        allowedSearchTimeLimit: Duration = .seconds(5),
        witnessesPerKind: Int = 10
    ) {
        self.model = model
        self.searchTimeLimit = searchTimeLimit
        self.allowedSearchTimeLimit = allowedSearchTimeLimit
        self.witnessesPerKind = witnessesPerKind
    }

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
        let needsRealtime = model.needsRealtimeEdges
        let edges = DependencyEdges(inference: inference, realtime: needsRealtime)
        let graph = DependencyGraph(nodeCount: edges.nodeCount) { emit in edges.enumerate(emit) }
        // Kahn's sort first: an acyclic graph (every valid history) never pays for Tarjan.
        let suspects = nodesOnOrAfterCycles(of: graph)
        var components: [[Int32]] = []
        if !suspects.isEmpty {
            var localIndex = [Int32](repeating: -1, count: graph.nodeCount)
            for (position, node) in suspects.enumerated() { localIndex[Int(node)] = Int32(position) }
            components = stronglyConnectedComponents(
                of: graph, labels: .all, members: suspects, localIndex: localIndex)
        }
        var timedOut = Set<AnomalyKind>()
        if !components.isEmpty {
            let deadline = started + searchTimeLimit
            var search = CycleSearch(graph: graph)
            let variants: [CycleVariant] = needsRealtime ? [.none, .process, .realtime] : [.none]
            // Forbidden kinds first, in every component, so that allowed kinds never use up the time limit.
            var found = [Set<CycleClass>](repeating: [], count: components.count)
            for forbiddenPass in [true, false] {
                let passDeadline =
                    forbiddenPass ? deadline : min(deadline, ContinuousClock.now + allowedSearchTimeLimit)
                for (index, component) in components.enumerated() {
                    search.enter(component: component)
                    for variant in variants {
                        for cycleClass in CycleClass.allCases where !found[index].contains(cycleClass) {
                            let kind = AnomalyKind.cycle(cycleClass, variant)
                            if model.forbidden.contains(kind) != forbiddenPass { continue }
                            switch Self.findCycle(
                                cycleClass, variant, in: component, graph: graph, search: &search,
                                deadline: passDeadline)
                            {
                            case .found(let cycle):
                                found[index].insert(cycleClass)
                                recorder.recordCycle(kind, cycle)
                            case .none: break
                            case .timedOut: timedOut.insert(kind)
                            }
                        }
                    }
                }
            }
        }
        let counts = recorder.counts
        let forbiddenFound = counts.keys.filter { model.forbidden.contains($0) }.sorted()
        let forbiddenTimedOut = timedOut.filter { model.forbidden.contains($0) && counts[$0] == nil }
        let validity: Validity =
            !forbiddenFound.isEmpty ? .invalid : (forbiddenTimedOut.isEmpty ? .valid : .unknown)
        return ListAppendCheckResult(
            model: model, validity: validity, counts: counts, forbiddenFound: forbiddenFound,
            searchesTimedOut: timedOut.filter { counts[$0] == nil }.sorted(),
            witnesses: recorder.witnesses.sorted { $0.kind < $1.kind }, error: nil,
            statistics: .init(
                transactions: history.count, microOps: history.opCount, keys: inference.keyCount,
                edges: graph.edgeCount, cyclicComponents: components.count,
                largestComponent: components.map(\.count).max() ?? 0,
                seconds: Self.seconds(ContinuousClock.now - started)))
    }

    /// The first cycle of `cycleClass` / `variant` in `component`: anchors are the edges labelled with the class's
    /// anchor label whose ends share a strongly connected component of the allowed edges (no other anchor can lie on
    /// such a cycle).
    static func findCycle(
        _ cycleClass: CycleClass, _ variant: CycleVariant, in component: [Int32], graph: DependencyGraph,
        search: inout CycleSearch, deadline: ContinuousClock.Instant
    ) -> CycleSearch.Outcome {
        let (allowed, anchor) = CycleSearch.labels(cycleClass, variant)
        let parts = stronglyConnectedComponents(
            of: graph, labels: allowed, members: component, localIndex: search.localIndex)
        var timedOut = false
        for part in parts {
            var partOf = Set<Int32>()
            partOf.reserveCapacity(part.count)
            for node in part { partOf.insert(node) }
            for node in part {
                for edge in graph.edges(of: node) where graph.edgeLabels[edge] & anchor.rawValue != 0 {
                    let target = graph.edgeTarget[edge]
                    if !partOf.contains(target) { continue }
                    switch search.search(
                        from: node, to: target, anchorLabel: anchor, allowed: allowed, cycleClass: cycleClass,
                        deadline: deadline)
                    {
                    case .found(let cycle): return .found(cycle)
                    case .none: continue
                    case .timedOut:
                        timedOut = true
                        break
                    }
                    if timedOut { break }
                }
                if timedOut { break }
            }
            if timedOut { break }
        }
        return timedOut ? .timedOut : .none
    }

    func unknown(because message: String, transactions: Int) -> ListAppendCheckResult {
        ListAppendCheckResult(
            model: model, validity: .unknown, counts: [:], forbiddenFound: [], searchesTimedOut: [], witnesses: [],
            error: message,
            statistics: .init(
                transactions: transactions, microOps: 0, keys: 0, edges: 0, cyclicComponents: 0, largestComponent: 0,
                seconds: 0))
    }

    static func seconds(_ duration: Duration) -> Double {
        duration.seconds
    }
}
