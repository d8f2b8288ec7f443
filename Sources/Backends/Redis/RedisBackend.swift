import KilnBackend
import KilnScenario

/// Redis as the feature store (Sentinel-aware): its operations, client and places.
public enum RedisBackend {
    public static let descriptor = Backend(
        driver: StoreDriver(RedisClient.self) { try RedisClient(context: $0) },
        places: [.redisTxnKeys],
        aggregatePlaces: [.redisFeatures, .redisScores],
        scanners: [ScannerDriver(place: .redisTxnKeys) { try RedisScanner(context: $0) }],
        featureScanner: FeatureScannerDriver(store: "redis") { try RedisScanner(context: $0) },
        sink: SinkDriver(
            name: PipelineSpec.Sink.redis.rawValue, fills: [.redisFeatures, .redisScores],
            bugs: [.staleCache, .reorder, .lag], defaultStaleness: .seconds(5), isDefault: true
        ) { try RedisSink(context: $0, spec: $1) },
        stack: RedisStackConfig.stackSide)
}

extension RowPlace {
    /// `<ns>:txn:<id>` strings, written by `set` and `bulk-set`.
    public static let redisTxnKeys = RowPlace("txn-keys", writtenBy: [RedisOperation.set, .bulkSet])
    /// Per-user aggregates kept by Redis: the feature hash (`txn_count`, `amount_cents_total`, `last_*`) is updated
    /// by `bulk` and `feature-update`; the fraud-score sorted set by `bulk` and `score-incr`.
    public static let redisFeatures = RowPlace("features", writtenBy: [RedisOperation.bulk, .featureUpdate])
    public static let redisScores = RowPlace("scores", writtenBy: [RedisOperation.bulk, .scoreIncrement])
}
