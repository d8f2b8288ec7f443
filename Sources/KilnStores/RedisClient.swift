import KilnCore
import KilnData
import KilnRedis

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
    public static let operations: [OperationDescriptor] = [
        OperationDescriptor("bulk", .bulk,
            "pipelined HSET+HINCRBY+EXPIRE of the user's features and ZINCRBY of its score, per row"),
        OperationDescriptor("set", .write, "SET <ns>:txn:<txn_id> to the row's JSON"),
        OperationDescriptor("feature-update", .write,
            "HSET+HINCRBY+EXPIRE of the row's user's feature hash (one pipeline)"),
        OperationDescriptor("feature-read", .read, "HGETALL of the row's user's feature hash"),
        OperationDescriptor("score-incr", .write, "ZINCRBY <ns>:fraud:scores <fraud score millis> <user_id>"),
        OperationDescriptor("top-k", .read, "ZREVRANGE <ns>:fraud:scores 0 9 WITHSCORES"),
        OperationDescriptor("stream-add", .write,
            "XADD <ns>:stream:fraud-events MAXLEN ~ 1000000 * txn_id user_id score"),
        OperationDescriptor("stream-consume", .read, "XREADGROUP of up to 10 new fraud events, then XACK of them"),
        OperationDescriptor("bulk-set", .bulk,
            "pipelined SET <ns>:txn:<txn_id> <row JSON> per row (redis-benchmark -t set)"),
    ]

    /// TTL of a feature hash, seconds.
    public static let featureTTLSeconds: Int64 = 86_400
    /// MAXLEN ~ of the fraud-event stream.
    public static let streamMaxLength: Int64 = 1_000_000

    public let context: ClientContext
    /// Commands per pipeline round trip of the bulk operations (a bulk row is 5 commands, so `bulk` sends
    /// `max(1, pipelineDepth / 5)` rows per round trip; `bulk-set` sends `pipelineDepth` rows).
    public let pipelineDepth: Int
    /// Number of items the last successful read returned (hash fields, sorted-set members, stream entries).
    public internal(set) var lastReadCount = 0

    /// The server of the current connection: the Sentinels' primary, else the stack file's.
    private var host: String
    private var port: Int
    private let sentinels: [HostPort]
    private let masterName: String
    /// The stack file's primary and replicas: the only servers a Sentinel answer may point at.
    private let knownServers: Set<HostPort>
    private let timeoutSeconds: Double
    var connection: RedisConnection?
    private let prefix: [UInt8]
    private let scoresKey: String
    private let streamKey: String
    private let group: String
    private let consumerName: String
    /// Reused for every pipeline: RESP bytes of the current batch.
    private let buffer = RESPBuffer()
    /// Reused for one row's JSON.
    private var json: RowEncoder

    /// Connects to `context.stack.redis.primary`.
    /// - Throws: `ConnectError` naming the store and address when the server does not answer.
    public init(context: ClientContext, pipelineDepth: Int = 32) throws {
        precondition(pipelineDepth >= 1, "pipelineDepth must be at least 1")
        self.context = context
        self.pipelineDepth = pipelineDepth
        host = context.stack.redis.primary.host
        port = context.stack.redis.primary.port
        timeoutSeconds = max(0.001, Double(context.timeout.components.seconds)
            + Double(context.timeout.components.attoseconds) / 1e18)
        let ns = context.namespace
        prefix = Array("\(ns):".utf8)
        scoresKey = "\(ns):fraud:scores"
        streamKey = "\(ns):stream:fraud-events"
        group = "\(ns)-load"
        consumerName = "c-\(UInt32.random(in: 0...UInt32.max))"
        json = RowEncoder(format: .jsonl, dataset: context.dataset, capacity: 4096)
        sentinels = context.stack.redis.sentinels
        masterName = context.stack.redis.masterName
        knownServers = Set([context.stack.redis.primary] + context.stack.redis.replicas)
        if let primary = Self.askSentinels(sentinels, masterName, timeoutSeconds: timeoutSeconds),
            knownServers.contains(primary)
        {
            host = primary.host
            port = primary.port
        }
        do {
            connection = try RedisConnection(host: host, port: port, timeoutSeconds: timeoutSeconds)
        } catch {
            throw ConnectError(address: "\(host):\(port)", reason: error.description)
        }
    }

    public convenience init(context: ClientContext) throws {
        try self.init(context: context, pipelineDepth: 32)
    }

    public func setup() throws {
        let connection = try connected()
        do {
            try connection.command(["XGROUP", "CREATE", streamKey, group, "$", "MKSTREAM"])
        } catch let error where error.kind == .server("BUSYGROUP") {
            // The group exists: setup is idempotent.
        }
    }

    /// Deletes every key under `<ns>:` (SCAN + UNLINK).
    public func teardown() throws {
        let connection = try connected()
        var cursor = "0"
        repeat {
            let reply = try connection.command(["SCAN", cursor, "MATCH", "\(context.namespace):*", "COUNT", "1000"])
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array
            else { throw ConnectError(address: "\(host):\(port)", reason: "unexpected SCAN reply") }
            let names = keys.compactMap(\.string)
            if !names.isEmpty { try connection.command(["UNLINK"] + names) }
            cursor = next
        } while cursor != "0"
    }

    public func close() {
        connection?.close()
        connection = nil
    }

    /// The server of the current (or last) connection: what the Sentinels named at the last reconnect.
    public var servedBy: HostPort? { HostPort(host: host, port: port) }

    public func invoke(_ operation: Int, _ request: Request) -> Outcome {
        let kind = Self.operations[operation].kind
        let connection: RedisConnection
        do {
            connection = try connected()
        } catch {
            return .fail("connection")
        }
        do {
            switch operation {
            case 0: return try bulkFeatures(connection, request.rows)
            case 1: return try set(connection, request.row)
            case 2: return try featureUpdate(connection, request.row)
            case 3: return try featureRead(connection, request.row)
            case 4: return try scoreIncrement(connection, request.row)
            case 5: return try topK(connection)
            case 6: return try streamAdd(connection, request.row)
            case 7: return try streamConsume(connection)
            case 8: return try bulkSet(connection, request.rows)
            default: preconditionFailure("RedisClient has no operation \(operation)")
            }
        } catch {
            return outcome(of: error, kind: kind)
        }
    }

    // MARK: - Operations

    private func bulkFeatures(_ connection: RedisConnection, _ rows: Range<Int64>) throws(RedisError) -> Outcome {
        let rowsPerBatch = max(1, pipelineDepth / 5)
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
        let reply = try connection.command(["ZREVRANGE", scoresKey, "0", "9", "WITHSCORES"])
        guard let members = reply.array else { return .fail("unexpected-reply") }
        lastReadCount = members.count / 2
        return .ok
    }

    private func streamAdd(_ connection: RedisConnection, _ row: Int64) throws(RedisError) -> Outcome {
        let txn = context.dataset.transaction(row)
        try connection.command([
            "XADD", streamKey, "MAXLEN", "~", String(Self.streamMaxLength), "*", "txn_id", String(txn.txnID),
            "user_id", String(txn.userID), "score", String(txn.fraudScoreMillis),
        ])
        return .ok
    }

    /// Reads up to 10 entries never delivered to the group, then acknowledges exactly those. If the XACK fails the
    /// entries stay pending for this consumer (the read itself succeeded, but the op reports the error).
    private func streamConsume(_ connection: RedisConnection) throws(RedisError) -> Outcome {
        let reply = try connection.command([
            "XREADGROUP", "GROUP", group, consumerName, "COUNT", "10", "STREAMS", streamKey, ">",
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
            try connection.command(["XACK", streamKey, group] + ids)
        }
        lastReadCount = ids.count
        return .ok
    }

    // MARK: - Encoding (into the reused buffer; nothing allocated per row)

    /// HSET features (4 fields), HINCRBY txn_count 1, HINCRBY amount_cents_total, EXPIRE: 4 commands.
    private func appendFeatureUpdate(_ txn: Transaction) {
        buffer.arrayHeader(10)
        buffer.bulk("HSET")
        buffer.bulkKey(prefix, "user:", txn.userID, ":features")
        buffer.bulk("last_txn"); buffer.bulk(txn.txnID)
        buffer.bulk("last_amount_cents"); buffer.bulk(txn.amountCents)
        buffer.bulk("last_merchant"); buffer.bulk(txn.merchantID)
        buffer.bulk("last_ts"); buffer.bulk(txn.timestampMillis)
        buffer.arrayHeader(4)
        buffer.bulk("HINCRBY")
        buffer.bulkKey(prefix, "user:", txn.userID, ":features")
        buffer.bulk("txn_count"); buffer.bulk(1)
        buffer.arrayHeader(4)
        buffer.bulk("HINCRBY")
        buffer.bulkKey(prefix, "user:", txn.userID, ":features")
        buffer.bulk("amount_cents_total"); buffer.bulk(txn.amountCents)
        buffer.arrayHeader(3)
        buffer.bulk("EXPIRE")
        buffer.bulkKey(prefix, "user:", txn.userID, ":features")
        buffer.bulk(Self.featureTTLSeconds)
    }

    private func appendScoreIncrement(_ txn: Transaction) {
        buffer.arrayHeader(4)
        buffer.bulk("ZINCRBY")
        buffer.bulkKey(prefix, "fraud:scores", nil, "")
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
        buffer.bulkKey(prefix, "txn:", txnID, "")
        buffer.bulk(json)
    }

    // MARK: - Plumbing

    /// Connecting failed (init), or setup/teardown got an answer it cannot use. Names the store and address.
    public struct ConnectError: Error, CustomStringConvertible {
        public var address: String
        public var reason: String

        public var description: String { "redis at \(address): \(reason)" }
    }

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
        if first?.kind == .server("READONLY") { dropConnection() }
        let word = first.map { Self.errorClass($0) } ?? "ERR"
        return errors >= commands ? .fail(word) : .info(word)
    }

    func outcome(of error: RedisError, kind: OperationDescriptor.Kind) -> Outcome {
        if error.breaksConnection { connection = nil }
        if error.kind == .server("READONLY") { dropConnection() }
        return error.outcome(kind, serverClass: Self.errorClass(error))
    }

    private static func errorClass(_ error: RedisError) -> String {
        if case .server(let word) = error.kind { return word }
        return error.kind.description
    }

    /// The open connection, reconnecting after a connection-level error.
    func connected() throws(RedisError) -> RedisConnection {
        if let connection, connection.isOpen { return connection }
        connection?.close()
        connection = nil
        if let primary = Self.askSentinels(sentinels, masterName, timeoutSeconds: timeoutSeconds),
            knownServers.contains(primary)
        {
            host = primary.host
            port = primary.port
        }
        let fresh = try RedisConnection(host: host, port: port, timeoutSeconds: timeoutSeconds)
        connection = fresh
        return fresh
    }

    /// This server no longer takes writes (a demoted primary): the next op reconnects to the current primary.
    private func dropConnection() {
        connection?.close()
        connection = nil
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME` from the first Sentinel that answers (each bounded by 1 s or the op
    /// timeout, whichever is shorter); nil when none does.
    static func askSentinels(_ sentinels: [HostPort], _ masterName: String, timeoutSeconds: Double) -> HostPort? {
        for sentinel in sentinels {
            guard
                let connection = try? RedisConnection(
                    host: sentinel.host, port: sentinel.port, timeoutSeconds: min(timeoutSeconds, 1))
            else { continue }
            defer { connection.close() }
            guard let parts = (try? connection.command(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName]))?.array,
                parts.count == 2, let host = parts[0].string, let port = parts[1].string.flatMap(Int.init)
            else { continue }
            return HostPort(host: host, port: port)
        }
        return nil
    }
}

/// A growable byte buffer of RESP commands with hand-rolled number formatting. Owned by one client (not thread-safe);
/// its storage is reused across batches and only grows. Bytes are valid until the next mutation.
final class RESPBuffer {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int = 64 * 1024) {
        self.capacity = max(capacity, 1024)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    func removeAll() { count = 0 }

    func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    @inline(__always)
    private func reserve(_ bytes: Int) {
        if capacity - count < bytes { grow(count + bytes) }
    }

    @inline(never)
    private func grow(_ needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        newBase.update(from: base, count: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inline(__always)
    private func byte(_ value: UInt8) {
        base[count] = value
        count += 1
    }

    @inline(__always)
    private func copy(_ source: UnsafeRawPointer?, _ length: Int) {
        guard length > 0, let source else { return }
        UnsafeMutableRawPointer(base + count).copyMemory(from: source, byteCount: length)
        count += length
    }

    @inline(__always)
    private func crlf() {
        byte(0x0D)
        byte(0x0A)
    }

    func arrayHeader(_ elements: Int) {
        reserve(24)
        byte(0x2A)
        decimal(Int64(elements))
        crlf()
    }

    func bulk(_ text: StaticString) {
        reserve(text.utf8CodeUnitCount + 32)
        byte(0x24)
        decimal(Int64(text.utf8CodeUnitCount))
        crlf()
        copy(text.utf8Start, text.utf8CodeUnitCount)
        crlf()
    }

    func bulk(_ raw: UnsafeRawBufferPointer) {
        reserve(raw.count + 32)
        byte(0x24)
        decimal(Int64(raw.count))
        crlf()
        copy(raw.baseAddress, raw.count)
        crlf()
    }

    func bulk(_ value: Int64) {
        reserve(64)
        byte(0x24)
        decimal(Int64(Self.length(of: value)))
        crlf()
        decimal(value)
        crlf()
    }

    /// `$<n>\r\n<prefix><middle><id><suffix>\r\n`; `id` nil writes no number.
    func bulkKey(_ prefix: [UInt8], _ middle: StaticString, _ id: Int64?, _ suffix: StaticString) {
        let length = prefix.count + middle.utf8CodeUnitCount + (id.map { Self.length(of: $0) } ?? 0)
            + suffix.utf8CodeUnitCount
        reserve(length + 32)
        byte(0x24)
        decimal(Int64(length))
        crlf()
        prefix.withUnsafeBytes { copy($0.baseAddress, $0.count) }
        copy(middle.utf8Start, middle.utf8CodeUnitCount)
        if let id { decimal(id) }
        copy(suffix.utf8Start, suffix.utf8CodeUnitCount)
        crlf()
    }

    @inline(__always)
    static func length(of value: Int64) -> Int {
        digitCount(value.magnitude) + (value < 0 ? 1 : 0)
    }

    @inline(__always)
    static func digitCount(_ value: UInt64) -> Int {
        var rest = value
        var digits = 1
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        return digits
    }

    /// Writes into reserved room (callers reserve at least 21 bytes).
    @inline(__always)
    private func decimal(_ value: Int64) {
        if value < 0 { byte(0x2D) }
        var magnitude = value.magnitude
        var position = count + Self.digitCount(magnitude)
        count = position
        repeat {
            position -= 1
            base[position] = UInt8(truncatingIfNeeded: magnitude % 10) &+ 0x30
            magnitude /= 10
        } while magnitude > 0
    }
}
