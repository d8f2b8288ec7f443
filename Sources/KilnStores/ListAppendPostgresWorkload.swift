import KilnBackend
import Foundation
import KilnCore
import KilnElle
import KilnPostgres

/// Elle's transactional workloads on PostgreSQL. list-append: one table `<table>` of rows
/// `(k integer primary key, v integer[])`, one row per key created empty; per micro-op either
/// `UPDATE … SET v = v || $x WHERE k = $k` (append) or `SELECT v … WHERE k = $k` (read). rw-register: rows
/// `(k integer primary key, v integer)` created NULL (never written); `UPDATE … SET v = $x WHERE k = $k` (write) or
/// `SELECT v …` (read). A transaction is `BEGIN ISOLATION LEVEL …`, its micro-ops, then `COMMIT`. With
/// `maxWritesPerKey`, keys are retired after that many writes (`RetiringKeySpace`); rows for every key the run can
/// reach are created up front.
///
/// Outcomes never lie: a committed transaction is `ok`; one the server rejected (serialization failure 40001,
/// deadlock 40P01, any statement error — then rolled back) or whose connection broke before `COMMIT` was sent is
/// `fail`; one whose `COMMIT` got no answer is `info`. Every appended value is unique (`worker × 10^6 + sequence`).
/// Each worker is a process of the history, runs on its own thread with its own connection, one transaction at a
/// time; invoke/complete times are one monotonic clock's nanoseconds.
public struct EllePostgresWorkload: Sendable {
    public enum Isolation: String, Sendable, CaseIterable {
        case readCommitted = "read-committed"
        case repeatableRead = "repeatable-read"
        case serializable

        var sql: String {
            switch self {
            case .readCommitted: "READ COMMITTED"
            case .repeatableRead: "REPEATABLE READ"
            case .serializable: "SERIALIZABLE"
            }
        }
    }

    public var endpoint: PostgresEndpoint
    public var isolation: Isolation
    /// Table name; must be a plain identifier (letters, digits, underscores). Dropped before and after the run.
    public var table: String
    public var transactions: Int
    public var concurrency: Int
    public var keys: Int
    public var opsPerTransaction: Int
    public var readShare: Double
    public var seed: UInt64
    /// How each micro-op's key is picked (uniform unless set).
    public var keyChoice: ListAppendKeyChoice = .uniform
    /// Which micro-ops the transactions run (list-append unless set).
    public var workload: ElleWorkload = .listAppend
    /// Writes after which a key is retired (nil: never).
    public var maxWritesPerKey: Int? = nil
    /// When set, a worker whose connection broke reconnects to the directory's current `postgres` primary (within
    /// `reconnectWithin`) and goes on as a new process (Jepsen: a crashed process is never reused), so a failover
    /// during the run leaves a history across both primaries. Nil: the worker's process ends there.
    public var primaries: PrimaryDirectory? = nil
    public var reconnectWithin: Duration = .seconds(20)
    /// When set, workers start no transaction after this instant (the history may then hold fewer than
    /// `transactions`).
    public var stopAt: ContinuousClock.Instant? = nil

    public init(
        endpoint: PostgresEndpoint, isolation: Isolation, table: String = "kiln_elle_list_append",
        transactions: Int = 2_000, concurrency: Int = 10, keys: Int = 8, opsPerTransaction: Int = 4,
        readShare: Double = 0.5, seed: UInt64 = 42
    ) {
        self.endpoint = endpoint
        self.isolation = isolation
        self.table = table
        self.transactions = transactions
        self.concurrency = concurrency
        self.keys = keys
        self.opsPerTransaction = opsPerTransaction
        self.readShare = readShare
        self.seed = seed
    }

    public struct WorkloadError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Creates the table, runs the transactions on `concurrency` threads, drops the table; returns the history in
    /// invocation order.
    public func run() throws -> [ListAppendTransaction] {
        guard !table.isEmpty, table.allSatisfy({ $0 == "_" || $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
            throw WorkloadError(description: "table \(table): expected a plain identifier")
        }
        let admin = try PostgresConnection(endpoint)
        defer { admin.close() }
        try admin.execute("DROP TABLE IF EXISTS \(table)")
        switch workload {
        case .listAppend:
            try admin.execute("CREATE TABLE \(table) (k integer PRIMARY KEY, v integer[] NOT NULL DEFAULT '{}')")
        case .rwRegister:
            try admin.execute("CREATE TABLE \(table) (k integer PRIMARY KEY, v integer)")
        }
        defer { _ = try? admin.execute("DROP TABLE IF EXISTS \(table)") }
        let keySpace = RetiringKeySpace(slots: keys, maxWritesPerKey: maxWritesPerKey)
        let keyBound = keySpace.keyBound(writes: transactions * opsPerTransaction)
        try admin.execute("INSERT INTO \(table) (k) SELECT generate_series(0, \(keyBound - 1))")

        let workload = self
        return try ElleWorkerThreads.history(transactions: transactions, concurrency: concurrency) { worker, count in
            try workload.runWorker(worker, count: count, keySpace: keySpace)
        }
    }

    /// A session prepared for the workload, on the directory's current primary when there is one.
    private func openSession() throws -> PostgresConnection {
        var target = endpoint
        if let primary = primaries?.primary(of: "postgres") {
            target.host = primary.host
            target.port = primary.port
        }
        let connection = try PostgresConnection(target, connectTimeoutSeconds: 2)
        // Transactions append to keys in random order, so they deadlock often; PostgreSQL's default 1 s
        // deadlock_timeout would dominate the run. A lock wait beyond 100 ms fails the transaction (55P03, rolled
        // back: an honest `fail`); deadlock detection after 20 ms needs a superuser, so it is only tried.
        try connection.execute("SET lock_timeout = '100ms'")
        _ = try? connection.execute("SET deadlock_timeout = '20ms'")
        switch workload {
        case .listAppend:
            try connection.prepare("write", "UPDATE \(table) SET v = v || $2::integer WHERE k = $1::integer")
        case .rwRegister:
            try connection.prepare("write", "UPDATE \(table) SET v = $2::integer WHERE k = $1::integer")
        }
        try connection.prepare("read", "SELECT v FROM \(table) WHERE k = $1::integer")
        return connection
    }

    /// A new session after a broken one, retried until `reconnectWithin`; nil without a directory or in time.
    private func reopenSession() -> PostgresConnection? {
        guard primaries != nil else { return nil }
        let deadline = ContinuousClock.now + reconnectWithin
        while ContinuousClock.now < deadline {
            if let connection = try? openSession() { return connection }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return nil
    }

    private func runWorker(_ worker: Int, count: Int, keySpace: RetiringKeySpace) throws -> [ListAppendTransaction] {
        var connection = try openSession()
        defer { connection.close() }
        // Process ids: worker, then worker + concurrency × incarnation after each reconnect.
        var process = worker
        var random = SplitMix64Stream(seed: seed &+ UInt64(worker) &* 0x9E37_79B9)
        let picker = keyChoice.picker(keys: keys)
        var history: [ListAppendTransaction] = []
        var sequence = 0
        let readThreshold = UInt64(readShare * 1_000_000)
        for _ in 0..<count {
            if let stopAt, ContinuousClock.now >= stopAt { break }
            var planned: [MicroOp] = []
            for _ in 0..<opsPerTransaction {
                let slot = picker.key(random.next())
                if random.next() % 1_000_000 < readThreshold {
                    planned.append(workload.plannedRead(key: keySpace.keyForRead(slot: slot)))
                } else {
                    sequence += 1
                    planned.append(
                        workload.write(key: keySpace.keyForWrite(slot: slot), value: worker * 1_000_000 + sequence))
                }
            }
            let invoke = Self.now()
            var ops = planned
            var outcome = TransactionOutcome.ok
            do {
                try connection.execute("BEGIN ISOLATION LEVEL \(isolation.sql)")
                for (index, op) in planned.enumerated() {
                    switch op {
                    case .append(let key, let value), .write(let key, let value):
                        try connection.executePrepared("write", [String(key), String(value)])
                    case .read(let key, _):
                        let result = try connection.executePrepared("read", [String(key)])
                        ops[index] = .read(key: key, values: Self.parseArray(result.value(row: 0, column: 0)))
                    case .readRegister(let key, _):
                        let result = try connection.executePrepared("read", [String(key)])
                        ops[index] = .readRegister(key: key, value: result.value(row: 0, column: 0).flatMap { Int($0) })
                    }
                }
            } catch {
                // Nothing was committed: the statement failed (the server aborts the transaction) or the connection
                // broke before COMMIT was sent.
                _ = try? connection.execute("ROLLBACK")
                history.append(Self.record(process, invoke, .fail, planned))
                if !connection.isOpen {
                    connection.close()
                    guard let next = reopenSession() else { break }
                    connection = next
                    process += concurrency
                }
                continue
            }
            do {
                try connection.execute("COMMIT")
            } catch {
                // `server`: rejected at commit (e.g. 40001), rolled back. Anything else: the COMMIT may have been
                // applied.
                outcome = error.kind == .server ? .fail : .info
            }
            history.append(Self.record(process, invoke, outcome, outcome == .ok ? ops : planned))
            if outcome == .info || !connection.isOpen {
                // The connection is gone; this process ends (Jepsen's crashed process), a new one may go on.
                connection.close()
                guard let next = reopenSession() else { break }
                connection = next
                process += concurrency
            }
        }
        return history
    }

    private static func record(
        _ worker: Int, _ invoke: Int64, _ outcome: TransactionOutcome, _ ops: [MicroOp]
    ) -> ListAppendTransaction {
        ListAppendTransaction(process: worker, invokeNanos: invoke, completeNanos: now(), outcome: outcome, ops: ops)
    }

    static func now() -> Int64 { Int64(DispatchTime.now().uptimeNanoseconds) }

    /// `{1,2,3}` → [1, 2, 3]; NULL or `{}` → [].
    static func parseArray(_ text: String?) -> [Int] {
        guard let text, text.count > 2 else { return [] }
        return text.dropFirst().dropLast().split(separator: ",").compactMap { Int($0) }
    }
}

/// The list-append name of `EllePostgresWorkload` (its first workload).
public typealias ListAppendPostgresWorkload = EllePostgresWorkload

/// Sequential draws from KilnCore's counter-based SplitMix64.
struct SplitMix64Stream {
    private var counter: UInt64
    init(seed: UInt64) { counter = seed }
    mutating func next() -> UInt64 {
        counter &+= 1
        return SplitMix64.mix(counter)
    }
}
