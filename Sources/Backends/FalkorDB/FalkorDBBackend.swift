import KilnBackend
import KilnScenario

/// FalkorDB as the fraud graph (openCypher over RESP): operations, client and places.
public enum FalkorDBBackend {
    public static let descriptor = Backend(
        driver: StoreDriver(FalkorDBClient.self) { try FalkorDBClient(context: $0) }, places: [.falkordbPaidEdges],
        scanners: [
            ScannerDriver(place: .falkordbPaidEdges) { try FalkorDBScanner(context: $0, targetEdgesPerPage: 50_000) }
        ],
        sink: SinkDriver(
            name: PipelineSpec.Sink.falkordb.rawValue, fills: [.falkordbPaidEdges], bugs: [.dropEveryN, .phantom],
            isDefault: true
        ) { try GraphSink(context: $0, spec: $1) },
        stack: FalkorDBStackSide.stack,
        // `graph:` may name Neo4j instead: then the stack serves no FalkorDB.
        endpoint: { $0.section(GraphStackConfig.self).flatMap { $0.kind == .falkordb ? $0.endpoint : nil } })
}

extension RowPlace {
    /// PAID edges of the graph, one per row, written by `bulk` and `merge-edge`.
    public static let falkordbPaidEdges = RowPlace("paid-edges", writtenBy: [FalkorDBOperation.bulk, .mergeEdge])
}
