import Foundation
import KilnBackend
import KilnCheck
import KilnCore
import KilnData
import KilnHTTP
import KilnKafka
import KilnPostgres
import KilnRedis
import KilnScenario
import Testing

@Suite("black-box mapping: scenario block and value conversion")
struct BlackBoxSpecTests {
    static func parse(_ block: String) throws(SpecError) -> LoadScenario {
        let text = """
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), rows: 1K}
            phases:
              - {name: load, executor: bulk, rows: 1K, stores: [kafka]}
            \(block)
            """
        return try LoadScenario.parse(
            try YAMLFields.document(text, file: "bb.yaml"), file: URL(fileURLWithPath: "/tmp/bb.yaml"),
            knownOperations: ["kafka.bulk", "kafka.produce"])
    }

    static func error(_ block: String) -> SpecError? {
        do {
            _ = try parse(block)
            return nil
        } catch {
            return error
        }
    }

    @Test func aFullBlockParses() throws {
        let scenario = try Self.parse(
            """
            blackbox:
              entry: kafka
              places:
                - store: postgres
                  table: payments.ledger
                  key: id
                  columns: {amount: amount_usd, ts: created_at, device_id: null}
                - {store: clickhouse, table: txns, units: {amount: cents, ts: s}}
                - {store: kafka, topic: txns.enriched}
                - {store: falkordb, graph: fraud, edge: "(:User)-[:PAID]->(:Merchant)"}
                - {store: redis, key: "txn:{txn_id}:h"}
            """)
        let spec = try #require(scenario.blackbox)
        #expect(spec.entry == .kafka)
        #expect(spec.posted == .approved)
        #expect(
            spec.places.map(\.id) == [
                "postgres.payments.ledger", "clickhouse.txns", "kafka.txns.enriched", "falkordb.fraud",
                "redis.txn:{txn_id}:h",
            ])
        let ledger = spec.places[0]
        #expect(ledger.mapping(of: "txn_id")?.column == "id")
        #expect(ledger.mapping(of: "amount")?.column == "amount_usd")
        #expect(ledger.mapping(of: "device_id") != nil)
        #expect(ledger.mapping(of: "device_id")?.column == nil)
        #expect(ledger.mapping(of: "amount")?.line == 11)
        #expect(spec.places[1].units == ["amount": "cents", "ts": "s"])
        let edge = try #require(spec.places[3].edge)
        #expect(edge.source == "User" && edge.relation == "PAID" && edge.target == "Merchant")
    }

    @Test func mistakesNameTheLineAndField() {
        let unknownKey = Self.error("blackbox:\n  entry: kafka\n  places:\n    - {store: kafka, topic: t, colums: {}}")
        #expect(unknownKey?.line == 8)
        #expect(unknownKey?.field == "blackbox.places[0].colums")
        let unknownField = Self.error(
            "blackbox:\n  entry: kafka\n  places:\n    - {store: postgres, table: t, columns: {amont: a}}")
        #expect(unknownField?.field == "blackbox.places[0].columns.amont")
        #expect(unknownField?.message.contains("unknown Kiln field") == true)
        let badUnit = Self.error(
            "blackbox:\n  entry: kafka\n  places:\n    - {store: postgres, table: t, units: {ts: days}}")
        #expect(badUnit?.field == "blackbox.places[0].units.ts")
        let badIdentifier = Self.error(
            "blackbox:\n  entry: kafka\n  places:\n    - {store: postgres, table: \"t; drop\"}")
        #expect(badIdentifier?.field == "blackbox.places[0].table")
        let noID = Self.error("blackbox:\n  entry: kafka\n  places:\n    - {store: redis, key: \"txn:*\"}")
        #expect(noID?.field == "blackbox.places[0].key")
        let badEntry = Self.error("blackbox:\n  entry: mysql\n  places:\n    - {store: kafka, topic: t}")
        #expect(badEntry?.field == "blackbox.entry")
        let twice = Self.error(
            "blackbox:\n  entry: kafka\n  places:\n    - {store: kafka, topic: t}\n    - {store: kafka, topic: t}")
        #expect(twice?.message.contains("listed twice") == true)
    }

    @Test func schemalessValuesConvertExactly() {
        let mapping = FieldMapping(names: [
            "txn_id": "id", "amount": "usd", "ts": "at", "is_fraud": "f", "ring_id": "ring",
        ])
        let json = #"{"id": 7, "usd": 12.05, "at": "2026-01-01T00:00:01.250Z", "f": 1, "ring": null, "x": {"y": 1}}"#
        let row = Array(json.utf8).withUnsafeBytes { mapping.row(json: $0) }
        #expect(row.txnID == 7)
        #expect(row.amountCents == 1205)
        #expect(row.timestampMillis == 1_767_225_601_250)
        #expect(row.isFraud == true)
        #expect(row.ringID == -1)
        #expect(row.userID == nil)
        let tooPrecise = Array(#"{"id": 7, "usd": "12.051"}"#.utf8).withUnsafeBytes { mapping.row(json: $0) }
        #expect(tooPrecise.amountCents == Int64.min)
        let cents = FieldMapping(
            names: ["txn_id": "id", "amount": "c", "ts": "s"], units: ["amount": "cents", "ts": "s"])
        let hash: [String: LooseValue] = ["id": .text("9"), "c": .text("1205"), "s": .text("1767225601")]
        let fromHash = cents.row { hash[$0] }
        #expect(fromHash.txnID == 9 && fromHash.amountCents == 1205 && fromHash.timestampMillis == 1_767_225_601_000)
        let broken = Array("not json".utf8).withUnsafeBytes { mapping.row(json: $0) }
        #expect(broken.txnID == -1)
    }
}

@Suite("kiln check in black-box mode against the embedded stack", .serialized)
struct BlackBoxCheckTests {
    /// The scenario of namespace `ns`: a Kafka-only load of 1,000 rows and the user-shaped places of `places`.
    static func scenario(_ ns: String, places: String) throws -> URL {
        try CommandLineTests.temporaryFile(
            "\(ns).yaml",
            """
            name: \(ns)
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 9, rows: 2K}
            namespace: \(ns)
            phases:
              - {name: load, executor: bulk, rows: 1K, batch: 500, stores: [kafka]}
            blackbox:
              entry: kafka
              posted: approved
              places:
            \(places)
            """)
    }

    static func ledgerPlace(_ ns: String, amountColumn: String = "amount_usd") -> String {
        """
            - store: postgres
              table: \(ns).ledger
              key: id
              columns: {user_id: customer_id, merchant_id: merchant, amount: \(amountColumn), ts: created_at, status: state}
        """
    }

    static func createLedger(_ ns: String, _ postgres: PostgresConnection) throws {
        try postgres.execute(
            """
            CREATE SCHEMA \(ns); CREATE TABLE \(ns).ledger (id bigint PRIMARY KEY, customer_id bigint, merchant bigint,
              amount_usd numeric(15,2), created_at timestamptz, state text, note text)
            """)
    }

    static func iso(_ millis: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }

    static func amount(_ cents: Int64) -> String { String(format: "%lld.%02lld", cents / 100, cents % 100) }

    /// Plays the user's services: every approved transaction of rows 0..<1000 into a ledger table, a ClickHouse
    /// table, an enriched topic, Redis hashes and a graph, each under its own names and types.
    static func propagate(_ ns: String, _ dataset: Dataset) throws -> [Transaction] {
        let rows = (0..<Int64(1000)).map { dataset.transaction($0) }.filter { !$0.declined }
        let postgres = try PostgresConnection(TestStack.postgres)
        defer { postgres.close() }
        try createLedger(ns, postgres)
        let values = rows.map { t in
            "(\(t.txnID), \(t.userID), \(t.merchantID), \(amount(t.amountCents)), '\(iso(t.timestampMillis))', 'approved', 'x')"
        }
        try postgres.execute("INSERT INTO \(ns).ledger VALUES \(values.joined(separator: ", "))")

        let clickhouse = try HTTPClient()
        let url = "\(TestStack.clickhouseHTTP)/"
        _ = try clickhouse.post(
            url,
            body: Array(
                "CREATE TABLE kiln.\(ns)_txns (txn Int64, user UInt64, cents Int64, at DateTime) ENGINE = MergeTree ORDER BY txn"
                    .utf8)
        ).expectOK()
        let tsv = rows.map { "\($0.txnID)\t\($0.userID)\t\($0.amountCents)\t\($0.timestampMillis / 1000)" }
        _ = try clickhouse.post(
            url + "?query=" + "INSERT INTO kiln.\(ns)_txns FORMAT TabSeparated".addingPercentEncoding(
                withAllowedCharacters: .alphanumerics)!,
            body: Array((tsv.joined(separator: "\n") + "\n").utf8)
        ).expectOK()

        let producer = try KafkaProducer(bootstrapServers: TestStack.kafkaBootstrap)
        for t in rows {
            let json =
                #"{"id":\#(t.txnID),"customer":\#(t.userID),"amount_usd":\#(amount(t.amountCents)),"created_at":"\#(iso(t.timestampMillis))"}"#
            try producer.produce(
                topic: "\(ns).enriched", key: Array(String(t.userID).utf8), value: Array(json.utf8), id: UInt64(t.txnID)
            )
        }
        let reports = try producer.flush(timeoutMilliseconds: 20_000)
        try #require(reports.count == rows.count)

        let redis = try RedisConnection(host: TestStack.redisPrimary.host, port: TestStack.redisPrimary.port)
        defer { redis.close() }
        _ = try redis.pipeline(
            rows.map { t in
                ["HSET", "\(ns):pay:\(t.txnID)", "user", String(t.userID), "amt", amount(t.amountCents)]
            })

        let falkor = try RedisConnection(host: TestStack.falkordb.host, port: TestStack.falkordb.port)
        defer { falkor.close() }
        for chunk in stride(from: 0, to: rows.count, by: 200) {
            let list = rows[chunk..<min(chunk + 200, rows.count)].map {
                "[\($0.txnID),\($0.userID),\($0.merchantID),\($0.amountCents),\($0.timestampMillis)]"
            }
            _ = try falkor.command(
                "GRAPH.QUERY", "\(ns)_fraud",
                "UNWIND [\(list.joined(separator: ","))] AS r MERGE (c:Customer {cid: r[1]}) MERGE (s:Shop {sid: r[2]}) "
                    + "CREATE (c)-[:BOUGHT {tid: r[0], cents: r[3], at: r[4]}]->(s)")
        }
        return rows
    }

    static func allPlaces(_ ns: String) -> String {
        ledgerPlace(ns) + "\n" + """
                - {store: clickhouse, table: \(ns)_txns, key: txn, columns: {user_id: user, amount: cents, ts: at}, units: {amount: cents}}
                - {store: kafka, topic: \(ns).enriched, columns: {txn_id: id, user_id: customer, amount: amount_usd, ts: created_at}}
                - {store: redis, key: "\(ns):pay:{txn_id}", columns: {user_id: user, amount: amt}}
                - store: falkordb
                  graph: \(ns)_fraud
                  edge: "(:Customer)-[:BOUGHT]->(:Shop)"
                  columns: {txn_id: tid, user_id: cid, merchant_id: sid, amount: cents, ts: at}
                  units: {amount: cents}
            """
    }

    @Test func userShapedPlacesCheckValidThenTamperingIsListedExactly() throws {
        let ns = "bbx_\(UInt32.random(in: 0...UInt32.max))"
        let dataset = try Dataset(spec: Fixtures.spec, seed: 9, rows: 2_000)
        let file = try Self.scenario(ns, places: Self.allPlaces(ns))
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let run = try CommandLineTests.kiln(["run", file.path, "--runs-directory", runs.path, "--id", "r"])
        try #require(run.status == 0, "\(run.output)")
        let rows = try Self.propagate(ns, dataset)
        let directory = runs.appendingPathComponent("r")

        let (clean, report) = try CheckCommandTests.check(directory)
        #expect(clean.status == 0, "\(clean.output)")
        let places = Dictionary(uniqueKeysWithValues: report.places.map { ($0.place, $0) })
        let mapped = [
            "postgres.\(ns).ledger", "clickhouse.\(ns)_txns", "kafka.\(ns).enriched", "redis.\(ns):pay:{txn_id}",
            "falkordb.\(ns)_fraud",
        ]
        #expect(Set(places.keys) == Set(mapped + ["kafka.messages"]))
        for id in mapped {
            #expect(
                places[id]?.validity == .valid,
                "\(id): \(places[id].map { "\($0.counts) \($0.error ?? "")" } ?? "missing")")
            #expect(places[id]?.expected == Int64(rows.count), "\(id)")
            #expect(places[id]?.scanned == Int64(rows.count), "\(id)")
        }
        #expect(places["postgres.\(ns).ledger"]?.source.contains("amount=amount_usd") == true)
        #expect(clean.output.contains("not compared: device_id"))

        // Tamper: lose one ledger row, change one amount, post a declined transaction (a phantom: the entry acked
        // it, but a declined one must not appear downstream); a ClickHouse row never written; a duplicate message.
        let declined = try #require((0..<Int64(1000)).map { dataset.transaction($0) }.first { $0.declined })
        let postgres = try PostgresConnection(TestStack.postgres)
        defer { postgres.close() }
        try postgres.execute("DELETE FROM \(ns).ledger WHERE id = \(rows[3].txnID)")
        try postgres.execute("UPDATE \(ns).ledger SET amount_usd = amount_usd + 0.01 WHERE id = \(rows[7].txnID)")
        try postgres.execute(
            "INSERT INTO \(ns).ledger VALUES (\(declined.txnID), \(declined.userID), \(declined.merchantID), "
                + "\(Self.amount(declined.amountCents)), '\(Self.iso(declined.timestampMillis))', 'declined', 'x')")
        _ = try HTTPClient().post(
            "\(TestStack.clickhouseHTTP)/", body: Array("INSERT INTO kiln.\(ns)_txns VALUES (1500, 1, 1, 0)".utf8)
        ).expectOK()
        let producer = try KafkaProducer(bootstrapServers: TestStack.kafkaBootstrap)
        let t = rows[11]
        let json =
            #"{"id":\#(t.txnID),"customer":\#(t.userID),"amount_usd":\#(Self.amount(t.amountCents)),"created_at":"\#(Self.iso(t.timestampMillis))"}"#
        try producer.produce(topic: "\(ns).enriched", key: nil, value: Array(json.utf8), id: 1)
        try #require(try producer.flush(timeoutMilliseconds: 10_000).count == 1)

        let (dirty, tampered) = try CheckCommandTests.check(directory)
        #expect(dirty.status == KilnExitCode.anomaly.rawValue, "\(dirty.output)")
        let found = Dictionary(uniqueKeysWithValues: tampered.places.map { ($0.place, $0) })
        let ledger = try #require(found["postgres.\(ns).ledger"])
        #expect(ledger.counts == ["lost": 1, "corrupted": 1, "phantom": 1])
        #expect(ledger.anomalies.first { $0.kind == .lost }?.txnID == rows[3].txnID)
        #expect(ledger.anomalies.first { $0.kind == .corrupted }?.txnID == rows[7].txnID)
        #expect(ledger.anomalies.first { $0.kind == .corrupted }?.detail.contains("amount_cents") == true)
        #expect(ledger.anomalies.first { $0.kind == .phantom }?.txnID == declined.txnID)
        #expect(found["clickhouse.\(ns)_txns"]?.counts == ["phantom": 1])
        #expect(found["clickhouse.\(ns)_txns"]?.anomalies.map(\.txnID) == [1500])
        #expect(found["kafka.\(ns).enriched"]?.counts == ["duplicated": 1])
        #expect(found["kafka.\(ns).enriched"]?.anomalies.map(\.txnID) == [t.txnID])
        for id in ["redis.\(ns):pay:{txn_id}", "falkordb.\(ns)_fraud", "kafka.messages"] {
            #expect(found[id]?.validity == .valid, "\(id)")
        }
    }

    /// Kiln's reference pipeline plays the user's services in namespace `ns`; a second scenario without a pipeline
    /// checks it black-box, naming that namespace's tables and graph explicitly.
    @Test func theReferencePipelineCheckedAsABlackBox() throws {
        let ns = "bbp_\(UInt32.random(in: 0...UInt32.max))"
        let pipeline = try CommandLineTests.temporaryFile(
            "\(ns)-pipeline.yaml",
            """
            name: \(ns)
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 2K}
            namespace: \(ns)
            pipeline: {sinks: [postgres, clickhouse, falkordb], batch: 250, convergence_timeout: 60s}
            phases:
              - {name: load, executor: bulk, rows: 1K, batch: 500, stores: [kafka]}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let run = try CommandLineTests.kiln(["run", pipeline.path, "--runs-directory", runs.path, "--id", "p"])
        try #require(run.status == 0, "\(run.output)")
        let blackbox = try CommandLineTests.temporaryFile(
            "\(ns)-blackbox.yaml",
            """
            name: \(ns)
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 2K}
            namespace: \(ns)
            phases:
              - {name: load, executor: bulk, rows: 1K, batch: 500, stores: [kafka]}
            blackbox:
              entry: kafka
              places:
                - {store: postgres, table: public.\(ns)_transactions, key: txn_id}
                - {store: clickhouse, table: kiln.\(ns)_transactions, key: txn_id, units: {ts: ms}}
                - {store: falkordb, graph: \(ns)_graph, edge: "(:User)-[:PAID]->(:Merchant)"}
            """)
        let directory = runs.appendingPathComponent("p")
        let result = try CommandLineTests.kiln(["check", directory.path, "--scenario", blackbox.path])
        #expect(result.status == 0, "\(result.output)")
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let report = try decoder.decode(
            CheckReport.self, from: Data(contentsOf: directory.appendingPathComponent("check.json")))
        let dataset = try Dataset(spec: Fixtures.spec, seed: 3, rows: 2_000)
        let approved = Int64((0..<Int64(1000)).filter { !dataset.transaction($0).declined }.count)
        let places = Dictionary(uniqueKeysWithValues: report.places.map { ($0.place, $0) })
        for id in ["postgres.public.\(ns)_transactions", "clickhouse.kiln.\(ns)_transactions", "falkordb.\(ns)_graph"] {
            #expect(places[id]?.validity == .valid, "\(id)")
            #expect(places[id]?.expected == approved, "\(id)")
            #expect(places[id]?.scanned == approved, "\(id)")
        }
        // Kiln's own layout: every field of the ledger is compared; the graph keeps ids, amount and time only.
        #expect(places["postgres.public.\(ns)_transactions"]?.source.hasSuffix("compared: every field") == true)
        #expect(
            places["falkordb.\(ns)_graph"]?.source.hasSuffix(
                "compared: txn_id, user_id=id, merchant_id=id, amount=amount_cents, ts") == true,
            "\(places["falkordb.\(ns)_graph"]?.source ?? "")")
    }

    @Test func aMappingErrorNamesTheScenarioLineAndExits64() throws {
        let ns = "bbe_\(UInt32.random(in: 0...UInt32.max))"
        let postgres = try PostgresConnection(TestStack.postgres)
        defer { postgres.close() }
        try Self.createLedger(ns, postgres)
        let unknownColumn = try Self.scenario(ns, places: Self.ledgerPlace(ns, amountColumn: "amount_eur"))
        let result = try CommandLineTests.kiln(["check", "--scenario", unknownColumn.path, "--range", "0..10"])
        #expect(result.status == KilnExitCode.invalidInput.rawValue, "\(result.output)")
        #expect(result.output.contains("\(unknownColumn.path):14:"), "\(result.output)")
        #expect(result.output.contains("blackbox.places[0].columns.amount"))
        #expect(result.output.contains("no column 'amount_eur'"))

        let integerAmount = try Self.scenario(ns, places: Self.ledgerPlace(ns, amountColumn: "customer_id"))
        let unitless = try CommandLineTests.kiln(["check", "--scenario", integerAmount.path, "--range", "0..10"])
        #expect(unitless.status == KilnExitCode.invalidInput.rawValue, "\(unitless.output)")
        #expect(unitless.output.contains("units: {amount: cents | units}"), "\(unitless.output)")

        let missingTable = try Self.scenario(ns, places: "    - {store: clickhouse, table: \(ns)_nothing}")
        let absent = try CommandLineTests.kiln(["check", "--scenario", missingTable.path, "--range", "0..10"])
        #expect(absent.status == KilnExitCode.invalidInput.rawValue, "\(absent.output)")
        #expect(absent.output.contains("\(missingTable.path):11:"), "\(absent.output)")
    }
}
