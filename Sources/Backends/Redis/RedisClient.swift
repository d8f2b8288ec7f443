import KilnBackend
import KilnCore
import KilnData
import KilnRedis
import KilnScenario

/// The operations of store `redis`: the raw value is the name in scenarios after `redis.`.
public enum RedisOperation: String, StoreOperation {
    case bulk
    case set
    case featureUpdate = "feature-update"
    case featureRead = "feature-read"
    case scoreIncrement = "score-incr"
    case topK = "top-k"
    case streamAdd = "stream-add"
    case streamConsume = "stream-consume"
    case bulkSet = "bulk-set"

    public static let store = "redis"

    public var kind: OperationDescriptor.Kind {
        switch self {
        case .bulk, .bulkSet: .bulk
        case .set, .featureUpdate, .scoreIncrement, .streamAdd: .write
        case .featureRead, .topK, .streamConsume: .read
        }
    }

    public var summary: String {
        switch self {
        case .bulk:
            "pipelined HSET+HINCRBY+EXPIRE of the user's features and ZINCRBY of its score, per row"
        case .set:
            "SET <ns>:txn:<txn_id> to the row's JSON"
        case .featureUpdate:
            "HSET+HINCRBY+EXPIRE of the row's user's feature hash (one pipeline)"
        case .featureRead:
            "HGETALL of the row's user's feature hash"
        case .scoreIncrement:
            "ZINCRBY <ns>:fraud:scores <fraud score millis> <user_id>"
        case .topK:
            "ZREVRANGE <ns>:fraud:scores 0 9 WITHSCORES"
        case .streamAdd:
            "XADD <ns>:stream:fraud-events MAXLEN ~ 1000000 * txn_id user_id score"
        case .streamConsume:
            "XREADGROUP of up to 10 new fraud events, then XACK of them"
        case .bulkSet:
            "pipelined SET <ns>:txn:<txn_id> <row JSON> per row (redis-benchmark -t set)"
        }
    }
}

/// Redis as the platform's online feature store: per-user feature hashes, a fraud-score leaderboard and a stream
/// of fraud events, all under keys prefixed `<namespace>:`.
///
/// Keys (for checkers):
/// - `<ns>:user:<user_id>:features` hash: `last_txn`, `last_amount_cents`, `last_merchant`, `last_ts` (of the last
///   row applied), `txn_count` and `amount_cents_total` (HINCRBY per row), TTL one day;
/// - `<ns>:fraud:scores` sorted set: member `<user_id>`, score = sum of the user's `fraudScoreMillis` (integers, so
///   the sum is exact);
/// - `<ns>:txn:<txn_id>` string: the row's JSON (the `jsonl` encoding without its newline);
/// - `<ns>:stream:fraud-events` stream: fields `txn_id`, `user_id`, `score` (millis), group `<ns>-load`.
///
/// Outcomes: an error reply is `fail(<its first word>)` (Redis applies nothing of a rejected command; in a bulk
/// pipeline the other commands were applied, so a bulk with some error replies is `info(<word>)`). A connection
/// failure or timeout after sending is `info` for writes and `fail` for reads; a failed (re)connect sent nothing,
/// so it is `fail("connection")`. After any connection-level error the next `invoke` reconnects.
///
/// Failover: when the stack lists Sentinels, every (re)connect first asks them (in order, 1 s each) for the
/// current primary of `master_name` and falls back to the stack file's primary when none answers. An answer naming
/// a server the stack file does not list (as `primary` or a replica) is ignored: Sentinel moves the primary among
/// the stack's servers, it never redirects Kiln to a foreign one. A `READONLY`
/// reply (a demoted primary) ends the op `fail("READONLY")` and drops the connection, so the next op rediscovers.
public final class RedisClient: Client {
    public typealias Operation = RedisOperation

    /// TTL of a feature hash, seconds.
    public static let featureTTLSeconds: Int64 = 86_400
    /// MAXLEN ~ of the fraud-event stream.
    public static let streamMaxLength: Int64 = 1_000_000
    /// Rows per pipeline round trip of `bulk` (5 commands each: 320 commands, ~25 KB). At 6 rows (the old
    /// `pipelineDepth / 5`) the round trips, not Redis, bounded the nightly's 10M-row feature load.
    public static let bulkFeatureRowsPerRoundTrip = 64

    public let context: ClientContext
    /// Commands per pipeline round trip of `bulk-set` (one SET per row; 32 matches `redis-benchmark -P 32`, its peer in
    /// `kiln bench load`). `bulk` sends `bulkFeatureRowsPerRoundTrip` rows (5 commands each) per round trip.
    public let pipelineDepth: Int
    /// Number of items the last successful read returned (hash fields, sorted-set members, stream entries).
    public internal(set) var lastReadCount = 0

    /// The connection to the current primary (the Sentinels' primary, else the stack file's), asked at each
    /// (re)connect.
    private let primary: RESPClientConnection
    public let keys: RedisKeys
    /// `keys.prefix` as bytes, for `RESPBuffer.bulkKey`.
    private let prefix: [UInt8]
    private let consumerName: String
    /// Reused for every pipeline: RESP bytes of the current batch.
    private let buffer = RESPBuffer()
    /// Reused for one row's JSON.
    private var json: RowEncoder

    /// Connects to the current primary (`RedisPrimaryResolver`).
    /// - Throws: `ConnectError` naming the store and address when the server does not answer.
    public init(context: ClientContext, pipelineDepth: Int = 32) throws {
        precondition(pipelineDepth >= 1, "pipelineDepth must be at least 1")
        self.context = context
        self.pipelineDepth = pipelineDepth
        keys = RedisKeys(namespace: context.namespace)
        prefix = Array(keys.prefix.utf8)
        consumerName = "c-\(UInt32.random(in: 0...UInt32.max))"
        json = RowEncoder(format: .jsonl, dataset: context.dataset, capacity: 4096)
        let primaries = RedisPrimaryResolver(
            context.stack.redis, timeout: context.timeout, environment: context.environment)
        primary = RESPClientConnection(locate: primaries.current) { server throws(RedisError) in
            let opened = try RedisConnection(
                host: server.host, port: server.port, timeoutSeconds: primaries.timeoutSeconds, tls: primaries.tls)
            try primaries.authenticate(opened)
            return opened
        }
        do {
            _ = try primary.connected()
        } catch {
            throw StoreError(store: "redis", address: primary.server?.description ?? "-", detail: error.description)
        }
    }

    /// Internal, not private: the multiplexed feature-read (RedisClientMultiplexed.swift) uses it.
    var connection: RedisConnection? { primary.connection }

    public convenience init(context: ClientContext) throws {
        try self.init(context: context, pipelineDepth: 32)
    }

    public func setup() throws {
        let connection = try connected()
        do {
            try connection.command(["XGROUP", "CREATE", keys.stream, keys.streamGroup, "$", "MKSTREAM"])
        } catch let error where error.kind == .server("BUSYGROUP") {
            // The group exists: setup is idempotent.
        }
    }

    /// Deletes every key under `<ns>:` (SCAN + UNLINK).
    public func teardown() throws {
        let connection = try connected()
        var cursor = "0"
        repeat {
            let reply = try connection.command(["SCAN", cursor, "MATCH", keys.everything, "COUNT", "1000"])
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array
            else { throw StoreError(store: "redis", address: connection.address, detail: "unexpected SCAN reply") }
            let names = keys.compactMap(\.string)
            if !names.isEmpty { try connection.command(["UNLINK"] + names) }
            cursor = next
        } while cursor != "0"
    }

    public func close() {
        primary.close()
    }

    /// The server of the current (or last) connection: what the Sentinels named at the last reconnect.
    public var servedBy: HostPort? { primary.server }

    public func invoke(_ operation: RedisOperation, _ request: Request) -> Outcome {
        primary.run(operation.kind, serverClass: Self.errorClass) { connection throws(RedisError) in
            switch operation {
            case .bulk: return try bulkFeatures(connection, request.rows)
            case .set: return try set(connection, request.row)
            case .featureUpdate: return try featureUpdate(connection, request.row)
            case .featureRead: return try featureRead(connection, request.row)
            case .scoreIncrement: return try scoreIncrement(connection, request.row)
            case .topK: return try topK(connection)
            case .streamAdd: return try streamAdd(connection, request.row)
            case .streamConsume: return try streamConsume(connection)
            case .bulkSet: return try bulkSet(connection, request.rows)
            }
        }
    }

    // MARK: - Operations

    private func bulkFeatures(_ connection: RedisConnection, _ rows: Range<Int64>) throws(RedisError) -> Outcome {
        let rowsPerBatch = Self.bulkFeatureRowsPerRoundTrip
        var start = rows.lowerBound
        var errors = 0
        var firstError: RedisError?
        let dataset = context.dataset
        while start < rows.upperBound {
            let end = min(rows.upperBound, start + Int64(rowsPerBatch))
            buffer.removeAll()
            for index in start..<end {
                let txn = dataset.transaction(index)
                appendFeatureUpdate(txn)
                appendScoreIncrement(txn)
            }
            let result = try send(connection, commands: Int(end - start) * 5)
            errors += result.count
            firstError = firstError ?? result.first
            start = end
        }
        return pipelineOutcome(errors: errors, commands: rows.count * 5, first: firstError)
    }

    private func bulkSet(_ connection: RedisConnection, _ rows: Range<Int64>) throws(RedisError) -> Outcome {
        var start = rows.lowerBound
        var errors = 0
        var firstError: RedisError?
        while start < rows.upperBound {
            let end = min(rows.upperBound, start + Int64(pipelineDepth))
            buffer.removeAll()
            json.removeAll()
            json.append(context.dataset, rows: start..<end)
            json.withBytes { lines in
                var row = start
                var lineStart = 0
                for position in lines.indices where lines[position] == 0x0A {
                    appendSet(txnID: row + 1, json: UnsafeRawBufferPointer(rebasing: lines[lineStart..<position]))
                    row += 1
                    lineStart = position + 1
                }
            }
            let result = try send(connection, commands: Int(end - start))
            errors += result.count
            firstError = firstError ?? result.first
            start = end
        }
        return pipelineOutcome(errors: errors, commands: rows.count, first: firstError)
    }

    private func set(_ connection: RedisConnection, _ row: Int64) throws(RedisError) -> Outcome {
        buffer.removeAll()
        appendSet(row)
        return pipelineOutcome(try send(connection, commands: 1), commands: 1)
    }

    private func featureUpdate(_ connection: RedisConnection, _ row: Int64) throws(RedisError) -> Outcome {
        buffer.removeAll()
        appendFeatureUpdate(context.dataset.transaction(row))
        return pipelineOutcome(try send(connection, commands: 4), commands: 4)
    }

    private func scoreIncrement(_ connection: RedisConnection, _ row: Int64) throws(RedisError) -> Outcome {
        buffer.removeAll()
        appendScoreIncrement(context.dataset.transaction(row))
        return pipelineOutcome(try send(connection, commands: 1), commands: 1)
    }

    private func featureRead(_ connection: RedisConnection, _ row: Int64) throws(RedisError) -> Outcome {
        let user = context.dataset.transaction(row).userID
        let reply = try connection.command(["HGETALL", "\(context.namespace):user:\(user):features"])
        guard let fields = reply.array else { return .fail("unexpected-reply") }
        lastReadCount = fields.count / 2
        return .ok
    }

    private func topK(_ connection: RedisConnection) throws(RedisError) -> Outcome {
        let reply = try connection.command(["ZREVRANGE", keys.scores, "0", "9", "WITHSCORES"])
        guard let members = reply.array else { return .fail("unexpected-reply") }
        lastReadCount = members.count / 2
        return .ok
    }

    private func streamAdd(_ connection: RedisConnection, _ row: Int64) throws(RedisError) -> Outcome {
        let txn = context.dataset.transaction(row)
        try connection.command([
            "XADD", keys.stream, "MAXLEN", "~", String(Self.streamMaxLength), "*", "txn_id", String(txn.txnID),
            "user_id", String(txn.userID), "score", String(txn.fraudScoreMillis),
        ])
        return .ok
    }

    /// Reads up to 10 entries never delivered to the group, then acknowledges exactly those. If the XACK fails the
    /// entries stay pending for this consumer (the read itself succeeded, but the op reports the error).
    private func streamConsume(_ connection: RedisConnection) throws(RedisError) -> Outcome {
        let reply = try connection.command([
            "XREADGROUP", "GROUP", keys.streamGroup, consumerName, "COUNT", "10", "STREAMS", keys.stream, ">",
        ])
        // Nil reply: nothing new. Otherwise [[stream, [[id, [field, value, ...]], ...]]].
        var ids: [String] = []
        for stream in reply.array ?? [] {
            guard let parts = stream.array, parts.count == 2 else { return .fail("unexpected-reply") }
            for entry in parts[1].array ?? [] {
                if let id = entry.array?.first?.string { ids.append(id) }
            }
        }
        if !ids.isEmpty {
            try connection.command(["XACK", keys.stream, keys.streamGroup] + ids)
        }
        lastReadCount = ids.count
        return .ok
    }

    // MARK: - Encoding (into the reused buffer; nothing allocated per row)

    /// HSET features (4 fields), HINCRBY txn_count 1, HINCRBY amount_cents_total, EXPIRE: 4 commands.
    private func appendFeatureUpdate(_ txn: Transaction) {
        buffer.arrayHeader(10)
        buffer.bulk("HSET")
        buffer.bulkKey(prefix, RedisKeys.userPart, txn.userID, RedisKeys.featuresSuffix)
        buffer.bulk("last_txn"); buffer.bulk(txn.txnID)
        buffer.bulk("last_amount_cents"); buffer.bulk(txn.amountCents)
        buffer.bulk("last_merchant"); buffer.bulk(txn.merchantID)
        buffer.bulk("last_ts"); buffer.bulk(txn.timestampMillis)
        buffer.arrayHeader(4)
        buffer.bulk("HINCRBY")
        buffer.bulkKey(prefix, RedisKeys.userPart, txn.userID, RedisKeys.featuresSuffix)
        buffer.bulk("txn_count"); buffer.bulk(1)
        buffer.arrayHeader(4)
        buffer.bulk("HINCRBY")
        buffer.bulkKey(prefix, RedisKeys.userPart, txn.userID, RedisKeys.featuresSuffix)
        buffer.bulk("amount_cents_total"); buffer.bulk(txn.amountCents)
        buffer.arrayHeader(3)
        buffer.bulk("EXPIRE")
        buffer.bulkKey(prefix, RedisKeys.userPart, txn.userID, RedisKeys.featuresSuffix)
        buffer.bulk(Self.featureTTLSeconds)
    }

    private func appendScoreIncrement(_ txn: Transaction) {
        buffer.arrayHeader(4)
        buffer.bulk("ZINCRBY")
        buffer.bulkKey(prefix, RedisKeys.scoresPart, nil, "")
        buffer.bulk(Int64(txn.fraudScoreMillis))
        buffer.bulk(txn.userID)
    }

    private func appendSet(_ row: Int64) {
        json.removeAll()
        json.append(context.dataset.transaction(row))
        json.withBytes { appendSet(txnID: row + 1, json: UnsafeRawBufferPointer(rebasing: $0.dropLast())) }
    }

    /// SET of one row; `json` is the row's JSON without the newline.
    private func appendSet(txnID: Int64, json: UnsafeRawBufferPointer) {
        buffer.arrayHeader(3)
        buffer.bulk("SET")
        buffer.bulkKey(prefix, RedisKeys.txnPart, txnID, "")
        buffer.bulk(json)
    }

    // MARK: - Plumbing

    /// Connecting failed (init), or setup/teardown got an answer it cannot use. Names the store and address.
    public typealias ConnectError = StoreError

    private func send(_ connection: RedisConnection, commands: Int) throws(RedisError) -> RedisPipelineErrors {
        try buffer.withBytes { bytes throws(RedisError) in
            try connection.pipelineEncoded(bytes, commandCount: commands)
        }
    }

    private func pipelineOutcome(_ result: RedisPipelineErrors, commands: Int) -> Outcome {
        pipelineOutcome(errors: result.count, commands: commands, first: result.first)
    }

    /// Every command of the op rejected: fail. Only some rejected (in a bulk or the feature pipeline): the others
    /// were applied, so the op is neither applied nor not applied as a whole: info.
    private func pipelineOutcome(errors: Int, commands: Int, first: RedisError?) -> Outcome {
        guard errors > 0 else { return .ok }
        if first?.kind == .server("READONLY") { primary.close() }
        let word = first.map { Self.errorClass($0) } ?? "ERR"
        return errors >= commands ? .fail(word) : .info(word)
    }

    func outcome(of error: RedisError, kind: OperationDescriptor.Kind) -> Outcome {
        primary.outcome(of: error, kind: kind, serverClass: Self.errorClass(error))
    }

    private static func errorClass(_ error: RedisError) -> String {
        if case .server(let word) = error.kind { return word }
        return error.kind.description
    }

    /// The open connection, reconnecting (to the Sentinels' current primary) after a connection-level error.
    func connected() throws(RedisError) -> RedisConnection { try primary.connected() }

    /// Closes the connection (a multiplexed read was abandoned mid-flight); the next op reconnects.
    func dropConnection() { primary.close() }
}
