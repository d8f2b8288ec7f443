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
