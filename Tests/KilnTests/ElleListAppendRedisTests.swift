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
}
