/// Told of every write (or bulk op) the load acknowledged `ok`, on the worker's thread right after the ack — the
/// black-box staleness probes sample the entry's writes from it. Called after the op's end time is taken, so it adds
/// nothing to the op's measured latency, but it delays that worker's next op: an implementation must return within
/// microseconds and never block on a store. Thread-safe (called from every worker at once).
public protocol AckTap: Sendable {
    /// - Parameters:
    ///   - operation: `store.op`, e.g. `kafka.produce` or `postgres.bulk`.
    ///   - rows: the dataset rows the op wrote (one for a write, the batch for a bulk op).
    ///   - ackNanos: `MonotonicClock.now()` when the ack arrived.
    func acknowledged(operation: String, rows: Range<Int64>, ackNanos: UInt64)
}
