import Foundation
import KilnCore
import KilnData
import KilnRedis
import KilnScenario
import KilnBackend

/// The feature cache: per posted transaction, the user's feature hash `<ns>:user:<id>:features` (the load
/// engine's fields: `last_*`, `txn_count`, `amount_cents_total`, TTL one day), ZINCRBY of its fraud score in
/// `<ns>:fraud:scores`, and XADD to `<ns>:stream:fraud-events` when the transaction is fraud.
///
/// Exactly-once: each message runs one Lua script that skips it when its offset is at or below the partition's
/// applied offset in `<ns>:pipeline:offsets`, and otherwise applies it and records the offset — atomically, so a
/// redelivered message is never applied twice and the stored offsets are always those of the applied messages.
///
/// Failover: every (re)connect goes to `RedisPrimaryResolver.current()` (the Sentinels' primary), and a `READONLY`
/// reply (a demoted primary) drops the connection before the error is thrown, so the pipeline's retry of the batch
/// reaches the new primary.
public final class RedisSink: Sink {
    public let sink = PipelineSpec.Sink.redis
    public let storesOffsetsWithWrite = true
    let context: ClientContext
    let spec: PipelineSpec
    let keys: RedisKeys
    let primaries: RedisPrimaryResolver
    /// The server of the current connection (nil before the first).
    public private(set) var servedBy: HostPort?
    private var connection: RedisConnection?
    private var scriptSHA: String?

    /// KEYS: features, scores, offsets, stream. ARGV: partition, offset, txn_id, amount_cents, merchant, ts,
    /// score, user, ttl, apply (1: write the features; 0: only advance the offset), fraud (1: XADD).
    static let script = """
        local done = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '-1')
        if tonumber(ARGV[2]) <= done then return 0 end
        redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
        if ARGV[10] == '0' then return 2 end
        redis.call('HSET', KEYS[1], 'last_txn', ARGV[3], 'last_amount_cents', ARGV[4], 'last_merchant', ARGV[5],
          'last_ts', ARGV[6])
        redis.call('HINCRBY', KEYS[1], 'txn_count', 1)
        redis.call('HINCRBY', KEYS[1], 'amount_cents_total', ARGV[4])
        redis.call('EXPIRE', KEYS[1], ARGV[9])
        redis.call('ZINCRBY', KEYS[2], ARGV[7], ARGV[8])
        if ARGV[11] == '1' then
          redis.call('XADD', KEYS[4], 'MAXLEN', '~', '1000000', '*', 'txn_id', ARGV[3], 'user_id', ARGV[8],
            'score', ARGV[7])
        end
        return 1
        """

    public init(context: ClientContext, spec: PipelineSpec) throws {
        self.context = context
        self.spec = spec
        keys = RedisKeys(namespace: context.namespace)
        primaries = RedisPrimaryResolver(context.stack.redis, timeout: max(.seconds(1), context.timeout))
        _ = try connected()
    }

    func connected() throws -> RedisConnection {
        if let connection, connection.isOpen { return connection }
        connection?.close()
        connection = nil
        scriptSHA = nil
        let (fresh, primary) = try primaries.connect()
        connection = fresh
        servedBy = primary
        return fresh
    }

    public func setup(fresh: Bool) throws {
        let client = try RedisClient(context: context)
        defer { client.close() }
        if fresh { try client.teardown() }
        try client.setup()
    }

    public func storedOffsets() throws -> [Int32: Int64] {
        let reply = try connected().command(["HGETALL", keys.pipelineOffsets])
        var offsets: [Int32: Int64] = [:]
        let items = reply.array ?? []
        var index = 0
        while index + 1 < items.count {
            if let part = items[index].string.flatMap({ Int32($0) }), let last = items[index + 1].string.flatMap({ Int64($0) }) {
                offsets[part] = last + 1
            }
            index += 2
        }
        return offsets
    }

    public func apply(_ batch: [SinkMessage], next: [Int32: Int64]) throws -> ApplyResult {
        if spec.has(.lag) { Thread.sleep(forTimeInterval: spec.lag.seconds) }
        let connection = try connected()
        if scriptSHA == nil {
            scriptSHA = try connection.command(["SCRIPT", "LOAD", Self.script]).string
        }
        guard let sha = scriptSHA else { throw RedisSinkError(reason: "SCRIPT LOAD gave no sha") }
        // Planted bugs: `stale-cache` skips the features of big batches; `reorder` applies newest first.
        let skipFeatures = spec.has(.staleCache) && batch.count >= spec.staleBatch
        let ordered = spec.has(.reorder) ? batch.reversed() : Array(batch)
        var commands: [[String]] = []
        commands.reserveCapacity(ordered.count)
        for message in ordered {
            let txn = message.row >= 0 ? context.dataset.transaction(message.row) : nil
            let apply = txn.map { $0.posted } == true && !skipFeatures
            commands.append([
                "EVALSHA", sha, "4", keys.features(user: txn?.userID ?? 0), keys.scores, keys.pipelineOffsets, keys.stream,
                String(message.partition), String(message.offset), String(txn?.txnID ?? 0),
                String(txn?.amountCents ?? 0), String(txn?.merchantID ?? 0), String(txn?.timestampMillis ?? 0),
                String(txn?.fraudScoreMillis ?? 0), String(txn?.userID ?? 0), String(RedisClient.featureTTLSeconds),
                apply ? "1" : "0", txn?.isFraud == true ? "1" : "0",
            ])
        }
        // A broken connection throws here and reconnects on the next call (`connected()` checks `isOpen`).
        let replies = try connection.pipeline(commands)
        var result = ApplyResult()
        for (index, reply) in replies.enumerated() {
            switch reply {
            case .integer(1): result.applied += 1
            case .integer(0): result.duplicatesSkipped += 1
            case .integer: result.skipped += 1
            case .error(let text):
                if text.contains("READONLY") { close() }
                throw RedisSinkError(reason: "EVALSHA failed for message \(index) of the batch: \(text.prefix(120))")
            default: throw RedisSinkError(reason: "unexpected EVALSHA reply \(reply)")
            }
        }
        return result
    }

    public func storeOffsets(_ next: [Int32: Int64]) throws {}

    public func close() {
        connection?.close()
        connection = nil
    }
}

struct RedisSinkError: Error, CustomStringConvertible {
    var reason: String
    var description: String { "redis sink: \(reason)" }
}

extension PipelineSpec.Sink {
    public static let redis = PipelineSpec.Sink(rawValue: "redis")
}

/// The bugs the Redis sink can plant (`pipeline.bugs`), listed by `RedisBackend.descriptor`'s sink.
extension PipelineSpec.Bug {
    /// The sink skips feature updates of batches of `stale_batch` or more messages (the cache goes stale under load)
    /// but still advances its offsets.
    public static let staleCache = PipelineSpec.Bug("stale-cache", in: .redis)
    /// The sink applies each batch newest first; its per-partition offset guard then drops the older ones.
    public static let reorder = PipelineSpec.Bug("reorder", in: .redis)
    /// The sink sleeps `lag` before each batch, beyond its staleness SLO.
    public static let lag = PipelineSpec.Bug("lag", in: .redis)
}
