import KilnCore
/// The cycle part of every Elle checker (list-append and rw-register): given a dependency graph, finds its cyclic
/// strongly connected components and, in each, the shortest cycle of every class and variant the model needs,
/// forbidden kinds first. Workload-specific code only builds the graph and explains edges.
///
/// Guarantees: a forbidden kind whose search hit the deadline without finding a cycle is in `timedOut` (the verdict
/// is then `unknown` unless another forbidden anomaly was found), never silently absent.
struct CycleAnomalySearch {
    let model: ConsistencyModel
    let searchTimeLimit: Duration
    let allowedSearchTimeLimit: Duration

    struct Outcome {
        var components: [[Int32]]
        var timedOut: Set<AnomalyKind>
    }

    /// Searches `graph`; `record(kind, cycle)` is called once per cyclic component and cycle class found.
    func run(
        graph: DependencyGraph, started: ContinuousClock.Instant, record: (AnomalyKind, [CycleEdge]) -> Void
    ) -> Outcome {
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
        if components.isEmpty { return Outcome(components: [], timedOut: []) }
        let deadline = started + searchTimeLimit
        var search = CycleSearch(graph: graph)
        let variants: [CycleVariant] = model.needsRealtimeEdges ? [.none, .process, .realtime] : [.none]
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
                            cycleClass, variant, in: component, graph: graph, search: &search, deadline: passDeadline)
                        {
                        case .found(let cycle):
                            found[index].insert(cycleClass)
                            record(kind, cycle)
                        case .none: break
                        case .timedOut: timedOut.insert(kind)
                        }
                    }
                }
            }
        }
        return Outcome(components: components, timedOut: timedOut)
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
                    case .timedOut: return .timedOut
                    }
                }
            }
        }
        return .none
    }

    /// The steps of a found cycle, rotated to start at a transaction, with real-time barrier nodes (indices
    /// `>= transactions`) folded into single real-time steps between transactions.
    static func transactionSteps(_ cycle: [CycleEdge], transactions: Int) -> [(from: Int32, to: Int32, label: EdgeLabels)]
    {
        let limit = Int32(transactions)
        var steps: [(from: Int32, to: Int32, label: EdgeLabels)] = []
        var edges = cycle
        if let first = edges.firstIndex(where: { $0.from < limit }) {
            edges = Array(edges[first...] + edges[..<first])
        }
        for edge in edges {
            if edge.from >= limit, var last = steps.popLast() {
                last.to = edge.to
                steps.append(last)
            } else {
                steps.append((edge.from, edge.to, edge.label))
            }
        }
        return steps
    }
}

extension ElleCheckResult {
    /// The verdict of a checker run: invalid when a forbidden kind was found, unknown when a forbidden kind's search
    /// timed out without one, else valid.
    static func judged(
        model: ConsistencyModel, counts: [AnomalyKind: Int], timedOut: Set<AnomalyKind>, witnesses: [AnomalyWitness],
        statistics: Statistics
    ) -> ElleCheckResult {
        let forbiddenFound = counts.keys.filter { model.forbidden.contains($0) }.sorted()
        let forbiddenTimedOut = timedOut.filter { model.forbidden.contains($0) && counts[$0] == nil }
        let validity: Validity =
            !forbiddenFound.isEmpty ? .invalid : (forbiddenTimedOut.isEmpty ? .valid : .unknown)
        return ElleCheckResult(
            model: model, validity: validity, counts: counts, forbiddenFound: forbiddenFound,
            searchesTimedOut: timedOut.filter { counts[$0] == nil }.sorted(),
            witnesses: witnesses.sorted { $0.kind < $1.kind }, error: nil, statistics: statistics)
    }

    /// A history the checker could not read: unknown, with the reason.
    static func undecidable(model: ConsistencyModel, because message: String, transactions: Int) -> ElleCheckResult {
        ElleCheckResult(
            model: model, validity: .unknown, counts: [:], forbiddenFound: [], searchesTimedOut: [], witnesses: [],
            error: message,
            statistics: .init(
                transactions: transactions, microOps: 0, keys: 0, edges: 0, cyclicComponents: 0, largestComponent: 0,
                seconds: 0))
    }
}
