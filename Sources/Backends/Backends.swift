import KilnBackend

/// Every backend Kiln can drive, in registry order: THE list. A new backend is one folder under Sources/Backends
/// (compiled into this target without a Package.swift edit) plus one line here; every registry Kiln keeps is derived
/// from this list. `neo4j` cannot run on this machine: its client is tested for encoding only.
public enum Backends {
    public static let all: [Backend] = [
        PostgresBackend.descriptor,
        PostgresBackend.timescale,
        RedisBackend.descriptor,
        KafkaBackend.descriptor,
        FalkorDBBackend.descriptor,
        ClickHouseBackend.descriptor,
        Neo4jBackend.descriptor,
        RedisClusterBackend.descriptor,
    ]

    public static func backend(named name: String) -> Backend? { all.first { $0.name == name } }
}

/// Every store's load driver, by its name in scenarios (k6's output registry): derived from `Backends.all`.
public enum StoreRegistry {
    public static let drivers: [StoreDriver] = Backends.all.map(\.driver)

    public static func driver(named name: String) -> StoreDriver? { drivers.first { $0.name == name } }
}

extension RowPlace {
    /// Every place whose rows the reconcile checker reads, from the backends' `places`.
    public static let all: [RowPlace] = Backends.all.flatMap(\.places)
    /// The per-user aggregate places, from the backends' `aggregatePlaces`.
    public static let aggregates: [RowPlace] = Backends.all.flatMap(\.aggregatePlaces)
}
