import Foundation
import KilnCore
import KilnScenario
import KilnSmoke
import Logging
import Testing

@Suite("Smoke: one transaction set through all five stores")
struct SmokeTests {
    @Test func allFiveStoresOfTheEmbeddedStackAgree() throws {
        let transactions = SmokeTransaction.set(seed: 7, count: 2_000)
        let results = SmokeRun(stack: TestStack.definition, transactions: transactions, logger: Logger(label: "test"))
            .run()
        #expect(results.map(\.store) == ["postgres", "kafka", "redis", "falkordb", "clickhouse"])
        for result in results {
            #expect(result.error == nil, "\(result.store): \(result.error ?? "")")
            #expect(result.written == 2_000, "\(result.store)")
            #expect(result.readBack == 2_000, "\(result.store)")
            #expect(result.equal == 2_000, "\(result.store)")
            #expect(result.agrees, "\(result.store): \(result.summary)")
        }
    }

    @Test func theSetIsAPureFunctionOfSeedAndIndex() {
        let a = SmokeTransaction.set(seed: 42, count: 100)
        #expect(a == SmokeTransaction.set(seed: 42, count: 100))
        #expect(a[57] == SmokeTransaction.make(seed: 42, index: 57))
        #expect(a != SmokeTransaction.set(seed: 43, count: 100))
        #expect(Set(a.map(\.txnID)).count == 100)
        #expect(SmokeTransaction(txnID: 1, userID: 1, merchantID: 1, amountCents: 1205, currency: "EUR", timestamp: 0)
            .amountText == "12.05")
    }
}

@Suite("Smoke comparison")
struct SmokeComparisonTests {
    @Test func lossDuplicationAndCorruptionAreEachCounted() {
        let expected = SmokeTransaction.set(seed: 1, count: 10)
        var actual = Array(expected.dropFirst())  // txn 1 lost
        actual.append(expected[3])  // txn 4 duplicated
        actual[0].amountCents += 1  // txn 2 corrupted
        var result = SmokeStoreResult(store: "x", endpoint: "127.0.0.1:1")
        result.written = 10
        result.compare(expected: expected, actual: actual)
        #expect(result.missing == 1)
        #expect(result.duplicated == 1)
        #expect(result.different == 1)
        #expect(result.equal == 8)
        #expect(!result.agrees)
        #expect(result.summary == "MISMATCH: 1 missing, 1 duplicated, 1 different")

        var clean = SmokeStoreResult(store: "x", endpoint: "127.0.0.1:1")
        clean.written = 10
        clean.compare(expected: expected, actual: expected.reversed())
        #expect(clean.agrees)
    }
}
