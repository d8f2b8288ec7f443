import Foundation
import KilnCheck
import KilnCore
import KilnData
import KilnHTTP
import KilnKafka
import KilnLoad
import KilnPostgres
import KilnRedis
import Testing

@testable import KilnRunner

@Suite("kiln check against the embedded stack", .serialized)
struct CheckCommandTests {
    /// Loads 5,000 rows into PostgreSQL, ClickHouse, Kafka and Redis with `kiln run`, returning the run directory.
    static func load(namespace: String) throws -> URL {
        let scenario = try CommandLineTests.temporaryFile(
            "\(namespace).yaml",
            """
            name: \(namespace)
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 5, rows: 10K}
            namespace: \(namespace)
            phases:
              - {name: load, executor: bulk, rows: 5K, batch: 1K, workers: 2, stores: [postgres, clickhouse, kafka, redis]}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        // In-process: the run controller is what `kiln run` calls.
        var controller = RunController(scenario: scenario.path)
        controller.runsDirectory = runs.path
        controller.id = "r"
        try #require(try controller.run() == .ok)
        return runs.appendingPathComponent("r")
    }

    static func check(_ directory: URL) throws -> (CommandLineTests.Outcome, CheckReport) {
        let result = try CommandLineTests.kiln(["check", directory.path])
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let report = try decoder.decode(CheckReport.self, from: Data(contentsOf: directory.appendingPathComponent("check.json")))
        return (result, report)
    }

    @Test func aCleanLoadChecksValidInEveryStore() throws {
        let namespace = "chk_clean_\(UInt32.random(in: 0...UInt32.max))"
        let directory = try Self.load(namespace: namespace)
        let (result, report) = try Self.check(directory)
        #expect(result.status == 0, "\(result.output)")
        #expect(report.validity == .valid)
        #expect(
            Set(report.places.map(\.place))
                == [
                    "postgres.rows", "clickhouse.rows", "kafka.messages", "redis.features", "invariant.minute-totals",
                    "clickhouse.merchant-minute",
                ])
        for place in report.places where place.place.hasSuffix(".rows") || place.place == "kafka.messages" {
            #expect(place.expected == 5_000 && place.scanned == 5_000, "\(place.place)")
        }
        let run = try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        #expect(run.verdict == .passed && run.loadVerdict == .passed)
    }

    @Test func directTamperingIsListedExactly() throws {
        let namespace = "chk_tamper_\(UInt32.random(in: 0...UInt32.max))"
        let directory = try Self.load(namespace: namespace)
        let dataset = try Dataset(spec: Fixtures.spec, seed: 5, rows: 10_000)

        // ClickHouse: delete 3 rows (a mutation; wait until it has applied).
        let clickhouse = try HTTPClient()
        let table = "kiln.\(namespace)_transactions"
        _ = try clickhouse.post(
            "\(TestStack.clickhouseHTTP)/", body: Array("ALTER TABLE \(table) DELETE WHERE txn_id IN (10, 20, 30)".utf8))
            .expectOK()
        var remaining = ""
        for _ in 0..<100 {
            remaining = try clickhouse.post(
                "\(TestStack.clickhouseHTTP)/", body: Array("SELECT count() FROM \(table) WHERE txn_id IN (10, 20, 30)".utf8))
                .expectOK().text.trimmingCharacters(in: .whitespacesAndNewlines)
            if remaining == "0" { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        try #require(remaining == "0")

        // Kafka: the messages of txn 5 and 6 produced a second time.
        let producer = try KafkaProducer(bootstrapServers: TestStack.kafkaBootstrap)
        for index: Int64 in [4, 5] {
            var encoder = RowEncoder(format: .jsonl, dataset: dataset, capacity: 1024)
            let row = dataset.transaction(index)
            encoder.append(row)
            try producer.produce(
                topic: "\(namespace).transactions", key: Array(String(row.userID).utf8),
                value: Array(encoder.bytes.dropLast()), id: UInt64(index))
        }
        let reports = try producer.flush(timeoutMilliseconds: 10_000)
        try #require(reports.count == 2)

        // Redis: one field of one user's features.
        let user = dataset.transaction(100).userID
        let redis = try RedisConnection(host: TestStack.redisPrimary.host, port: TestStack.redisPrimary.port)
        _ = try redis.command("HSET", "\(namespace):user:\(user):features", "last_merchant", "0")

        // PostgreSQL: a row the oracle does not know.
        let postgres = try PostgresConnection(TestStack.postgres)
        _ = try postgres.execute(
            "INSERT INTO \(namespace)_transactions SELECT 999999999, user_id, merchant_id, device_id, location_id, amount, "
                + "currency, ts, channel, status, fraud_score, is_fraud, ring_id FROM \(namespace)_transactions WHERE txn_id = 1")

        let (result, report) = try Self.check(directory)
        #expect(result.status == KilnExitCode.anomaly.rawValue, "\(result.output)")
        let found = Dictionary(uniqueKeysWithValues: report.places.map { ($0.place, $0) })
        #expect(found["clickhouse.rows"]?.counts == ["lost": 3])
        #expect(found["clickhouse.rows"]?.anomalies.map(\.txnID).sorted() == [10, 20, 30])
        #expect(found["kafka.messages"]?.counts == ["duplicated": 2])
        #expect(found["kafka.messages"]?.anomalies.map(\.txnID).sorted() == [5, 6])
        #expect(found["redis.features"]?.counts == ["corrupted": 1])
        #expect(found["redis.features"]?.anomalies.first?.key == "user \(user)")
        #expect(found["redis.features"]?.anomalies.first?.detail.contains("last_merchant") == true)
        #expect(found["postgres.rows"]?.counts == ["phantom": 1])
        #expect(found["postgres.rows"]?.anomalies.first?.txnID == 999_999_999)
        #expect(result.output.contains("txn_id 999999999"))
        // The unknown PG row lands in txn 1's minute; ClickHouse's aggregate still has the deleted rows (a mutation
        // of the table does not reach its materialized view), so only that minute differs.
        let minutes = try #require(found["invariant.minute-totals"])
        #expect(minutes.counts == ["corrupted": 1], "\(minutes.anomalies)")
        // report.json now carries the combined verdict (a reader of it alone sees the anomalies), the load's kept.
        let run = try RunReport.decode(Data(contentsOf: directory.appendingPathComponent("report.json")))
        #expect(run.verdict == .anomaly)
        #expect(run.exitCode == KilnExitCode.anomaly.rawValue)
        #expect(run.loadVerdict == .passed)
    }

    @Test func anUnreachableStoreMakesTheCheckUnknownNotValid() throws {
        let namespace = "chk_down_\(UInt32.random(in: 0...UInt32.max))"
        let directory = try Self.load(namespace: namespace)
        let stack = try String(contentsOf: TestStack.paths.embeddedStackFile, encoding: .utf8)
            .replacingOccurrences(of: "127.0.0.51:18123", with: "127.0.0.1:9")
        let brokenStack = try CommandLineTests.temporaryFile("broken-stack.yaml", stack)
        let result = try CommandLineTests.kiln(["check", directory.path, "--stack", brokenStack.path])
        #expect(result.status == KilnExitCode.unknown.rawValue, "\(result.output)")
        #expect(result.output.contains("clickhouse.rows: unknown"))
    }
}
