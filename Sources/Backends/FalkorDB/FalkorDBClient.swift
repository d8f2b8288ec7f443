import KilnBackend
import KilnCore
import KilnData
import KilnRedis
import KilnScenario

/// The operations of store `falkordb`: the raw value is the name in scenarios after `falkordb.`.
public enum FalkorDBOperation: String, StoreOperation {
    case bulk
    case mergeEdge = "merge-edge"
    case sharedDevice = "shared-device"
    case userMerchants = "user-merchants"

    public static let store = "falkordb"

    public var kind: OperationDescriptor.Kind {
        switch self {
        case .bulk: .bulk
        case .mergeEdge: .write
        case .sharedDevice, .userMerchants: .read
        }
    }

    public var summary: String {
        switch self {
        case .bulk:
            "GRAPH.BULK into an empty graph; on a graph holding other data UNWIND of the rows (batches of batchRows): "
                + "MERGE User, Merchant, Device, USED; CREATE PAID"
        case .mergeEdge:
            "the bulk query for one row"
        case .sharedDevice:
            "users sharing a device with the row's user (2 hops, LIMIT 100)"
        case .userMerchants:
            "the row's user's merchants with PAID count and amount sum"
        }
    }
}

/// FalkorDB as the platform's fraud graph, over RESP (hiredis) at `context.stack.graph.endpoint`.
///
/// Graph `<ns>_graph` (not `stack.graph.graph`, so every namespace has its own graph and teardown can delete it):
/// `(:User {id})-[:USED]->(:Device {id})`, `(:User)-[:PAID {txn_id, amount_cents, ts}]->(:Merchant {id})`, one PAID
/// edge per row; User, Merchant and Device nodes and USED edges are MERGEd, so they exist once.
///
/// Outcomes: a GRAPH.QUERY error reply is `fail` (FalkorDB runs a query atomically and undoes a failed one); its class
/// is the reply's first word when that is an upper-case token, else `graph-error`. A timeout or a lost connection
/// after sending is `info` for writes and `fail` for reads; a failed (re)connect is `fail("connection")`.
public final class FalkorDBClient: Client {
    public typealias Operation = FalkorDBOperation

    /// The write of every row: rows come as the `cypher` RowEncoder maps in the `rows` parameter.
    static let mergeQuery = """
        UNWIND $rows AS r MERGE (u:User {id: r.user_id}) MERGE (m:Merchant {id: r.merchant_id}) \
        MERGE (d:Device {id: r.device_id}) MERGE (u)-[:USED]->(d) \
        CREATE (u)-[:PAID {txn_id: r.txn_id, amount_cents: r.amount_cents, ts: r.ts}]->(m)
        """
    static let sharedDeviceQuery = """
        MATCH (u:User {id: $uid})-[:USED]->(d:Device)<-[:USED]-(o:User) WHERE o <> u RETURN DISTINCT o.id LIMIT 100
        """
    static let userMerchantsQuery = """
        MATCH (u:User {id: $uid})-[p:PAID]->(m:Merchant) \
        RETURN m.id, count(p), toInteger(sum(p.amount_cents)) ORDER BY m.id
        """
    static let indexQueries = ["User", "Merchant", "Device"].map { "CREATE INDEX FOR (n:\($0)) ON (n.id)" }

    public let context: ClientContext
    /// The graph key, `<ns>_graph`.
    public let graph: String
    /// Rows per GRAPH.QUERY of `bulk`.
    public let batchRows: Int
    /// `bulk` writes an empty graph with GRAPH.BULK (``FalkorDBBulkWriter``); `nil`: always UNWIND/MERGE.
    public let bulkWriter: FalkorDBBulkWriter?
    /// The integer columns of the rows the last successful read returned (`[o.id]` or `[m.id, count, sum]`).
    public private(set) var lastReadRows: [[Int64]] = []

    /// The connection to `context.stack.graph.endpoint`; every connection AUTHs with the stack's `graph.user` and
    /// the password from `graph.password_env`.
    private let server: RESPClientConnection
    /// Reused: the `cypher` maps of one batch, the query text, and the RESP frame of the command.
    private var maps: RowEncoder
    private var query: [UInt8] = []
    private let frame = RESPBuffer()
    private let graphBytes: [UInt8]

    /// Connects to `context.stack.graph.endpoint`.
    /// - Throws: `ConnectError` naming the store and address when the server does not answer.
    /// - Parameter graphBulk: `bulk` into an empty graph uses GRAPH.BULK (false: UNWIND/MERGE always).
    public init(context: ClientContext, batchRows: Int = 1000, graphBulk: Bool = true) throws {
        precondition(batchRows >= 1, "batchRows must be at least 1")
        self.context = context
        self.batchRows = batchRows
        graph = "\(context.namespace)_graph"
        bulkWriter = graphBulk ? FalkorDBBulkWriter.shared(graph: graph) : nil
        graphBytes = Array(graph.utf8)
        let endpoint = context.stack.graph.endpoint
        let credentials = context.stack.graph.credentials(in: context.environment)
        let timeoutSeconds = max(0.001, context.timeout.seconds)
        server = RESPClientConnection(locate: { endpoint }) { server throws(RedisError) in
            try credentials.connect(host: server.host, port: server.port, timeoutSeconds: timeoutSeconds)
        }
        maps = RowEncoder(format: .cypher, dataset: context.dataset, capacity: 1 << 18)
        query.reserveCapacity(1 << 18)
        do {
            _ = try server.connected()
        } catch {
            throw StoreError(store: "falkordb", address: "\(endpoint.host):\(endpoint.port)", detail: error.description)
        }
    }

    public convenience init(context: ClientContext) throws {
        try self.init(context: context, batchRows: 1000, graphBulk: true)
    }

    /// Creates the id indexes (range indexes; "already indexed" is accepted, so setup is idempotent).
    public func setup() throws {
        let connection = try connected()
        let replies = try connection.pipeline(Self.indexQueries.map { ["GRAPH.QUERY", graph, $0] })
        for case .error(let message) in replies where !message.contains("already indexed") {
            throw StoreError(store: "falkordb", address: connection.address, detail: "CREATE INDEX failed: \(message.prefix(80))")
        }
    }

    /// Deletes the graph; a graph that does not exist is fine.
    public func teardown() throws {
        let connection = try connected()
        let replies = try connection.pipeline([["GRAPH.DELETE", graph]])
        bulkWriter?.forget()
        if case .error(let message) = replies.first, !message.contains("empty key") {
            throw StoreError(store: "falkordb", address: connection.address, detail: "GRAPH.DELETE failed: \(message.prefix(80))")
        }
    }

    public func close() {
        server.close()
    }

    public func invoke(_ operation: FalkorDBOperation, _ request: Request) -> Outcome {
        server.run(operation.kind, serverClass: Self.errorClass) { connection throws(RedisError) in
            switch operation {
            case .bulk: return try bulk(connection, request.rows)
            case .mergeEdge: return try merge(connection, request.row..<(request.row + 1))
            case .sharedDevice: return try read(connection, Self.sharedDeviceQuery, row: request.row)
            case .userMerchants: return try read(connection, Self.userMerchantsQuery, row: request.row)
            }
        }
    }

    // MARK: - Operations

    /// GRAPH.BULK when the writer takes the rows, else UNWIND/MERGE. A GRAPH.BULK error reply is `fail` (nothing was
    /// applied); a lost connection after sending is `info`.
    private func bulk(_ connection: RedisConnection, _ rows: Range<Int64>) throws(RedisError) -> Outcome {
        if let bulkWriter, try bulkWriter.write(
            rows, dataset: context.dataset, connection: connection, indexQueries: Self.indexQueries,
            logger: context.logger)
        {
            return .ok
        }
        return try merge(connection, rows)
    }

    /// One GRAPH.QUERY per `batchRows` rows. A rejected batch stops the op: `fail` if it was the first batch,
    /// else `info` (earlier batches are in the graph).
    private func merge(_ connection: RedisConnection, _ rows: Range<Int64>) throws(RedisError) -> Outcome {
        var start = rows.lowerBound
        while start < rows.upperBound {
            let end = min(rows.upperBound, start + Int64(batchRows))
            encodeMergeCommand(start..<end)
            let errors = try frame.withBytes { bytes throws(RedisError) in
                try connection.pipelineEncoded(bytes, commandCount: 1)
            }
            if let first = errors.first {
                let word = Self.errorClass(first)
                return start == rows.lowerBound ? .fail(word) : .info(word)
            }
            start = end
        }
        return .ok
    }

    private func read(_ connection: RedisConnection, _ cypher: String, row: Int64) throws(RedisError) -> Outcome {
        let user = context.dataset.transaction(row).userID
        let reply = try connection.command(["GRAPH.RO_QUERY", graph, "CYPHER uid=\(user) \(cypher)"])
        // [header, rows, statistics]
        guard let parts = reply.array, parts.count == 3, let rows = parts[1].array else {
            return .fail("unexpected-reply")
        }
        lastReadRows = rows.map { ($0.array ?? []).compactMap(\.integer) }
        return .ok
    }

    /// `*3 GRAPH.QUERY <graph> "CYPHER rows=[<map>, …] <mergeQuery>"` into `frame`.
    private func encodeMergeCommand(_ rows: Range<Int64>) {
        maps.removeAll()
        maps.append(context.dataset, rows: rows)
        query.removeAll(keepingCapacity: true)
        query.append(contentsOf: "CYPHER rows=[".utf8)
        maps.withBytes { bytes in
            // One map per line: the newlines become the list's commas, the last one is dropped.
            for byte in bytes.dropLast() {
                query.append(byte == 0x0A ? 0x2C : byte)
            }
        }
        query.append(contentsOf: "] ".utf8)
        query.append(contentsOf: Self.mergeQuery.utf8)
        frame.removeAll()
        frame.arrayHeader(3)
        frame.bulk("GRAPH.QUERY")
        graphBytes.withUnsafeBytes { frame.bulk($0) }
        query.withUnsafeBytes { frame.bulk($0) }
    }

    // MARK: - Plumbing

    /// Connecting failed (init), or setup/teardown was refused. Names the store and address.
    public typealias ConnectError = StoreError

    private static func errorClass(_ error: RedisError) -> String {
        if case .server(let word) = error.kind, word != "UNKNOWN" { return word }
        return "graph-error"
    }

    private func connected() throws(RedisError) -> RedisConnection { try server.connected() }
}
