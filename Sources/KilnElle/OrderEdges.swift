/// The process and real-time edges of a dependency graph, shared by the list-append and rw-register checkers.
/// Nodes `0 ..< transactions` are the transactions; nodes `transactions ..< transactions + m` are barriers, one per
/// `ok` completion in time order: `T -> B_j` for the `j`th completion, `B_j -> B_{j+1}`, and `B_j -> T` for the last
/// completion before `T` was invoked. So `T1` reaches `T2` through barriers exactly when `T1` completed before `T2`
/// was invoked — real-time order in O(n) edges instead of Elle's O(n × concurrency).
///
/// Guarantees: with `enabled` false it emits nothing and adds no nodes; `fail` transactions get no edge.
struct OrderEdges {
    let process: [Int32]
    let invokeNanos: [Int64]
    let completeNanos: [Int64]
    let outcome: [TransactionOutcome]
    let enabled: Bool
    /// `ok` transactions by completion time (only when `enabled`).
    let completionOrder: [Int32]

    init(
        process: [Int32], invokeNanos: [Int64], completeNanos: [Int64], outcome: [TransactionOutcome], enabled: Bool
    ) {
        self.process = process
        self.invokeNanos = invokeNanos
        self.completeNanos = completeNanos
        self.outcome = outcome
        self.enabled = enabled
        guard enabled else {
            completionOrder = []
            return
        }
        var order: [Int32] = []
        order.reserveCapacity(outcome.count)
        for transaction in 0..<outcome.count where outcome[transaction] == .ok { order.append(Int32(transaction)) }
        // Histories are usually close to completion order already; ties are broken by index.
        order.withUnsafeMutableBufferPointer { order in
            completeNanos.withUnsafeBufferPointer { complete in
                order.sort {
                    complete[Int($0)] < complete[Int($1)] || (complete[Int($0)] == complete[Int($1)] && $0 < $1)
                }
            }
        }
        completionOrder = order
    }

    /// Barrier nodes added after the transactions.
    var barrierCount: Int { completionOrder.count }

    /// Calls `emit(from, to, label)` for every process and real-time edge, in the same order on every call.
    func enumerate(_ emit: (Int32, Int32, UInt8) -> Void) {
        guard enabled else { return }
        let processLabel = EdgeLabels.process.rawValue
        let realtimeLabel = EdgeLabels.realtime.rawValue
        let transactions = outcome.count
        var lastOfProcess: [Int32: Int32] = [:]
        for transaction in 0..<transactions where outcome[transaction] != .fail {
            let current = Int32(transaction)
            if let previous = lastOfProcess.updateValue(current, forKey: process[transaction]),
                outcome[Int(previous)] == .ok
            {
                emit(previous, current, processLabel)
            }
        }
        let firstBarrier = Int32(transactions)
        for (index, transaction) in completionOrder.enumerated() {
            let barrier = firstBarrier + Int32(index)
            emit(transaction, barrier, realtimeLabel)
            if index + 1 < completionOrder.count { emit(barrier, barrier + 1, realtimeLabel) }
        }
        for transaction in 0..<transactions where outcome[transaction] != .fail {
            // Completions strictly before this invocation: the count of times < invoke.
            let invoke = invokeNanos[transaction]
            var low = 0
            var high = completionOrder.count
            while low < high {
                let middle = (low + high) >> 1
                if completeNanos[Int(completionOrder[middle])] < invoke { low = middle + 1 } else { high = middle }
            }
            if low > 0 { emit(firstBarrier + Int32(low - 1), Int32(transaction), realtimeLabel) }
        }
    }
}

extension OrderEdges {
    /// Why a process (`label` `.process`) or real-time edge `from -> to` of a folded cycle of `history` exists.
    static func explain(from: Int, to: Int, label: EdgeLabels, in history: some ColumnarHistory) -> DependencyStep {
        if label == .process {
            return DependencyStep(
                from: from, to: to, relation: .process, key: nil,
                why: "process \(history.process[from]) ran T\(from) (ok) and then T\(to)")
        }
        return DependencyStep(
            from: from, to: to, relation: .realtime, key: nil,
            why: "T\(from) completed (at \(history.completeNanos[from]) ns) before T\(to) was invoked "
                + "(at \(history.invokeNanos[to]) ns)")
    }

    /// A data edge (`label` `.ww`, `.wr` or else rw) for which the checker found no micro-op pair to show.
    static func unexplained(from: Int, to: Int, label: EdgeLabels) -> DependencyStep {
        DependencyStep(
            from: from, to: to, relation: label == .ww ? .ww : label == .wr ? .wr : .rw, key: nil,
            why: "(no single micro-op pair found to explain this edge)")
    }
}
