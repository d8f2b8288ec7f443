import KilnBackend
import KilnScenario

/// PostgreSQL as the ledger, and TimescaleDB (its own store in scenarios, served by a PostgreSQL server with or
/// without the extension): operations, clients and places.
public enum PostgresBackend {
    public static let descriptor = Backend(
        driver: StoreDriver(PostgresClient.self) { try PostgresClient(context: $0) }, places: [.postgresRows],
        scanners: [ScannerDriver(place: .postgresRows) { try PostgresScanner(context: $0) }],
        sink: SinkDriver(name: PipelineSpec.Sink.postgres.rawValue, fills: [.postgresRows], isDefault: true) { context, _ in
            try PostgresSink(context: context)
        },
        stack: PostgresStackConfig.stackSide)
    public static let timescale = Backend(driver: StoreDriver(TimescaleClient.self) { try TimescaleClient(context: $0) },
        stack: PostgresStackConfig.timescaleStackSide,
        // As `TimescaleClient` connects: `timeseries:` of kind timescale, else the PostgreSQL primary.
        endpoint: { stack in
            guard let ts = stack.section(TimeSeriesStackConfig.self) else { return nil }
            return ts.kind == .timescale ? ts.endpoint : stack.section(PostgresStackConfig.self)?.primary
        })
}

extension RowPlace {
    /// `<ns>_transactions` rows, written by `bulk` (COPY) and `insert`.
    public static let postgresRows = RowPlace("rows", writtenBy: [PostgresOperation.bulk, .insert])
}
