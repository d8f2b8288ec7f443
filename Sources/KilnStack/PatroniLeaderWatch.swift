import Foundation
import KilnCore
import KilnHTTP
import Synchronization

/// Finds a Patroni cluster's leader the way a client does — `GET /leader` on every node's REST API, which answers
/// 200 only on the node holding the leader lock — and keeps `PrimaryDirectory`'s `postgres` entry on it, so every
/// client that reads the directory on (re)connect (PostgresClient with `primaries:`, the drill writers) follows a
/// failover without a restart.
///
/// Guarantees: the directory moves only when exactly one node answers 200 and it differs from the entry (no answer
/// or two answers leave it where it was; both are recorded). Every poll round is recorded with its time, so a drill
/// can say when a client could first see a new leader. Threading: one dedicated OS thread (blocking HTTP calls with
/// `requestTimeout`); `stop()` joins it. The observations are read under a mutex.
public final class PatroniLeaderWatch: Sendable {
    public struct Observation: Sendable, Equatable {
        /// Monotonic nanoseconds (DispatchTime.uptimeNanoseconds) when the round ended.
        public var atNanos: UInt64
        /// Nodes (by index) whose `/leader` answered 200 in that round.
        public var leaders: [Int]
    }

    private let restEndpoints: [HostPort]
    private let nodes: [HostPort]
    private let directory: PrimaryDirectory
    private let interval: Duration
    private let requestTimeout: Double
    private let state = Mutex<(running: Bool, observations: [Observation])>((true, []))
    private let finished = Mutex<Bool>(true)

    /// - Parameters: `restEndpoints[i]` is node `i`'s REST API, `nodes[i]` its PostgreSQL endpoint.
    public init(
        restEndpoints: [HostPort], nodes: [HostPort], directory: PrimaryDirectory, interval: Duration = .milliseconds(100),
        requestTimeout: Double = 0.3
    ) {
        self.restEndpoints = restEndpoints
        self.nodes = nodes
        self.directory = directory
        self.interval = interval
        self.requestTimeout = requestTimeout
    }

    /// One round now, on the calling thread: the nodes answering 200 to `GET /leader`.
    public func poll(clients: inout [HTTPClient?]) -> [Int] {
        var leaders: [Int] = []
        for (index, endpoint) in restEndpoints.enumerated() {
            if clients[index] == nil {
                clients[index] = try? HTTPClient(timeoutSeconds: requestTimeout, connectTimeoutSeconds: requestTimeout)
            }
            guard let client = clients[index] else { continue }
            if (try? client.get("http://\(endpoint)/leader"))?.status == 200 { leaders.append(index) }
        }
        if leaders.count == 1, directory.primary(of: "postgres") != nodes[leaders[0]] {
            directory.promote("postgres", to: nodes[leaders[0]])
        }
        let now = DispatchTime.now().uptimeNanoseconds
        state.withLock { $0.observations.append(Observation(atNanos: now, leaders: leaders)) }
        return leaders
    }

    /// Starts polling on a thread of its own until `stop()`.
    public func start() {
        finished.withLock { $0 = false }
        let thread = Thread { [self] in
            var clients: [HTTPClient?] = Array(repeating: nil, count: restEndpoints.count)
            while state.withLock({ $0.running }) {
                let began = ContinuousClock.now
                _ = poll(clients: &clients)
                let rest = interval - began.duration(to: .now)
                if rest > .zero { Thread.sleep(forTimeInterval: Double(rest.components.attoseconds) / 1e18 + Double(rest.components.seconds)) }
            }
            finished.withLock { $0 = true }
        }
        thread.name = "kiln-patroni-leader-watch"
        thread.start()
    }

    /// Stops polling and waits for the thread to end.
    public func stop() {
        state.withLock { $0.running = false }
        while !finished.withLock({ $0 }) { usleep(20_000) }
    }

    public var observations: [Observation] { state.withLock { $0.observations } }
}
