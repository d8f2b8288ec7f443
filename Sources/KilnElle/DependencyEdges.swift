/// The edges of the dependency graph of an inferred list-append history. Nodes `0 ..< transactions` are the
/// transactions; with real-time edges, nodes `transactions ..< transactions + m` are barriers, one per `ok`
/// completion in time order: `T -> B_j` for the `j`th completion, `B_j -> B_{j+1}`, and `B_j -> T` for the last
/// completion before `T` was invoked. So `T1` reaches `T2` through barriers exactly when `T1` completed before `T2`
/// was invoked — real-time order in O(n) edges instead of Elle's O(n × concurrency).
struct DependencyEdges {
    let inference: ListAppendInference
    let realtime: Bool
    /// `ok` transactions by completion time (only with `realtime`).
    let completionOrder: [Int32]
    let completionTimes: [Int64]

    init(inference: ListAppendInference, realtime: Bool) {
        self.inference = inference
        self.realtime = realtime
        if realtime {
            let history = inference.history
            var order = (0..<Int32(history.count)).filter { history.outcome[Int($0)] == .ok }
            order.sort { history.completeNanos[Int($0)] < history.completeNanos[Int($1)] }
            completionOrder = order
            completionTimes = order.map { history.completeNanos[Int($0)] }
        } else {
            completionOrder = []
            completionTimes = []
        }
    }

    var nodeCount: Int { inference.history.count + completionOrder.count }

    /// Calls `emit(from, to, label)` for every edge, in the same order on every call.
    func enumerate(_ emit: (Int32, Int32, UInt8) -> Void) {
        let history = inference.history
        let ww = EdgeLabels.ww.rawValue
        let wr = EdgeLabels.wr.rawValue
        let rw = EdgeLabels.rw.rawValue
        for key in 0..<inference.keyCount {
            let lower = Int(inference.versionStart[key])
            let upper = Int(inference.versionStart[key + 1])
            if upper - lower < 2 { continue }
            var previous = inference.graphWriter(lower)
            for position in (lower + 1)..<upper {
                let writer = inference.graphWriter(position)
                if previous >= 0 && writer >= 0 && previous != writer { emit(previous, writer, ww) }
                previous = writer
            }
        }
        let checkIncompatible = !inference.incompatibleReads.isEmpty
        for transaction in 0..<history.count where history.outcome[transaction] == .ok {
            let reader = Int32(transaction)
            for op in history.ops(of: transaction) where !history.opIsAppend[op] {
                let read = history.opArgument[op]
                if read == ListAppendHistory.unknownRead { continue }
                if !inference.isFirstOnKey(op: op, transaction: transaction) { continue }
                if checkIncompatible && inference.incompatibleReads.contains(read) { continue }
                let key = inference.slot(op)
                let length = history.readRange(read).count
                let base = Int(inference.versionStart[key])
                if length > 0 {
                    let writer = inference.graphWriter(base + length - 1)
                    if writer >= 0 && writer != reader { emit(writer, reader, wr) }
                }
                if base + length < Int(inference.versionStart[key + 1]) {
                    let writer = inference.graphWriter(base + length)
                    if writer >= 0 && writer != reader { emit(reader, writer, rw) }
                }
            }
        }
        guard realtime else { return }
        let process = EdgeLabels.process.rawValue
        let realtimeLabel = EdgeLabels.realtime.rawValue
        var lastOfProcess: [Int32: Int32] = [:]
        for transaction in 0..<history.count where history.outcome[transaction] != .fail {
            let current = Int32(transaction)
            if let previous = lastOfProcess.updateValue(current, forKey: history.process[transaction]),
                history.outcome[Int(previous)] == .ok
            {
                emit(previous, current, process)
            }
        }
        let firstBarrier = Int32(history.count)
        for (index, transaction) in completionOrder.enumerated() {
            let barrier = firstBarrier + Int32(index)
            emit(transaction, barrier, realtimeLabel)
            if index + 1 < completionOrder.count { emit(barrier, barrier + 1, realtimeLabel) }
        }
        for transaction in 0..<history.count where history.outcome[transaction] != .fail {
            // Completions strictly before this invocation: the count of times < invoke.
            let invoke = history.invokeNanos[transaction]
            var low = 0
            var high = completionTimes.count
            while low < high {
                let middle = (low + high) >> 1
                if completionTimes[middle] < invoke { low = middle + 1 } else { high = middle }
            }
            if low > 0 { emit(firstBarrier + Int32(low - 1), Int32(transaction), realtimeLabel) }
        }
    }
}
