import KilnBackend
import KilnCore
import KilnData
import KilnRedis

/// The operations of store `redis-cluster`: the raw value is the name in scenarios after `redis-cluster.`.
/// Every operation touches one key (or, for the bulk ones, one key per command), so no hash tag is needed: the keys
/// are `RedisKeys`' layout, the same as the Sentinel-managed Redis backend's, spread over the masters by slot.
public enum RedisClusterOperation: String, StoreOperation {
    case bulk
    case bulkSet = "bulk-set"
    case set
    case featureUpdate = "feature-update"
    case scoreIncrement = "score-incr"
    case featureRead = "feature-read"

    public static let store = "redis-cluster"

    public var kind: OperationDescriptor.Kind {
        switch self {
        case .bulk, .bulkSet: .bulk
        case .set, .featureUpdate, .scoreIncrement: .write
        case .featureRead: .read
        }
    }

    public var summary: String {
        switch self {
        case .bulk: "per row HSET+HINCRBY+EXPIRE of the user's features and ZINCRBY of its score, one pipeline per master"
        case .bulkSet: "SET <ns>:txn:<txn_id> <row JSON> per row, one pipeline per master"
        case .set: "SET <ns>:txn:<txn_id> to the row's JSON on the slot's master"
        case .featureUpdate: "HSET+HINCRBY+EXPIRE of the row's user's feature hash (one pipeline to its master)"
        case .scoreIncrement: "ZINCRBY <ns>:fraud:scores <fraud score millis> <user_id> (one slot: one master)"
        case .featureRead: "HGETALL of the row's user's feature hash on its master"
        }
    }
}

/// Redis Cluster as the feature store: the Redis backend's key layout (`RedisKeys`), each key on the master that owns
/// its slot (`RedisClusterRouter`: MOVED/ASK followed, the slot map refreshed after a failover).
///
/// Outcomes: an error reply is `fail(<its first word>)` (nothing of a rejected command is applied); in a pipeline
/// where only some commands were rejected the others were applied, so the op is `info(<word>)`. A connection failure
/// or timeout after sending is `info` for writes and `fail` for reads; a failed connect sent nothing (`fail`), unless
/// another master of the same bulk had already applied commands (`info`). A slot no master serves, too many
/// redirections or no topology: `fail`. Never retried: the next op reconnects and asks the cluster for its slot map.
public final class RedisClusterClient: Client {
    public typealias Operation = RedisClusterOperation

    public let context: ClientContext
    public let settings: RedisClusterSettings
    public let keys: RedisKeys
    /// Rows per bulk batch (each batch is one pipeline per master).
    public let rowsPerBatch: Int
    /// Items the last successful read returned (hash fields).
    public private(set) var lastReadCount = 0
    public let router: RedisClusterRouter
    private var json: RowEncoder

    /// - Throws: `RedisClusterError` when no seed answers `CLUSTER SLOTS`.
    public init(context: ClientContext, settings: RedisClusterSettings, rowsPerBatch: Int = 64) throws {
        precondition(rowsPerBatch >= 1, "rowsPerBatch must be at least 1")
        self.context = context
        self.settings = settings
        self.rowsPerBatch = rowsPerBatch
        keys = RedisKeys(namespace: context.namespace)
        json = RowEncoder(format: .jsonl, dataset: context.dataset, capacity: 4096)
        router = try RedisClusterRouter(seeds: settings.seeds, timeoutSeconds: Self.seconds(context.timeout))
    }

    public func setup() throws {}

    /// Deletes every key under `<ns>:` on every master (SCAN + UNLINK per master).
    public func teardown() throws {
        try router.refreshTopology()
        for master in router.topology.primaries {
            let connection = try router.connection(to: master)
            var cursor = "0"
            repeat {
                let reply = try connection.command(["SCAN", cursor, "MATCH", keys.everything, "COUNT", "1000"])
                guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let found = parts[1].array
                else { throw RedisClusterError.topology("unexpected SCAN reply from \(master)") }
                for key in found.compactMap(\.string) { try connection.command(["UNLINK", key]) }
                cursor = next
            } while cursor != "0"
        }
    }

    public func close() { router.close() }

    /// The master that answered the last op's first command (after any redirect).
    public var servedBy: HostPort? { router.lastNode }
    /// `slot N` for the single-row writes (all their commands are on one key, so one slot), nil for bulk and reads.
    public private(set) var servedPartition: String?

    public func invoke(_ operation: RedisClusterOperation, _ request: Request) -> Outcome {
        servedPartition = nil
        do throws(RedisClusterError) {
            switch operation {
            case .bulk:
                var errors = 0
                var first: String?
                for batch in batches(request.rows) {
                    let result = try run(batch.flatMap { featureCommands(context.dataset.transaction($0)) + [scoreCommand(context.dataset.transaction($0))] })
                    errors += result.errors
                    first = first ?? result.first
                }
                return Self.outcome(errors: errors, commands: request.rows.count * 5, first: first)
            case .bulkSet:
                var errors = 0
                var first: String?
                for batch in batches(request.rows) {
                    let result = try run(batch.map(setCommand))
                    errors += result.errors
                    first = first ?? result.first
                }
                return Self.outcome(errors: errors, commands: request.rows.count, first: first)
            case .set:
                let command = setCommand(request.row)
                servedPartition = Self.partition(command.slot)
                let result = try run([command])
                return Self.outcome(errors: result.errors, commands: 1, first: result.first)
            case .featureUpdate:
                let commands = featureCommands(context.dataset.transaction(request.row))
                servedPartition = commands.first.map { Self.partition($0.slot) }
                let result = try run(commands)
                return Self.outcome(errors: result.errors, commands: 4, first: result.first)
            case .scoreIncrement:
                let command = scoreCommand(context.dataset.transaction(request.row))
                servedPartition = Self.partition(command.slot)
                let result = try run([command])
                return Self.outcome(errors: result.errors, commands: 1, first: result.first)
            case .featureRead:
                let key = keys.features(user: context.dataset.transaction(request.row).userID)
                let reply = try router.command(key: key, ["HGETALL", key])
                guard let fields = reply.array else { return .fail("unexpected-reply") }
                lastReadCount = fields.count / 2
                return .ok
            }
        } catch {
            return Self.outcome(of: error, kind: operation.kind)
        }
    }

    // MARK: - Commands (RedisKeys layout)

    private func batches(_ rows: Range<Int64>) -> [Range<Int64>] {
        stride(from: rows.lowerBound, to: rows.upperBound, by: rowsPerBatch).map {
            $0..<min(rows.upperBound, $0 + Int64(rowsPerBatch))
        }
    }

    private func setCommand(_ row: Int64) -> RedisClusterCommand {
        json.removeAll()
        json.append(context.dataset.transaction(row))
        let value = json.withBytes { Array($0.dropLast()) }
        let key = Array(keys.txn(row + 1).utf8)
        return RedisClusterCommand(key: key, [Words.set, key, value])
    }

    /// HSET of the four `last_*` fields, HINCRBY txn_count 1, HINCRBY amount_cents_total, EXPIRE: one key, one slot.
    private func featureCommands(_ txn: Transaction) -> [RedisClusterCommand] {
        let key = Array(keys.features(user: txn.userID).utf8)
        let slot = RedisClusterSlot.of(key)
        return [
            RedisClusterCommand(slot: slot, arguments: [
                Words.hset, key, Array("last_txn".utf8), Self.decimal(txn.txnID),
                Array("last_amount_cents".utf8), Self.decimal(txn.amountCents),
                Array("last_merchant".utf8), Self.decimal(txn.merchantID),
                Array("last_ts".utf8), Self.decimal(txn.timestampMillis),
            ]),
            RedisClusterCommand(slot: slot, arguments: [Words.hincrby, key, Array("txn_count".utf8), Self.decimal(1)]),
            RedisClusterCommand(
                slot: slot, arguments: [Words.hincrby, key, Array("amount_cents_total".utf8), Self.decimal(txn.amountCents)]),
            RedisClusterCommand(slot: slot, arguments: [Words.expire, key, Self.decimal(RedisClient.featureTTLSeconds)]),
        ]
    }

    private func scoreCommand(_ txn: Transaction) -> RedisClusterCommand {
        let key = Array(keys.scores.utf8)
        return RedisClusterCommand(
            key: key, [Words.zincrby, key, Self.decimal(Int64(txn.fraudScoreMillis)), Self.decimal(txn.userID)])
    }

    /// Runs `commands` through the router: how many were rejected, and the first rejection's word.
    private func run(_ commands: [RedisClusterCommand]) throws(RedisClusterError) -> (errors: Int, first: String?) {
        var errors = 0
        var first: String?
        for reply in try router.execute(commands) {
            if case .error(let text) = reply {
                errors += 1
                first = first ?? RedisClusterRouter.firstWord(text)
            }
        }
        return (errors, first)
    }

    /// The history's name of a slot (`HistoryEntry.partition`).
    static func partition(_ slot: Int) -> String { "slot \(slot)" }

    // MARK: - Outcomes

    /// Every command rejected: fail. Only some: the others were applied, so the op as a whole is info.
    static func outcome(errors: Int, commands: Int, first: String?) -> Outcome {
        guard errors > 0 else { return .ok }
        let word = first ?? "ERR"
        return errors >= commands ? .fail(word) : .info(word)
    }

    static func outcome(of error: RedisClusterError, kind: OperationDescriptor.Kind) -> Outcome {
        switch error {
        case .redis(let redis): redis.outcome(kind, serverClass: "ERR")
        case .partiallyApplied: kind == .read ? .fail("connection") : .info("connection")
        case .server(let word, _): .fail(word)
        case .unroutable: .fail("unroutable")
        case .tooManyRedirects: .fail("redirects")
        case .topology: .fail("topology")
        }
    }

    static func decimal(_ value: Int64) -> [UInt8] { Array(String(value).utf8) }

    static func seconds(_ duration: Duration) -> Double {
        let parts = duration.components
        return max(0.001, Double(parts.seconds) + Double(parts.attoseconds) / 1e18)
    }
}

private enum Words {
    static let set = Array("SET".utf8)
    static let hset = Array("HSET".utf8)
    static let hincrby = Array("HINCRBY".utf8)
    static let expire = Array("EXPIRE".utf8)
    static let zincrby = Array("ZINCRBY".utf8)
}
