import Histogram
import KilnCore

/// Counts and latency of one operation over some interval (one worker's second, a merged second, a phase).
/// A value type; merging is `add`. Latencies are in microseconds: from the intended time in open-model phases
/// (coordinated-omission free), from the actual start otherwise. Values above an hour are clamped to an hour.
public struct OperationStats: Sendable {
    public static let highestMicros: UInt64 = 3_600_000_000

    public var ok: Int64 = 0
    public var fail: Int64 = 0
    public var info: Int64 = 0
    /// Open model: ops that could not start within `drop_after` of their intended time (not run).
    public var dropped: Int64 = 0
    /// Open model: ops that started more than `late_after` after their intended time (run, and counted).
    public var late: Int64 = 0
    /// Rows written by bulk ops that ended ok.
    public var rows: Int64 = 0
    /// fail + info by error class.
    public var errors: [String: Int64] = [:]
    /// Earliest start and latest end of the ops counted (monotonic ns since the run started): the span the
    /// operation was active, which is what a bulk op's rows/s divides by.
    public var firstStart: UInt64 = .max
    public var lastEnd: UInt64 = 0
    public var latency = OperationStats.emptyHistogram()
    /// Time from actual start to end (equals `latency` for closed and bulk phases).
    public var service = OperationStats.emptyHistogram()

    public init() {}

    public static func emptyHistogram() -> Histogram<UInt64> {
        // Auto-resizing: memory grows with the largest value seen, not with the hour it may hold.
        Histogram<UInt64>(numberOfSignificantValueDigits: .three)
    }

    public var completed: Int64 { ok + fail + info }

    /// Seconds between the first start and the last end (0 when nothing ran).
    public var activeSeconds: Double { lastEnd > firstStart ? Double(lastEnd - firstStart) / 1e9 : 0 }
    public var isEmpty: Bool { completed == 0 && dropped == 0 }

    public mutating func record(
        _ outcome: OutcomeKind, errorClass: String?, latencyNanos: UInt64, start: UInt64, end: UInt64, rows: Int64
    ) {
        let serviceNanos = end &- start
        firstStart = min(firstStart, start)
        lastEnd = max(lastEnd, end)
        switch outcome {
        case .ok:
            ok += 1
            self.rows += rows
        case .fail: fail += 1
        case .info: info += 1
        }
        if let errorClass { errors[errorClass, default: 0] += 1 }
        _ = latency.record(min(Self.highestMicros, max(1, latencyNanos / 1000)))
        _ = service.record(min(Self.highestMicros, max(1, serviceNanos / 1000)))
    }

    public mutating func add(_ other: OperationStats) {
        ok += other.ok
        fail += other.fail
        info += other.info
        dropped += other.dropped
        late += other.late
        rows += other.rows
        firstStart = min(firstStart, other.firstStart)
        lastEnd = max(lastEnd, other.lastEnd)
        for (name, count) in other.errors { errors[name, default: 0] += count }
        if other.latency.totalCount > 0 { latency.add(other.latency) }
        if other.service.totalCount > 0 { service.add(other.service) }
    }

    /// Seconds at a percentile (0...100) of `latency`, nil when nothing completed.
    public func latencySeconds(percentile: Double) -> Double? {
        latency.totalCount == 0 ? nil : Double(latency.valueAtPercentile(percentile)) / 1e6
    }

    public var maxLatencySeconds: Double? { latency.totalCount == 0 ? nil : Double(latency.max) / 1e6 }
    public var meanLatencySeconds: Double? { latency.totalCount == 0 ? nil : latency.mean / 1e6 }
}
