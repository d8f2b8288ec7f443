import Foundation
import KilnData

/// Paced writes of consecutive dataset transactions (1, 2, 3, … by txn_id) into a `LedgerStore`: one OS thread per
/// worker (the C clients block), each with its own writer and its share of `rate`, scheduled at fixed intended
/// times (a late worker does not sleep). Every write lands in `history` as ok / fail / info. `stop()` returns once
/// every worker has finished its write in flight and closed its connection (at most about the write timeout).
public final class WriteLoad: @unchecked Sendable {
    // @unchecked: `next`, `stopped` are only touched under `lock`; the rest is immutable after init.
    public let history = WriteHistory()
    private let store: any LedgerStore
    private let dataset: Dataset
    private let rate: Int
    private let workers: Int
    private let timeout: Duration
    private let lock = NSLock()
    private var next: Int64 = 0
    private var stopped = false
    private let group = DispatchGroup()

    public init(store: any LedgerStore, dataset: Dataset, rate: Int, workers: Int, timeout: Duration) {
        self.store = store
        self.dataset = dataset
        self.rate = rate
        self.workers = workers
        self.timeout = timeout
    }

    public func start() {
        let interval = Double(workers) / Double(rate)
        let begin = Date()
        for worker in 0..<workers {
            group.enter()
            let thread = Thread { [self] in
                let writer = store.makeWriter(timeout: timeout)
                var count = 0.0
                // Workers start spread over one interval, so the writes are even in time.
                let offset = interval * Double(worker) / Double(workers)
                while let index = take() {
                    let row = dataset.transaction(index)
                    let invoked = WallClock.micros()
                    let (outcome, error) = writer.write(row)
                    history.append(WriteRecord(
                        txnID: row.txnID, invokedMicros: invoked, completedMicros: WallClock.micros(),
                        outcome: outcome, worker: worker, error: error))
                    count += 1
                    let due = begin.addingTimeInterval(offset + count * interval)
                    let wait = due.timeIntervalSinceNow
                    if wait > 0 { Thread.sleep(forTimeInterval: wait) }
                }
                writer.close()
                group.leave()
            }
            thread.name = "kiln-durability-\(worker)"
            thread.start()
        }
    }

    private func take() -> Int64? {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped, next < dataset.rows else { return nil }
        next += 1
        return next - 1
    }

    public func stop() {
        lock.lock()
        stopped = true
        lock.unlock()
        group.wait()
    }
}
