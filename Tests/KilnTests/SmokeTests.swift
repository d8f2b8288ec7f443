import Foundation
import KilnBackend
import KilnBackends
import KilnCheck
import KilnCore
import KilnData
import KilnPostgres
import KilnRedis
import KilnScenario
import KilnSmoke
import Logging
import Testing

/// `kiln smoke` against the shared stack's real servers: each backend's own client writes the generator's rows, its
/// scanners read them back, the reconcile checker judges them. Every run writes under its own namespace and removes
/// it (the client's teardown).
@Suite("Smoke: the generator's rows through every backend the stack serves")
struct SmokeTests {
    static let rows = 2_000
    static let dataset = try! SmokeRun.dataset(spec: Fixtures.specURL, seed: 7, rows: rows)

    static func backends(_ names: String...) -> [Backend] { names.map { Backends.backend(named: $0)! } }

    @Test func everyStoreOfTheSharedStackAgrees() throws {
        let results = SmokeRun(stack: TestStack.definition, dataset: Self.dataset, logger: Logger(label: "test.smoke"))
            .run()
        // Every backend the stack serves with places (the embedded stack: at least these five), one row per place.
        let served = SmokeRun.served(Backends.all, by: TestStack.definition)
        #expect(results.map(\.place) == served.flatMap(\.backend.places))
        #expect(Set(["postgres", "redis", "kafka", "falkordb", "clickhouse"]).isSubset(of: Set(results.map(\.store))))
        for result in results {
            #expect(result.error == nil, "\(result.place.id): \(result.error ?? "")")
            #expect(result.written == Int64(Self.rows), "\(result.place.id)")
            #expect(result.readBack == Int64(Self.rows), "\(result.place.id)")
            #expect(result.equal == Int64(Self.rows), "\(result.place.id)")
            #expect(result.agrees, "\(result.place.id): \(result.summary)")
        }
        #expect(results.exitCode == .ok)
    }

    @Test func anUnreachableStoreIsNamedAndTheOthersAreStillChecked() throws {
        var stack = TestStack.definition
        stack.postgres.primary = HostPort(host: "127.0.0.1", port: 1)
        let results = SmokeRun(
            stack: stack, dataset: Self.dataset, logger: Logger(label: "test.smoke"), timeout: .seconds(5),
            backends: Self.backends("postgres", "redis", "kafka")
        ).run()
        #expect(results.map(\.store) == ["postgres", "redis", "kafka"])
        let postgres = try #require(results.first)
        #expect(postgres.verdict == .unreachable)
        #expect(postgres.endpoint == "127.0.0.1:1")
        #expect(postgres.error?.contains("127.0.0.1:1") == true, "\(postgres.error ?? "")")
        #expect(postgres.summary.hasPrefix("error: "))
        for result in results.dropFirst() { #expect(result.agrees, "\(result.place.id): \(result.summary)") }
        #expect(results.exitCode == .stackUnavailable)
    }

    @Test func aRowDeletedOrChangedBehindTheSmokesBackMakesItsPlaceDisagree() throws {
        var run = SmokeRun(
            stack: TestStack.definition, dataset: Self.dataset, logger: Logger(label: "test.smoke"),
            backends: Self.backends("postgres", "redis"))
        run.afterWrite = { written in
            let namespace = written.context.namespace
            switch written.backend.name {
            case "postgres":
                let connection = try PostgresConnection(TestStack.postgres, connectTimeoutSeconds: 5)
                defer { connection.close() }
                _ = try connection.execute("DELETE FROM \(namespace)_transactions WHERE txn_id = 17")
            case "redis":
                let (host, port) = TestStack.redisPrimary
                let connection = try RedisConnection(host: host, port: port, timeoutSeconds: 5)
                defer { connection.close() }
                let key = RedisKeys(namespace: namespace).txn(42)
                let json = try #require(try connection.command(["GET", key]).string)
                let changed = json.replacingOccurrences(
                    of: #""amount":[0-9.]+"#, with: #""amount":0.07"#, options: .regularExpression)
                #expect(changed != json)
                _ = try connection.command(["SET", key, changed])
            default:
                break
            }
        }
        let results = run.run()
        #expect(results.map(\.place.id) == ["postgres.rows", "redis.txn-keys"])
        let postgres = results[0]
        #expect(postgres.verdict == .disagrees, "\(postgres.summary)")
        #expect(postgres.check?.counts["lost"] == 1)
        #expect(postgres.check?.anomalies.first?.txnID == 17)
        #expect(postgres.written == Int64(Self.rows))
        #expect(postgres.readBack == Int64(Self.rows - 1))
        #expect(postgres.equal == Int64(Self.rows - 1))
        #expect(postgres.summary == "MISMATCH: 1 lost")
        let redis = results[1]
        #expect(redis.verdict == .disagrees, "\(redis.summary)")
        #expect(redis.check?.counts["corrupted"] == 1)
        #expect(redis.check?.anomalies.first?.txnID == 42)
        #expect(redis.readBack == Int64(Self.rows))
        #expect(redis.equal == Int64(Self.rows - 1))
        #expect(results.exitCode == .anomaly)
    }
}

/// How a smoke row reads the reconcile checker's result, and the exit code of a set of rows (no server).
@Suite("Smoke comparison")
struct SmokeComparisonTests {
    static let dataset = try! Dataset(spec: Fixtures.spec, seed: 1, rows: 10)

    static func result(_ rows: [StoredRow]) -> SmokePlaceResult {
        var written = WrittenRows(place: .postgresRows, datasetRows: 10)
        written.ok.insert(0..<10)
        let checker = ReconcileChecker(written: written, dataset: dataset)
        for row in rows { checker.add(row) }
        var result = SmokePlaceResult(
            store: "postgres", place: .postgresRows, endpoint: "127.0.0.1:1", operation: "postgres.bulk", rows: 10)
        result.written = 10
        result.check = checker.finish(source: "test", seconds: 0)
        return result
    }

    static var expected: [StoredRow] { (0..<10).map { StoredRow(dataset.transaction($0), in: dataset) } }

    @Test func lossDuplicationCorruptionAndPhantomsAreEachCounted() {
        var actual = Array(Self.expected.dropFirst())  // txn 1 lost
        actual.append(Self.expected[3])  // txn 4 duplicated
        actual[0].amountCents! += 1  // txn 2 corrupted
        actual.append(StoredRow(txnID: 99))  // not in the dataset
        let result = Self.result(actual)
        #expect(result.check?.counts == ["lost": 1, "duplicated": 1, "corrupted": 1, "phantom": 1])
        #expect(result.readBack == 11)
        #expect(result.equal == 8)
        #expect(result.verdict == .disagrees)
        #expect(result.summary == "MISMATCH: 1 corrupted, 1 duplicated, 1 lost, 1 phantom")

        let clean = Self.result(Self.expected.reversed())
        #expect(clean.agrees)
        #expect(clean.equal == 10)
        #expect(clean.summary == "ok")
    }

    @Test func unreachableOutranksDisagreementAndNothingIsNotGreen() {
        let clean = Self.result(Self.expected)
        let lost = Self.result(Array(Self.expected.dropLast()))
        var down = SmokePlaceResult(
            store: "redis", place: .redisTxnKeys, endpoint: "127.0.0.1:1", operation: "redis.bulk-set", rows: 10)
        down.failure = .unreachable
        down.error = "connect: 127.0.0.1:1 refused"
        #expect([clean].exitCode == .ok)
        #expect([clean, lost].exitCode == .anomaly)
        #expect([down, lost, clean].exitCode == .stackUnavailable)
        #expect([SmokePlaceResult]().exitCode == .unknown)
        // A place not written in full never agrees, even when what was written reads back equal.
        var partial = clean
        partial.written = 9
        #expect(!partial.agrees)
    }
}
