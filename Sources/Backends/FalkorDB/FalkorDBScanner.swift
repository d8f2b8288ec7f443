import KilnCore
import KilnData
import KilnRedis
import KilnBackend
import KilnScenario

/// Reads every PAID edge of graph `<ns>_graph` (what `FalkorDBClient` writes) as one `StoredRow`: `txnID` (the
/// edge's `txn_id`), `userID` / `merchantID` (the `id` of its source / target node), `amountCents`, `timestampMillis`
/// (the edge's `amount_cents`, `ts`). The graph keeps nothing else per transaction: the device is on the USED edge,
/// which is per user, not per transaction, so `deviceID` and the other fields are nil.
///
/// Paging (one bounded reply per page, no whole-result buffering): pages are ranges of internal node ids,
///   `GRAPH.RO_QUERY <graph> "CYPHER lo=<a> hi=<b> MATCH (u)-[p:PAID]->(m) WHERE id(u) >= $lo AND id(u) < $hi
///   RETURN p.txn_id, u.id, m.id, p.amount_cents, p.ts"`,
/// from 0 to `max(id(n))` (read first). FalkorDB plans the id range as a `NodeByIdSeek`, so a page costs its own
/// nodes and edges and the whole scan is linear, without any index and without changing the graph. The
/// alternatives are quadratic or write to the store: SKIP/LIMIT re-walks every skipped edge on each page (and has no
/// stable order), and `txn_id` ranges need a relationship-property index (`CREATE INDEX FOR ()-[p:PAID]-() ON
/// (p.txn_id)`), which the scanner would have to create on the graph under test. FalkorDB's own limits do not bound
/// a reply (RESULTSET_SIZE and TIMEOUT are unlimited by default), so the width of the id range adapts to aim at
/// `targetEdgesPerPage` edges: a page is bounded by that target times the spread of out-degrees, and a single user
/// with more PAID edges than the target comes in one page of its own.
///
/// A missing graph yields no rows. A value of the wrong type (say a string `amount_cents`) is nil; an edge without
/// an integer `txn_id` has `txnID` -1. Edges created or deleted during the scan may or may not be delivered.
/// Connection errors and error replies throw `ScanError`.
public final class FalkorDBScanner: StoreScanner {
    public let graph: String
    public var source: String { "graph \(graph) \(edges.description) edges" }
    /// What a page matches and returns (default: Kiln's PAID edges).
    public let edges: EdgeQuery
    /// The number of edges a page aims at.
    public let targetEdgesPerPage: Int

    static let maxIDQuery = "MATCH (n) RETURN max(id(n))"

    private let connection: RedisConnection

    /// Connects to `context.stack.graph.endpoint`.
    /// - Throws: `ScanError` naming the store and address when the server does not answer.
    public convenience init(context: ClientContext, targetEdgesPerPage: Int) throws {
        try self.init(
            context: context, graph: "\(context.namespace)_graph", edges: .kiln, targetEdgesPerPage: targetEdgesPerPage)
    }

    /// Reads the `edges` of `graph` (a black-box place names its own).
    /// - Throws: `ScanError` naming the store and address when the server does not answer.
    public init(context: ClientContext, graph: String, edges: EdgeQuery, targetEdgesPerPage: Int = 50_000) throws {
        precondition(targetEdgesPerPage >= 1, "targetEdgesPerPage must be at least 1")
        self.graph = graph
        self.edges = edges
        self.targetEdgesPerPage = targetEdgesPerPage
        let host = context.stack.graph.endpoint.host
        let port = context.stack.graph.endpoint.port
        let timeout = max(0.001, context.timeout.seconds)
        do {
            connection = try context.stack.graph.credentials(in: context.environment)
                .connect(host: host, port: port, timeoutSeconds: timeout)
            try connection.command(["PING"])
        } catch {
            throw StoreError(store: "falkordb", address: "\(host):\(port)", detail: error.description)
        }
    }

    public convenience init(context: ClientContext) throws {
        try self.init(context: context, targetEdgesPerPage: 50_000)
    }

    public func close() { connection.close() }

    public func scan(_ body: (StoredRow) throws -> Void) throws {
        let exists: Int64?
        do {
            exists = try connection.command(["EXISTS", graph]).integer
        } catch {
            throw StoreError(store: "falkordb", address: connection.address, detail: error.description)
        }
        guard exists == 1 else { return }
        guard let first = try query(Self.maxIDQuery).first, first.count == 1, let maxID = first[0].integer else {
            return  // no graph, or a graph without nodes
        }
        var low: Int64 = 0
        var width: Int64 = 1024
        while low <= maxID {
            let high = low + width
            let rows = try query("CYPHER lo=\(low) hi=\(high) \(edges.pageQuery)")
            for columns in rows {
                try body(edges.row(columns))
            }
            low = high
            // Aim the next range at the target from this page's edges per node id; grow at most 4x when sparse.
            let target = Double(targetEdgesPerPage)
            let scaled = rows.isEmpty ? Double(width) * 4 : Double(width) * target / Double(rows.count)
            width = Int64(max(1, min(scaled, Double(width) * 4, 1e12)))
        }
    }

    /// One page's Cypher and the conversion of its result rows: `match` binds the paging node `u` and the edge;
    /// `returns` lists the columns `row` reads. `row` must not drop a result row (unreadable values are nil).
    public struct EdgeQuery: Sendable {
        public var match: String
        public var returns: String
        /// `PAID`, `(:User)-[:PAID]->(:Merchant)`, … for the source description.
        public var description: String
        public var row: @Sendable ([RedisReply]) -> StoredRow

        public init(
            match: String, returns: String, description: String, row: @escaping @Sendable ([RedisReply]) -> StoredRow
        ) {
            self.match = match
            self.returns = returns
            self.description = description
            self.row = row
        }

        var pageQuery: String { "\(match) WHERE id(u) >= $lo AND id(u) < $hi RETURN \(returns)" }

        /// Kiln's own PAID edges (`FalkorDBClient`): `{txn_id, amount_cents, ts}` between nodes with an `id`.
        public static let kiln = EdgeQuery(
            match: "MATCH (u)-[p:PAID]->(m)", returns: "p.txn_id, u.id, m.id, p.amount_cents, p.ts",
            description: "PAID"
        ) { columns in
            var row = StoredRow(txnID: -1)
            if columns.count == 5 {
                row.txnID = columns[0].integer ?? -1
                row.userID = columns[1].integer
                row.merchantID = columns[2].integer
                row.amountCents = columns[3].integer
                row.timestampMillis = columns[4].integer
            }
            return row
        }
    }

    /// The result rows of one read-only query.
    private func query(_ cypher: String) throws -> [[RedisReply]] {
        let reply: RedisReply
        do {
            reply = try connection.command(["GRAPH.RO_QUERY", graph, cypher])
        } catch {
            throw StoreError(store: "falkordb", address: connection.address, detail: error.description)
        }
        // [header, rows, statistics]
        guard let parts = reply.array, parts.count == 3, let rows = parts[1].array else {
            throw StoreError(store: "falkordb", address: connection.address, detail: "unexpected GRAPH.RO_QUERY reply")
        }
        return rows.map { $0.array ?? [] }
    }

    /// Connecting failed (init), or the server failed or refused a query during a scan. Names the store and address.
    public typealias ScanError = StoreError
}
