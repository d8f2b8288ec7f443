/// One edge of a cycle found in the graph: node indices (transactions, or real-time barrier nodes) and the single
/// label the search used it as.
struct CycleEdge: Hashable {
    var from: Int32
    var to: Int32
    var label: EdgeLabels
}

/// Breadth-first search for the shortest cycle of one anomaly class through a given anchor edge, inside one
/// strongly connected component. The search walks the product of the graph and a small automaton whose state says
/// how many rw edges were taken (0, 1, 2+), whether the last edge was rw, whether a wr edge was seen and whether two
/// rw edges were adjacent, so "exactly one rw" (G-single), "rw edges never adjacent" (G-nonadjacent) and "two
/// adjacent rw edges" (G2-item) are decided exactly on the walk. Found walks that revisit a node are skipped:
/// every witness is a simple cycle.
struct CycleSearch {
    let graph: DependencyGraph
    /// `localIndex[node]`: position in the component being searched, -1 outside it.
    var localIndex: [Int32]
    var members: [Int32] = []
    private var visited: [UInt64] = []
    private var queueNode: [Int32] = []
    private var queueState: [UInt8] = []
    private var queueParent: [Int32] = []
    private var queueLabel: [UInt8] = []
    /// Pops between deadline checks.
    private var popsSinceClock = 0

    init(graph: DependencyGraph) {
        self.graph = graph
        localIndex = [Int32](repeating: -1, count: graph.nodeCount)
    }

    mutating func enter(component: [Int32]) {
        for node in members { localIndex[Int(node)] = -1 }
        members = component
        for (position, node) in component.enumerated() { localIndex[Int(node)] = Int32(position) }
        visited = [UInt64](repeating: 0, count: component.count)
    }

    /// The edges a cycle of this class may use, and the label of the edges the search anchors on.
    static func labels(_ cycleClass: CycleClass, _ variant: CycleVariant) -> (allowed: EdgeLabels, anchor: EdgeLabels) {
        var allowed: EdgeLabels
        var anchor: EdgeLabels
        switch cycleClass {
        case .g0: (allowed, anchor) = ([.ww], .ww)
        case .g1c: (allowed, anchor) = ([.ww, .wr], .wr)
        case .gSingle, .gNonadjacent, .g2Item: (allowed, anchor) = (.data, .rw)
        }
        switch variant {
        case .none: break
        case .process: (allowed, anchor) = (allowed.union(.process), .process)
        case .realtime: (allowed, anchor) = (allowed.union([.process, .realtime]), .realtime)
        }
        return (allowed, anchor)
    }

    // Automaton state bits.
    private static let countMask: UInt8 = 0b11
    private static let lastRW: UInt8 = 1 << 2
    private static let seenWR: UInt8 = 1 << 3
    private static let adjacent: UInt8 = 1 << 4

    @inline(__always)
    private static func step(_ state: UInt8, _ label: UInt8, _ cycleClass: CycleClass) -> UInt8? {
        let isRW = label == EdgeLabels.rw.rawValue
        var count = state & countMask
        var next = state
        if isRW {
            if state & lastRW != 0 {
                if cycleClass == .gNonadjacent { return nil }
                next |= adjacent
            }
            count = min(2, count + 1)
            if cycleClass == .gSingle && count > 1 { return nil }
            next |= lastRW
        } else {
            next &= ~lastRW
        }
        if label == EdgeLabels.wr.rawValue { next |= seenWR }
        return (next & ~countMask) | count
    }

    @inline(__always)
    private static func accepts(_ state: UInt8, firstRW: Bool, _ cycleClass: CycleClass) -> Bool {
        let count = state & countMask
        let closingAdjacent = firstRW && state & lastRW != 0
        switch cycleClass {
        case .g0: return true
        case .g1c: return state & seenWR != 0
        case .gSingle: return count == 1
        case .gNonadjacent: return count == 2 && !closingAdjacent
        case .g2Item: return count == 2 && (closingAdjacent || state & adjacent != 0)
        }
    }

    enum Outcome {
        case found([CycleEdge])
        case none
        case timedOut
    }

    /// The shortest walk-found simple cycle of `cycleClass` that starts with the anchor edge `from -> to` used as
    /// `anchorLabel`, using only `allowed` edges inside the current component.
    mutating func search(
        from: Int32, to: Int32, anchorLabel: EdgeLabels, allowed: EdgeLabels, cycleClass: CycleClass,
        deadline: ContinuousClock.Instant
    ) -> Outcome {
        if ContinuousClock.now >= deadline { return .timedOut }
        let start = localIndex[Int(to)]
        let target = localIndex[Int(from)]
        let firstRW = anchorLabel == .rw
        guard let initial = Self.step(0, anchorLabel.rawValue, cycleClass) else { return .none }
        queueNode.removeAll(keepingCapacity: true)
        queueState.removeAll(keepingCapacity: true)
        queueParent.removeAll(keepingCapacity: true)
        queueLabel.removeAll(keepingCapacity: true)
        var touched: [Int32] = [start]
        defer { for node in touched { visited[Int(node)] = 0 } }
        queueNode.append(start)
        queueState.append(initial)
        queueParent.append(-1)
        queueLabel.append(anchorLabel.rawValue)
        visited[Int(start)] |= 1 << UInt64(initial)
        let mask = allowed.rawValue
        var head = 0
        while head < queueNode.count {
            popsSinceClock += 1
            if popsSinceClock >= 4096 {
                popsSinceClock = 0
                if ContinuousClock.now >= deadline { return .timedOut }
            }
            let node = queueNode[head]
            let state = queueState[head]
            if node == target {
                if Self.accepts(state, firstRW: firstRW, cycleClass),
                    let cycle = cycle(ending: head, from: from, to: to, anchorLabel: anchorLabel)
                {
                    return .found(cycle)
                }
                head += 1
                continue
            }
            for edge in graph.edges(of: members[Int(node)]) {
                let next = localIndex[Int(graph.edgeTarget[edge])]
                if next < 0 { continue }
                var labels = graph.edgeLabels[edge] & mask
                while labels != 0 {
                    let label = labels & (0 &- labels)
                    labels &= labels - 1
                    guard let nextState = Self.step(state, label, cycleClass) else { continue }
                    let bit = UInt64(1) << UInt64(nextState)
                    if visited[Int(next)] & bit != 0 { continue }
                    if visited[Int(next)] == 0 { touched.append(next) }
                    visited[Int(next)] |= bit
                    queueNode.append(next)
                    queueState.append(nextState)
                    queueParent.append(Int32(head))
                    queueLabel.append(label)
                }
            }
            head += 1
        }
        return .none
    }

    /// The cycle anchor + walk to queue entry `end`, nil when the walk visits a node twice.
    private func cycle(ending end: Int, from: Int32, to: Int32, anchorLabel: EdgeLabels) -> [CycleEdge]? {
        var walk: [CycleEdge] = []
        var entry = end
        while queueParent[entry] >= 0 {
            let parent = Int(queueParent[entry])
            walk.append(
                CycleEdge(
                    from: members[Int(queueNode[parent])], to: members[Int(queueNode[entry])],
                    label: EdgeLabels(rawValue: queueLabel[entry])))
            entry = parent
        }
        walk.reverse()
        let cycle = [CycleEdge(from: from, to: to, label: anchorLabel)] + walk
        var seen = Set<Int32>()
        for edge in cycle where !seen.insert(edge.from).inserted { return nil }
        return cycle
    }
}
