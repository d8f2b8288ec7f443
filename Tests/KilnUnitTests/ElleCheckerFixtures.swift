import KilnElle
import Testing

/// What the list-append and rw-register checker tests share: the shapes of their random serial histories, and the
/// expectation that such a history is valid under every model.
enum ElleCheckerFixtures {
    /// Four shapes of serial history, for either workload: many keys; few keys retired after 8 writes; one hot key
    /// under 20 processes, write-heavy; many keys retired after 32 writes, read-heavy.
    static func serialGenerators<Workload>() -> [SerialGenerator<Workload>] {
        [
            .init(transactions: 3_000, concurrency: 10, activeKeys: 10, seed: 1),
            .init(transactions: 3_000, concurrency: 5, opsPerTransaction: 6, activeKeys: 3, maxWritesPerKey: 8, seed: 2),
            .init(transactions: 2_000, concurrency: 20, opsPerTransaction: 2, activeKeys: 1, readShare: 0.3, seed: 3),
            .init(transactions: 3_000, concurrency: 10, activeKeys: 50, maxWritesPerKey: 32, readShare: 0.7, seed: 4),
        ]
    }

    /// Expects `Checker` to find `history` (serial by construction) valid, with no anomaly, under every model.
    static func expectValidUnderEveryModel<Checker: ElleChecker>(_: Checker.Type, _ history: Checker.History) {
        for model in ConsistencyModel.allCases {
            let result = Checker(model: model).check(history)
            #expect(result.validity == .valid, "\(model.rawValue): \(result.summary)")
            #expect(result.counts.isEmpty, "\(result.witnesses.map(\.text))")
        }
    }
}

extension ElleCheckerFixtures {
    /// Expects `result` invalid with `kind` found and named by a witness with an explanation; a cycle witness closes
    /// (each step starts where the previous ended). Returns the witness.
    @discardableResult
    static func expectFoundAndNamed(_ kind: AnomalyKind, in result: ElleCheckResult) -> AnomalyWitness? {
        #expect(result.validity == .invalid, "\(kind.rawValue): \(result.summary)")
        #expect(result.counts[kind] != nil, "\(kind.rawValue) not found: \(result.summary)")
        let witness = result.witnesses.first { $0.kind == kind }
        #expect(witness != nil && !witness!.explanation.isEmpty)
        if kind.cycleClass != nil {
            let steps = witness?.steps ?? []
            #expect(steps.count >= 2)
            for (step, next) in zip(steps, steps.dropFirst() + steps.prefix(1)) { #expect(step.to == next.from) }
        }
        return witness
    }
}

/// Builders of hand-written Elle histories for the checker tests: a suite that conforms calls them unqualified.
protocol ElleHistoryExamples {}

extension ElleHistoryExamples {
    /// One transaction of `ops` (on process 0, invoked at `time`, `duration` ns long, unless given).
    static func txn(
        _ ops: MicroOp..., process: Int = 0, outcome: TransactionOutcome = .ok, at time: Int64 = 0,
        duration: Int64 = 10
    ) -> ElleTransaction {
        ElleTransaction(process: process, invokeNanos: time, completeNanos: time + duration, outcome: outcome, ops: ops)
    }

    /// Each transaction on its own process, all overlapping in time: no process or real-time edges.
    static func concurrent(_ transactions: [ElleTransaction]) -> [ElleTransaction] {
        transactions.enumerated().map { index, transaction in
            var transaction = transaction
            transaction.process = index
            transaction.invokeNanos = 0
            transaction.completeNanos = 1_000
            return transaction
        }
    }
}
