import Foundation
import KilnCore
import KilnElle
import KilnPostgres
import KilnStores
import Testing

/// Skewed key choice for the list-append workloads: the pickers follow their distributions, and a Zipf workload on
/// the stack's PostgreSQL at serializable (hot keys, more contention) is still valid under strict serializability.
@Suite struct ElleKeyChoiceTests {
    static func frequencies(_ choice: ListAppendKeyChoice, keys: Int, draws: Int = 200_000) -> [Double] {
        let picker = choice.picker(keys: keys)
        var counts = [Int](repeating: 0, count: keys)
        for index in 0..<draws { counts[picker.key(SplitMix64.mix(UInt64(index) &+ 77))] += 1 }
        return counts.map { Double($0) / Double(draws) }
    }

    @Test func parsesItsNames() {
        #expect(ListAppendKeyChoice("uniform") == .uniform)
        #expect(ListAppendKeyChoice("zipf") == .zipf(exponent: 1))
        #expect(ListAppendKeyChoice("zipf:1.5") == .zipf(exponent: 1.5))
        #expect(ListAppendKeyChoice("exponential:2") == .exponential(rate: 2))
        #expect(ListAppendKeyChoice("zipf:-1") == nil)
        #expect(ListAppendKeyChoice("normal") == nil)
        #expect(ListAppendKeyChoice("uniform:3") == nil)
    }

    @Test func zipfAndExponentialFollowTheirWeights() {
        let keys = 8
        let zipf = Self.frequencies(.zipf(exponent: 1), keys: keys)
        let harmonic = (1...keys).map { 1 / Double($0) }.reduce(0, +)
        for key in 0..<keys {
            #expect(abs(zipf[key] - 1 / (Double(key + 1) * harmonic)) < 0.01, "zipf key \(key): \(zipf[key])")
        }
        let exponential = Self.frequencies(.exponential(rate: 0.5), keys: keys)
        let total = (0..<keys).map { exp(-0.5 * Double($0)) }.reduce(0, +)
        for key in 0..<keys {
            #expect(abs(exponential[key] - exp(-0.5 * Double(key)) / total) < 0.01, "exp key \(key)")
        }
        let uniform = Self.frequencies(.uniform, keys: keys)
        #expect(uniform.allSatisfy { abs($0 - 1 / Double(keys)) < 0.01 })
    }

    @Test func aZipfWorkloadAtSerializableIsValid() throws {
        let primary = TestStack.definition.postgres.primary
        var workload = ListAppendPostgresWorkload(
            endpoint: PostgresEndpoint(host: primary.host, port: primary.port, database: "kiln", user: "postgres"),
            isolation: .serializable, table: "kiln_elle_test_zipf", transactions: 1_000, concurrency: 8, keys: 10)
        workload.keyChoice = .zipf(exponent: 1.2)
        let history = try workload.run()
        let okOnHottest = history.filter { $0.outcome == .ok }.flatMap(\.ops).filter { $0.key == 0 }.count
        let okOnColdest = history.filter { $0.outcome == .ok }.flatMap(\.ops).filter { $0.key == 9 }.count
        #expect(okOnHottest > 3 * okOnColdest, "hot \(okOnHottest), cold \(okOnColdest)")
        let result = ListAppendChecker(model: .strictSerializable).check(history)
        #expect(result.validity == .valid, "\(result.summary)")
    }
}
