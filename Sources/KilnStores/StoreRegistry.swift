// Transitional: code that imports KilnStores keeps seeing the backend interface and the backends moved out of
// this module so far (Sources/Backends/*), until every store has its own folder and callers import the backends.
@_exported import KilnBackend
@_exported import KilnRedisBackend
/// Every store Kiln can drive, by its name in scenarios (k6's output registry). A new backend is one file with a
/// `Client` plus one line here. `neo4j` cannot run on this machine: its client is tested for encoding only.
public enum StoreRegistry {
    public static let drivers: [StoreDriver] = [
        StoreDriver(PostgresClient.self) { try PostgresClient(context: $0) },
        StoreDriver(TimescaleClient.self) { try TimescaleClient(context: $0) },
        StoreDriver(RedisClient.self) { try RedisClient(context: $0) },
        StoreDriver(KafkaClient.self) { try KafkaClient(context: $0) },
        StoreDriver(FalkorDBClient.self) { try FalkorDBClient(context: $0) },
        StoreDriver(ClickHouseClient.self) { try ClickHouseClient(context: $0) },
        StoreDriver(Neo4jHTTPClient.self) { try Neo4jHTTPClient(context: $0) },
    ]

    public static func driver(named name: String) -> StoreDriver? { drivers.first { $0.name == name } }
}
