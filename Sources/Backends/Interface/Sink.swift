import KilnData
import KilnScenario

/// One Kafka record as a sink sees it: where it sits in the log and the dataset row it carries.
public struct SinkMessage: Sendable {
    public var partition: Int32
    public var offset: Int64
    /// The dataset row (`txn_id - 1`); -1 when the message carries no readable txn_id (the sink skips it).
    public var row: Int64
    /// The record's Kafka timestamp (producer create time), Unix ms.
    public var producedAtMillis: Int64?

    public init(partition: Int32, offset: Int64, row: Int64, producedAtMillis: Int64?) {
        self.partition = partition
        self.offset = offset
        self.row = row
        self.producedAtMillis = producedAtMillis
    }

    /// The txn_id of a message in the `kafka` format's JSON (`{"txn_id":123,...}`), or nil. Reads only up to the
    /// first field, so it costs a few bytes per message.
    public static func txnID(_ value: [UInt8]) -> Int64? {
        let field = Array(#""txn_id":"#.utf8)
        guard let start = value.firstRange(of: field)?.upperBound else { return nil }
        var index = start
        while index < value.count, value[index] == 0x20 { index += 1 }
        var result: Int64 = 0
        var digits = 0
        while index < value.count, (0x30...0x39).contains(value[index]), digits < 18 {
            result = result * 10 + Int64(value[index] - 0x30)
            index += 1
            digits += 1
        }
        return digits > 0 ? result : nil
    }
}

/// What one batch did in a sink.
public struct ApplyResult: Sendable {
    /// Transactions newly written.
    public var applied: Int = 0
    /// Messages recognised as already applied (redelivery) and not written again.
    public var duplicatesSkipped: Int = 0
    /// Messages not written by rule (declined transactions the ledger rejects) or by a planted bug.
    public var skipped: Int = 0

    public init() {}
}

/// A reference sync worker's store side: applies batches of transactions and keeps the offsets it has applied.
/// Not Sendable: one sink per worker thread, every call blocks it.
///
/// Contract: `apply` writes the batch idempotently — a message applied before (a redelivery after a crash) is
/// not applied twice — unless a planted bug says otherwise. `storedOffsets` returns, per partition, the next
/// offset to read: everything before it is applied. Sinks that store offsets atomically with the write
/// (`storesOffsetsWithWrite`) do so inside `apply`; the others get `storeOffsets` after `apply` (or before it,
/// under the commit-before-write bug).
public protocol Sink: AnyObject {
    var sink: PipelineSpec.Sink { get }
    var storesOffsetsWithWrite: Bool { get }
    /// True when the worker stores the batch's offsets before `apply` (a planted bug: a crash in between loses the
    /// batch). Default false.
    var storesOffsetsBeforeWrite: Bool { get }
    /// Creates the sink's tables/keys (dropping them first when `fresh`). Idempotent.
    func setup(fresh: Bool) throws
    func storedOffsets() throws -> [Int32: Int64]
    func apply(_ batch: [SinkMessage], next: [Int32: Int64]) throws -> ApplyResult
    func storeOffsets(_ next: [Int32: Int64]) throws
    func close()
}

extension Sink {
    public var storesOffsetsBeforeWrite: Bool { false }
}

/// The reference platform posts approved transactions only: a declined one is an event on Kafka, but the ledger
/// rejects (rolls back) its posting, so no sink holds it.
extension Transaction {
    public var posted: Bool { !declined }
}

/// How the reference pipeline runs a backend's sink (`Backend.sink`): the sink's name in scenarios
/// (`pipeline.sinks`, = the backend's name), the places it fills (what `PipelinePlaces` expects there after a
/// pipeline run), what the scenario parser learns of it (`known`: the bugs it can plant, its default staleness SLO,
/// whether it is in the default `sinks:`) and the factory that connects one. `open` is called once per worker (and
/// again after a modelled crash); it throws when the store cannot be reached.
public struct SinkDriver: Sendable {
    public let name: String
    /// The places the sink's writes land in, in the reconcile checker's terms.
    public let fills: [RowPlace]
    /// The sink as `pipeline:` blocks are parsed against it (`LoadScenario.load(knownSinks:)`).
    public let known: PipelineSpec.KnownSink
    public let open: @Sendable (ClientContext, PipelineSpec) throws -> any Sink

    /// - Parameters:
    ///   - bugs: the planted bugs the sink implements (constants in the backend's folder, each naming this sink).
    ///   - defaultStaleness: the staleness SLO when the scenario sets none.
    ///   - isDefault: whether a `pipeline:` block without `sinks:` runs it (the reference pipeline's sinks).
    public init(
        name: String, fills: [RowPlace], bugs: [PipelineSpec.Bug] = [],
        defaultStaleness: Duration = PipelineSpec.fallbackStaleness, isDefault: Bool = false,
        open: @escaping @Sendable (ClientContext, PipelineSpec) throws -> any Sink
    ) {
        self.name = name
        self.fills = fills
        self.known = PipelineSpec.KnownSink(
            PipelineSpec.Sink(rawValue: name), bugs: bugs, defaultStaleness: defaultStaleness, isDefault: isDefault)
        self.open = open
    }

    public var bugs: [PipelineSpec.Bug] { known.bugs }
}
