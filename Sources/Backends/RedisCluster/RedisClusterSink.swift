import KilnBackend
import KilnCore
import KilnData
import KilnRedis
import KilnScenario

/// The reference pipeline's Redis Cluster sink (`sinks: [redis-cluster]`): per posted transaction, `SET
/// <ns>:txn:<txn_id>` to the row's JSON (`RedisKeys`, the load client's `set`), routed to the slot's master; it fills
/// `redis-cluster.txn-keys`. Declined transactions (the ledger rejects them) are skipped.
///
/// Exactly-once effect: a SET of the same value is idempotent, so a redelivered message (after a crash between a
/// batch and its offsets) rewrites the same bytes; the offsets (`<ns>:pipeline:offsets` hash: partition -> next
/// offset) are stored after the batch (`storesOffsetsWithWrite` false). Failover: the router follows MOVED and
/// refreshes the slot map after a connection error; a failed batch throws and the pipeline retries it.
public final class RedisClusterSink: Sink {
    public static let name = PipelineSpec.Sink(rawValue: "redis-cluster")
    public let sink = RedisClusterSink.name
    public let storesOffsetsWithWrite = false
    let context: ClientContext
    let settings: RedisClusterSettings
    let keys: RedisKeys
    let router: RedisClusterRouter
    private var json: RowEncoder

    public init(context: ClientContext, spec: PipelineSpec) throws {
        self.context = context
        settings = try RedisClusterSettings.of(context)
        keys = RedisKeys(namespace: context.namespace)
        json = RowEncoder(format: .jsonl, dataset: context.dataset, capacity: 4096)
        router = try RedisClusterRouter(
            seeds: settings.seeds, timeoutSeconds: RedisClusterClient.seconds(max(.seconds(1), context.timeout)))
    }

    public func setup(fresh: Bool) throws {
        guard fresh else { return }
        let client = try RedisClusterClient(context: context, settings: settings)
        defer { client.close() }
        try client.teardown()
    }

    public func storedOffsets() throws -> [Int32: Int64] {
        let reply = try router.command(key: keys.pipelineOffsets, ["HGETALL", keys.pipelineOffsets])
        var offsets: [Int32: Int64] = [:]
        let items = reply.array ?? []
        var index = 0
        while index + 1 < items.count {
            if let partition = items[index].string.flatMap({ Int32($0) }),
                let next = items[index + 1].string.flatMap({ Int64($0) })
            {
                offsets[partition] = next
            }
            index += 2
        }
        return offsets
    }

    public func apply(_ batch: [SinkMessage], next: [Int32: Int64]) throws -> ApplyResult {
        var result = ApplyResult()
        var commands: [RedisClusterCommand] = []
        for message in batch {
            guard message.row >= 0, message.row < context.dataset.rows else {
                result.skipped += 1
                continue
            }
            let txn = context.dataset.transaction(message.row)
            guard txn.posted else {
                result.skipped += 1
                continue
            }
            json.removeAll()
            json.append(txn)
            let key = Array(keys.txn(txn.txnID).utf8)
            commands.append(RedisClusterCommand(key: key, [Array("SET".utf8), key, json.withBytes { Array($0.dropLast()) }]))
        }
        guard !commands.isEmpty else { return result }
        for reply in try router.execute(commands) {
            if case .error(let text) = reply {
                throw RedisClusterError.server(word: RedisClusterRouter.firstWord(text), node: router.lastNode ?? settings.seeds[0])
            }
        }
        result.applied = commands.count
        return result
    }

    public func storeOffsets(_ next: [Int32: Int64]) throws {
        guard !next.isEmpty else { return }
        let key = keys.pipelineOffsets
        try router.command(key: key, ["HSET", key] + next.sorted { $0.key < $1.key }.flatMap { [String($0.key), String($0.value)] })
    }

    public func close() { router.close() }
}
