import KilnCore
import Synchronization

/// One completed op as a worker records it, by its index into the phase's operations (cheap to keep under the
/// recorder's lock); the run directory writes it as a `HistoryEntry` (ARCHITECTURE.md: invoke -> ok | fail | info).
public struct CompletedOperation: Sendable {
    /// Index into the phase's operations.
    public var operation: Int
    public var worker: Int
    /// The dataset row a write/read concerned, or the first row of a bulk op (-1: none).
    public var row: Int64
    /// Rows of a bulk op (1 for a write or read).
    public var rowCount: Int64
    public var outcome: OutcomeKind
    public var errorClass: String?
    /// Monotonic nanoseconds since the run started: intended start (open model), actual start, end.
    public var intended: UInt64
    public var start: UInt64
    public var end: UInt64
    /// The server that answered (the client's `servedBy`), nil when the client cannot say.
    public var server: HostPort? = nil
    /// The key-space part the op wrote (the client's `servedPartition`), nil when the client cannot say.
    public var partition: String? = nil

    /// The history line of this op, `operations` being its phase's.
    public func historyEntry(phase: String, operations: [PlannedOperation]) -> HistoryEntry {
        HistoryEntry(
            phase: phase, operation: OperationID(rawValue: operations[operation].name), worker: worker, row: row,
            rows: rowCount, outcome: outcome, errorClass: errorClass, server: server?.description,
            partition: partition, intendedNanos: intended, startNanos: start, endNanos: end)
    }
}

/// What one worker thread measured since the collector last looked. The worker records under the lock (an
/// uncontended mutex costs tens of nanoseconds); the collector takes everything once a second. Thread-safe.
final class WorkerRecorder: Sendable {
    struct Interval: ~Copyable {
        var stats: [OperationStats?]
        var history: [CompletedOperation] = []
    }

    private let state: Mutex<Interval>
    /// Only write ops (and bulk) go to the history; reads are summarised by the stats.
    private let keepHistory: [Bool]

    init(operations: Int, keepHistory: [Bool]) {
        state = Mutex(Interval(stats: Array(repeating: nil, count: operations)))
        self.keepHistory = keepHistory
    }

    func record(_ entry: CompletedOperation, latencyNanos: UInt64, late: Bool) {
        state.withLock { interval in
            if interval.stats[entry.operation] == nil { interval.stats[entry.operation] = OperationStats() }
            interval.stats[entry.operation]!.record(
                entry.outcome, errorClass: entry.errorClass, latencyNanos: latencyNanos, start: entry.start,
                end: entry.end, rows: entry.rowCount)
            if late { interval.stats[entry.operation]!.late += 1 }
            if keepHistory[entry.operation] { interval.history.append(entry) }
        }
    }

    /// Open model with `pipeline_depth` > 1: ops sent while an earlier op of the same connection was outstanding.
    private let pipelined = Atomic<Int64>(0)
    func recordPipelined() { pipelined.add(1, ordering: .relaxed) }
    var pipelinedOps: Int64 { pipelined.load(ordering: .relaxed) }

    func recordDropped(operation: Int) {
        state.withLock { interval in
            if interval.stats[operation] == nil { interval.stats[operation] = OperationStats() }
            interval.stats[operation]!.dropped += 1
        }
    }

    /// Adds this worker's interval into `into` and hands back its history; the interval starts empty again.
    func drain(into merged: inout [OperationStats], history: inout [CompletedOperation]) {
        state.withLock { interval in
            for index in interval.stats.indices {
                guard let stats = interval.stats[index] else { continue }
                merged[index].add(stats)
                interval.stats[index] = nil
            }
            history.append(contentsOf: interval.history)
            interval.history.removeAll(keepingCapacity: true)
        }
    }
}

/// A flag raised by SIGINT/SIGTERM (or a test) and polled by workers and the controller. Thread-safe.
public final class StopFlag: Sendable {
    private let raised = Atomic<Bool>(false)
    public init() {}
    public func raise() { raised.store(true, ordering: .releasing) }
    public var isRaised: Bool { raised.load(ordering: .acquiring) }
}
