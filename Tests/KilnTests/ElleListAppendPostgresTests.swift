import Foundation
import KilnElle
import KilnPostgres
import KilnStores
import Testing

/// Elle's list-append workload against the embedded stack's PostgreSQL 15 at each isolation level, checked by
/// KilnElle: serializable shows no anomaly, repeatable read (snapshot isolation in PostgreSQL) shows write skew.
@Suite(.serialized) struct ElleListAppendPostgresTests {
    static func run(_ isolation: ListAppendPostgresWorkload.Isolation) throws -> [ListAppendTransaction] {
        let primary = TestStack.definition.postgres.primary
        let endpoint = PostgresEndpoint(host: primary.host, port: primary.port, database: "kiln", user: "postgres")
        let workload = ListAppendPostgresWorkload(
            endpoint: endpoint, isolation: isolation,
            table: "kiln_elle_test_\(isolation.rawValue.replacingOccurrences(of: "-", with: "_"))",
            transactions: 1_500, concurrency: 10, keys: 6)
        let history = try workload.run()
        #expect(history.count == 1_500)
        #expect(history.filter { $0.outcome == .ok }.count > 300)
        return history
    }

    @Test func serializableShowsNoAnomaly() throws {
        let history = try Self.run(.serializable)
        let result = ListAppendChecker(model: .strictSerializable).check(history)
        #expect(result.validity == .valid, "\(result.summary)\n\(result.witnesses.map(\.text).joined(separator: "\n"))")
    }

    @Test func repeatableReadShowsWriteSkew() throws {
        let history = try Self.run(.repeatableRead)
        let repeatable = ListAppendChecker(model: .repeatableRead).check(history)
        #expect(repeatable.validity == .invalid)
        #expect(repeatable.counts[.g2Item] != nil, "\(repeatable.summary)")
        // PostgreSQL's repeatable read is snapshot isolation: nothing SI forbids.
        let snapshot = ListAppendChecker(model: .snapshotIsolation).check(history)
        #expect(
            snapshot.validity == .valid,
            "\(snapshot.summary)\n\(snapshot.witnesses.map(\.text).joined(separator: "\n"))")
        if let witness = repeatable.witnesses.first(where: { $0.kind == .g2Item }) { print(witness.text) }
    }

    @Test func readCommittedShowsWhatItAllows() throws {
        let started = ContinuousClock.now
        let history = try Self.run(.readCommitted)
        print("workload took \(ContinuousClock.now - started)")
        let committed = ListAppendChecker(model: .readCommitted).check(history)
        print(
            "check took \(committed.statistics.seconds) s, largest component "
                + "\(committed.statistics.largestComponent), \(committed.statistics.cyclicComponents) components"
        )
        #expect(
            committed.validity == .valid,
            "\(committed.summary)\n\(committed.witnesses.map(\.text).joined(separator: "\n"))")
        let snapshot = ListAppendChecker(model: .snapshotIsolation).check(history)
        #expect(snapshot.validity == .invalid, "\(snapshot.summary)")
        print("SI check took \(snapshot.statistics.seconds) s")
        print(committed.summary)
    }
}
