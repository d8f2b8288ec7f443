import KilnBackend
import KilnScenario

/// ClickHouse as the analytics store (HTTP interface): operations, client and places.
public enum ClickHouseBackend {
    public static let descriptor = Backend(
        driver: StoreDriver(ClickHouseClient.self) { try ClickHouseClient(context: $0) }, places: [.clickhouseRows],
        scanners: [ScannerDriver(place: .clickhouseRows) { try ClickHouseScanner(context: $0) }],
        sink: SinkDriver(
            name: PipelineSpec.Sink.clickhouse.rawValue, fills: [.clickhouseRows],
            bugs: [.commitBeforeWrite, .nonIdempotent, .wrongRounding], isDefault: true
        ) { try ClickHouseSink(context: $0, spec: $1) },
        stack: ClickHouseStackSide.stack,
        // `timeseries:` may name TimescaleDB instead: then the stack serves no ClickHouse.
        endpoint: { $0.section(TimeSeriesStackConfig.self).flatMap { $0.kind == .clickhouse ? $0.endpoint : nil } })
}

extension RowPlace {
    /// `<ns>_transactions` rows, written by `bulk` and `insert`.
    public static let clickhouseRows = RowPlace("rows", writtenBy: [ClickHouseOperation.bulk, .insert])
}
