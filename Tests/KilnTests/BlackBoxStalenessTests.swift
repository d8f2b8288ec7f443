import Foundation
import KilnCheck
import KilnCore
import KilnData
import KilnHTTP
import KilnKafka
import KilnLoad
import KilnPostgres
import KilnRedis
import KilnScenario
import KilnStores
import Logging
import Synchronization
import Testing

@Suite("black-box staleness: the scenario block")
struct BlackBoxStalenessSpecTests {
    static let places = """
        blackbox:
          entry: kafka
          places:
            - {store: postgres, table: pay.ledger, key: id}
            - {store: clickhouse, table: txns}
            - {store: redis, key: "txn:{txn_id}"}
        """

    @Test func aFullBlockParsesAndDefaultsApply() throws {
        let scenario = try BlackBoxSpecTests.parse(
            Self.places + "\n" + """
                  staleness:
                    sample: 5
                    poll: 50ms
                    slo: {redis: 2s, postgres.pay.ledger: 1500ms}
                    timeout: 40s
                """)
        let spec = try #require(scenario.blackbox)
        let staleness = try #require(spec.staleness)
        #expect(staleness.sample == 5)
        #expect(staleness.poll == .milliseconds(50))
        #expect(staleness.timeout == .seconds(40))
        #expect(staleness.slo(for: spec.places[0]) == .milliseconds(1500))
        #expect(staleness.slo(for: spec.places[1]) == .seconds(30))
        #expect(staleness.slo(for: spec.places[2]) == .seconds(2))

        let defaults = try #require(try BlackBoxSpecTests.parse(Self.places + "\n  staleness: {}").blackbox?.staleness)
        #expect(defaults.sample == 2)
        #expect(defaults.poll == .milliseconds(25))
        #expect(defaults.timeout == .seconds(60))
        let redis = BlackBoxSpec.Staleness.defaultSLO[.redis]
        #expect(redis == .seconds(5))
        #expect(try BlackBoxSpecTests.parse(Self.places).blackbox?.staleness == nil)
    }

    @Test func mistakesNameTheFileLineAndField() {
        let unknownKey = BlackBoxSpecTests.error(Self.places + "\n  staleness:\n    sample: 2\n    smaple: 3")
        #expect(unknownKey?.file == "bb.yaml")
        #expect(unknownKey?.line == 13)
        #expect(unknownKey?.field == "blackbox.staleness.smaple")

        let unknownPlace = BlackBoxSpecTests.error(Self.places + "\n  staleness: {slo: {mysql: 1s}}")
        #expect(unknownPlace?.line == 11)
        #expect(unknownPlace?.field == "blackbox.staleness.slo.mysql")
        #expect(unknownPlace?.message.contains("neither a store") == true)

        let shortTimeout = BlackBoxSpecTests.error(Self.places + "\n  staleness: {slo: {redis: 10s}, timeout: 5s}")
        #expect(shortTimeout?.field == "blackbox.staleness.timeout")
        #expect(shortTimeout?.message.contains("at least the largest SLO (30s)") == true)

        let badDuration = BlackBoxSpecTests.error(Self.places + "\n  staleness: {poll: soon}")
        #expect(badDuration?.field == "blackbox.staleness.poll")
        let badSample = BlackBoxSpecTests.error(Self.places + "\n  staleness: {sample: 0}")
        #expect(badSample?.field == "blackbox.staleness.sample")
    }
}

/// When each sampled txn was acknowledged by the entry (filled by the test's "load", read by the "services").
final class AckBoard: Sendable {
    private let acks: Mutex<[Int: UInt64]> = Mutex([:])
    func set(_ index: Int, _ ack: UInt64) { acks.withLock { $0[index] = ack } }
    func ack(_ index: Int) -> UInt64? { acks.withLock { $0[index] } }
}

/// Plays one of the user's services on a thread of its own: copies txn `i` to its place `delay` after the entry
/// acknowledged it (skipping `skip`), through the connection `open` makes on that thread.
final class DelayedCopier: Sendable {
    private let done = Atomic<Bool>(false)
    private let failure: Mutex<String?> = Mutex(nil)

    init(
        _ txnIDs: [Int64], board: AckBoard, delayMillis: UInt64, skip: Set<Int> = [],
        open: @escaping @Sendable () throws -> (Int64) throws -> Void
    ) {
        let thread = Thread { [self] in
            defer { done.store(true, ordering: .releasing) }
            do {
                let copy = try open()
                for (index, txnID) in txnIDs.enumerated() {
                    var ack = board.ack(index)
                    while ack == nil {
                        Thread.sleep(forTimeInterval: 0.001)
                        ack = board.ack(index)
                    }
                    if skip.contains(index) { continue }
                    _ = MonotonicClock.sleep(until: ack! &+ delayMillis * 1_000_000) { false }
                    try copy(txnID)
                }
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
        }
        thread.start()
    }

    /// Waits for the copies; the error that stopped them, if any.
    func finish() -> String? {
        while !done.load(ordering: .acquiring) { Thread.sleep(forTimeInterval: 0.01) }
        return failure.withLock { $0 }
    }
}

@Suite("black-box staleness probes against the embedded stack", .serialized)
struct BlackBoxStalenessProbeTests {
    static let delay: UInt64 = 300
    static let count = 20

    static func context(_ ns: String, _ dataset: Dataset) -> ClientContext {
        ClientContext(
            stack: TestStack.definition, dataset: dataset, namespace: ns,
            environment: ProcessInfo.processInfo.environment, logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
    }

    /// The test is the load (writes the entry table, reports each ack to the prober) and five services (each copies
    /// every txn to one place 300 ms after its ack; the Redis one never copies txn #5). ClickHouse's SLO is 100 ms,
    /// below the delay, so that path must be stale; a topic that keeps no txn_id has no probe.
    @Test func measuredStalenessIsTheInjectedDelayAndMissesAreNamed() throws {
        let ns = "bbs_\(UInt32.random(in: 0...UInt32.max))"
        let dataset = try Dataset(spec: Fixtures.spec, seed: 9, rows: 2_000)
        let txnIDs = (0..<Int64(Self.count)).map { dataset.transaction($0).txnID }
        let postgres = try PostgresConnection(TestStack.postgres)
        defer { postgres.close() }
        try postgres.execute(
            "CREATE SCHEMA \(ns); CREATE TABLE \(ns).entry (id bigint PRIMARY KEY); "
                + "CREATE TABLE \(ns).ledger (id bigint PRIMARY KEY, note text)")
        let clickhouseURL = "\(TestStack.clickhouseHTTP)/"
        _ = try HTTPClient().post(
            clickhouseURL,
            body: Array("CREATE TABLE kiln.\(ns)_txns (txn Int64) ENGINE = MergeTree ORDER BY txn".utf8)
        ).expectOK()
        let warmup = try KafkaProducer(bootstrapServers: TestStack.kafkaBootstrap)
        try warmup.produce(topic: "\(ns).enriched", key: nil, value: Array("not a txn".utf8), id: 0)
        try #require(try warmup.flush(timeoutMilliseconds: 20_000).count == 1)

        let scenario = try BlackBoxSpecTests.parse(
            """
            blackbox:
              entry: postgres
              posted: all
              places:
                - {store: postgres, table: \(ns).ledger, key: id}
                - {store: clickhouse, table: \(ns)_txns, key: txn}
                - {store: redis, key: "\(ns):pay:{txn_id}"}
                - {store: kafka, topic: \(ns).enriched, columns: {txn_id: id}}
                - {store: falkordb, graph: \(ns)_fraud, edge: "(:C)-[:B]->(:S)", columns: {txn_id: tid}}
                - {store: kafka, topic: \(ns).totals, columns: {txn_id: null}}
              staleness:
                sample: 1000
                poll: 20ms
                slo: {postgres: 1s, redis: 1s, kafka: 2s, falkordb: 2s, clickhouse: 100ms}
                timeout: 3s
            """)
        let spec = try #require(scenario.blackbox)
        let prober = StalenessProber(spec: spec, context: Self.context(ns, dataset))
        prober.start()
        try #require(prober.ready(within: 30), "every probed place's lookup opens")

        let board = AckBoard()
        let redis = TestStack.redisPrimary
        let falkor = TestStack.falkordb
        let copiers = [
            DelayedCopier(txnIDs, board: board, delayMillis: Self.delay) {
                let connection = try PostgresConnection(TestStack.postgres)
                return { try connection.execute("INSERT INTO \(ns).ledger VALUES (\($0), 'copied')") }
            },
            DelayedCopier(txnIDs, board: board, delayMillis: Self.delay) {
                let http = try HTTPClient()
                return { _ = try http.post(clickhouseURL, body: Array("INSERT INTO kiln.\(ns)_txns VALUES (\($0))".utf8)).expectOK() }
            },
            DelayedCopier(txnIDs, board: board, delayMillis: Self.delay, skip: [5]) {
                let connection = try RedisConnection(host: redis.host, port: redis.port)
                return { try connection.command(["HSET", "\(ns):pay:\($0)", "amt", "1.00"]) }
            },
            DelayedCopier(txnIDs, board: board, delayMillis: Self.delay) {
                let producer = try KafkaProducer(bootstrapServers: TestStack.kafkaBootstrap)
                return { id in
                    try producer.produce(
                        topic: "\(ns).enriched", key: nil, value: Array(#"{"id":\#(id)}"#.utf8), id: UInt64(id))
                    _ = try producer.flush(timeoutMilliseconds: 10_000)
                }
            },
            DelayedCopier(txnIDs, board: board, delayMillis: Self.delay) {
                let connection = try RedisConnection(host: falkor.host, port: falkor.port)
                return { id in
                    try connection.command([
                        "GRAPH.QUERY", "\(ns)_fraud", "MERGE (c:C {id: 1}) MERGE (s:S {id: 2}) CREATE (c)-[:B {tid: \(id)}]->(s)",
                    ])
                }
            },
        ]

        // The load: one entry write every 100 ms, each acknowledged to the prober right after it committed.
        let start = MonotonicClock.now()
        for (index, txnID) in txnIDs.enumerated() {
            _ = MonotonicClock.sleep(until: start &+ UInt64(index) * 100_000_000) { false }
            try postgres.execute("INSERT INTO \(ns).entry VALUES (\(txnID))")
            let ack = MonotonicClock.now()
            board.set(index, ack)
            prober.acknowledged(operation: "postgres.insert", rows: Int64(index)..<Int64(index + 1), ackNanos: ack)
        }
        // Another store's write is not the entry's: never sampled.
        prober.acknowledged(operation: "kafka.produce", rows: 100..<101, ackNanos: MonotonicClock.now() &+ 10_000_000)
        for copier in copiers {
            let failure = copier.finish()
            #expect(failure == nil, "a service failed: \(failure ?? "")")
        }
        let report = prober.finish { false }
        #expect(report.sampled == Int64(Self.count))
        let paths = Dictionary(uniqueKeysWithValues: report.paths.map { ($0.place, $0) })
        let ledger = try #require(paths["postgres.\(ns).ledger"])
        let txns = try #require(paths["clickhouse.\(ns)_txns"])
        let keys = try #require(paths["redis.\(ns):pay:{txn_id}"])
        let topic = try #require(paths["kafka.\(ns).enriched"])
        let graph = try #require(paths["falkordb.\(ns)_fraud"])
        let totals = try #require(paths["kafka.\(ns).totals"])
        print("staleness p50/p99/max ms (injected \(Self.delay) ms):")
        for path in report.paths where path.noProbe == nil {
            let line = [path.p50Ms, path.p99Ms, path.maxMs].map { $0.map { String(format: "%.1f", $0) } ?? "-" }
            print("  \(path.path): \(line.joined(separator: " / ")), \(path.visible)/\(path.probes) seen")
        }

        // Every copied txn was seen, about `delay` after its ack.
        let delay = Double(Self.delay)
        for path in [ledger, txns, topic, graph] {
            #expect(path.probes == Int64(Self.count), "\(path.path)")
            #expect(path.visible == Int64(Self.count), "\(path.path): \(path.lastError ?? "")")
            #expect(path.neverVisible == 0, "\(path.path)")
            let p50 = path.p50Ms ?? 0
            #expect(p50 >= delay - 5, "\(path.path): p50 \(p50)")
        }
        let ledgerP50 = ledger.p50Ms ?? 0
        #expect(ledgerP50 <= delay + 100, "postgres p50 \(ledgerP50) ≈ \(delay)")
        let clickhouseP50 = txns.p50Ms ?? 0
        #expect(clickhouseP50 <= delay + 150, "clickhouse p50 \(clickhouseP50) ≈ \(delay)")
        let graphP50 = graph.p50Ms ?? 0
        #expect(graphP50 <= delay + 250, "falkordb p50 \(graphP50) ≈ \(delay)")
        let topicP50 = topic.p50Ms ?? 0
        #expect(topicP50 <= delay + 600, "kafka p50 \(topicP50) ≈ \(delay)")
        #expect(ledger.probe?.contains("IN") == true)

        // The Redis service never copied txn #5: never visible, by txn_id; the 19 others are.
        #expect(keys.visible == Int64(Self.count - 1))
        #expect(keys.neverVisible == 1)
        #expect(keys.neverVisibleTxnIds == [txnIDs[5]])
        let keysP50 = keys.p50Ms ?? 0
        #expect(keysP50 >= delay - 5 && keysP50 <= delay + 100, "redis p50 \(keysP50)")
        #expect(totals.noProbe?.contains("no per-transaction probe") == true)
        #expect(totals.probes == 0)

        // As check results: ClickHouse stale (p99 over its 100 ms SLO), Redis lost txn #5, the rest valid.
        let results = Dictionary(
            uniqueKeysWithValues: BlackBoxStalenessCheck.results(report).map { ($0.place, $0) })
        let ledgerResult = try #require(results["staleness.postgres.\(ns).ledger"])
        #expect(ledgerResult.validity == .valid)
        #expect(ledgerResult.expected == Int64(Self.count))
        let staleResult = try #require(results["staleness.clickhouse.\(ns)_txns"])
        #expect(staleResult.validity == .invalid)
        #expect(staleResult.counts == ["stale": 1])
        #expect(staleResult.anomalies.first?.detail.contains("over the SLO of 100 ms") == true)
        let lostResult = try #require(results["staleness.redis.\(ns):pay:{txn_id}"])
        #expect(lostResult.counts == ["lost": 1])
        #expect(lostResult.anomalies.map(\.txnID) == [txnIDs[5]])
        let noProbe = try #require(results["staleness.kafka.\(ns).totals"])
        #expect(noProbe.validity == .valid)
        #expect(noProbe.source.contains("no per-transaction probe"))
        for id in ["staleness.kafka.\(ns).enriched", "staleness.falkordb.\(ns)_fraud"] {
            #expect(results[id]?.validity == .valid, "\(id)")
        }

        // The run directory's file round-trips (snake_case keys).
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("bbs"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try report.write(to: directory)
        let text = try String(
            contentsOf: directory.appendingPathComponent(BlackBoxStalenessReport.fileName), encoding: .utf8)
        #expect(text.contains("\"never_visible_txn_ids\""))
        let loaded = try #require(try BlackBoxStalenessReport.load(from: directory))
        #expect(loaded.paths.map(\.place) == report.paths.map(\.place))
        #expect(loaded.paths.first?.p50Ms == report.paths.first?.p50Ms)
    }

    /// `kiln run` then `kiln check` of a black-box scenario: the load inserts into PostgreSQL `<ns>_transactions`, the test's
    /// service copies each new row into `<ns>.ledger` 200 ms after it sees it; the run writes
    /// blackbox-staleness.json and the check reports `staleness.postgres.<ns>.ledger`.
    @Test func kilnRunProbesTheEntryAcksAndTheCheckReportsThePath() throws {
        let ns = "bbr_\(UInt32.random(in: 0...UInt32.max))"
        let postgres = try PostgresConnection(TestStack.postgres)
        defer { postgres.close() }
        try postgres.execute("CREATE SCHEMA \(ns); CREATE TABLE \(ns).ledger (id bigint PRIMARY KEY)")
        let file = try CommandLineTests.temporaryFile(
            "\(ns).yaml",
            """
            name: \(ns)
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 9, rows: 2K}
            namespace: \(ns)
            phases:
              - {name: steady, executor: constant-arrival-rate, rate: 20, duration: 3s, workers: 2, mix: {postgres.insert: 1}}
            blackbox:
              entry: postgres
              posted: all
              places:
                - {store: postgres, table: \(ns).ledger, key: id}
              staleness: {sample: 10, slo: {postgres: 2s}, timeout: 5s}
            """)
        let stop = StopFlag()
        let service = DelayedService(ns: ns, stop: stop)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let run = try CommandLineTests.kiln(["run", file.path, "--runs-directory", runs.path, "--id", "r"])
        // The service copies the rows not sampled too before the check reconciles the ledger.
        stop.raise()
        let failure = service.finish()
        #expect(failure == nil, "the service failed: \(failure ?? "")")
        #expect(run.status == 0, "\(run.output)")
        let directory = runs.appendingPathComponent("r")
        let staleness = try #require(try BlackBoxStalenessReport.load(from: directory))
        let path = try #require(staleness.paths.first)
        #expect(path.path == "postgres.rows→postgres.\(ns).ledger")
        #expect(path.probes >= 20, "about 10 samples/s over 3 s")
        #expect(path.visible == path.probes)
        let p50 = path.p50Ms ?? 0
        #expect(p50 >= 195 && p50 <= 700, "p50 \(p50) ≈ the service's 200 ms")
        let (check, report) = try CheckCommandTests.check(directory)
        #expect(check.status == 0, "\(check.output)")
        let result = try #require(report.places.first { $0.place == "staleness.postgres.\(ns).ledger" })
        #expect(result.validity == .valid, "\(result.source)")
        #expect(result.source.contains("SLO 2000 ms"), "\(result.source)")
        #expect(report.places.first { $0.place == "postgres.\(ns).ledger" }?.validity == .valid)
        #expect(run.output.contains("staleness postgres.rows→postgres.\(ns).ledger: p50"), "\(run.output)")
    }
}

/// The user's service of the CLI test: polls `<ns>_transactions` every 20 ms and inserts each new txn into
/// `<ns>.ledger` 200 ms after it saw it; once `stop` is raised it copies what is left and returns.
final class DelayedService: Sendable {
    private let done = Atomic<Bool>(false)
    private let failure: Mutex<String?> = Mutex(nil)

    init(ns: String, stop: StopFlag) {
        let thread = Thread { [self] in
            defer { done.store(true, ordering: .releasing) }
            do {
                let connection = try PostgresConnection(TestStack.postgres)
                defer { connection.close() }
                var seen: Set<Int64> = []
                var due: [(at: UInt64, txnID: Int64)] = []
                while true {
                    let stopping = stop.isRaised
                    // The entry table appears when `kiln run` sets its store up; until then the query fails.
                    if let result = try? connection.execute("SELECT txn_id FROM \(ns)_transactions") {
                        let now = MonotonicClock.now()
                        for row in 0..<result.rowCount {
                            guard let id = result.value(row: row, column: 0).flatMap({ Int64($0) }),
                                seen.insert(id).inserted
                            else { continue }
                            due.append((now &+ 200_000_000, id))
                        }
                    }
                    let now = MonotonicClock.now()
                    while let first = due.first, first.at <= now {
                        try connection.execute("INSERT INTO \(ns).ledger VALUES (\(first.txnID))")
                        due.removeFirst()
                    }
                    if stopping && due.isEmpty { break }
                    Thread.sleep(forTimeInterval: 0.02)
                }
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
        }
        thread.start()
    }

    /// Waits for the service to copy what is left; the error that stopped it, if any.
    func finish() -> String? {
        while !done.load(ordering: .acquiring) { Thread.sleep(forTimeInterval: 0.01) }
        return failure.withLock { $0 }
    }
}
