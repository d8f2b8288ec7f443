/// Every anomaly an Elle checker finds, counted by kind, with the first `witnessesPerKind` witnesses of each kind
/// kept: the bookkeeping the list-append (`AnomalyRecorder`) and rw-register (`RWRegisterAnomalyRecorder`)
/// recorders share, including how a cycle becomes a witness.
struct AnomalyTally {
    let witnessesPerKind: Int
    private(set) var counts: [AnomalyKind: Int] = [:]
    private(set) var witnesses: [AnomalyWitness] = []

    init(witnessesPerKind: Int) {
        self.witnessesPerKind = witnessesPerKind
    }

    /// Counts one anomaly of `kind`; true while fewer than `witnessesPerKind` witnesses of its kind are kept (then
    /// the caller builds one and passes it to `keep`).
    mutating func count(_ kind: AnomalyKind) -> Bool {
        let count = counts[kind, default: 0]
        counts[kind] = count + 1
        return count < witnessesPerKind
    }

    /// Keeps `witness` (after `count` said so).
    mutating func keep(_ witness: AnomalyWitness) {
        witnesses.append(witness)
    }

    /// Counts one non-cycle anomaly about `key` among `transactions` of `history`, explained by `explanation()`.
    mutating func record(
        _ kind: AnomalyKind, _ transactions: [Int], key: Int?, in history: some ElleHistory,
        _ explanation: () -> String
    ) {
        guard count(kind) else { return }
        keep(
            AnomalyWitness(
                kind: kind, transactions: Self.witnessTransactions(transactions, in: history), steps: [], key: key,
                explanation: explanation()))
    }

    /// Counts one cycle anomaly of `kind` (edges between micro-ops of `history`); its witness names the cycle's
    /// transactions in order and gives each step with `explain`'s reason for its edge.
    mutating func recordCycle(
        _ kind: AnomalyKind, _ cycle: [CycleEdge], in history: some ElleHistory,
        explain: (_ from: Int, _ to: Int, _ label: EdgeLabels) -> DependencyStep
    ) {
        guard count(kind) else { return }
        let steps = CycleAnomalySearch.transactionSteps(cycle, transactions: history.count)
        let members = steps.map { Int($0.from) }
        keep(
            AnomalyWitness(
                kind: kind, transactions: Self.witnessTransactions(members, in: history),
                steps: steps.map { explain(Int($0.from), Int($0.to), $0.label) }, key: nil,
                explanation: "a cycle of \(steps.count) transactions: "
                    + (members + [members[0]]).map { "T\($0)" }.joined(separator: " -> ")))
    }

    /// Transactions `indices` of `history` as a witness names them: each once, in first-seen order.
    static func witnessTransactions(_ indices: [Int], in history: some ElleHistory) -> [WitnessTransaction] {
        var seen = Set<Int>()
        return indices.filter { seen.insert($0).inserted }.map {
            WitnessTransaction(index: $0, transaction: history.transaction($0))
        }
    }
}
