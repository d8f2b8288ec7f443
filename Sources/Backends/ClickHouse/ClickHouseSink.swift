import Foundation
import KilnData
import KilnHTTP
import KilnScenario
import KilnBackend

/// The analytics store (ClickHouse over HTTP): posted transactions into `<ns>_transactions` (RowBinary; the
/// table's materialized view keeps the per-minute per-merchant aggregates). ClickHouse has no upsert, so each
/// batch first asks which of its txn_ids the table already holds and inserts only the others (a redelivery after
/// a crash finds them); offsets go to the PostgreSQL offset table after the insert.
public final class ClickHouseSink: Sink {
    public let sink = PipelineSpec.Sink.clickhouse
    /// The commit-before-write bug: the worker stores the offsets before `apply`.
    public var storesOffsetsBeforeWrite: Bool { spec.has(.commitBeforeWrite) }
    public let storesOffsetsWithWrite = false
    let context: ClientContext
    let spec: PipelineSpec
    let table: String
    let baseURL: String
    let http: HTTPClient
    let offsets: OffsetTable
    private var encoder: RowEncoder
    private var body: [UInt8] = []
    private lazy var insertURL = baseURL + "?query="
        + ("INSERT INTO \(table) FORMAT RowBinary".addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")

    public init(context: ClientContext, spec: PipelineSpec) throws {
        self.context = context
        self.spec = spec
        let ts = context.stack.timeseries
        table = "\(ts.database).\(context.namespace)_transactions"
        baseURL = ts.baseURL
        http = try HTTPClient(
            timeoutSeconds: max(1, context.timeout.seconds), connectTimeoutSeconds: 5, user: ts.user,
            password: StackDefinition.secret(ts.passwordEnvironmentVariable, in: context.environment),
            caFile: ts.caFile(in: context.environment))
        offsets = try OffsetTable(context: context)
        encoder = RowEncoder(format: .rowBinary, dataset: context.dataset, capacity: 1 << 18)
    }

    public func setup(fresh: Bool) throws {
        // DDL before the load (dropping and recreating the tables and the view under `fresh`) is not an operation the
        // run measures: it gets at least 30 s, not the per-op timeout (a loaded machine's ClickHouse took over 5 s,
        // and the run then ended 69 before its first phase).
        var setupContext = context
        setupContext.timeout = max(context.timeout, .seconds(30))
        let client = try ClickHouseClient(context: setupContext)
        defer { client.close() }
        if fresh { try client.teardown() }
        try client.setup()
        try offsets.setup(sink: sink, fresh: fresh)
    }

    public func storedOffsets() throws -> [Int32: Int64] { try offsets.load(sink: sink) }

    func query(_ sql: String) throws -> String {
        let response = try http.post(baseURL, body: Array(sql.utf8))
        guard response.status == 200 else {
            throw ClickHouseSinkError(
                reason: "HTTP \(response.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))")
        }
        return String(decoding: response.body, as: UTF8.self)
    }

    public func apply(_ batch: [SinkMessage], next: [Int32: Int64]) throws -> ApplyResult {
        var result = ApplyResult()
        var rows: [Int64] = []
        for message in batch where message.row >= 0 {
            if context.dataset.transaction(message.row).posted { rows.append(message.row) } else { result.skipped += 1 }
        }
        guard !rows.isEmpty else { return result }
        // Planted bug `non-idempotent`: no lookup, so a redelivered batch is inserted again.
        var present: Set<Int64> = []
        if !spec.has(.nonIdempotent) {
            let ids = rows.map { String($0 + 1) }.joined(separator: ",")
            let text = try query("SELECT txn_id FROM \(table) WHERE txn_id IN (\(ids)) FORMAT TabSeparated")
            for line in text.split(separator: "\n") { if let id = Int64(line) { present.insert(id) } }
        }
        encoder.removeAll()
        for row in rows where !present.contains(row + 1) {
            var transaction = context.dataset.transaction(row)
            // Planted bug `wrong-rounding`: amounts rounded to whole currency units.
            if spec.has(.wrongRounding) {
                transaction.amountCents = (transaction.amountCents + 50) / 100 * 100
            }
            encoder.append(transaction)
            result.applied += 1
        }
        result.duplicatesSkipped = present.count
        guard result.applied > 0 else { return result }
        body.removeAll(keepingCapacity: true)
        encoder.withBytes { body.append(contentsOf: $0) }
        let response = try http.post(insertURL, body: body)
        guard response.status == 200 else {
            throw ClickHouseSinkError(
                reason: "insert: HTTP \(response.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))")
        }
        return result
    }

    public func storeOffsets(_ next: [Int32: Int64]) throws { try offsets.store(sink: sink, next) }

    public func close() { offsets.close() }
}

struct ClickHouseSinkError: Error, CustomStringConvertible {
    var reason: String
    var description: String { "clickhouse sink: \(reason)" }
}

extension PipelineSpec.Sink {
    public static let clickhouse = PipelineSpec.Sink(rawValue: "clickhouse")
}

/// The bugs the ClickHouse sink can plant (`pipeline.bugs`), listed by `ClickHouseBackend.descriptor`'s sink.
extension PipelineSpec.Bug {
    /// The worker stores the sink's offsets before writing the batch (`storesOffsetsBeforeWrite`): a crash in between
    /// loses the batch.
    public static let commitBeforeWrite = PipelineSpec.Bug("commit-before-write", in: .clickhouse)
    /// The sink skips its "already applied?" lookup: a redelivered batch is inserted twice.
    public static let nonIdempotent = PipelineSpec.Bug("non-idempotent", in: .clickhouse)
    /// The sink rounds amounts to whole currency units.
    public static let wrongRounding = PipelineSpec.Bug("wrong-rounding", in: .clickhouse)
}
