import Foundation
import KilnElle
import KilnStores
import Testing

/// Elle's list-append workload as Redis MULTI/EXEC transactions on the embedded stack's single Redis primary:
/// strict serializable.
@Suite struct ElleListAppendRedisTests {
    @Test func multiExecOnOneNodeIsStrictSerializable() throws {
        let primary = TestStack.definition.redis.primary
        let workload = ListAppendRedisWorkload(
            host: primary.host, port: primary.port, prefix: "kiln:elle-test:\(TestStack.uniqueName("la"))",
            transactions: 2_000, concurrency: 10, keys: 6)
        let history = try workload.run()
        #expect(history.count == 2_000)
        #expect(history.allSatisfy { $0.outcome == .ok })
        let result = ListAppendChecker(model: .strictSerializable).check(history)
        #expect(result.validity == .valid, "\(result.summary)\n\(result.witnesses.map(\.text).joined(separator: "\n"))")
        #expect(result.statistics.edges > 2_000)
    }

    @Test func luaTransactionsOnOneNodeAreStrictSerializable() throws {
        let primary = TestStack.definition.redis.primary
        var workload = ListAppendRedisWorkload(
            host: primary.host, port: primary.port, prefix: "kiln:elle-test:\(TestStack.uniqueName("lua"))",
            transactions: 2_000, concurrency: 10, keys: 6)
        workload.form = .lua
        workload.keyChoice = .zipf(exponent: 1)
        let history = try workload.run()
        #expect(history.count == 2_000)
        #expect(history.allSatisfy { $0.outcome == .ok })
        // The script's replies were read back: reads hold elements, and long lists on the hottest key.
        let longest =
            history.flatMap(\.ops).compactMap { op -> Int? in
                if case .read(_, let values?) = op { return values.count } else { return nil }
            }.max() ?? 0
        #expect(longest > 100)
        let result = ListAppendChecker(model: .strictSerializable).check(history)
        #expect(result.validity == .valid, "\(result.summary)\n\(result.witnesses.map(\.text).joined(separator: "\n"))")
    }
}
