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
/// epoll, so a wake costs the ready connections only. Each connection stays registered (level-triggered) while it
/// keeps its open file: no epoll_ctl per op (`EpollRegistrations`). Connection `slot` is
/// worker `worker.id + slot` in the history, so a history looks as a blocking pool of the same size would make it.
/// Pipelining (`pipelineDepth` > 1, a client that `pipelines`): when no connection is idle, due ops are queued on
/// the connection with the fewest outstanding until it holds `pipelineDepth`, then on the next; the ops queued on a
/// connection in one pass leave together (`endBatch`: for PostgreSQL one Sync, one send, one server flush) and their
/// outcomes come back in order. Those ops
/// share the connection's worker id, so only reads pipeline (`StoreDriver.pipelinedOperations`,
/// `LoadRun.pipelineProblem`): reads are summarised by the stats, never written to the history. A timeout of a
/// connection's oldest op abandons them all.
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
    /// Ops outstanding per connection at most (1: no pipelining).
    var pipelineDepth = 1

    private struct InFlight {
        var operation: Int
        var row: Int64
        var intended: UInt64
        var start: UInt64
    }

    func run() {
        let count = worker.multiplexedCount
        guard count > 0 else { return }
        let depth = max(1, pipelineDepth)
        let timeout = max(1, context.clientContext.timeout.nanoseconds)
        let epoll = kiln_epoll_create()
        precondition(epoll >= 0, "epoll_create1 failed: errno \(errno)")
        defer { close(epoll) }
        // Slot s's outstanding ops, oldest first: queue[s * depth + (head[s] + i) % depth] for i < length[s].
        var queue = [InFlight?](repeating: nil, count: count * depth)
        var head = [Int](repeating: 0, count: count)
        var length = [Int](repeating: 0, count: count)
        var registrations = EpollRegistrations(count: count)
        var idle = Array((0..<count).reversed())
        var readySlots = [Int32](repeating: 0, count: min(64, count))
        var busy = 0
        /// The next op of this store, taken while a connection can take it: (k, operation, intended).
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

        /// Records `op` of `slot`, taken out of its queue, as ended with `outcome`.
        func finish(_ op: InFlight, _ slot: Int, _ outcome: Outcome) {
            worker.finish(op.operation, row: op.row, rows: 1, outcome: outcome, intended: op.intended, start: op.start,
                lateAfter: lateAfter, server: worker.multiplexedServedBy(slot), worker: worker.id + slot)
            busy -= 1
            registrations.opEnded(slot, ok: outcome == .ok)
        }

        /// Ends `slot`'s oldest outstanding op with `outcome`.
        func complete(_ slot: Int, _ outcome: Outcome) {
            let position = slot * depth + head[slot]
            let op = queue[position]!
            queue[position] = nil
            head[slot] = (head[slot] + 1) % depth
            length[slot] -= 1
            if length[slot] == 0 { idle.append(slot) }
            finish(op, slot, outcome)
        }

        /// Ends every outstanding op of `slot` with the outcome of abandoning its connection.
        func abandonAll(_ slot: Int) {
            let outcome = worker.abandon(slot)
            while length[slot] > 0 { complete(slot, outcome) }
        }

        /// Waits for `slot`'s replies: its socket stays registered for readability (level-triggered) from the first
        /// op on this connection on; registered again only when the connection may have changed.
        func arm(_ slot: Int) {
            let descriptor = worker.multiplexedDescriptor(slot)
            guard descriptor >= 0 else {
                // Nothing to wait on (the client closed its connection): the ops end as the client says on abandon.
                abandonAll(slot)
                return
            }
            guard registrations.needsRegistration(slot, descriptor) else { return }
            if kiln_epoll_register(epoll, descriptor, Int32(slot)) == 0 {
                registrations.registered(slot, descriptor)
            } else {
                abandonAll(slot)
            }
        }

        /// Pipelining: the connection being filled in this pass, and the connections with ops begun but not sent.
        var filling: Int?
        var unsent: [Int] = []
        var isUnsent = [Bool](repeating: false, count: count)

        /// A connection for the next op: an idle one, else (pipelining) the one being filled while it has room, else
        /// the one with the fewest outstanding.
        func freeSlot() -> Int? {
            if let slot = idle.popLast() { return slot }
            guard depth > 1 else { return nil }
            if let slot = filling {
                if length[slot] < depth { return slot }
                // Full: its batch leaves now rather than at the end of the pass.
                sendBatch(slot)
            }
            var best: Int?
            for slot in 0..<count where length[slot] < depth {
                if best == nil || length[slot] < length[best!] { best = slot }
            }
            filling = best
            return best
        }

        /// Sends `slot`'s ops begun and not yet sent (pipelining).
        func sendBatch(_ slot: Int) {
            guard isUnsent[slot] else { return }
            isUnsent[slot] = false
            guard length[slot] > 0, let outcome = worker.endBatch(slot) else { return }
            while length[slot] > 0 { complete(slot, outcome) }
        }

        /// Sends every connection's ops begun in this pass (pipelining).
        func sendBatches() {
            for slot in unsent { sendBatch(slot) }
            unsent.removeAll(keepingCapacity: true)
            filling = nil
        }

        while true {
            let stopping = context.stop.isRaised
            var now = MonotonicClock.now()
            // Start every due op while a connection can take it.
            while !stopping {
                if pending == nil { takeNext() }
                guard let next = pending, next.intended <= now else { break }
                guard let slot = freeSlot() else { break }
                pending = nil
                if now > next.intended &+ dropAfter {
                    worker.recorder.recordDropped(operation: next.operation)
                    if length[slot] == 0 { idle.append(slot) }
                    continue
                }
                guard let prepared = worker.request(of: next.k, intended: next.intended,
                    lateAfter: lateAfter, worker: worker.id + slot)
                else {
                    if length[slot] == 0 { idle.append(slot) }
                    continue
                }
                let (operation, request) = prepared
                if length[slot] > 0 { worker.recorder.recordPipelined() }
                let start = MonotonicClock.now()
                queue[slot * depth + (head[slot] + length[slot]) % depth] = InFlight(
                    operation: operation, row: request.row, intended: next.intended, start: start)
                length[slot] += 1
                busy += 1
                let storeOperation = context.operations[operation].operation
                if depth > 1, !isUnsent[slot] {
                    isUnsent[slot] = true
                    unsent.append(slot)
                }
                if let outcome = worker.begin(slot, storeOperation, request) {
                    if length[slot] == 1 {
                        complete(slot, outcome)
                    } else {
                        // Ended at once behind outstanding ops: those are the connection's to finish (`poll`); this
                        // one is recorded now, out of its queue place, as the newest.
                        let last = slot * depth + (head[slot] + length[slot] - 1) % depth
                        let op = queue[last]!
                        queue[last] = nil
                        length[slot] -= 1
                        finish(op, slot, outcome)
                        arm(slot)
                    }
                } else {
                    arm(slot)
                }
                now = MonotonicClock.now()
            }
            if !unsent.isEmpty { sendBatches() }
            // Abandon connections whose oldest op is past the client timeout.
            var earliestTimeout = UInt64.max
            if busy > 0 {
                for slot in 0..<count where length[slot] > 0 {
                    let op = queue[slot * depth + head[slot]]!
                    if now &- op.start >= timeout {
                        abandonAll(slot)
                    } else {
                        earliestTimeout = min(earliestTimeout, op.start &+ timeout)
                    }
                }
            }
            if busy == 0 && (stopping || (exhausted && pending == nil)) { return }
            // Wait for a reply, the next op's time (when a connection can take it), a timeout, or 50 ms (stop).
            var until = now &+ 50_000_000
            if let next = pending, !stopping, !idle.isEmpty || (depth > 1 && busy < count * depth) {
                until = min(until, next.intended &+ batchWindow)
            }
            until = min(until, earliestTimeout)
            let wait = until > now ? Int64(until - now) : 0
            let ready = readySlots.withUnsafeMutableBufferPointer {
                kiln_epoll_wait_slots(epoll, $0.baseAddress, Int32($0.count), wait)
            }
            guard ready > 0 else { continue }
            for index in 0..<Int(ready) {
                let slot = Int(readySlots[index])
                guard slot < count else { continue }
                guard length[slot] > 0 else {
                    // Readable with no op in flight (the server ended an idle connection, or a reply came after its
                    // op was abandoned): stop watching it until its next op, else level-triggered epoll would spin.
                    let descriptor = worker.multiplexedDescriptor(slot)
                    if descriptor >= 0 { _ = kiln_epoll_unregister(epoll, descriptor) }
                    registrations.forget(slot)
                    continue
                }
                // Every reply that is complete; the rest stays registered (level-triggered, it wakes the loop again
                // when more of a reply is readable).
                while length[slot] > 0, let outcome = worker.poll(slot) { complete(slot, outcome) }
            }
        }
    }
}

/// Which descriptor each slot's connection is registered under in the loop's epoll set (level-triggered, kept
/// across ops). A closed descriptor leaves epoll by itself and its number may come back as a new connection's, so
/// a registration is trusted only while the slot's ops end `.ok` (a connection is closed or replaced only after an
/// op that did not: an error, a timeout, a failed connect); after any other outcome the slot registers again
/// (add, or update when the file is still registered). Not thread-safe: owned by one loop.
struct EpollRegistrations {
    private var descriptors: [Int32]

    init(count: Int) { descriptors = Array(repeating: -1, count: count) }

    /// Whether `slot` must (re-)register before waiting on `descriptor`.
    func needsRegistration(_ slot: Int, _ descriptor: Int32) -> Bool { descriptors[slot] != descriptor }

    mutating func registered(_ slot: Int, _ descriptor: Int32) { descriptors[slot] = descriptor }

    /// An op of `slot` ended: a registration survives only an `.ok` outcome.
    mutating func opEnded(_ slot: Int, ok: Bool) { if !ok { descriptors[slot] = -1 } }

    /// `slot`'s descriptor was removed from epoll (or may have been).
    mutating func forget(_ slot: Int) { descriptors[slot] = -1 }
}
