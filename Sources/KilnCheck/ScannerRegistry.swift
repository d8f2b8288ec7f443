/// Every place Kiln can read back, by place id (`postgres.rows`, `kafka.messages`, …). A new scanner is one file
/// plus one line here.
public enum ScannerRegistry {
    public static let drivers: [ScannerDriver] = [
        ScannerDriver(place: .postgresRows) { try PostgresScanner(context: $0) },
        ScannerDriver(place: .clickhouseRows) { try ClickHouseScanner(context: $0) },
        ScannerDriver(place: .kafkaMessages) { try KafkaScanner(context: $0) },
        ScannerDriver(place: .falkordbPaidEdges) { try FalkorDBScanner(context: $0, targetEdgesPerPage: 50_000) },
        ScannerDriver(place: .redisTxnKeys) { try RedisScanner(context: $0) },
    ]

    /// Per-user aggregates: Redis features and scores (checked together as `redis.features`).
    public static let featureDrivers: [FeatureScannerDriver] = [
        FeatureScannerDriver(store: "redis") { try RedisScanner(context: $0) }
    ]

    public static func driver(for placeID: String) -> ScannerDriver? { drivers.first { $0.place.id == placeID } }
}
