import Foundation

/// Elle's rw-register checker: infers what an rw-register history proves about each key's version order
/// (`RWRegisterInference`), builds the dependency graph, and finds the cycle anomalies (with the list-append
/// checker's search, `CycleAnomalySearch`) and the non-cycle ones that apply to registers: G1a (aborted read), G1b
/// (intermediate read), internal inconsistency, garbage reads and lost updates. Judged against one model, with the
/// same verdict rule: a forbidden kind found is invalid, a forbidden search that timed out without one is unknown.
public struct RWRegisterChecker: ElleChecker {
    public typealias History = RWRegisterHistory
    public typealias Result = ElleCheckResult

    public var options: ElleCheckOptions

    public init(options: ElleCheckOptions) { self.options = options }

    public func check(_ history: RWRegisterHistory) -> ElleCheckResult {
        let started = ContinuousClock.now
        var inference = RWRegisterInference(history: history)
        do {
            try inference.indexWrites()
        } catch {
            return .undecidable(model: model, because: "\(error)", transactions: history.count)
        }
        let candidates = inference.inferVersionOrders()
        var recorder = RWRegisterAnomalyRecorder(inference: inference, witnessesPerKind: witnessesPerKind)
        recorder.findNonCycleAnomalies(lostUpdateCandidates: candidates)
        let order = OrderEdges(
            process: history.process, invokeNanos: history.invokeNanos, completeNanos: history.completeNanos,
            outcome: history.outcome, enabled: model.needsRealtimeEdges)
        let graph = DependencyGraph(nodeCount: inference.graphNodeCount(order: order)) { emit in
            inference.enumerateEdges(order: order, emit)
        }
        var tally = recorder.tally
        return searchAndJudge(
            history, keys: inference.keyCount, graph: graph, started: started, tally: &tally,
            explain: recorder.explain)
    }
}

/// Finds the non-cycle anomalies of an inferred rw-register history, counts every anomaly, and keeps the first
/// witnesses of each kind with their explanations.
struct RWRegisterAnomalyRecorder {
    let inference: RWRegisterInference
    /// The anomalies counted and the witnesses kept.
    private(set) var tally: AnomalyTally

    init(inference: RWRegisterInference, witnessesPerKind: Int) {
        self.inference = inference
        tally = AnomalyTally(witnessesPerKind: witnessesPerKind)
    }

    var history: RWRegisterHistory { inference.history }

    private mutating func record(_ kind: AnomalyKind, _ transactions: [Int], key: Int?, _ explanation: () -> String) {
        tally.record(kind, transactions, key: key, in: history, explanation)
    }

    private func key(_ op: Int) -> Int { Int(history.opKey[op]) }
    private static func render(_ value: Int32) -> String { value == RWRegisterHistory.initialValue ? "nil" : "\(value)" }

    mutating func findNonCycleAnomalies(lostUpdateCandidates: [(slot: Int32, read: Int32, transaction: Int32, op: Int32)])
    {
        let history = history
        let outcome = history.outcome
        let opStart = history.opStart
        let opKey = history.opKey
        let opValue = history.opValue
        let opIsWrite = history.opIsWrite
        for transaction in 0..<history.count where outcome[transaction] == .ok {
            let first = Int(opStart[transaction])
            for op in first..<Int(opStart[transaction + 1]) where !opIsWrite[op] {
                // The latest earlier op on this key in the transaction, if any: the read must show its value.
                var earlier = -1
                var scan = op - 1
                while scan >= first {
                    if opKey[scan] == opKey[op] {
                        earlier = scan
                        break
                    }
                    scan -= 1
                }
                if earlier >= 0 {
                    if opValue[earlier] != opValue[op] {
                        let what = opIsWrite[earlier] ? "its own write of" : "its own earlier read of"
                        record(.internalInconsistency, [transaction], key: Int(opKey[op])) {
                            "T\(transaction) read \(Self.render(opValue[op])) of key \(Int(opKey[op])) after \(what) "
                                + "\(Self.render(opValue[earlier]))"
                        }
                    }
                    continue
                }
                let value = opValue[op]
                if value == RWRegisterHistory.initialValue { continue }
                let write = inference.writeIndex(slot: inference.slot(op), value: value)
                if write < 0 {
                    record(.garbageRead, [transaction], key: Int(opKey[op])) {
                        "T\(transaction) read \(value) of key \(Int(opKey[op])), but nobody wrote \(value) to key \(Int(opKey[op]))"
                    }
                    continue
                }
                let writer = Int(inference.writeTransaction[write])
                if writer == transaction {
                    record(.internalInconsistency, [transaction], key: Int(opKey[op])) {
                        "T\(transaction) read \(value) of key \(Int(opKey[op])) before it wrote \(value) itself"
                    }
                } else if outcome[writer] == .fail {
                    record(.g1a, [transaction, writer], key: Int(opKey[op])) {
                        "T\(transaction) read \(value) of key \(Int(opKey[op])), which T\(writer) wrote; T\(writer) failed"
                    }
                } else if !inference.writeFinal[write] {
                    let later = history.ops(of: writer).filter { opIsWrite[$0] && opKey[$0] == opKey[op] }
                        .map { String(opValue[$0]) }.joined(separator: ", then ")
                    record(.g1b, [transaction, writer], key: Int(opKey[op])) {
                        "T\(transaction) read \(value) of key \(Int(opKey[op])), an intermediate state of T\(writer), which "
                            + "wrote \(later) to key \(Int(opKey[op]))"
                    }
                }
            }
        }
        recordLostUpdates(lostUpdateCandidates)
    }

    /// Two or more committed transactions that read the same version of a key and then wrote it: in any serial
    /// order the later one would have read the earlier one's write.
    private mutating func recordLostUpdates(_ candidates: [(slot: Int32, read: Int32, transaction: Int32, op: Int32)])
    {
        let sorted = candidates.sorted { ($0.slot, $0.read, $0.transaction) < ($1.slot, $1.read, $1.transaction) }
        var start = 0
        while start < sorted.count {
            var end = start + 1
            while end < sorted.count && sorted[end].slot == sorted[start].slot && sorted[end].read == sorted[start].read {
                end += 1
            }
            if end - start > 1 {
                let transactions = sorted[start..<end].map { Int($0.transaction) }
                let op = Int(sorted[start].op)
                let value = history.opValue[op]
                let opKey = history.opKey
                record(.lostUpdate, transactions, key: Int(opKey[op])) {
                    transactions.map { "T\($0)" }.joined(separator: ", ")
                        + (transactions.count == 2 ? " both read " : " all read ")
                        + "\(Self.render(value)) of key \(Int(opKey[op])) and then wrote key \(Int(opKey[op])): all but one of their "
                        + "writes were made without seeing the others"
                }
            }
            start = end
        }
    }

    // MARK: cycles

    /// The external read of `transaction` on the key of... every external read op of `transaction`, with its write
    /// index (`RWRegisterInference.initialRead` for the initial state).
    private func externalReads(of transaction: Int) -> [(op: Int, read: Int32)] {
        history.ops(of: transaction).compactMap { op in
            let read = inference.opWrite[op]
            guard !history.opIsWrite[op], read != RWRegisterInference.noWriter else { return nil }
            return (op, read)
        }
    }

    /// Why `from -> to` exists as `label`.
    func explain(from: Int, to: Int, label: EdgeLabels) -> DependencyStep {
        switch label {
        case .ww:
            for (op, read) in externalReads(of: to) where read >= 0 && Int(inference.writeTransaction[Int(read)]) == from {
                guard let write = lastWrite(of: to, key: history.opKey[op]) else { continue }
                return DependencyStep(
                    from: from, to: to, relation: .ww, key: key(op),
                    why: "T\(to) read \(history.opValue[op]) of key \(key(op)), which T\(from) wrote, and then wrote "
                        + "\(write): \(history.opValue[op]) comes right before \(write) in key \(key(op))'s versions")
            }
        case .wr:
            for (op, read) in externalReads(of: to) where read >= 0 && Int(inference.writeTransaction[Int(read)]) == from {
                return DependencyStep(
                    from: from, to: to, relation: .wr, key: key(op),
                    why: "T\(to) read \(history.opValue[op]) of key \(key(op)), which T\(from) wrote")
            }
        case .rw:
            for (op, read) in externalReads(of: from) {
                guard let write = lastWrite(of: to, key: history.opKey[op]) else { continue }
                if read == RWRegisterInference.initialRead {
                    return DependencyStep(
                        from: from, to: to, relation: .rw, key: key(op),
                        why: "T\(from) read key \(key(op)) never written (nil), and T\(to) wrote \(write) to it, so "
                            + "T\(from) did not see T\(to)'s write")
                }
                let successors = Int(inference.successorStart[Int(read)])..<Int(inference.successorStart[Int(read) + 1])
                if successors.contains(where: {
                    Int(inference.writeTransaction[Int(inference.successorWrite[$0])]) == to
                }) {
                    return DependencyStep(
                        from: from, to: to, relation: .rw, key: key(op),
                        why: "T\(from) read \(history.opValue[op]) of key \(key(op)), which T\(to) read and then "
                            + "overwrote with \(write), so T\(from) did not see T\(to)'s write")
                }
            }
        default:
            return OrderEdges.explain(from: from, to: to, label: label, in: history)
        }
        return OrderEdges.unexplained(from: from, to: to, label: label)
    }

    private func lastWrite(of transaction: Int, key: Int32) -> Int32? {
        history.ops(of: transaction).last { history.opIsWrite[$0] && history.opKey[$0] == key }.map {
            history.opValue[$0]
        }
    }
}
