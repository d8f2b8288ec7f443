import Foundation
import KilnElle

/// How the Elle workloads (PostgreSQL, Redis) run their transactions: on `concurrency` threads of their own, one per
/// worker (Jepsen's process), the transactions split as evenly as whole shares allow.
enum ElleWorkerThreads {
    /// Runs worker `w` of `0..<concurrency` as `runWorker(w, count)` on its own thread, `count` being its share of
    /// `transactions` (the first workers take `ceil(transactions / concurrency)` each, the last what remains, possibly
    /// 0), waits for all, and returns their histories merged in invocation order.
    /// - Throws: the error of the first worker (in worker order) that threw; the others' histories are dropped.
    static func history(
        transactions: Int, concurrency: Int,
        _ runWorker: @escaping @Sendable (_ worker: Int, _ count: Int) throws -> [ListAppendTransaction]
    ) throws -> [ListAppendTransaction] {
        let results = WorkerResults(count: concurrency)
        let perWorker = (transactions + concurrency - 1) / concurrency
        let done = DispatchGroup()
        for worker in 0..<concurrency {
            let count = min(perWorker, max(0, transactions - worker * perWorker))
            done.enter()
            Thread {
                results.set(worker, Result { try runWorker(worker, count) })
                done.leave()
            }.start()
        }
        done.wait()
        var history: [ListAppendTransaction] = []
        for worker in 0..<concurrency { history += try results.get(worker).get() }
        history.sort { $0.invokeNanos < $1.invokeNanos }
        return history
    }
}

/// Results of the worker threads, written once each by its own worker before `DispatchGroup.leave` and read after
/// `wait`. @unchecked Sendable: every slot is written by exactly one thread, and all writes happen-before the reads
/// (the group's leave/wait), with a lock besides for safety.
final class WorkerResults: @unchecked Sendable {
    private var slots: [Result<[ListAppendTransaction], any Error>?]
    private let lock = NSLock()
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ result: Result<[ListAppendTransaction], any Error>) {
        lock.lock()
        slots[index] = result
        lock.unlock()
    }
    func get(_ index: Int) -> Result<[ListAppendTransaction], any Error> {
        lock.lock()
        defer { lock.unlock() }
        return slots[index]!
    }
}
