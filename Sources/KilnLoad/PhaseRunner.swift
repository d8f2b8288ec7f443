import Dispatch
import Foundation
import KilnCore
import KilnScenario
import KilnStores
import Logging

/// What one phase measured: totals per operation, the per-second timeline, and whether it ran to its end.
public struct PhaseMeasurement: Sendable {
    public var phase: LoadScenario.Phase
    public var operations: [PlannedOperation]
    public var totals: [OperationStats]
    public var timeline: [TimelineSecond]
    /// Wall-clock Unix ms at the start, and seconds it ran.
    public var startedAtMillis: Int64
    public var seconds: Double
    /// False when stopped by a signal before its planned end.
    public var complete: Bool
    /// Open model: ops planned for the phase.
    public var plannedOps: Int64?
    /// `pipeline_depth` > 1: ops sent while an earlier op of the same connection was outstanding; nil otherwise.
    public var pipelinedOps: Int64? = nil

    /// The seconds a rate is measured over: the arrival window for open-model phases (the tail of the last ops
    /// finishing after it is not a lower rate), the whole phase otherwise.
    public var rateSeconds: Double {
        switch phase.executor {
        case .constantArrivalRate(_, let duration): Double(duration.nanoseconds) / 1e9
        case .rampingArrivalRate(_, let stages): stages.reduce(0) { $0 + Double($1.duration.nanoseconds) / 1e9 }
        default: seconds
        }
    }
}

/// One second of one phase, merged over workers.
public struct TimelineSecond: Sendable {
    /// Seconds since the phase started (the end of this second).
    public var second: Int
    public var stats: [OperationStats]
}

/// Receives the per-second results while a phase runs (progress line, run directory). Called on the
/// controller's thread only.
public protocol PhaseObserver: AnyObject {
    func phaseStarted(_ phase: LoadScenario.Phase, number: Int, operations: [PlannedOperation])
    func secondEnded(_ second: TimelineSecond, phase: LoadScenario.Phase, operations: [PlannedOperation],
        elapsed: Double, history: [CompletedOperation])
}

/// Runs one phase: starts its worker threads, collects once per second, stops on time or on the stop flag.
/// Blocks the calling thread (the controller's) until the phase is over; never runs on Swift's cooperative pool.
final class PhaseRunner {
    let context: PhaseContext
    let logger: Logger
    let observer: PhaseObserver?
    /// How long workers get to finish their current op after a stop before the phase is reported without them.
    static let stopGraceNanos: UInt64 = 1_500_000_000

    /// Called on the controller thread the moment the phase clock starts (its workers connected), before any op.
    let clockStarted: (() -> Void)?

    init(context: PhaseContext, logger: Logger, observer: PhaseObserver?, clockStarted: (() -> Void)? = nil) {
        self.context = context
        self.logger = logger
        self.observer = observer
        self.clockStarted = clockStarted
    }

    func run() -> PhaseMeasurement {
        let phase = context.phase
        let operations = context.operations
        let keepHistory = operations.map { $0.kind != .read }
        observer?.phaseStarted(phase, number: context.phaseNumber, operations: operations)

        var workerCount = phase.workers
        var plannedOps: Int64?
        /// Open model: the store each worker (connection) serves, and the threads that run them.
        var owners: [Int]?
        var threads: [OpenThread]?
        let body: @Sendable (LoadWorker) -> Void
        switch phase.executor {
        case .bulk(let rows, let batch, let bulkOperations, let workers, let parallelStores):
            workerCount = parallelStores ? workers * bulkOperations.count : workers
            body = Self.bulkBody(
                context: context, rows: rows, batch: Int64(batch), bulkOperations: bulkOperations, workers: workers,
                parallel: parallelStores)
        case .constantArrivalRate(let rate, let duration):
            let times = ArrivalTimes.constant(rate: rate, seconds: Double(duration.nanoseconds) / 1e9)
            plannedOps = context.shard.map { $0.share(ofOps: times.count) } ?? times.count
            (owners, threads, body) = Self.openBody(context: context, times: times)
            workerCount = threads!.count
        case .rampingArrivalRate(let startRate, let stages):
            let times = ArrivalTimes.ramping(
                startRate: startRate, targets: stages.map { ($0.target, Double($0.duration.nanoseconds) / 1e9) })
            plannedOps = context.shard.map { $0.share(ofOps: times.count) } ?? times.count
            (owners, threads, body) = Self.openBody(context: context, times: times)
            workerCount = threads!.count
        case .closed(let duration):
            if let shard = context.shard { workerCount = shard.workers(phase.workers) }
            body = Self.closedBody(context: context, duration: duration.nanoseconds)
        }

        let recorders = (0..<workerCount).map { _ in
            WorkerRecorder(operations: operations.count, keepHistory: keepHistory)
        }
        // Workers open their clients first; the phase clock starts when all are ready (or after 30 s).
        let group = DispatchGroup()
        let ready = DispatchGroup()
        let gate = DispatchSemaphore(value: 0)
        for index in 0..<workerCount {
            group.enter()
            ready.enter()
            let recorder = recorders[index]
            let context = self.context
            let spec = threads?[index]
            let workerID = spec?.firstWorker ?? index
            let store = owners?[workerID]
            let clientGroup = phase.clientGroups.isEmpty ? nil : phase.clientGroups[workerID % phase.clientGroups.count]
            let logger = self.logger
            let thread = Thread {
                // A worker of a client group runs inside that group's host or not at all: from Kiln's root host
                // its traffic would pass any partition the group is on the wrong side of.
                if let clientGroup {
                    do {
                        guard let enter = context.enterClientGroup else {
                            throw ClientGroupError(
                                group: clientGroup, reason: "this stack has no client groups (network: hosts)")
                        }
                        try enter(clientGroup)
                    } catch {
                        logger.error(
                            "phase \(phase.name): worker \(workerID) cannot enter client group \(clientGroup); it runs no ops",
                            metadata: ["kiln.error": "\(error)"])
                        ready.leave()
                        gate.wait()
                        group.leave()
                        return
                    }
                }
                let worker = LoadWorker(id: workerID, context: context, recorder: recorder)
                if let spec, spec.multiplexed, let store {
                    worker.warmUpMultiplexed(
                        store: store, connections: spec.connections, pipelining: phase.pipelineDepth > 1)
                } else {
                    worker.warmUp(only: store)
                }
                ready.leave()
                gate.wait()
                body(worker)
                worker.close()
                group.leave()
            }
            thread.name = "kiln-\(phase.name)-\(index)"
            thread.start()
        }
        if ready.wait(timeout: .now() + .seconds(30)) == .timedOut {
            logger.warning("phase \(phase.name): some workers were still connecting after 30 s; starting anyway")
        }
        context.startClock(MonotonicClock.now())
        // The timeline's second k ends k s after this (drills compare fault times with those ends).
        let startedAt = MonotonicClock.wallMillis()
        clockStarted?()
        for _ in 0..<workerCount { gate.signal() }

        var totals = Array(repeating: OperationStats(), count: operations.count)
        var timeline: [TimelineSecond] = []
        var second = 0
        var stoppedAt: UInt64?
        var finished = false
        while !finished {
            let deadline = context.phaseStart &+ UInt64(second + 1) * 1_000_000_000
            // Wake at the second's end, or as soon as every worker is done.
            while MonotonicClock.now() < deadline {
                if group.wait(timeout: .now() + .milliseconds(20)) == .success { finished = true; break }
                if context.stop.isRaised {
                    if stoppedAt == nil { stoppedAt = MonotonicClock.now() }
                    if MonotonicClock.now() &- stoppedAt! > Self.stopGraceNanos { finished = true; break }
                }
            }
            second += 1
            var merged = Array(repeating: OperationStats(), count: operations.count)
            var history: [CompletedOperation] = []
            for recorder in recorders { recorder.drain(into: &merged, history: &history) }
            for index in merged.indices { totals[index].add(merged[index]) }
            let entry = TimelineSecond(second: second, stats: merged)
            timeline.append(entry)
            let elapsed = Double(MonotonicClock.now() &- context.phaseStart) / 1e9
            observer?.secondEnded(entry, phase: phase, operations: operations, elapsed: elapsed, history: history)
        }
        if stoppedAt != nil, group.wait(timeout: .now()) != .success {
            logger.warning("phase \(phase.name): some workers were still inside an operation when the report was written")
        }
        let seconds = Double(MonotonicClock.now() &- context.phaseStart) / 1e9
        var measurement = PhaseMeasurement(
            phase: phase, operations: operations, totals: totals, timeline: timeline, startedAtMillis: startedAt,
            seconds: seconds, complete: !context.stop.isRaised, plannedOps: plannedOps)
        if phase.pipelineDepth > 1 { measurement.pipelinedOps = recorders.reduce(0) { $0 + $1.pipelinedOps } }
        return measurement
    }

    /// Open model: op k is due at phaseStart + times(k). Each store has its own pool of workers (the phase's
    /// `workers` shared out by the stores' weights, at least 2 each) walking the op sequence with a cursor of its own
    /// and running only its store's ops: a worker waits for its op's time, then runs it — or counts it dropped when it
    /// is already more than `drop_after` overdue. Separate pools keep a stalled store from holding every worker and
    /// starving the other stores' ops (their latency stays theirs).
    ///
    /// A store whose client runs every op of the mix multiplexed (`MultiplexedClient`) gets its pool as threads of up
    /// to `connectionsPerLoop` connections each (`MultiplexedOpenLoop`) rather than a thread per connection — same
    /// connections, same one op in flight per connection, same schedule and accounting, without a thread wake-up per
    /// op. `KILN_OPEN_MULTIPLEX=0` in the environment keeps a thread per connection (a diagnostic: it runs one op
    /// per connection whatever the phase's `pipeline_depth`, and says so); `KILN_OPEN_BATCH_WINDOW_US=N` sets the
    /// loops' batch window (`MultiplexedOpenLoop.batchWindow`). With `pipeline_depth` N > 1 a loop keeps up to N ops
    /// outstanding per connection when none is idle (`MultiplexedOpenLoop`).
    static func openBody(
        context: PhaseContext, times: ArrivalTimes
    ) -> ([Int], [OpenThread], @Sendable (LoadWorker) -> Void) {
        let dropAfter = context.phase.dropAfter.nanoseconds
        let lateAfter = context.phase.lateAfter.nanoseconds
        let stores = context.stores.count
        var weights = Array(repeating: 0.0, count: stores)
        for operation in context.operations { weights[operation.storeIndex] += operation.weight }
        let total = max(weights.reduce(0, +), 1e-9)
        let budget = context.shard.map { $0.openWorkers(context.phase.workers) } ?? context.phase.workers
        let pools = weights.map { max(2, Int((Double(budget) * $0 / total).rounded(.up))) }
        var owner: [Int] = []
        for (store, size) in pools.enumerated() { owner += Array(repeating: store, count: size) }
        let cursors = (0..<stores).map { _ in RowCursor(0) }
        let storeOfOperation = context.operations.map(\.storeIndex)
        let owners = owner
        let allowed = context.clientContext.environment["KILN_OPEN_MULTIPLEX"] != "0"
        if !allowed, context.phase.pipelineDepth > 1 {
            context.clientContext.logger.warning(
                "phase \(context.phase.name): KILN_OPEN_MULTIPLEX=0 runs one op per connection; pipeline_depth \(context.phase.pipelineDepth) is not applied")
        }
        let batchWindow = context.clientContext.environment["KILN_OPEN_BATCH_WINDOW_US"].flatMap(UInt64.init)
            .map { $0 * 1000 } ?? MultiplexedOpenLoop.defaultBatchWindow
        let multiplexed = (0..<stores).map { store in
            let operations = context.operations.filter { $0.storeIndex == store && $0.weight > 0 }
            return allowed && !operations.isEmpty && operations.allSatisfy {
                context.drivers[store].multiplexedOperations.contains($0.operation)
            }
        }
        var threads: [OpenThread] = []
        var first = 0
        for (store, size) in pools.enumerated() {
            if multiplexed[store] {
                var offset = 0
                while offset < size {
                    let connections = min(connectionsPerLoop, size - offset)
                    threads.append(OpenThread(firstWorker: first + offset, connections: connections, multiplexed: true))
                    offset += connections
                }
            } else {
                threads += (0..<size).map { OpenThread(firstWorker: first + $0, connections: 1, multiplexed: false) }
            }
            first += size
        }
        let dropAfterNanos = dropAfter
        return (owners, threads, { worker in
            let store = owners[worker.id]
            let next = cursors[store]
            if multiplexed[store] {
                MultiplexedOpenLoop(
                    worker: worker, store: store, context: context, times: times, cursor: next,
                    storeOfOperation: storeOfOperation, dropAfter: dropAfterNanos, lateAfter: lateAfter,
                    batchWindow: batchWindow, pipelineDepth: context.phase.pipelineDepth
                ).run()
                return
            }
            while !context.stop.isRaised {
                // A shard walks only its own ops: k ≡ index (mod count).
                let k = context.shard.map { $0.globalOp(next.take()) } ?? next.take()
                if k >= times.count { return }
                let operation = context.operation(of: k)
                if storeOfOperation[operation] != store { continue }
                let intended = context.phaseStart &+ times.time(of: k)
                if !MonotonicClock.sleep(until: intended, stop: { context.stop.isRaised }) { return }
                if MonotonicClock.now() > intended &+ dropAfter {
                    worker.recorder.recordDropped(operation: operation)
                    continue
                }
                worker.run(k, intended: intended, lateAfter: lateAfter)
            }
        })
    }

    /// Connections one multiplexing thread keeps busy: 64 connections are two threads, as `pgbench -c 64 -j 2`.
    static let connectionsPerLoop = 32

    /// Closed model: each worker runs ops back to back until `end`; latency from the actual start.
    static func closedBody(context: PhaseContext, duration: UInt64) -> @Sendable (LoadWorker) -> Void {
        let next = RowCursor(0)
        return { worker in
            let end = context.phaseStart &+ duration
            while !context.stop.isRaised && MonotonicClock.now() < end {
                let k = context.shard.map { $0.globalOp(next.take()) } ?? next.take()
                worker.run(k, intended: MonotonicClock.now(), lateAfter: .max)
            }
        }
    }

    /// Bulk: per store, workers take `batch` rows at a time from a shared cursor until `rows` rows are handed
    /// out. Stores run one after another (all workers on one store) unless `parallel`.
    static func bulkBody(
        context: PhaseContext, rows: Int64, batch: Int64, bulkOperations: [String], workers: Int, parallel: Bool
    ) -> @Sendable (LoadWorker) -> Void {
        let plan: [(operation: Int, cursor: RowCursor, end: Int64)] = bulkOperations.map { name in
            let operation = context.operations.firstIndex { $0.name == name }!
            let storeIndex = context.operations[operation].storeIndex
            let first = context.writeCursors[storeIndex].value
            // A shard loads its slice of the phase's rows (the cursor starts at the slice's first row).
            let end = context.shard.map {
                $0.bulkSlice(first: context.readableRows[storeIndex], rows: rows, batch: batch).upperBound
            } ?? first + rows
            return (operation, context.writeCursors[storeIndex], min(end, context.datasetRows))
        }
        let barrier = StoreBarrier(parties: workers)
        return { worker in
            let assigned = parallel ? [plan[worker.id / workers]] : plan
            for store in assigned {
                while !context.stop.isRaised {
                    let first = store.cursor.take(batch)
                    if first >= store.end { break }
                    worker.runBulk(store.operation, rows: first..<min(first + batch, store.end))
                }
                // Sequential stores: everyone finishes a store before anyone starts the next, so each store's
                // rows/s is its own.
                if !parallel { barrier.arriveAndWait(stop: context.stop) }
            }
        }
    }
}

/// A reusable barrier for the bulk workers of sequential stores. Thread-safe.
final class StoreBarrier: @unchecked Sendable {
    // @unchecked: `count` and `generation` are only touched under `condition`'s lock.
    private let condition = NSCondition()
    private let parties: Int
    private var count = 0
    private var generation = 0

    init(parties: Int) { self.parties = parties }

    func arriveAndWait(stop: StopFlag) {
        condition.lock()
        defer { condition.unlock() }
        let arrivedIn = generation
        count += 1
        if count == parties {
            count = 0
            generation += 1
            condition.broadcast()
            return
        }
        while generation == arrivedIn && !stop.isRaised {
            _ = condition.wait(until: Date().addingTimeInterval(0.1))
        }
    }
}

/// One thread of an open-model phase: workers `firstWorker ..< firstWorker + connections`, multiplexed by one
/// `MultiplexedOpenLoop` or (connections 1) a blocking worker.
struct OpenThread: Sendable {
    var firstWorker: Int
    var connections: Int
    var multiplexed: Bool
}

struct ClientGroupError: Error, CustomStringConvertible {
    var group: String
    var reason: String
    var description: String { "client group \(group): \(reason)" }
}
