import Foundation
import KilnData
import KilnHTTP
import KilnKafka
import KilnCore
import KilnPostgres
import KilnRedis
import KilnScenario
import KilnStores

/// A point lookup of one black-box place for the staleness probes: which of these transactions the place holds
/// now. One per probe thread (it owns its connection); not Sendable; every call blocks for at most the context's
/// timeout. `visible` answers a subset of `txnIDs`; it throws when the store cannot be asked (the probes then stay
/// pending and the error is counted).
protocol VisibilityLookup: AnyObject {
    /// What is asked, for the result's `probe` text (`SELECT … WHERE "id" IN (…)`).
    var description: String { get }
    func visible(_ txnIDs: [Int64]) throws -> Set<Int64>
    func close()
}

enum StalenessLookups {
    /// Why `place` has no per-transaction probe (it keeps no txn_id: `columns: {txn_id: null}`), or nil when it has.
    static func noProbeReason(_ place: BlackBoxSpec.Place) -> String? {
        switch place.store {
        case .postgres, .clickhouse, .redis:
            // Tables resolve a key column (or fail to resolve); a Redis key pattern always holds {txn_id}.
            return nil
        case .kafka, .falkordb:
            if let mapping = place.mapping(of: "txn_id"), mapping.column == nil {
                return "no per-transaction probe: the place keeps no txn_id (columns: {txn_id: null}), "
                    + "so a transaction cannot be looked up in it"
            }
            return nil
        }
    }

    /// Opens the lookup of `place`, resolving tables against their stores (as `kiln check` does).
    /// - Throws: `SpecError` for a mapping the store contradicts (no such table or column), a store error when the
    ///   store cannot be reached.
    static func open(_ place: BlackBoxSpec.Place, context: ClientContext) throws -> any VisibilityLookup {
        switch place.store {
        case .postgres:
            let (projection, _) = try BlackBoxPlaces.postgres(place, context: context)
            return try PostgresLookup(projection, context: context)
        case .clickhouse:
            let (projection, _) = try BlackBoxPlaces.clickhouse(place, context: context)
            return try ClickHouseLookup(projection, context: context)
        case .redis:
            return try RedisLookup(pattern: place.name, context: context)
        case .kafka:
            return try KafkaTail(place, context: context)
        case .falkordb:
            let (query, mapping) = BlackBoxPlaces.graph(place)
            return try GraphLookup(
                graph: place.name, match: query.match, property: mapping.names["txn_id"] ?? "txn_id", context: context)
        }
    }

    /// `1, 2, 3` (txn ids are integers Kiln generated, so they are safe to inline).
    static func list(_ ids: [Int64], quoted: Bool = false) -> String {
        ids.map { quoted ? "'\($0)'" : String($0) }.joined(separator: ", ")
    }
}

/// `SELECT <txn_id as int8> FROM <table> WHERE <key column> IN ('1', '2', …)`: the key column is compared as it is
/// (the untyped literals take its type), so its index serves the lookup.
final class PostgresLookup: VisibilityLookup {
    private let connection: PostgresConnection
    private let projection: PostgresScanner.Projection
    var description: String {
        "SELECT \(projection.columns[0]) FROM \(projection.table) WHERE \(projection.key) IN (…)"
    }

    init(_ projection: PostgresScanner.Projection, context: ClientContext) throws {
        self.projection = projection
        connection = try PostgresScanner.connect(context)
    }

    func visible(_ txnIDs: [Int64]) throws -> Set<Int64> {
        let result = try connection.execute(
            "SELECT \(projection.columns[0]) FROM \(projection.table) WHERE \(projection.key) IN "
                + "(\(StalenessLookups.list(txnIDs, quoted: true)))")
        var found: Set<Int64> = []
        for row in 0..<result.rowCount {
            if let id = result.value(row: row, column: 0).flatMap({ Int64($0) }) { found.insert(id) }
        }
        return found
    }

    func close() { connection.close() }
}

/// `SELECT <txn_id expression> FROM <table> WHERE <txn_id expression> IN (1, 2, …) FORMAT TabSeparated`, one POST.
final class ClickHouseLookup: VisibilityLookup {
    private let http: HTTPClient
    private let projection: ClickHouseScanner.Projection
    private let url: String
    var description: String { "SELECT \(projection.columns[0]) FROM \(projection.table) WHERE … IN (…)" }

    init(_ projection: ClickHouseScanner.Projection, context: ClientContext) throws {
        self.projection = projection
        http = try ClickHouseScanner.connect(context)
        url = "http://\(context.stack.timeseries.endpoint)/"
    }

    func visible(_ txnIDs: [Int64]) throws -> Set<Int64> {
        let key = projection.columns[0]
        let query =
            "SELECT \(key) FROM \(projection.table) WHERE \(key) IN (\(StalenessLookups.list(txnIDs))) "
            + "FORMAT TabSeparated"
        let text = try http.post(url, body: Array(query.utf8)).expectOK().text
        return Set(text.split(separator: "\n").compactMap { Int64($0) })
    }

    func close() {}
}

/// One pipeline of `EXISTS <key>` per pending transaction, the key being the pattern with `{txn_id}` filled in.
final class RedisLookup: VisibilityLookup {
    private let connection: RedisConnection
    private let prefix: String
    private let suffix: String
    let description: String

    init(pattern: String, context: ClientContext) throws {
        let parts = pattern.components(separatedBy: "{txn_id}")
        prefix = parts[0]
        suffix = parts.count > 1 ? parts[1] : ""
        description = "EXISTS \(pattern)"
        // The current primary (Sentinels first): a write acknowledged by a new primary is visible there.
        (connection, _) = try RedisPrimaryResolver(context.stack.redis, timeout: max(.seconds(1), context.timeout))
            .connect()
    }

    func visible(_ txnIDs: [Int64]) throws -> Set<Int64> {
        let replies = try connection.pipeline(txnIDs.map { ["EXISTS", "\(prefix)\($0)\(suffix)"] })
        var found: Set<Int64> = []
        for (id, reply) in zip(txnIDs, replies) {
            if case .error(let message) = reply {
                throw StoreError(store: "redis", address: connection.address, detail: "EXISTS: \(message)")
            }
            if reply.integer == 1 { found.insert(id) }
        }
        return found
    }

    func close() { connection.close() }
}

/// Tails a topic (every partition from the beginning, assigned when the lookup opens) and remembers when each
/// txn_id was first consumed; `visible` drains what arrived and answers from that memory. A transaction counts as
/// visible when its message has been consumed, i.e. a consumer could read it. Memory is bounded: the last
/// `remembered` distinct txn_ids consumed are kept (a probe's message is consumed at most a few thousand messages
/// before its sample, never hundreds of thousands).
final class KafkaTail: VisibilityLookup {
    private let consumer: KafkaConsumer
    private let topic: String
    private let decode: ([UInt8]) -> Int64
    private var seen: [Int64: UInt64] = [:]
    /// The ids in `seen`, in the order consumed (a ring once full: the oldest is forgotten first).
    private var order: [Int64] = []
    private var oldest = 0
    private let remembered = 500_000
    private var assigned = false
    private var lastAssignAttempt: UInt64 = 0
    var description: String { "consume topic \(topic)" }

    init(_ place: BlackBoxSpec.Place, context: ClientContext) throws {
        topic = place.name
        let kilnFormat = place.columns.isEmpty && place.units.isEmpty
        let mapping = FieldMapping(schemaless: place)
        decode = { bytes in
            bytes.withUnsafeBytes { kilnFormat ? TransactionJSON.parse($0).txnID : mapping.row(json: $0).txnID }
        }
        consumer = try KafkaConsumer(
            bootstrapServers: context.stack.kafka.bootstrapServers, groupID: "\(context.namespace)-staleness",
            properties: ["fetch.wait.max.ms": "10", "allow.auto.create.topics": "false"]
                .merging(try context.stack.kafka.clientProperties(in: context.environment)) { $1 })
        try assign()
    }

    /// Assigns every partition once the topic exists (a topic created after the run started is read from its start;
    /// its existence is asked at most every 250 ms).
    private func assign() throws {
        guard !assigned, MonotonicClock.now() &- lastAssignAttempt >= 250_000_000 else { return }
        lastAssignAttempt = MonotonicClock.now()
        guard let count = try consumer.existingPartitionCount(topic: topic, timeoutMilliseconds: 5_000) else { return }
        try consumer.assign(topic: topic, partitions: (0..<Int32(count)).map { $0 }, from: .beginning)
        assigned = true
    }

    func visible(_ txnIDs: [Int64]) throws -> Set<Int64> {
        try assign()
        let now = MonotonicClock.now()
        if assigned {
            // Drain what librdkafka already fetched (bounded, so a large backlog is read over several rounds).
            for _ in 0..<10_000 {
                guard let message = try consumer.poll(timeoutMilliseconds: 0) else { break }
                let id = decode(message.value)
                if id >= 0, seen[id] == nil { remember(id, now) }
            }
        }
        return Set(txnIDs.filter { seen[$0] != nil })
    }

    private func remember(_ id: Int64, _ now: UInt64) {
        seen[id] = now
        if order.count < remembered {
            order.append(id)
        } else {
            seen.removeValue(forKey: order[oldest])
            order[oldest] = id
            oldest = (oldest + 1) % remembered
        }
    }

    func close() { consumer.close() }
}

/// `GRAPH.RO_QUERY <graph> "MATCH (:A)-[p:R]->(:B) WHERE toInteger(p.<txn_id>) IN [1, 2, …] RETURN …"`: a scan of
/// the relation's edges per round (FalkorDB has no index on edge properties unless the user made one), so the
/// graph is polled at most every 100 ms. A graph that does not exist yet holds nothing.
final class GraphLookup: VisibilityLookup {
    private let connection: RedisConnection
    private let graph: String
    private let match: String
    private let property: String
    var description: String { "\(match) WHERE toInteger(p.\(property)) IN [...] on graph \(graph)" }

    init(graph: String, match: String, property: String, context: ClientContext) throws {
        self.graph = graph
        self.match = match
        self.property = property
        let endpoint = context.stack.graph.endpoint
        let timeout = max(1, context.timeout.seconds)
        connection = try context.stack.graph.credentials(in: context.environment)
            .connect(host: endpoint.host, port: endpoint.port, timeoutSeconds: timeout)
    }

    func visible(_ txnIDs: [Int64]) throws -> Set<Int64> {
        if try connection.command(["EXISTS", graph]).integer == 0 { return [] }
        let cypher =
            "\(match) WHERE toInteger(p.\(property)) IN [\(StalenessLookups.list(txnIDs))] "
            + "RETURN toInteger(p.\(property))"
        let reply = try connection.command(["GRAPH.RO_QUERY", graph, cypher])
        guard let parts = reply.array, parts.count == 3, let rows = parts[1].array else {
            throw StoreError(store: "falkordb", address: connection.address, detail: "unexpected GRAPH.RO_QUERY reply")
        }
        return Set(rows.compactMap { $0.array?.first?.integer })
    }

    func close() { connection.close() }
}
