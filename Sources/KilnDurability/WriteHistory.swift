import Foundation

/// How one write ended, as Jepsen's history records it: `ok` (definitely applied), `fail` (definitely not applied),
/// `info` (unknown: the connection broke after the request was sent, or no reply came in time).
public enum WriteOutcome: String, Sendable, Codable {
    case ok
    case fail
    case info
}

/// One write of a durability drill: transaction `txnID` of the dataset, sent at `invokedMicros` and answered at
/// `completedMicros` (Unix microseconds on this machine's wall clock, the clock PostgreSQL stamps commits with).
public struct WriteRecord: Sendable, Codable, Equatable {
    public var txnID: Int64
    public var invokedMicros: Int64
    public var completedMicros: Int64
    public var outcome: WriteOutcome
    public var worker: Int
    /// The error class of a `fail` or `info` (e.g. `connect`, `connection-lost`); nil for `ok`.
    public var error: String?

    public init(
        txnID: Int64, invokedMicros: Int64, completedMicros: Int64, outcome: WriteOutcome, worker: Int = 0,
        error: String? = nil
    ) {
        self.txnID = txnID
        self.invokedMicros = invokedMicros
        self.completedMicros = completedMicros
        self.outcome = outcome
        self.worker = worker
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case txnID = "txn_id"
        case invokedMicros = "invoke_us"
        case completedMicros = "complete_us"
        case outcome, worker, error
    }
}

/// Wall-clock microseconds since the Unix epoch.
public enum WallClock {
    public static func micros() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
    }

    /// `micros` as PostgreSQL/pgBackRest time text in UTC, e.g. `2026-12-05 13:40:00.123456+00`.
    public static func postgresText(_ micros: Int64) -> String {
        var seconds = time_t(micros / 1_000_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02d %02d:%02d:%02d.%06lld+00", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), micros % 1_000_000)
    }
}

/// Collects the writes of every load worker. Thread-safe: workers append under the lock; `records` copies.
public final class WriteHistory: @unchecked Sendable {
    // @unchecked: `entries` is only touched under `lock`.
    private let lock = NSLock()
    private var entries: [WriteRecord] = []

    public init(_ records: [WriteRecord] = []) { entries = records }

    public func append(_ record: WriteRecord) {
        lock.lock()
        entries.append(record)
        lock.unlock()
    }

    public var records: [WriteRecord] {
        lock.lock()
        defer { lock.unlock() }
        return entries
    }

    /// Writes one JSON object per line (history.jsonl), sorted by invocation.
    public func write(to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data = Data()
        for record in records.sorted(by: { $0.invokedMicros < $1.invokedMicros }) {
            data.append(try encoder.encode(record))
            data.append(0x0A)
        }
        try data.write(to: url)
    }
}
