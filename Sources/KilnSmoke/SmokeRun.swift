import Foundation
import KilnCore
import KilnHTTP
import KilnKafka
import KilnPostgres
import KilnRedis
import KilnScenario
import KilnStores
import Logging

/// Writes one fixed transaction set to all five stores of a stack, reads each copy back and compares it with
/// the expectation. Every store gets its own uniquely named table/topic/keys/graph for this run, removed at the
/// end unless `keep` is set. A store that cannot be reached becomes an error row naming its address; it never
/// stops the other stores' checks. Each store's work is bounded by `timeoutSeconds` per blocking call.
public struct SmokeRun {
    public var stack: StackDefinition
    public var transactions: [SmokeTransaction]
    public var runID: String
    public var environment: [String: String]
    public var timeoutSeconds: Int
    public var keep: Bool
    private let logger: Logger

    public init(
        stack: StackDefinition, transactions: [SmokeTransaction], logger: Logger,
        runID: String = SmokeRun.newRunID(), environment: [String: String] = ProcessInfo.processInfo.environment,
        timeoutSeconds: Int = 10, keep: Bool = false
    ) {
        self.stack = stack
        self.transactions = transactions
        self.logger = logger
        self.runID = runID
        self.environment = environment
        self.timeoutSeconds = timeoutSeconds
        self.keep = keep
    }

    public static func newRunID() -> String {
        let seconds = Int(Date().timeIntervalSince1970)
        return "s\(seconds)_\(UInt32.random(in: 0...UInt32.max) % 100_000)"
    }

    /// Runs the five stores one after another and returns one row each, in the order PostgreSQL, Kafka, Redis,
    /// graph, time series.
    public func run() -> [SmokeStoreResult] {
        [
            attempt("postgres", stack.postgres.primary, postgres),
            attempt("kafka", stack.kafka.bootstrap.first!, kafka),
            attempt("redis", stack.redis.primary, redis),
            attempt(stack.graph.kind.rawValue, stack.graph.endpoint, graph),
            attempt(stack.timeseries.kind.rawValue, stack.timeseries.endpoint, timeseries),
        ]
    }

    private func attempt(
        _ store: String, _ endpoint: HostPort, _ body: (inout SmokeStoreResult) throws -> Void
    ) -> SmokeStoreResult {
        var result = SmokeStoreResult(store: store, endpoint: endpoint.description)
        let started = ContinuousClock.now
        do {
            try body(&result)
        } catch {
            result.error = "\(error)"
        }
        logger.info(
            "smoke store checked",
            metadata: [
                "kiln.store": "\(store)", "kiln.endpoint": "\(endpoint)", "kiln.result": "\(result.summary)",
                "kiln.seconds": "\(started.duration(to: .now).roundedSeconds)",
            ])
        return result
    }

    // MARK: PostgreSQL: COPY in, SELECT back

    private func postgres(_ result: inout SmokeStoreResult) throws {
        let pg = stack.postgres
        let endpoint = PostgresEndpoint(
            host: pg.primary.host, port: pg.primary.port, database: pg.database, user: pg.user,
            password: StackDefinition.secret(pg.passwordEnvironmentVariable, in: environment))
        let connection = try PostgresConnection(endpoint, connectTimeoutSeconds: timeoutSeconds)
        let table = "kiln_smoke_\(runID)"
        try connection.execute(
            """
            CREATE TABLE \(table) (txn_id bigint PRIMARY KEY, user_id bigint NOT NULL, merchant_id bigint NOT NULL,
              amount numeric(15,2) NOT NULL, currency text NOT NULL, ts timestamptz NOT NULL)
            """)
        defer { if !keep { _ = try? connection.execute("DROP TABLE IF EXISTS \(table)") } }
        result.written = try connection.copyIn("COPY \(table) FROM STDIN (FORMAT csv)") { writer in
            for t in transactions {
                try writer.write(
                    "\(t.txnID),\(t.userID),\(t.merchantID),\(t.amountText),\(t.currency),\(Self.isoTimestamp(t.timestamp))\n")
            }
        }
        let rows = try connection.execute(
            """
            SELECT txn_id, user_id, merchant_id, (amount * 100)::bigint, currency, extract(epoch FROM ts)::bigint
            FROM \(table)
            """)
        var actual: [SmokeTransaction] = []
        actual.reserveCapacity(rows.rowCount)
        for row in 0..<rows.rowCount {
            func int(_ column: Int) -> Int64 { Int64(rows.value(row: row, column: column) ?? "") ?? -1 }
            actual.append(
                SmokeTransaction(
                    txnID: int(0), userID: int(1), merchantID: int(2), amountCents: int(3),
                    currency: rows.value(row: row, column: 4) ?? "", timestamp: int(5)))
        }
        result.compare(expected: transactions, actual: actual)
    }

    static func isoTimestamp(_ seconds: Int64) -> String {
        let date = Date(timeIntervalSince1970: TimeInterval(seconds))
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func two(_ value: Int?) -> String { value.map { $0 < 10 ? "0\($0)" : "\($0)" } ?? "00" }
        return "\(c.year ?? 1970)-\(two(c.month))-\(two(c.day)) \(two(c.hour)):\(two(c.minute)):\(two(c.second))+00"
    }

    // MARK: Kafka: produce (idempotent, keyed by user), consume back from every partition

    private func kafka(_ result: inout SmokeStoreResult) throws {
        let bootstrap = stack.kafka.bootstrapServers
        let topic = "kiln-smoke-\(runID)"
        let timeoutMilliseconds = Int32(timeoutSeconds * 1000)
        let consumer = try KafkaConsumer(bootstrapServers: bootstrap)
        defer { consumer.close() }
        // Metadata first: an unreachable broker fails here within the timeout instead of in delivery.
        let partitionCount = try consumer.partitionCount(topic: topic, timeoutMilliseconds: timeoutMilliseconds)
        let producer = try KafkaProducer(
            bootstrapServers: bootstrap, idempotent: true,
            properties: ["message.timeout.ms": String(timeoutSeconds * 1000)])
        var failedDeliveries = 0
        var delivered = 0
        for (index, t) in transactions.enumerated() {
            try producer.produce(
                topic: topic, key: Array(String(t.userID).utf8), value: Array(t.json.utf8), id: UInt64(index))
            if index % 1000 == 999 {
                for report in producer.poll() { if report.error == nil { delivered += 1 } else { failedDeliveries += 1 } }
            }
        }
        for report in try producer.flush(timeoutMilliseconds: timeoutMilliseconds) {
            if report.error == nil { delivered += 1 } else { failedDeliveries += 1 }
        }
        result.written = delivered
        if failedDeliveries > 0 {
            throw SmokeFailure(description: "\(failedDeliveries) of \(transactions.count) deliveries failed")
        }
        let partitions = (0..<Int32(partitionCount)).map { $0 }
        try consumer.assign(topic: topic, partitions: partitions, from: .beginning)
        var actual: [SmokeTransaction] = []
        let deadline = ContinuousClock.now + .seconds(timeoutSeconds * 3)
        // Everything was acknowledged before reading began, so end-of-partition on all of them means all is read.
        while !partitions.allSatisfy({ consumer.partitionsAtEnd[$0] != nil }) {
            guard ContinuousClock.now < deadline else {
                throw SmokeFailure(description: "consumed \(actual.count) of \(delivered) before the timeout")
            }
            guard let message = try consumer.poll(timeoutMilliseconds: 500) else { continue }
            actual.append(try Self.decode(message.value))
        }
        result.compare(expected: transactions, actual: actual)
    }

    struct SmokeFailure: Error, CustomStringConvertible {
        var description: String
    }

    static func decode(_ value: [UInt8]) throws -> SmokeTransaction {
        struct Wire: Decodable {
            var txn_id: Int64
            var user_id: Int64
            var merchant_id: Int64
            var amount_cents: Int64
            var currency: String
            var ts: Int64
        }
        let wire = try JSONDecoder().decode(Wire.self, from: Data(value))
        return SmokeTransaction(
            txnID: wire.txn_id, userID: wire.user_id, merchantID: wire.merchant_id, amountCents: wire.amount_cents,
            currency: wire.currency, timestamp: wire.ts)
    }

    // MARK: Redis: a hash per transaction and a sorted set of amounts, pipelined

    private func redis(_ result: inout SmokeStoreResult) throws {
        let primary = stack.redis.primary
        let connection = try RedisConnection(
            host: primary.host, port: primary.port, timeoutSeconds: Double(timeoutSeconds))
        if let password = StackDefinition.secret(stack.redis.passwordEnvironmentVariable, in: environment) {
            try connection.authenticate(user: stack.redis.user, password: password)
        }
        let prefix = "kiln:smoke:\(runID)"
        let scores = "\(prefix):amounts"
        var writes: [[String]] = []
        writes.reserveCapacity(transactions.count * 2 + 1)
        for t in transactions {
            writes.append([
                "HSET", "\(prefix):txn:\(t.txnID)", "user_id", String(t.userID), "merchant_id", String(t.merchantID),
                "amount_cents", String(t.amountCents), "currency", t.currency, "ts", String(t.timestamp),
            ])
            writes.append(["ZADD", scores, String(t.amountCents), String(t.txnID)])
        }
        let replies = try connection.pipeline(writes)
        let failed = replies.filter { if case .error = $0 { true } else { false } }.count
        result.written = transactions.count - (failed + 1) / 2
        defer {
            if !keep {
                var deletes = transactions.map { ["DEL", "\(prefix):txn:\($0.txnID)"] }
                deletes.append(["DEL", scores])
                _ = try? connection.pipeline(deletes)
            }
        }
        let reads = transactions.map { ["HGETALL", "\(prefix):txn:\($0.txnID)"] }
        let hashes = try connection.pipeline(reads)
        let members = try connection.command(["ZRANGE", scores, "0", "-1", "WITHSCORES"]).array ?? []
        var scoreByID: [Int64: Int64] = [:]
        var index = 0
        while index + 1 < members.count {
            if let id = members[index].string.flatMap({ Int64($0) }), let score = members[index + 1].string {
                scoreByID[id] = Int64(Double(score) ?? -1)
            }
            index += 2
        }
        var actual: [SmokeTransaction] = []
        for (t, reply) in zip(transactions, hashes) {
            guard let fields = reply.array, !fields.isEmpty else { continue }
            var map: [String: String] = [:]
            var position = 0
            while position + 1 < fields.count {
                map[fields[position].string ?? ""] = fields[position + 1].string ?? ""
                position += 2
            }
            var row = SmokeTransaction(
                txnID: t.txnID, userID: Int64(map["user_id"] ?? "") ?? -1,
                merchantID: Int64(map["merchant_id"] ?? "") ?? -1, amountCents: Int64(map["amount_cents"] ?? "") ?? -1,
                currency: map["currency"] ?? "", timestamp: Int64(map["ts"] ?? "") ?? -1)
            // The sorted set must hold the same amount as the hash.
            if scoreByID[t.txnID] != row.amountCents { row.amountCents = -1 }
            actual.append(row)
        }
        result.compare(expected: transactions, actual: actual)
    }

    // MARK: Graph: (User)-[:PAID]->(Merchant), batched UNWIND

    private func graph(_ result: inout SmokeStoreResult) throws {
        switch stack.graph.kind {
        case .falkordb: try falkordb(&result)
        case .neo4j: try neo4j(&result)
        }
    }

    /// The Cypher shared by FalkorDB and Neo4j: one PAID edge per transaction between MERGEd endpoints.
    static let writeCypher = """
        UNWIND $rows AS r MERGE (u:User {id: r.u}) MERGE (m:Merchant {id: r.m}) \
        CREATE (u)-[:PAID {txn_id: r.t, amount_cents: r.a, currency: r.c, ts: r.s}]->(m)
        """
    static let readCypher = """
        MATCH (u:User)-[p:PAID]->(m:Merchant) RETURN p.txn_id, u.id, m.id, p.amount_cents, p.currency, p.ts
        """

    static func cypherRows(_ batch: ArraySlice<SmokeTransaction>) -> String {
        "[" + batch.map { "{t:\($0.txnID),u:\($0.userID),m:\($0.merchantID),a:\($0.amountCents),c:'\($0.currency)',s:\($0.timestamp)}" }
            .joined(separator: ",") + "]"
    }

    private func falkordb(_ result: inout SmokeStoreResult) throws {
        let endpoint = stack.graph.endpoint
        let connection = try RedisConnection(
            host: endpoint.host, port: endpoint.port, timeoutSeconds: Double(timeoutSeconds))
        let graph = "\(stack.graph.graph)-smoke-\(runID)"
        defer { if !keep { _ = try? connection.command(["GRAPH.DELETE", graph]) } }
        var written = 0
        var start = 0
        while start < transactions.count {
            let batch = transactions[start..<min(start + 1000, transactions.count)]
            _ = try connection.command(["GRAPH.QUERY", graph, "CYPHER rows=\(Self.cypherRows(batch)) \(Self.writeCypher)"])
            written += batch.count
            start += 1000
        }
        result.written = written
        let reply = try connection.command(["GRAPH.QUERY", graph, Self.readCypher])
        guard let parts = reply.array, parts.count >= 2, let rows = parts[1].array else {
            throw SmokeFailure(description: "GRAPH.QUERY returned an unexpected reply shape")
        }
        let actual = rows.map { row -> SmokeTransaction in
            let cells = row.array ?? []
            func int(_ i: Int) -> Int64 {
                guard i < cells.count else { return -1 }
                return cells[i].integer ?? cells[i].string.flatMap { Int64($0) } ?? -1
            }
            return SmokeTransaction(
                txnID: int(0), userID: int(1), merchantID: int(2), amountCents: int(3),
                currency: cells.count > 4 ? cells[4].string ?? "" : "", timestamp: int(5))
        }
        result.compare(expected: transactions, actual: actual)
    }

    /// Neo4j through its HTTP transaction endpoint (cannot run on this machine; exercised by the compose stack).
    private func neo4j(_ result: inout SmokeStoreResult) throws {
        let endpoint = stack.graph.endpoint
        let client = try HTTPClient(
            timeoutSeconds: Double(timeoutSeconds), connectTimeoutSeconds: Double(timeoutSeconds),
            user: stack.graph.user,
            password: StackDefinition.secret(stack.graph.passwordEnvironmentVariable, in: environment))
        let url = "http://\(endpoint)/db/\(stack.graph.graph)/tx/commit"
        let label = "Smoke\(runID)"
        func statement(_ cypher: String, _ parameters: String = "{}") -> [UInt8] {
            let escaped = cypher.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            return Array(#"{"statements":[{"statement":"\#(escaped)","parameters":\#(parameters)}]}"#.utf8)
        }
        func run(_ body: [UInt8]) throws -> [String: Any] {
            let response = try client.post(url, body: body, contentType: "application/json").expectOK()
            guard let json = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
                throw SmokeFailure(description: "Neo4j returned no JSON object")
            }
            if let errors = json["errors"] as? [[String: Any]], let first = errors.first {
                throw SmokeFailure(description: "Neo4j error \(first["code"] ?? "unknown")")
            }
            return json
        }
        let write = Self.writeCypher.replacingOccurrences(of: ":User", with: ":User:\(label)")
            .replacingOccurrences(of: ":Merchant", with: ":Merchant:\(label)")
        var start = 0
        while start < transactions.count {
            let batch = transactions[start..<min(start + 1000, transactions.count)]
            let rows = "[" + batch.map {
                #"{"t":\#($0.txnID),"u":\#($0.userID),"m":\#($0.merchantID),"a":\#($0.amountCents),"c":"\#($0.currency)","s":\#($0.timestamp)}"#
            }.joined(separator: ",") + "]"
            _ = try run(statement(write, #"{"rows":\#(rows)}"#))
            result.written += batch.count
            start += 1000
        }
        defer { if !keep { _ = try? run(statement("MATCH (n:\(label)) DETACH DELETE n")) } }
        let read = Self.readCypher.replacingOccurrences(of: "(u:User)", with: "(u:User:\(label))")
        let json = try run(statement(read))
        let data = ((json["results"] as? [[String: Any]])?.first?["data"] as? [[String: Any]]) ?? []
        let actual = data.map { entry -> SmokeTransaction in
            let row = entry["row"] as? [Any] ?? []
            func int(_ i: Int) -> Int64 { i < row.count ? (row[i] as? NSNumber)?.int64Value ?? -1 : -1 }
            return SmokeTransaction(
                txnID: int(0), userID: int(1), merchantID: int(2), amountCents: int(3),
                currency: row.count > 4 ? row[4] as? String ?? "" : "", timestamp: int(5))
        }
        result.compare(expected: transactions, actual: actual)
    }

    // MARK: Time series: ClickHouse over HTTP (TabSeparated in, TabSeparated out)

    private func timeseries(_ result: inout SmokeStoreResult) throws {
        guard stack.timeseries.kind == .clickhouse else {
            throw SmokeFailure(description: "the smoke check supports ClickHouse only; TimescaleDB arrives with the load engine")
        }
        let endpoint = stack.timeseries.endpoint
        let client = try HTTPClient(
            timeoutSeconds: Double(timeoutSeconds), connectTimeoutSeconds: Double(timeoutSeconds),
            user: stack.timeseries.user,
            password: StackDefinition.secret(stack.timeseries.passwordEnvironmentVariable, in: environment),
            caFile: stack.timeseries.caFile(in: environment))
        let base = stack.timeseries.baseURL
        let table = "\(stack.timeseries.database).smoke_\(runID)"
        func query(_ sql: String, body: [UInt8] = []) throws -> String {
            let encoded = sql.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            return try client.post("\(base)?query=\(encoded)", body: body).expectOK().text
        }
        _ = try query("CREATE DATABASE IF NOT EXISTS \(stack.timeseries.database)")
        _ = try query(
            """
            CREATE TABLE \(table) (txn_id Int64, user_id Int64, merchant_id Int64, amount_cents Int64,
              currency String, ts DateTime) ENGINE = MergeTree() ORDER BY txn_id
            """)
        defer { if !keep { _ = try? query("DROP TABLE IF EXISTS \(table)") } }
        var body = ""
        body.reserveCapacity(transactions.count * 48)
        for t in transactions {
            body += "\(t.txnID)\t\(t.userID)\t\(t.merchantID)\t\(t.amountCents)\t\(t.currency)\t\(t.timestamp)\n"
        }
        _ = try query("INSERT INTO \(table) FORMAT TabSeparated", body: Array(body.utf8))
        result.written = transactions.count
        let text = try query(
            "SELECT txn_id, user_id, merchant_id, amount_cents, currency, toUInt32(ts) FROM \(table) FORMAT TabSeparated")
        let actual = text.split(separator: "\n").map { line -> SmokeTransaction in
            let cells = line.split(separator: "\t", omittingEmptySubsequences: false)
            func int(_ i: Int) -> Int64 { i < cells.count ? Int64(cells[i]) ?? -1 : -1 }
            return SmokeTransaction(
                txnID: int(0), userID: int(1), merchantID: int(2), amountCents: int(3),
                currency: cells.count > 4 ? String(cells[4]) : "", timestamp: int(5))
        }
        result.compare(expected: transactions, actual: actual)
    }
}
