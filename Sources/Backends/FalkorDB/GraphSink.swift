import KilnData
import KilnRedis
import KilnScenario
import KilnBackend

/// The fraud graph (FalkorDB over RESP): per posted transaction, User, Merchant and Device nodes, a USED edge and
/// one PAID edge `{txn_id, amount_cents, ts}` — the shape of the load engine's `falkordb.bulk`, so the same
/// scanner reads it. Idempotent by MERGE on the PAID edge's txn_id (a redelivered message finds its edge);
/// offsets go to the PostgreSQL offset table after the write (at-least-once delivery + idempotent apply).
public final class GraphSink: Sink {
    public let sink = PipelineSpec.Sink.falkordb
    public let storesOffsetsWithWrite = false
    let context: ClientContext
    let spec: PipelineSpec
    let graph: String
    let offsets: OffsetTable
    private var connection: RedisConnection?
    private var maps: RowEncoder
    /// Messages seen by this worker since it started, for the `drop-every-n` bug.
    private var seen = 0

    static let query = """
        UNWIND $rows AS r MERGE (u:User {id: r.user_id}) MERGE (m:Merchant {id: r.merchant_id}) \
        MERGE (d:Device {id: r.device_id}) MERGE (u)-[:USED]->(d) \
        MERGE (u)-[p:PAID {txn_id: r.txn_id}]->(m) ON CREATE SET p.amount_cents = r.amount_cents, p.ts = r.ts, \
        p.created = true \
        WITH p, p.created AS created SET p.created = null RETURN count(created)
        """

    public init(context: ClientContext, spec: PipelineSpec) throws {
        self.context = context
        self.spec = spec
        graph = "\(context.namespace)_graph"
        offsets = try OffsetTable(context: context)
        maps = RowEncoder(format: .cypher, dataset: context.dataset, capacity: 1 << 18)
        _ = try connected()
    }

    func connected() throws -> RedisConnection {
        if let connection, connection.isOpen { return connection }
        connection?.close()
        let endpoint = context.stack.graph.endpoint
        let fresh = try context.stack.graph.credentials(in: context.environment).connect(
            host: endpoint.host, port: endpoint.port, timeoutSeconds: max(1, context.timeout.seconds))
        connection = fresh
        return fresh
    }

    public func setup(fresh: Bool) throws {
        let client = try FalkorDBClient(context: context)
        defer { client.close() }
        if fresh { try client.teardown() }
        try client.setup()
        try offsets.setup(sink: sink, fresh: fresh)
    }

    public func storedOffsets() throws -> [Int32: Int64] { try offsets.load(sink: sink) }

    public func apply(_ batch: [SinkMessage], next: [Int32: Int64]) throws -> ApplyResult {
        var result = ApplyResult()
        maps.removeAll()
        var count = 0
        for message in batch where message.row >= 0 {
            seen += 1
            // Planted bugs: `drop-every-n` loses a message silently; `phantom` posts declined transactions too.
            if spec.has(.dropEveryN) && seen % spec.dropEvery == 0 {
                result.skipped += 1
                continue
            }
            let transaction = context.dataset.transaction(message.row)
            if !transaction.posted && !spec.has(.phantom) {
                result.skipped += 1
                continue
            }
            maps.append(transaction)
            count += 1
        }
        guard count > 0 else { return result }
        var text = "CYPHER rows=["
        maps.withBytes { bytes in
            var line: [UInt8] = []
            line.reserveCapacity(bytes.count)
            for byte in bytes.dropLast() { line.append(byte == 0x0A ? 0x2C : byte) }
            text += String(decoding: line, as: UTF8.self)
        }
        text += "] " + Self.query
        let reply = try connected().command(["GRAPH.QUERY", graph, text])
        // [header, [[created]], statistics]
        let created = reply.array.flatMap { $0.count == 3 ? $0[1].array?.first?.array?.first?.integer : nil }
        result.applied = Int(created ?? Int64(count))
        result.duplicatesSkipped = count - result.applied
        return result
    }

    public func storeOffsets(_ next: [Int32: Int64]) throws { try offsets.store(sink: sink, next) }

    public func close() {
        connection?.close()
        connection = nil
        offsets.close()
    }
}

extension PipelineSpec.Sink {
    public static let falkordb = PipelineSpec.Sink(rawValue: "falkordb")
}

/// The bugs the graph sink can plant (`pipeline.bugs`), listed by `FalkorDBBackend.descriptor`'s sink.
extension PipelineSpec.Bug {
    /// The sink silently skips every `drop_every`-th message.
    public static let dropEveryN = PipelineSpec.Bug("drop-every-n", in: .falkordb)
    /// The sink also applies declined transactions, which the ledger rejects (rolls back).
    public static let phantom = PipelineSpec.Bug("phantom", in: .falkordb)
}
