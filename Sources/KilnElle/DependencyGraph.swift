/// Edge labels of the dependency graph, one bit each; an edge may carry several (T1 both ww and wr of T2).
public struct EdgeLabels: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let ww = EdgeLabels(rawValue: 1 << 0)
    public static let wr = EdgeLabels(rawValue: 1 << 1)
    public static let rw = EdgeLabels(rawValue: 1 << 2)
    public static let process = EdgeLabels(rawValue: 1 << 3)
    public static let realtime = EdgeLabels(rawValue: 1 << 4)

    public static let data: EdgeLabels = [.ww, .wr, .rw]
    public static let all: EdgeLabels = [.ww, .wr, .rw, .process, .realtime]
}

/// A directed graph in compressed sparse rows: node `v`'s edges are `edgeStart[v] ..< edgeStart[v + 1]` of
/// `edgeTarget` / `edgeLabels`. Parallel edges with different labels may exist. Built in two passes over the same
/// edge enumeration (count, then fill), so no edge list is ever held beside it.
public struct DependencyGraph: Sendable {
    public private(set) var nodeCount: Int
    public private(set) var edgeStart: [Int32]
    public private(set) var edgeTarget: [Int32]
    public private(set) var edgeLabels: [UInt8]

    public var edgeCount: Int { edgeTarget.count }

    /// `enumerate(emit)` must call `emit(from, to, labels)` for every edge, the same edges in both of its calls.
    public init(nodeCount: Int, enumerate: (_ emit: (Int32, Int32, UInt8) -> Void) -> Void) {
        self.nodeCount = nodeCount
        var degree = [Int32](repeating: 0, count: nodeCount + 1)
        degree.withUnsafeMutableBufferPointer { degree in
            enumerate { from, _, _ in degree[Int(from) + 1] &+= 1 }
            for node in 0..<nodeCount { degree[node + 1] &+= degree[node] }
        }
        let edges = Int(degree[nodeCount])
        var targets = [Int32](repeating: 0, count: edges)
        var labels = [UInt8](repeating: 0, count: edges)
        targets.withUnsafeMutableBufferPointer { targets in
            labels.withUnsafeMutableBufferPointer { labels in
                // `degree[v]` is node v's fill cursor; afterwards it holds v's end (= v + 1's start), so shifting
                // it by one gives the row starts: one array of nodeCount + 1, not two.
                degree.withUnsafeMutableBufferPointer { cursor in
                    enumerate { from, to, label in
                        let slot = Int(cursor[Int(from)])
                        cursor[Int(from)] = Int32(slot + 1)
                        targets[slot] = to
                        labels[slot] = label
                    }
                }
            }
        }
        degree.withUnsafeMutableBufferPointer { cursor in
            var node = nodeCount
            while node > 0 {
                cursor[node] = cursor[node - 1]
                node -= 1
            }
            cursor[0] = 0
        }
        edgeStart = degree
        edgeTarget = targets
        edgeLabels = labels
    }

    @inline(__always)
    public func edges(of node: Int32) -> Range<Int> { Int(edgeStart[Int(node)])..<Int(edgeStart[Int(node) + 1]) }
}

/// Strongly connected components by Tarjan's algorithm with an explicit stack (no recursion: depth is bounded by
/// memory, not by the thread stack, so a 10M-node path is fine).
///
/// Considers only edges whose labels intersect `labels`, and, when `members` is given, only those nodes:
/// `localIndex[node]` must then be the node's position in `members` for members and -1 for every other node (work
/// is proportional to the members and their edges, not to the whole graph). Returns the components of more than
/// one node (a graph without self-edges has a cycle exactly there), each sorted.
public func stronglyConnectedComponents(
    of graph: DependencyGraph, labels: EdgeLabels, members: [Int32]? = nil, localIndex: [Int32] = []
) -> [[Int32]] {
    let mask = labels.rawValue
    let whole = members == nil
    let size = members?.count ?? graph.nodeCount
    var order = [Int32](repeating: -1, count: size)  // discovery index by local node, -1 unvisited
    var low = [Int32](repeating: 0, count: size)
    var onStack = [Bool](repeating: false, count: size)
    var stack: [Int32] = []  // local nodes
    var callNode: [Int32] = []  // local nodes
    var callEdge: [Int32] = []
    var counter: Int32 = 0
    var components: [[Int32]] = []

    @inline(__always) func local(_ node: Int32) -> Int32 { whole ? node : localIndex[Int(node)] }
    @inline(__always) func global(_ node: Int32) -> Int32 { whole ? node : members![Int(node)] }

    for root in 0..<Int32(size) where order[Int(root)] < 0 {
        order[Int(root)] = counter
        low[Int(root)] = counter
        counter += 1
        stack.append(root)
        onStack[Int(root)] = true
        callNode.append(root)
        callEdge.append(graph.edgeStart[Int(global(root))])
        while let node = callNode.last {
            var edge = Int(callEdge[callEdge.count - 1])
            let end = Int(graph.edgeStart[Int(global(node)) + 1])
            var descended = false
            while edge < end {
                let label = graph.edgeLabels[edge]
                let target = local(graph.edgeTarget[edge])
                edge += 1
                if label & mask == 0 || target < 0 { continue }
                if order[Int(target)] < 0 {
                    callEdge[callEdge.count - 1] = Int32(edge)
                    order[Int(target)] = counter
                    low[Int(target)] = counter
                    counter += 1
                    stack.append(target)
                    onStack[Int(target)] = true
                    callNode.append(target)
                    callEdge.append(graph.edgeStart[Int(global(target))])
                    descended = true
                    break
                } else if onStack[Int(target)] {
                    low[Int(node)] = min(low[Int(node)], order[Int(target)])
                }
            }
            if descended { continue }
            callNode.removeLast()
            callEdge.removeLast()
            if let parent = callNode.last { low[Int(parent)] = min(low[Int(parent)], low[Int(node)]) }
            if low[Int(node)] == order[Int(node)] {
                var component: [Int32] = []
                while true {
                    let member = stack.removeLast()
                    onStack[Int(member)] = false
                    component.append(global(member))
                    if member == node { break }
                }
                if component.count > 1 { components.append(component.sorted()) }
            }
        }
    }
    return components
}

/// The nodes Kahn's topological sort cannot remove: those on a cycle or reachable from one (an acyclic graph
/// leaves none). A cheap first pass — one in-degree array and one stack — so that Tarjan runs only where cycles
/// may be.
public func nodesOnOrAfterCycles(of graph: DependencyGraph) -> [Int32] {
    let n = graph.nodeCount
    var inDegree = [Int32](repeating: 0, count: n)
    var ready: [Int32] = []
    var removed = 0
    graph.edgeTarget.withUnsafeBufferPointer { targets in
        graph.edgeStart.withUnsafeBufferPointer { starts in
            inDegree.withUnsafeMutableBufferPointer { inDegree in
                for target in targets { inDegree[Int(target)] &+= 1 }
                for node in 0..<n where inDegree[node] == 0 { ready.append(Int32(node)) }
                while let node = ready.popLast() {
                    removed += 1
                    for edge in Int(starts[Int(node)])..<Int(starts[Int(node) + 1]) {
                        let target = Int(targets[edge])
                        inDegree[target] &-= 1
                        if inDegree[target] == 0 { ready.append(Int32(target)) }
                    }
                }
            }
        }
    }
    if removed == n { return [] }
    var remaining: [Int32] = []
    remaining.reserveCapacity(n - removed)
    for node in 0..<n where inDegree[node] > 0 { remaining.append(Int32(node)) }
    return remaining
}
