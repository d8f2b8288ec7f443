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

    init(inference: ListAppendInference, realtime: Bool) {
        self.inference = inference
        self.realtime = realtime
        if realtime {
            let outcome = inference.history.outcome
            let completeNanos = inference.history.completeNanos
            var order: [Int32] = []
            order.reserveCapacity(outcome.count)
            for transaction in 0..<outcome.count where outcome[transaction] == .ok { order.append(Int32(transaction)) }
            // Histories are usually close to completion order already; the sort is stable for equal times.
            order.withUnsafeMutableBufferPointer { order in
                completeNanos.withUnsafeBufferPointer { complete in
                    order.sort {
                        complete[Int($0)] < complete[Int($1)] || (complete[Int($0)] == complete[Int($1)] && $0 < $1)
                    }
                }
            }
            completionOrder = order
        } else {
            completionOrder = []
        }
    }

    var nodeCount: Int { inference.history.count + completionOrder.count }

    /// Calls `emit(from, to, label)` for every edge, in the same order on every call. Hot: arrays are bound to
    /// locals once so the loops index plain buffers.
    func enumerate(_ emit: (Int32, Int32, UInt8) -> Void) {
        let history = inference.history
        let ww = EdgeLabels.ww.rawValue
        let wr = EdgeLabels.wr.rawValue
        let rw = EdgeLabels.rw.rawValue
        let outcome = history.outcome
        let versionStart = inference.versionStart
        let versionWriter = inference.versionWriter
        let failed = TransactionOutcome.fail
        @inline(__always) func graphWriter(_ position: Int) -> Int32 {
            let writer = versionWriter[position]
            return writer >= 0 && outcome[Int(writer)] != failed ? writer : -1
        }
        for key in 0..<inference.keyCount {
            let lower = Int(versionStart[key])
            let upper = Int(versionStart[key + 1])
            if upper - lower < 2 { continue }
            var previous = graphWriter(lower)
            for position in (lower + 1)..<upper {
                let writer = graphWriter(position)
                if previous >= 0 && writer >= 0 && previous != writer { emit(previous, writer, ww) }
                previous = writer
            }
        }
        let incompatibleReads = inference.incompatibleReads
        let checkIncompatible = !incompatibleReads.isEmpty
        let opStart = history.opStart
        let opKey = history.opKey
        let opIsAppend = history.opIsAppend
        let opArgument = history.opArgument
        let readStart = history.readStart
        let keys = inference.keys
        let keyBase = inference.keyBase
        for transaction in 0..<history.count where outcome[transaction] == .ok {
            let reader = Int32(transaction)
            let first = Int(opStart[transaction])
            for op in first..<Int(opStart[transaction + 1]) where !opIsAppend[op] {
                let read = opArgument[op]
                if read == ListAppendHistory.unknownRead { continue }
                // External reads only: the first op of the transaction on this key.
                let key = opKey[op]
                var external = true
                for earlier in first..<op where opKey[earlier] == key {
                    external = false
                    break
                }
                if !external { continue }
                if checkIncompatible && incompatibleReads.contains(read) { continue }
                let slot = Int(keys[op] &- keyBase)
                let length = Int(readStart[Int(read) + 1] &- readStart[Int(read)])
                let base = Int(versionStart[slot])
                if length > 0 {
                    let writer = graphWriter(base + length - 1)
                    if writer >= 0 && writer != reader { emit(writer, reader, wr) }
                }
                if base + length < Int(versionStart[slot + 1]) {
                    let writer = graphWriter(base + length)
                    if writer >= 0 && writer != reader { emit(reader, writer, rw) }
                }
            }
        }
        guard realtime else { return }
        let process = EdgeLabels.process.rawValue
        let realtimeLabel = EdgeLabels.realtime.rawValue
        let processOf = history.process
        var lastOfProcess: [Int32: Int32] = [:]
        for transaction in 0..<history.count where outcome[transaction] != .fail {
            let current = Int32(transaction)
            if let previous = lastOfProcess.updateValue(current, forKey: processOf[transaction]),
                outcome[Int(previous)] == .ok
            {
                emit(previous, current, process)
            }
        }
        let firstBarrier = Int32(history.count)
        let completionOrder = completionOrder
        let completeNanos = history.completeNanos
        for (index, transaction) in completionOrder.enumerated() {
            let barrier = firstBarrier + Int32(index)
            emit(transaction, barrier, realtimeLabel)
            if index + 1 < completionOrder.count { emit(barrier, barrier + 1, realtimeLabel) }
        }
        let invokeNanos = history.invokeNanos
        for transaction in 0..<history.count where outcome[transaction] != .fail {
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
