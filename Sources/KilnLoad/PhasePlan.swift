import KilnCore
import KilnData
import KilnScenario
import KilnStores
import Synchronization

/// One operation of a phase, resolved against the store registry.
public struct PlannedOperation: Sendable {
    /// `store.operation`.
    public var name: String
    public var store: String
    /// Index into the phase's `stores`.
    public var storeIndex: Int
    /// The store's typed operation (what `Client.invoke` runs).
    public var operation: OperationDescriptor
    public var kind: OperationDescriptor.Kind
    public var weight: Double
}

/// A shared counter handing out dataset rows (writes) or bulk batches. Thread-safe.
final class RowCursor: Sendable {
    private let next: Atomic<Int64>
    init(_ first: Int64) { next = Atomic(first) }
    /// Takes `count` rows; returns the first.
    func take(_ count: Int64 = 1) -> Int64 { next.wrappingAdd(count, ordering: .relaxed).oldValue }
    var value: Int64 { next.load(ordering: .relaxed) }
}

/// Rows each store holds so far in this run: `[0, rows)` were handed to writes. Reads pick rows below the value
/// at their phase's start; writes continue from it. Touched only by the controller between phases.
public struct StoreRows: Sendable {
    public var rows: [String: Int64] = [:]
    public init() {}
    public subscript(store: String) -> Int64 {
        get { rows[store] ?? 0 }
        set { rows[store] = newValue }
    }
}

/// Everything the workers of one phase share. Immutable apart from the atomic cursors. Thread-safe.
final class PhaseContext: Sendable {
    let phase: LoadScenario.Phase
    let phaseNumber: Int
    let operations: [PlannedOperation]
    let stores: [String]
    let drivers: [StoreDriver]
    let clientContext: ClientContext
    /// Cumulative weights of `operations`, for the op choice of op k.
    let cumulativeWeights: [Double]
    /// Unsharded: the next row of each store. Sharded: bulk phases the next row of the shard's slice, other phases
    /// the count of writes taken so far (`takeWriteRow` maps it to the shard's row).
    let writeCursors: [RowCursor]
    let readableRows: [Int64]
    /// This process's shard of the run (ShardSlice.swift), nil when unsharded.
    let shard: ShardSlice?
    let datasetRows: Int64
    let seed: UInt64
    let runStart: UInt64
    /// Set once by the runner after every worker has opened its clients, before any op starts; read after that.
    private let start = Atomic<UInt64>(0)
    var phaseStart: UInt64 { start.load(ordering: .acquiring) }
    let stop: StopFlag
    /// Told of every write acknowledged `ok` (black-box staleness probes); nil: nobody listens.
    let ackTap: (any AckTap)?
    /// Moves the calling worker thread into a client group's host (`LoadRun.enterClientGroup`).
    let enterClientGroup: (@Sendable (String) throws -> Void)?

    init(
        phase: LoadScenario.Phase, phaseNumber: Int, operations: [PlannedOperation], stores: [String],
        drivers: [StoreDriver], clientContext: ClientContext, storeRows: StoreRows, seed: UInt64, runStart: UInt64,
        stop: StopFlag, ackTap: (any AckTap)? = nil, enterClientGroup: (@Sendable (String) throws -> Void)? = nil,
        shard: ShardSlice? = nil
    ) {
        self.shard = shard
        self.enterClientGroup = enterClientGroup
        self.phase = phase
        self.phaseNumber = phaseNumber
        self.operations = operations
        self.stores = stores
        self.drivers = drivers
        self.clientContext = clientContext
        var total = 0.0
        cumulativeWeights = operations.map { total += $0.weight; return total }
        if let shard {
            if case .bulk(let rows, let batch, _, _, _) = phase.executor {
                writeCursors = stores.map {
                    RowCursor(shard.bulkSlice(first: storeRows[$0], rows: rows, batch: Int64(batch)).lowerBound)
                }
            } else {
                writeCursors = stores.map { _ in RowCursor(0) }
            }
        } else {
            writeCursors = stores.map { RowCursor(storeRows[$0]) }
        }
        readableRows = stores.map { storeRows[$0] }
        datasetRows = clientContext.dataset.rows
        self.seed = seed
        self.runStart = runStart
        self.stop = stop
        self.ackTap = ackTap
    }

    /// The row of the next write to store `storeIndex` (open and closed phases): the store's next row, or for a
    /// shard the next row of its residue class (ShardSlice.writeRow).
    func takeWriteRow(_ storeIndex: Int) -> Int64 {
        let taken = writeCursors[storeIndex].take()
        guard let shard else { return taken }
        return shard.writeRow(base: readableRows[storeIndex], j: taken)
    }

    /// Starts the phase clock (monotonic ns); called once.
    func startClock(_ now: UInt64) { start.store(now, ordering: .releasing) }

    /// The operation of op `k`: a pure function of (seed, phase, k).
    func operation(of k: Int64) -> Int {
        let total = cumulativeWeights.last ?? 0
        let draw = Double(SplitMix64.value(seed: seed, index: UInt64(k), stream: 1000 + UInt64(phaseNumber)) >> 11)
            * 0x1.0p-53 * total
        var low = 0
        var high = cumulativeWeights.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulativeWeights[middle] > draw { high = middle } else { low = middle + 1 }
        }
        return low
    }

    func random(of k: Int64) -> UInt64 {
        SplitMix64.value(seed: seed, index: UInt64(k), stream: 2000 + UInt64(phaseNumber))
    }
}
