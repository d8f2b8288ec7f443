/// Every place Kiln can read back, by place id (`postgres.rows`, `kafka.messages`, …). A new scanner is one file
/// plus one line here.
public enum ScannerRegistry {
    static func place(_ id: String) -> RowPlace { RowPlace.all.first { $0.id == id }! }

    public static let drivers: [ScannerDriver] = [
        ScannerDriver(place: place("postgres.rows")) { try PostgresScanner(context: $0) },
        ScannerDriver(place: place("clickhouse.rows")) { try ClickHouseScanner(context: $0) },
        ScannerDriver(place: place("kafka.messages")) { try KafkaScanner(context: $0) },
        ScannerDriver(place: place("falkordb.paid-edges")) { try FalkorDBScanner(context: $0, targetEdgesPerPage: 50_000) },
        ScannerDriver(place: place("redis.txn-keys")) { try RedisScanner(context: $0) },
    ]

    /// Per-user aggregates: Redis features and scores (checked together as `redis.features`).
    public static let featureDrivers: [FeatureScannerDriver] = [
        FeatureScannerDriver(store: "redis") { try RedisScanner(context: $0) }
    ]

    public static func driver(for placeID: String) -> ScannerDriver? { drivers.first { $0.place.id == placeID } }
}
