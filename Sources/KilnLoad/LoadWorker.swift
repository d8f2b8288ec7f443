import KilnCore
import KilnStores
import Logging

/// One load worker: runs on its own OS thread, owns one client per store (opened lazily on that thread, closed
/// when the worker ends) and records into its own `WorkerRecorder`. Not Sendable; never leaves its thread.
final class LoadWorker {
    let id: Int
    let context: PhaseContext
    let recorder: WorkerRecorder
    private var clients: [(any Client)?]
    /// When the last open attempt of each store failed; reopening is tried at most every 250 ms so a dead server
    /// costs each op a fast `fail("connect")` rather than a connect storm.
    private var lastOpenFailure: [UInt64?]
    private var reportedOpenFailure: [Bool]
    /// Multiplexed open model: the connections this worker's thread keeps busy (`MultiplexedOpenLoop`), all of
    /// `multiplexedStore`; connection `slot` is worker `id + slot` in the history.
    private var multiplexed: [(any MultiplexedClient)?] = []
    private var multiplexedFailure: [UInt64?] = []
    private var multiplexedStore = 0
    /// The phase pipelines (`pipeline_depth` > 1): every multiplexed client is opened with `enablePipelining()`.
    private var multiplexedPipelining = false

    init(id: Int, context: PhaseContext, recorder: WorkerRecorder) {
        self.id = id
        self.context = context
        self.recorder = recorder
        clients = Array(repeating: nil, count: context.stores.count)
        lastOpenFailure = Array(repeating: nil, count: context.stores.count)
        reportedOpenFailure = Array(repeating: false, count: context.stores.count)
    }

    deinit { close() }

    func close() {
        for index in clients.indices {
            clients[index]?.close()
            clients[index] = nil
        }
        for slot in multiplexed.indices {
            multiplexed[slot]?.close()
            multiplexed[slot] = nil
        }
    }

    /// Opens `connections` multiplexed clients of `store` (connection setup is not part of any op's latency); a
    /// connection that cannot be opened now is retried by the first op it is given.
    func warmUpMultiplexed(store: Int, connections: Int, pipelining: Bool = false) {
        multiplexedStore = store
        multiplexedPipelining = pipelining
        multiplexed = Array(repeating: nil, count: connections)
        multiplexedFailure = Array(repeating: nil, count: connections)
        for slot in 0..<connections { multiplexedClient(slot)?.prepareMultiplexed() }
    }

    var multiplexedCount: Int { multiplexed.count }

    private func multiplexedClient(_ slot: Int) -> (any MultiplexedClient)? {
        if let client = multiplexed[slot] { return client }
        let now = MonotonicClock.now()
        if let failed = multiplexedFailure[slot], now &- failed < 250_000_000 { return nil }
        do {
            guard let client = try context.drivers[multiplexedStore].open(context.clientContext) as? any MultiplexedClient
            else { preconditionFailure("\(context.stores[multiplexedStore]) has no multiplexed client") }
            if multiplexedPipelining { client.enablePipelining() }
            multiplexed[slot] = client
            multiplexedFailure[slot] = nil
            return client
        } catch {
            multiplexedFailure[slot] = now
            if !reportedOpenFailure[multiplexedStore] {
                reportedOpenFailure[multiplexedStore] = true
                context.clientContext.logger.warning(
                    "worker \(id + slot): cannot connect to \(context.stores[multiplexedStore]): \(error)")
            }
            return nil
        }
    }

    /// Sends `operation` (the store's typed operation) on connection `slot`: nil while outstanding, else its outcome.
    func begin(_ slot: Int, _ operation: OperationDescriptor, _ request: Request) -> Outcome? {
        guard let client = multiplexedClient(slot) else { return .fail("connect") }
        return client.begin(operation, request)
    }

    /// The outcome of connection `slot`'s op once complete, nil while it is not.
    func poll(_ slot: Int) -> Outcome? {
        guard let client = multiplexed[slot] else { return .fail("connection") }
        return client.poll()
    }
    func abandon(_ slot: Int) -> Outcome { multiplexed[slot]?.abandon() ?? .fail("timeout") }
    /// Pipelining: sends connection `slot`'s ops begun since the last call; nil when sent, else every outstanding
    /// op's outcome.
    func endBatch(_ slot: Int) -> Outcome? {
        guard let client = multiplexed[slot] else { return .fail("connection") }
        return client.endBatch()
    }
    func multiplexedDescriptor(_ slot: Int) -> Int32 { multiplexed[slot]?.descriptor ?? -1 }
    func multiplexedServedBy(_ slot: Int) -> HostPort? { multiplexed[slot]?.servedBy }

    /// Opens a client for every store of the phase (connection setup is not part of any op's latency); a store
    /// that cannot be reached now is retried by the first op that needs it.
    func warmUp(only store: Int? = nil) {
        for index in context.stores.indices where store == nil || store == index { _ = client(index) }
    }

    private func client(_ store: Int) -> (any Client)? {
        if let client = clients[store] { return client }
        let now = MonotonicClock.now()
        if let failed = lastOpenFailure[store], now &- failed < 250_000_000 { return nil }
        do {
            let client = try context.drivers[store].open(context.clientContext)
            clients[store] = client
            lastOpenFailure[store] = nil
            return client
        } catch {
            lastOpenFailure[store] = now
            if !reportedOpenFailure[store] {
                reportedOpenFailure[store] = true
                context.clientContext.logger.warning(
                    "worker \(id): cannot connect to \(context.stores[store]): \(error)")
            }
            return nil
        }
    }

    /// Runs op `k` of the phase (operation chosen from the mix), due at `intended` (monotonic ns; the actual
    /// start for closed phases). Latency is measured from `intended`.
    func run(_ k: Int64, intended: UInt64, lateAfter: UInt64) {
        guard let prepared = self.request(of: k, intended: intended, lateAfter: lateAfter, worker: id) else { return }
        let (operationIndex, request) = prepared
        let operation = context.operations[operationIndex]
        let start = MonotonicClock.now()
        let outcome: Outcome
        var server: HostPort?
        var partition: String?
        if let client = client(operation.storeIndex) {
            outcome = client.invoke(operation.operation, request)
            server = client.servedBy
            partition = client.servedPartition
        } else {
            outcome = .fail("connect")
        }
        finish(operationIndex, row: request.row, rows: 1, outcome: outcome, intended: intended, start: start,
            lateAfter: lateAfter, server: server, partition: partition)
    }

    /// Op `k`'s operation (index into the phase's operations) and request; nil when it ended before anything was
    /// sent (a write past the dataset's end, recorded as `fail("dataset-exhausted")` of `worker`).
    func request(of k: Int64, intended: UInt64, lateAfter: UInt64, worker: Int) -> (Int, Request)? {
        let operationIndex = context.operation(of: k)
        let operation = context.operations[operationIndex]
        var request = Request(random: context.random(of: k))
        switch operation.kind {
        case .write:
            let row = context.takeWriteRow(operation.storeIndex)
            request.row = row
            if row >= context.datasetRows {
                finish(operationIndex, row: row, rows: 0, outcome: .fail("dataset-exhausted"), intended: intended,
                    start: MonotonicClock.now(), lateAfter: lateAfter, worker: worker)
                return nil
            }
        case .read:
            let readable = context.readableRows[operation.storeIndex]
            request.row = readable > 0 ? Int64(request.random % UInt64(readable)) : 0
        case .bulk:
            preconditionFailure("bulk operations run through runBulk")
        }
        return (operationIndex, request)
    }

    /// Loads `rows` into the store of `operationIndex` (a bulk op) and records it.
    func runBulk(_ operationIndex: Int, rows: Range<Int64>) {
        let operation = context.operations[operationIndex]
        let start = MonotonicClock.now()
        let outcome: Outcome
        var server: HostPort?
        if let client = client(operation.storeIndex) {
            outcome = client.invoke(operation.operation, Request(rows: rows))
            server = client.servedBy
        } else {
            outcome = .fail("connect")
        }
        finish(operationIndex, row: rows.lowerBound, rows: Int64(rows.count), outcome: outcome, intended: start,
            start: start, lateAfter: .max, server: server)
    }

    /// Records one completed op of `worker` (this worker's id unless a multiplexed connection's).
    func finish(
        _ operationIndex: Int, row: Int64, rows: Int64, outcome: Outcome, intended: UInt64, start: UInt64,
        lateAfter: UInt64, server: HostPort? = nil, partition: String? = nil, worker: Int? = nil
    ) {
        let end = MonotonicClock.now()
        let kind = outcome.outcomeKind
        let entry = CompletedOperation(
            operation: operationIndex, worker: worker ?? id, row: row, rowCount: rows, outcome: kind,
            errorClass: outcome.errorClass, intended: intended &- context.runStart, start: start &- context.runStart,
            end: end &- context.runStart, server: server, partition: partition)
        recorder.record(entry, latencyNanos: end &- intended, late: start > intended &+ lateAfter)
        if kind == .ok, rows > 0, let tap = context.ackTap, context.operations[operationIndex].kind != .read {
            tap.acknowledged(operation: context.operations[operationIndex].name, rows: row..<(row + rows), ackNanos: end)
        }
    }
}
