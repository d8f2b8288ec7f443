/// The edges of the dependency graph of an inferred list-append history: ww, wr and rw edges from the version
/// orders, then the process and real-time edges of `OrderEdges` (barrier nodes after the transactions).
struct DependencyEdges {
    let inference: ListAppendInference
    let order: OrderEdges

    init(inference: ListAppendInference, realtime: Bool) {
        self.inference = inference
        let history = inference.history
        order = OrderEdges(
            process: history.process, invokeNanos: history.invokeNanos, completeNanos: history.completeNanos,
            outcome: history.outcome, enabled: realtime)
    }

    var nodeCount: Int { inference.history.count + order.barrierCount }

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
        order.enumerate(emit)
    }
}
