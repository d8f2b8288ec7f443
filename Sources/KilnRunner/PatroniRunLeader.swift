import Foundation
import KilnCore
import KilnHTTP
import KilnScenario
import KilnStack
import Logging

/// How `kiln run` and `kiln check` find the leader of a `kind: patroni` stack: the same REST lookup the drills use
/// (`PatroniLeaderWatch`: `GET /leader` on every node answers 200 only on the lock holder), never the stack file's
/// first node, which a switchover or failover may have made a replica.
///
/// Guarantees: `directory` returns an entry only when exactly one node claims the lock in one poll round (zero or two
/// claims are refused with the nodes that answered, exit 69). `startWatch` seeds the directory from such a poll and
/// then keeps polling on its own thread; the PostgreSQL clients read the directory on each operation and reconnect to
/// a new leader without a restart. The caller owns the watch and stops it (`stop()` joins the thread).
public enum PatroniRunLeader {
    /// One poll round: a directory whose `postgres` entry is the current leader.
    public static func directory(_ spec: PatroniStackSpec, logger: Logger) throws(Failure) -> PrimaryDirectory {
        let directory = PrimaryDirectory([:])
        let watch = makeWatch(spec, directory: directory)
        var clients: [HTTPClient?] = Array(repeating: nil, count: spec.nodes.count)
        // Right after `stack up` or a failover the lock may be free for a few seconds: ask for up to 10 s.
        let deadline = ContinuousClock.now + .seconds(10)
        var leaders = watch.poll(clients: &clients)
        while leaders.count != 1, ContinuousClock.now < deadline {
            usleep(250_000)
            leaders = watch.poll(clients: &clients)
        }
        guard leaders.count == 1 else {
            let rest = spec.nodes.indices.map { spec.restEndpoint(ofNode: $0).description }.joined(separator: ", ")
            throw Failure(
                code: .stackUnavailable,
                message: "patroni stack \(spec.name): \(leaders.isEmpty ? "no node" : "\(leaders.count) nodes") answered "
                    + "200 to GET /leader within 10 s (REST: \(rest)); is it up? (kiln stack status --stack \(spec.source))")
        }
        logger.info("patroni: leader \(PatroniStackSpec.nodeHostName(leaders[0])) \(spec.nodes[leaders[0]]) (REST /leader)")
        return directory
    }

    /// Seeds a directory with the current leader and starts the watch that keeps it there; the caller stops it.
    public static func startWatch(
        _ spec: PatroniStackSpec, logger: Logger
    ) throws(Failure) -> (directory: PrimaryDirectory, watch: PatroniLeaderWatch) {
        let directory = try directory(spec, logger: logger)
        let watch = makeWatch(spec, directory: directory)
        watch.start()
        return (directory, watch)
    }

    static func makeWatch(_ spec: PatroniStackSpec, directory: PrimaryDirectory) -> PatroniLeaderWatch {
        PatroniLeaderWatch(
            restEndpoints: spec.nodes.indices.map { spec.restEndpoint(ofNode: $0) }, nodes: spec.nodes,
            directory: directory)
    }

    /// `kiln run`'s fault schedule does not reach a Patroni stack's members (no embedded servers, no proxies): a
    /// scenario with `faults:` on it is refused before anything starts, pointing at `kiln patroni drill`.
    static func refuseFaults(_ scenario: LoadScenario) throws(Failure) {
        guard scenario.stack.patroni != nil, let spec = scenario.faults, let first = spec.entries.first else { return }
        throw Failure(
            code: .invalidInput,
            message: "\(first.source): faults: stack \(scenario.stack.name) is a Patroni stack; `kiln run` has no fault "
                + "of its members (kind \(first.kind.rawValue)); Patroni faults run with `kiln patroni drill "
                + "Scenarios/drills/patroni-*.yaml`")
    }
}
