import Synchronization

/// Where each replicated service's current primary is, as far as Kiln knows: the failover faults write it when they
/// promote a replica, and store clients read it each time they (re)connect, so their workers follow a failover
/// without a restart. Services are named as in stack files (`postgres`, `redis`).
///
/// Threading: every method is safe from any thread (one mutex; reads and writes are a dictionary access, never
/// blocking I/O). Each change bumps the service's `generation`, so a client can tell that the primary moved since
/// it connected even when it moved back to the same address.
public final class PrimaryDirectory: Sendable {
    public struct Entry: Sendable, Equatable {
        public var endpoint: HostPort
        /// 0 for the initial entry, +1 per `promote`.
        public var generation: Int
    }

    private let entries: Mutex<[String: Entry]>

    /// Starts with `initial` (e.g. the stack file's primaries) at generation 0.
    public init(_ initial: [String: HostPort] = [:]) {
        entries = Mutex(initial.mapValues { Entry(endpoint: $0, generation: 0) })
    }

    /// The current primary of `service`, nil when none was ever set (the caller falls back to its configuration).
    public func primary(of service: String) -> HostPort? {
        entries.withLock { $0[service]?.endpoint }
    }

    public func entry(of service: String) -> Entry? {
        entries.withLock { $0[service] }
    }

    /// Records that `endpoint` is now the primary of `service`; returns the new generation.
    @discardableResult
    public func promote(_ service: String, to endpoint: HostPort) -> Int {
        entries.withLock { table in
            let generation = (table[service]?.generation ?? -1) + 1
            table[service] = Entry(endpoint: endpoint, generation: generation)
            return generation
        }
    }
}
