/// Every store Kiln can drive, by its name in scenarios (k6's output registry). A new backend is one file with a
/// `Client` plus one line here. `neo4j` cannot run on this machine: its client is tested for encoding only.
public enum StoreRegistry {
    public static let drivers: [StoreDriver] = [
        StoreDriver("postgres", PostgresClient.self) { try PostgresClient(context: $0) },
        StoreDriver("timescale", TimescaleClient.self) { try TimescaleClient(context: $0) },
        StoreDriver("redis", RedisClient.self) { try RedisClient(context: $0) },
        StoreDriver("kafka", KafkaClient.self) { try KafkaClient(context: $0) },
        StoreDriver("falkordb", FalkorDBClient.self) { try FalkorDBClient(context: $0) },
        StoreDriver("clickhouse", ClickHouseClient.self) { try ClickHouseClient(context: $0) },
        StoreDriver("neo4j", Neo4jHTTPClient.self) { try Neo4jHTTPClient(context: $0) },
    ]

    public static func driver(named name: String) -> StoreDriver? { drivers.first { $0.name == name } }
}
