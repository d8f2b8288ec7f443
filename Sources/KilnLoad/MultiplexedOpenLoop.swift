import CProcessSpawn
import Glibc
import KilnCore
import KilnStores

/// The open model over multiplexed clients: one thread keeps up to `connections` ops of one store in flight, one
/// per connection (no pipelining), instead of one blocked thread per connection — a thread wake-up per op was the
/// cost of the blocking pool (BENCHMARKS.md, open-model capacity). The schedule and accounting are `openBody`'s:
/// ops are taken from the store's shared cursor only while a connection is idle, each starts at its intended time
/// or, when no connection was free within `drop_after` of it, is counted dropped; latency runs from the intended
/// time; an op past the client timeout is abandoned (`fail("timeout")`, connection dropped). The loop waits in
/// epoll (each connection armed one-shot when its op is sent), so a wake costs the ready connections only. Connection `slot` is
/// worker `worker.id + slot` in the history, so a history looks as a blocking pool of the same size would make it.
/// Runs on its worker's own OS thread; never on Swift's cooperative pool.
struct MultiplexedOpenLoop {
    let worker: LoadWorker
    let store: Int
    let context: PhaseContext
    let times: ArrivalTimes
    let cursor: RowCursor
    let storeOfOperation: [Int]
    let dropAfter: UInt64
    let lateAfter: UInt64
    /// How long past an op's intended time the loop may sleep before sending it, so that ops due close together
    /// go out from one wake-up (0: wake for each op's time; the kernel's timer slack still applies). The delay is
    /// part of each op's latency (measured from the intended time).
    var batchWindow: UInt64 = Self.defaultBatchWindow
    static let defaultBatchWindow: UInt64 = 0

    private struct InFlight {
        var operation: Int
        var row: Int64
        var intended: UInt64
        var start: UInt64
    }

    func run() {
        let count = worker.multiplexedCount
        guard count > 0 else { return }
        let timeout = max(1, context.clientContext.timeout.nanoseconds)
        let epoll = kiln_epoll_create()
        precondition(epoll >= 0, "epoll_create1 failed: errno \(errno)")
        defer { close(epoll) }
        var inFlight = [InFlight?](repeating: nil, count: count)
        var idle = Array((0..<count).reversed())
        var readySlots = [Int32](repeating: 0, count: min(64, count))
        var busy = 0
        /// The next op of this store, taken while a connection is idle: (k, operation, intended).
        var pending: (k: Int64, operation: Int, intended: UInt64)?
        var exhausted = false

        func takeNext() {
            while !exhausted {
                let k = context.shard.map { $0.globalOp(cursor.take()) } ?? cursor.take()
                if k >= times.count { exhausted = true; return }
                let operation = context.operation(of: k)
                if storeOfOperation[operation] != store { continue }
                pending = (k, operation, context.phaseStart &+ times.time(of: k))
                return
            }
        }

        func complete(_ slot: Int, _ outcome: Outcome) {
            let op = inFlight[slot]!
            worker.finish(op.operation, row: op.row, rows: 1, outcome: outcome, intended: op.intended, start: op.start,
                lateAfter: lateAfter, server: worker.multiplexedServedBy(slot), worker: worker.id + slot)
            inFlight[slot] = nil
            busy -= 1
            idle.append(slot)
        }

        /// Waits for `slot`'s reply: one readability event of its socket (one-shot, re-armed per wait).
        func arm(_ slot: Int) {
            let descriptor = worker.multiplexedDescriptor(slot)
            if descriptor < 0 || kiln_epoll_arm(epoll, descriptor, Int32(slot)) != 0 {
                // Nothing to wait on (the client closed its connection): the op ends as the client says on abandon.
                complete(slot, worker.abandon(slot))
            }
        }

        while true {
            let stopping = context.stop.isRaised
            var now = MonotonicClock.now()
            // Start every due op while a connection is idle.
            while !stopping, !idle.isEmpty {
                if pending == nil { takeNext() }
                guard let next = pending, next.intended <= now else { break }
                pending = nil
                if now > next.intended &+ dropAfter {
                    worker.recorder.recordDropped(operation: next.operation)
                    continue
                }
                let slot = idle.removeLast()
                guard let prepared = worker.request(of: next.k, intended: next.intended,
                    lateAfter: lateAfter, worker: worker.id + slot)
                else { idle.append(slot); continue }
                let (operation, request) = prepared
                let start = MonotonicClock.now()
                inFlight[slot] = InFlight(operation: operation, row: request.row, intended: next.intended, start: start)
                busy += 1
                let storeOperation = context.operations[operation].operation
                if let outcome = worker.begin(slot, storeOperation, request) {
                    complete(slot, outcome)
                } else {
                    arm(slot)
                }
                now = MonotonicClock.now()
            }
            // Abandon ops past the client timeout.
            var earliestTimeout = UInt64.max
            if busy > 0 {
                for slot in 0..<count {
                    guard let op = inFlight[slot] else { continue }
                    if now &- op.start >= timeout {
                        complete(slot, worker.abandon(slot))
                    } else {
                        earliestTimeout = min(earliestTimeout, op.start &+ timeout)
                    }
                }
            }
            if busy == 0 && (stopping || (exhausted && pending == nil)) { return }
            // Wait for a reply, the next op's time (when a connection is idle for it), a timeout, or 50 ms (stop).
            var until = now &+ 50_000_000
            if let next = pending, !idle.isEmpty, !stopping { until = min(until, next.intended &+ batchWindow) }
            until = min(until, earliestTimeout)
            let wait = until > now ? Int64(until - now) : 0
            let ready = readySlots.withUnsafeMutableBufferPointer {
                kiln_epoll_wait_slots(epoll, $0.baseAddress, Int32($0.count), wait)
            }
            guard ready > 0 else { continue }
            for index in 0..<Int(ready) {
                let slot = Int(readySlots[index])
                // A connection abandoned since its event was queued has no op any more.
                guard slot < count, inFlight[slot] != nil else { continue }
                if let outcome = worker.poll(slot) { complete(slot, outcome) } else { arm(slot) }
            }
        }
    }
}
