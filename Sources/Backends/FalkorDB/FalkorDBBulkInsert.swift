import KilnBackend
import KilnData
import KilnRedis
import Logging
import Synchronization

/// The `bulk` operation of ``FalkorDBClient`` through FalkorDB's `GRAPH.BULK` command, for a graph that starts empty.
///
/// `GRAPH.BULK <graph> [BEGIN] <nodes> <edges> <labelBlobs> <typeBlobs> <blob>…` appends nodes and edges given as
/// binary blobs; `BEGIN` creates the graph and is refused when the key exists. A blob is the label (or relationship
/// type) as a NUL-terminated string, a little-endian UInt32 property count, the property names NUL-terminated, then
/// per entity: for an edge its source and destination internal node ids (UInt64 each), then one value per property
/// (a type byte — 0 null, 1 bool, 2 double, 3 string, 4 long, 5 array — and its payload; a long is 8 bytes LE).
/// Nodes get internal ids in creation order, from 0 in a new graph.
///
/// The writer produces what the UNWIND/MERGE query does: one User/Merchant/Device node `{id}` per distinct id, one
/// USED edge per distinct (user, device), one PAID edge `{txn_id, amount_cents, ts}` per row. To do that across the
/// batches of a bulk phase it keeps the internal id of every node it created and the USED pairs, shared by every
/// client of the process that writes the same graph (``shared(graph:)``), and sends one GRAPH.BULK at a time.
///
/// Before each batch it asks the graph's node count: a count of 0 (or no key) starts a new graph (`GRAPH.DELETE` of
/// the index-only key `setup` made, `BEGIN`, then the id indexes again); a count equal to the nodes it created
/// continues it; any other count means someone else wrote the graph, and this and every later batch return `nil`,
/// so the caller uses UNWIND/MERGE (logged once). After a failed or unanswered GRAPH.BULK the same happens: MERGE is
/// correct on any graph, since it matches nodes by `id`. Assumes no other writer adds nodes during a batch.
///
/// Thread-safe: all state is inside one `Mutex`, held for the whole batch (FalkorDB applies one write at a time).
public final class FalkorDBBulkWriter: Sendable {
    /// What the writer does with the next batch.
    enum Mode {
        /// Not yet looked at the graph, or it was deleted: the next batch checks for an empty graph.
        case undecided
        /// Nodes it created are in the graph; later batches append with GRAPH.BULK.
        case bulk
        /// The graph held other data or a GRAPH.BULK failed: every batch goes through UNWIND/MERGE.
        case merge
    }

    struct State {
        var mode = Mode.undecided
        var users: [Int64: UInt64] = [:]
        var merchants: [Int64: UInt64] = [:]
        var devices: [Int64: UInt64] = [:]
        var used: Set<UsedPair> = []
        var nodeCount: UInt64 = 0

        mutating func reset() {
            self = State()
        }
    }

    struct UsedPair: Hashable {
        var user: Int64
        var device: Int64
    }

    public let graph: String
    private let state = Mutex(State())

    private static let registry = Mutex<[String: FalkorDBBulkWriter]>([:])

    init(graph: String) {
        self.graph = graph
    }

    /// The one writer of `graph` in this process.
    public static func shared(graph: String) -> FalkorDBBulkWriter {
        registry.withLock { writers in
            if let writer = writers[graph] { return writer }
            let writer = FalkorDBBulkWriter(graph: graph)
            writers[graph] = writer
            return writer
        }
    }

    /// Forgets the graph's node ids (after `GRAPH.DELETE`), so the next batch looks at the graph again.
    public func forget() {
        state.withLock { $0.reset() }
    }

    /// Writes `rows` with GRAPH.BULK, or returns `nil` when the caller must use UNWIND/MERGE (see the type).
    /// - Returns: `.ok` when the batch was applied; `nil` to fall back. A GRAPH.BULK error reply or a lost
    ///   connection is thrown after the writer switched to MERGE (the error reply means nothing was applied).
    func write(
        _ rows: Range<Int64>, dataset: Dataset, connection: RedisConnection, indexQueries: [String], logger: Logger
    ) throws(RedisError) -> Bool {
        try state.withLock { (state: inout State) throws(RedisError) -> Bool in
            if state.mode == .merge { return false }
            var begin = false
            switch try Self.contents(graph, connection) {
            case .noGraph, .nodes(0):
                if state.mode == .bulk, state.nodeCount > 0 {
                    logger.info("falkordb \(graph): graph empty again; starting a new GRAPH.BULK")
                }
                state.reset()
                logger.info("falkordb \(graph): graph empty; bulk through GRAPH.BULK")
                // The key `setup` made holds only the indexes; BEGIN is refused while it exists.
                _ = try connection.pipeline([["GRAPH.DELETE", graph]])
                begin = true
            case .nodes(let count) where state.mode == .bulk && count == state.nodeCount:
                break
            case .nodes(let count):
                logger.notice(
                    "falkordb \(graph): graph holds \(count) nodes not written by this bulk; using UNWIND/MERGE")
                state.mode = .merge
                return false
            case .unknown:
                return false
            }
            var next = state
            let command = Self.encode(rows, dataset: dataset, graph: graph, begin: begin, state: &next)
            do throws(RedisError) {
                _ = try connection.command(command)
            } catch {
                logger.warning(
                    "falkordb \(graph): GRAPH.BULK failed (\(error)); the rest of the bulk uses UNWIND/MERGE")
                state.mode = .merge
                throw error
            }
            next.mode = .bulk
            state = next
            if begin {
                let replies = try connection.pipeline(indexQueries.map { ["GRAPH.QUERY", graph, $0] })
                for case .error(let message) in replies where !message.contains("already indexed") {
                    logger.warning("falkordb \(graph): CREATE INDEX after GRAPH.BULK BEGIN: \(message.prefix(80))")
                }
            }
            return true
        }
    }

    /// What the graph holds before a batch.
    enum Contents {
        /// No key: GRAPH.BULK BEGIN may create it.
        case noGraph
        case nodes(UInt64)
        /// The count query was refused (other than for a missing key): not known to be empty.
        case unknown
    }

    private static func contents(_ graph: String, _ connection: RedisConnection) throws(RedisError) -> Contents {
        let replies = try connection.pipeline([["GRAPH.RO_QUERY", graph, "MATCH (n) RETURN count(n)"]])
        if case .error(let message) = replies.first {
            return message.contains("empty key") ? .noGraph : .unknown
        }
        guard let parts = replies.first?.array, parts.count == 3,
            let count = parts[1].array?.first?.array?.first?.integer
        else { return .unknown }
        return .nodes(UInt64(count))
    }

    /// The GRAPH.BULK command for `rows`: new nodes get ids from `state.nodeCount` on, recorded in `state`.
    static func encode(
        _ rows: Range<Int64>, dataset: Dataset, graph: String, begin: Bool, state: inout State
    ) -> [[UInt8]] {
        var users = BulkBlob(name: "User", properties: ["id"])
        var merchants = BulkBlob(name: "Merchant", properties: ["id"])
        var devices = BulkBlob(name: "Device", properties: ["id"])
        var used = BulkBlob(name: "USED", properties: [])
        var paid = BulkBlob(name: "PAID", properties: ["txn_id", "amount_cents", "ts"])
        paid.reserve(Int(rows.count) * (16 + 27))
        var edges = 0

        // GRAPH.BULK creates the nodes blob by blob (all users, then merchants, then devices), so ids are given in
        // that order: first the new nodes of each label, then the edges that refer to them.
        let batch = rows.map { dataset.transaction($0) }
        func add(_ id: Int64, _ map: inout [Int64: UInt64], _ fresh: inout [Int64]) {
            if map[id] == nil {
                map[id] = .max  // placeholder until the ids are given below
                fresh.append(id)
            }
        }
        var newUsers: [Int64] = []
        var newMerchants: [Int64] = []
        var newDevices: [Int64] = []
        for row in batch { add(row.userID, &state.users, &newUsers) }
        for row in batch { add(row.merchantID, &state.merchants, &newMerchants) }
        for row in batch { add(row.deviceID, &state.devices, &newDevices) }
        for id in newUsers { state.users[id] = state.nodeCount; state.nodeCount += 1; users.long(id) }
        for id in newMerchants { state.merchants[id] = state.nodeCount; state.nodeCount += 1; merchants.long(id) }
        for id in newDevices { state.devices[id] = state.nodeCount; state.nodeCount += 1; devices.long(id) }
        let nodes = newUsers.count + newMerchants.count + newDevices.count

        for row in batch {
            let user = state.users[row.userID]!
            let merchant = state.merchants[row.merchantID]!
            if state.used.insert(UsedPair(user: row.userID, device: row.deviceID)).inserted {
                used.edge(user, state.devices[row.deviceID]!)
                edges += 1
            }
            paid.edge(user, merchant)
            paid.long(row.txnID)
            paid.long(row.amountCents)
            paid.long(row.timestampMillis)
            edges += 1
        }

        let labelBlobs = [users, merchants, devices].filter { !$0.isEmpty }
        let typeBlobs = [used, paid].filter { !$0.isEmpty }
        var command: [[UInt8]] = [Array("GRAPH.BULK".utf8), Array(graph.utf8)]
        if begin { command.append(Array("BEGIN".utf8)) }
        for number in [nodes, edges, labelBlobs.count, typeBlobs.count] {
            command.append(Array(String(number).utf8))
        }
        command += labelBlobs.map(\.bytes)
        command += typeBlobs.map(\.bytes)
        return command
    }
}

/// One label's or relationship type's binary section of a GRAPH.BULK command (format in ``FalkorDBBulkWriter``).
struct BulkBlob {
    private(set) var bytes: [UInt8] = []
    private let headerCount: Int

    init(name: String, properties: [String]) {
        var header = Array(name.utf8) + [0]
        withUnsafeBytes(of: UInt32(properties.count).littleEndian) { header.append(contentsOf: $0) }
        for property in properties {
            header.append(contentsOf: property.utf8)
            header.append(0)
        }
        bytes = header
        headerCount = header.count
    }

    /// No entity was added.
    var isEmpty: Bool { bytes.count == headerCount }

    mutating func reserve(_ count: Int) { bytes.reserveCapacity(headerCount + count) }

    /// A property value of type long (type byte 4, 8 bytes little-endian).
    mutating func long(_ value: Int64) {
        bytes.append(4)
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// An edge's source and destination internal node ids; its property values follow.
    mutating func edge(_ source: UInt64, _ destination: UInt64) {
        withUnsafeBytes(of: source.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: destination.littleEndian) { bytes.append(contentsOf: $0) }
    }
}
