/// Finds the non-cycle anomalies of an inferred history, counts every anomaly, and keeps the first witnesses of
/// each kind with their explanations.
struct AnomalyRecorder {
    private(set) var inference: ListAppendInference
    /// The anomalies counted and the witnesses kept.
    private(set) var tally: AnomalyTally
    private(set) var incompatibleReads: Set<Int32> = []

    init(inference: ListAppendInference, witnessesPerKind: Int) {
        self.inference = inference
        tally = AnomalyTally(witnessesPerKind: witnessesPerKind)
    }

    var history: ListAppendHistory { inference.history }

    func witnessTransactions(_ indices: [Int]) -> [WitnessTransaction] {
        AnomalyTally.witnessTransactions(indices, in: history)
    }

    func key(_ op: Int) -> Int { Int(history.opKey[op]) }
    func values(_ read: Int32) -> [Int32] { Array(history.readValues[history.readRange(read)]) }
    func render(_ values: [Int32]) -> String { ListAppendTransaction.renderShort(values) }

    /// The version order of key slot `slot` around `position` (at most 8 elements each side) for explanations.
    func versionExcerpt(_ slot: Int, around position: Int) -> String {
        let lower = Int(inference.versionStart[slot])
        let upper = Int(inference.versionStart[slot + 1])
        let from = max(lower, position - 8)
        let to = min(upper, position + 9)
        return (from > lower ? "[… " : "[")
            + inference.versionValue[from..<to].map { String($0) }.joined(separator: " ")
            + (to < upper ? " …]" : "]")
    }

    // MARK: non-cycle anomalies

    /// Per key: the first version position whose element nobody appended, whose writer failed, and that repeats an
    /// earlier element (Int.max when none); a prefix read of length L holds that anomaly iff L > position.
    private func firstPositions(_ slot: Int) -> (garbage: Int, failed: Int, duplicate: Int) {
        var garbage = Int.max
        var failed = Int.max
        var duplicate = Int.max
        let lower = Int(inference.versionStart[slot])
        let upper = Int(inference.versionStart[slot + 1])
        var seen = Set<Int32>()
        let short = upper - lower <= 64
        for position in lower..<upper {
            let index = position - lower
            let writer = inference.versionWriter[position]
            if writer < 0 {
                garbage = min(garbage, index)
            } else if history.outcome[Int(writer)] == .fail {
                failed = min(failed, index)
            }
            if duplicate == Int.max {
                let value = inference.versionValue[position]
                if short {
                    if inference.versionValue[lower..<position].contains(value) { duplicate = index }
                } else if !seen.insert(value).inserted {
                    duplicate = index
                }
            }
        }
        return (garbage, failed, duplicate)
    }

    mutating func findNonCycleAnomalies() {
        var positions: [(garbage: Int, failed: Int, duplicate: Int)] = []
        positions.reserveCapacity(inference.keyCount)
        for slot in 0..<inference.keyCount { positions.append(firstPositions(slot)) }
        var readThenAppend: [(slot: Int32, length: Int32, transaction: Int32, op: Int32)] = []
        // Hot loop: arrays bound to locals once.
        let history = history
        let outcome = history.outcome
        let opStart = history.opStart
        let opKey = history.opKey
        let opIsAppend = history.opIsAppend
        let opArgument = history.opArgument
        let readStart = history.readStart
        let readValues = history.readValues
        let keys = inference.keys
        let keyBase = inference.keyBase
        let versionStart = inference.versionStart
        let versionValue = inference.versionValue
        let versionWriter = inference.versionWriter
        let versionIntermediate = inference.versionIntermediate
        for transaction in 0..<history.count where outcome[transaction] == .ok {
            let first = Int(opStart[transaction])
            let end = Int(opStart[transaction + 1])
            for op in first..<end where !opIsAppend[op] {
                let read = opArgument[op]
                if read == ListAppendHistory.unknownRead { continue }
                let slot = Int(keys[op] &- keyBase)
                let readLower = Int(readStart[Int(read)])
                let length = Int(readStart[Int(read) + 1]) - readLower
                let key = opKey[op]
                var external = true
                for earlier in first..<op where opKey[earlier] == key {
                    external = false
                    break
                }
                // Is the read a prefix of the key's version order?
                let orderLower = Int(versionStart[slot])
                var prefix = length <= Int(versionStart[slot + 1]) - orderLower
                if prefix {
                    for index in 0..<length where readValues[readLower + index] != versionValue[orderLower + index] {
                        prefix = false
                        break
                    }
                }
                if prefix {
                    let firstPosition = positions[slot]
                    if length > firstPosition.garbage { recordGarbage(transaction, op) }
                    if length > firstPosition.failed { recordAborted(transaction, op) }
                    if length > firstPosition.duplicate { recordDuplicate(transaction, op) }
                    if length > 0 {
                        let position = orderLower + length - 1
                        let writer = Int(versionWriter[position])
                        if writer >= 0 && writer != transaction && versionIntermediate[position] {
                            recordIntermediate(transaction, op, writer: writer, value: versionValue[position])
                        }
                    }
                    if external {
                        for later in (op + 1)..<end where opIsAppend[later] && opKey[later] == key {
                            readThenAppend.append((Int32(slot), Int32(length), Int32(transaction), Int32(op)))
                            break
                        }
                    }
                } else {
                    incompatibleReads.insert(read)
                    recordIncompatible(transaction, op, slot: slot)
                    checkReadAlone(transaction, op, slot: slot)
                }
                if !external
                    && !Self.internallyConsistent(
                        op: op, first: first, key: key, opKey: opKey, opIsAppend: opIsAppend, opArgument: opArgument,
                        readStart: readStart, readValues: readValues)
                {
                    recordInternal(transaction, op)
                }
            }
        }
        recordLostUpdates(readThenAppend)
        inference.incompatibleReads = incompatibleReads
    }

    /// See `ListAppendInference.releaseAppendIndex`: after `findNonCycleAnomalies`, only cycles are recorded.
    mutating func releaseAppendIndex() { inference.releaseAppendIndex() }

    /// A read after the transaction's own reads or appends of the key must show exactly them: the last earlier
    /// known read followed by the appends since, or (with no earlier known read) a list ending in the appends.
    /// Allocation-free; `recordInternal` rebuilds the expectation for the witness.
    @inline(__always)
    static func internallyConsistent(
        op: Int, first: Int, key: Int32, opKey: [Int32], opIsAppend: [Bool], opArgument: [Int32],
        readStart: [UInt32], readValues: [Int32]
    ) -> Bool {
        var lastRead = -1
        for earlier in first..<op where opKey[earlier] == key && !opIsAppend[earlier] { lastRead = earlier }
        let sinceRead = lastRead >= 0 ? lastRead + 1 : first
        var appended = 0
        for earlier in sinceRead..<op where opKey[earlier] == key && opIsAppend[earlier] { appended += 1 }
        let read = Int(opArgument[op])
        let lower = Int(readStart[read])
        let length = Int(readStart[read + 1]) - lower
        var cursor: Int
        if lastRead >= 0 && opArgument[lastRead] != ListAppendHistory.unknownRead {
            let known = Int(opArgument[lastRead])
            let knownLower = Int(readStart[known])
            let knownLength = Int(readStart[known + 1]) - knownLower
            if length != knownLength + appended { return false }
            for index in 0..<knownLength where readValues[lower + index] != readValues[knownLower + index] {
                return false
            }
            cursor = lower + knownLength
        } else {
            if length < appended { return false }
            cursor = lower + length - appended
        }
        for earlier in sinceRead..<op where opKey[earlier] == key && opIsAppend[earlier] {
            if readValues[cursor] != opArgument[earlier] { return false }
            cursor += 1
        }
        return true
    }

    private mutating func recordGarbage(_ transaction: Int, _ op: Int) {
        let read = history.opArgument[op]
        let slot = inference.slot(op)
        let garbage = values(read).filter { inference.appendSlot(key: slot, value: $0) < 0 }
        if tally.count(.garbageRead) {
            tally.keep(
                AnomalyWitness(
                    kind: .garbageRead, transactions: witnessTransactions([transaction]), steps: [], key: key(op),
                    explanation: "T\(transaction) read \(render(values(read))) of key \(key(op)), but nobody appended "
                        + "\(render(garbage)) to key \(key(op))"))
        }
    }

    private mutating func recordAborted(_ transaction: Int, _ op: Int) {
        let read = history.opArgument[op]
        let slot = inference.slot(op)
        var writers: [Int] = []
        var aborted: [Int32] = []
        for value in values(read) {
            let writer = inference.appendSlot(key: slot, value: value)
            if writer >= 0 && history.outcome[Int(inference.appendTransaction[writer])] == .fail {
                writers.append(Int(inference.appendTransaction[writer]))
                aborted.append(value)
            }
        }
        if tally.count(.g1a) {
            tally.keep(
                AnomalyWitness(
                    kind: .g1a, transactions: witnessTransactions([transaction] + writers), steps: [], key: key(op),
                    explanation: "T\(transaction) read \(render(values(read))) of key \(key(op)); "
                        + zip(aborted, writers).map { "\($0) was appended by T\($1), which failed" }.joined(
                            separator: "; ")))
        }
    }

    private mutating func recordDuplicate(_ transaction: Int, _ op: Int) {
        let read = history.opArgument[op]
        var seen = Set<Int32>()
        let repeated = values(read).filter { !seen.insert($0).inserted }
        if tally.count(.duplicateElements) {
            tally.keep(
                AnomalyWitness(
                    kind: .duplicateElements, transactions: witnessTransactions([transaction]), steps: [], key: key(op),
                    explanation: "T\(transaction) read \(render(values(read))) of key \(key(op)): "
                        + "\(render(repeated)) " + (repeated.count == 1 ? "appears" : "appear") + " more than once"))
        }
    }

    private mutating func recordIntermediate(_ transaction: Int, _ op: Int, writer: Int, value: Int32) {
        let read = history.opArgument[op]
        let appended = history.ops(of: writer).filter {
            history.opIsAppend[$0] && history.opKey[$0] == history.opKey[op]
        }.map { history.opArgument[$0] }
        if tally.count(.g1b) {
            tally.keep(
                AnomalyWitness(
                    kind: .g1b, transactions: witnessTransactions([transaction, writer]), steps: [], key: key(op),
                    explanation: "T\(transaction) read \(render(values(read))) of key \(key(op)), ending at "
                        + "\(value), an intermediate state of T\(writer), which appended "
                        + "\(render(appended)) to key \(key(op))"))
        }
    }

    private mutating func recordIncompatible(_ transaction: Int, _ op: Int, slot: Int) {
        let read = history.opArgument[op]
        let longest = inference.longestRead[slot]
        // The transaction of the longest read, for the witness.
        var longestTransaction = transaction
        for candidate in 0..<history.count where history.outcome[candidate] == .ok {
            if history.ops(of: candidate).contains(where: {
                !history.opIsAppend[$0] && history.opArgument[$0] == longest
            }) {
                longestTransaction = candidate
                break
            }
        }
        let longestTransactionFound = longestTransaction
        let keyValue = key(op)
        let readValues = values(read)
        let longestValues = values(longest)
        if tally.count(.incompatibleOrder) {
            tally.keep(
                AnomalyWitness(
                    kind: .incompatibleOrder,
                    transactions: witnessTransactions([longestTransactionFound, transaction]),
                    steps: [], key: keyValue,
                    explanation: "T\(transaction) read \(render(readValues)) of key \(keyValue) and "
                        + "T\(longestTransactionFound) read \(render(longestValues)): neither is a prefix of the "
                        + "other, so no single order of appends explains both"))
        }
    }

    /// Garbage, aborted and duplicate elements of a read that is not a prefix of its key's order.
    private mutating func checkReadAlone(_ transaction: Int, _ op: Int, slot: Int) {
        let elements = values(history.opArgument[op])
        var seen = Set<Int32>()
        var garbage = false
        var aborted = false
        var duplicate = false
        for value in elements {
            let writer = inference.appendSlot(key: slot, value: value)
            if writer < 0 {
                garbage = true
            } else if history.outcome[Int(inference.appendTransaction[writer])] == .fail {
                aborted = true
            }
            if !seen.insert(value).inserted { duplicate = true }
        }
        if garbage { recordGarbage(transaction, op) }
        if aborted { recordAborted(transaction, op) }
        if duplicate { recordDuplicate(transaction, op) }
    }

    /// Records an internal inconsistency found by `internallyConsistent`, with the expectation spelled out.
    private mutating func recordInternal(_ transaction: Int, _ op: Int) {
        var known: [Int32]? = nil
        var appended: [Int32] = []
        for earlier in history.ops(of: transaction).lowerBound..<op where history.opKey[earlier] == history.opKey[op] {
            if history.opIsAppend[earlier] {
                appended.append(history.opArgument[earlier])
            } else if history.opArgument[earlier] != ListAppendHistory.unknownRead {
                known = values(history.opArgument[earlier])
                appended = []
            } else {
                known = nil
                appended = []
            }
        }
        let observed = values(history.opArgument[op])
        let consistent: Bool
        let expectation: String
        if let known {
            consistent = observed == known + appended
            expectation =
                "expected \(render(known + appended)) (its earlier read \(render(known))"
                + (appended.isEmpty ? ")" : " and its appends \(render(appended)))")
        } else {
            consistent = observed.count >= appended.count && Array(observed.suffix(appended.count)) == appended
            expectation = "expected a list ending in its own appends \(render(appended))"
        }
        if consistent { return }
        if tally.count(.internalInconsistency) {
            tally.keep(
                AnomalyWitness(
                    kind: .internalInconsistency, transactions: witnessTransactions([transaction]), steps: [],
                    key: key(op),
                    explanation: "T\(transaction) read \(render(observed)) of key \(key(op)), \(expectation)"))
        }
    }

    private mutating func recordLostUpdates(_ candidates: [(slot: Int32, length: Int32, transaction: Int32, op: Int32)])
    {
        let sorted = candidates.sorted { ($0.slot, $0.length, $0.transaction) < ($1.slot, $1.length, $1.transaction) }
        var start = 0
        while start < sorted.count {
            var end = start + 1
            while end < sorted.count && sorted[end].slot == sorted[start].slot
                && sorted[end].length == sorted[start].length
            {
                end += 1
            }
            if end - start > 1 {
                let group = sorted[start..<end]
                let transactions = group.map { Int($0.transaction) }
                let op = Int(group.first!.op)
                let read = values(history.opArgument[op])
                if tally.count(.lostUpdate) {
                    tally.keep(
                        AnomalyWitness(
                            kind: .lostUpdate, transactions: witnessTransactions(transactions), steps: [], key: key(op),
                            explanation: transactions.map { "T\($0)" }.joined(separator: ", ")
                                + (transactions.count == 2 ? " both read " : " all read ")
                                + "\(render(read)) of key \(key(op)) and appended to it: all but one of their appends "
                                + "were made without seeing the others"))
                }
            }
            start = end
        }
    }

    // MARK: cycles

    /// Records a cycle found by the search: barrier nodes are folded into single real-time steps.
    /// Why `from -> to` exists as `label`.
    func explain(from: Int, to: Int, label: EdgeLabels) -> DependencyStep {
        switch label {
        case .ww:
            for op in history.ops(of: from) where history.opIsAppend[op] {
                let slot = inference.slot(op)
                guard let position = versionPosition(slot, value: history.opArgument[op]),
                    position + 1 < Int(inference.versionStart[slot + 1]),
                    inference.versionWriter[position + 1] == Int32(to)
                else { continue }
                let next = inference.versionValue[position + 1]
                return DependencyStep(
                    from: from, to: to, relation: .ww, key: key(op),
                    why: "T\(from) appended \(history.opArgument[op]) to key \(key(op)) and T\(to) appended \(next), "
                        + "the next element of key \(key(op))'s order \(versionExcerpt(slot, around: position))")
            }
        case .wr:
            for op in history.ops(of: to) where !history.opIsAppend[op] {
                guard let (slot, length) = externalRead(op, transaction: to), length > 0 else { continue }
                let position = Int(inference.versionStart[slot]) + length - 1
                guard inference.versionWriter[position] == Int32(from) else { continue }
                return DependencyStep(
                    from: from, to: to, relation: .wr, key: key(op),
                    why: "T\(to) read \(render(values(history.opArgument[op]))) of key \(key(op)), which T\(from)'s "
                        + "append of \(inference.versionValue[position]) produced")
            }
        case .rw:
            for op in history.ops(of: from) where !history.opIsAppend[op] {
                guard let (slot, length) = externalRead(op, transaction: from) else { continue }
                let position = Int(inference.versionStart[slot]) + length
                guard position < Int(inference.versionStart[slot + 1]), inference.versionWriter[position] == Int32(to)
                else { continue }
                return DependencyStep(
                    from: from, to: to, relation: .rw, key: key(op),
                    why: "T\(from) read \(render(values(history.opArgument[op]))) of key \(key(op)), which misses "
                        + "\(inference.versionValue[position]), appended next by T\(to) "
                        + "(order \(versionExcerpt(slot, around: position)))")
            }
        default:
            return OrderEdges.explain(from: from, to: to, label: label, in: history)
        }
        return OrderEdges.unexplained(from: from, to: to, label: label)
    }

    private func versionPosition(_ slot: Int, value: Int32) -> Int? {
        let lower = Int(inference.versionStart[slot])
        let upper = Int(inference.versionStart[slot + 1])
        return (lower..<upper).first { inference.versionValue[$0] == value }
    }

    /// (key slot, length) of an external, order-compatible, known read.
    private func externalRead(_ op: Int, transaction: Int) -> (Int, Int)? {
        let read = history.opArgument[op]
        guard read != ListAppendHistory.unknownRead, inference.isFirstOnKey(op: op, transaction: transaction),
            !inference.incompatibleReads.contains(read)
        else { return nil }
        return (inference.slot(op), history.readRange(read).count)
    }
}
