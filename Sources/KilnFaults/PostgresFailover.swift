import Foundation
import KilnCore
import KilnStack

#if canImport(Glibc)
    import Glibc
#endif

/// PostgreSQL failover: fence the primary, promote the streaming replica, point the `PrimaryDirectory` at it.
///
/// Never two writable primaries: the old primary is stopped (or crashed) and gets `standby.signal` before the
/// replica is promoted, so even a restart of its data directory comes up read-only. `start` returns once the new
/// primary accepted a write; `failoverTime` is the time from the fence to that write (the drill's server-side RTO).
///
/// Heal (`stop`): `.leaveFenced` ends the drill with one primary (the promoted replica) and the old one stopped and
/// fenced — `kiln stack down && kiln stack up` rebuilds the stack file's topology from scratch; `.rebuildAsReplica`
/// replaces the old primary's data with a `pg_basebackup` of the new primary and starts it on its old address as
/// the new primary's streaming replica (roles stay swapped; the directory keeps pointing at the new primary).
///
/// Replication (`setup`): `.synchronous` sets `synchronous_standby_names = '*'` on the primary (commits wait for
/// the standby's flush: RPO 0) and waits until the standby reports `sync`; `.asynchronous` resets it. After the
/// promotion the new primary has no standby, so it is reset there (writes would block); a rebuild in sync mode sets
/// it again once the rebuilt standby streams.
///
/// Not thread-safe: driven by one caller (`FaultDriver`), blocking (pg_ctl, libpq).
public final class PostgresFailover: Fault {
    public enum Fence: String, Sendable {
        /// `pg_ctl stop -m fast`: a switchover; the old primary sends all its WAL first.
        case stop
        /// SIGKILL of the postmaster and its children: a crash; WAL not yet sent is lost (async RPO).
        case kill
    }

    public enum Replication: String, Sendable {
        case asynchronous
        case synchronous
    }

    public enum Heal: String, Sendable {
        case leaveFenced
        case rebuildAsReplica
    }

    public let name: String
    public var kind: String { RecordedFaultKind.pgFailover.recorded }
    public var target: String { "\(primary.name) (\(primary.endpoint)) -> \(replica.name) (\(replica.endpoint))" }
    public let primary: PostgresNode
    public let replica: PostgresNode
    public let fenceMode: Fence
    public let replication: Replication
    public let heal: Heal
    public let directory: PrimaryDirectory?
    /// The directory entry this fault moves.
    public let service: String
    public let timeout: Duration
    /// Replication lag before the fence: the primary's walsenders are SIGSTOPped this long first (commits go on;
    /// under async replication they are acknowledged but not sent; under sync they wait). Zero: no lag.
    public let lag: Duration

    /// Fence start → the new primary accepted a write. Set by a successful `start`.
    public private(set) var failoverTime: Duration?
    /// `pg_ctl promote` start → the new primary accepted a write.
    public private(set) var promoteTime: Duration?
    private var setupNote = ""
    private var fenced = false
    private var promoted = false
    private var changedSynchronous = false

    public init(
        name: String? = nil, primary: PostgresNode, replica: PostgresNode, fence: Fence = .stop,
        replication: Replication = .asynchronous, heal: Heal = .leaveFenced, directory: PrimaryDirectory? = nil,
        service: String = "postgres", timeout: Duration = .seconds(60), lag: Duration = .zero
    ) {
        self.lag = lag
        self.name = name ?? "pg-failover-\(primary.name)"
        self.primary = primary
        self.replica = replica
        self.fenceMode = fence
        self.replication = replication
        self.heal = heal
        self.directory = directory
        self.service = service
        self.timeout = timeout
    }

    /// Checks the topology (a primary, a standby streaming from it) and configures the replication mode.
    public func setup() throws {
        guard try !primary.isInRecovery() else { throw ProcessFaultError("\(primary.name) is not a primary") }
        guard try replica.isInRecovery() else { throw ProcessFaultError("\(replica.name) is not a standby") }
        switch replication {
        case .synchronous:
            try primary.setSynchronousStandbys("*")
            changedSynchronous = true
            var seen = "no answer"
            let synced = Self.poll(within: .seconds(30)) { () -> Bool? in
                do {
                    let standbys = try primary.standbys()
                    seen =
                        standbys.isEmpty
                        ? "no standby connected"
                        : standbys.map { "\($0.state)/\($0.syncState)" }
                            .joined(separator: ",")
                    return standbys.contains { $0.syncState == "sync" } ? true : nil
                } catch {
                    seen = "\(error)"
                    return nil
                }
            }
            guard synced == true else {
                throw ProcessFaultError("no standby of \(primary.name) became sync in 30 s (last seen: \(seen))")
            }
            setupNote = "synchronous replication (standby sync_state=sync)"
        case .asynchronous:
            try primary.setSynchronousStandbys(nil)
            setupNote = "asynchronous replication"
        }
    }

    public func start() throws {
        if lag > .zero {
            let senders = primary.children(titled: "walsender")
            guard !senders.isEmpty else { throw ProcessFaultError("\(primary.name) has no walsender to delay") }
            for sender in senders { kill(sender, SIGSTOP) }
            Thread.sleep(forTimeInterval: lag.seconds)
            // A graceful stop waits for its walsenders; a crash kills them stopped.
            if fenceMode == .stop { for sender in senders { kill(sender, SIGCONT) } }
        }
        let began = ContinuousClock.now
        switch fenceMode {
        case .stop: try primary.stopGracefully()
        case .kill:
            guard primary.crash() else { throw ProcessFaultError("\(primary.name) survived SIGKILL for 5 s") }
        }
        try primary.fence()
        fenced = true
        let promoting = ContinuousClock.now
        try replica.promote(timeout: timeout)
        promoted = true
        // A promoted standby keeps no standby of its own: a sync setting it inherited would block every commit.
        try replica.setSynchronousStandbys(nil)
        let key = "\(name)-promoted-\(UInt32.random(in: 0...UInt32.max))"
        let wrote = Self.poll(within: timeout) { (try? replica.probeWrite(key)) != nil ? true : nil }
        guard wrote == true else { throw ProcessFaultError("\(replica.name) accepted no write within \(timeout)") }
        failoverTime = began.duration(to: .now)
        promoteTime = promoting.duration(to: .now)
        directory?.promote(service, to: replica.endpoint)
    }

    public func stop() throws {
        guard heal == .rebuildAsReplica else { return }
        try primary.rebuild(asReplicaOf: replica, timeout: timeout)
        if replication == .synchronous {
            try replica.setSynchronousStandbys("*")
        }
    }

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        let newPrimary = describeWritable(replica)
        switch phase {
        case .active:
            let old = oldPrimaryDown()
            let timing = failoverTime.map {
                "failover \($0.milliseconds) ms (promote \(promoteTime?.milliseconds ?? 0) ms)"
            }
            let pointed = directory.map {
                $0.primary(of: service) == replica.endpoint ? "directory -> new" : "directory stale"
            }
            let text = [setupNote, old.text, newPrimary.text, timing, pointed].compactMap { $0 }.joined(separator: "; ")
            let directoryOK: Verification = directory == nil || pointed == "directory -> new" ? .yes : .no
            return FaultEvidence(old.verified.and(newPrimary.verified).and(directoryOK), text)
        case .healed:
            switch heal {
            case .leaveFenced:
                let old = oldPrimaryDown()
                return FaultEvidence(
                    old.verified.and(newPrimary.verified),
                    "drill ends with one primary: \(newPrimary.text); \(old.text)")
            case .rebuildAsReplica:
                let rebuilt = rebuiltStandby()
                return FaultEvidence(newPrimary.verified.and(rebuilt.verified), "\(newPrimary.text); \(rebuilt.text)")
            }
        }
    }

    /// Before a promotion: unfences and restarts the old primary (nothing changed hands). After one: the promoted
    /// replica stays primary — a promotion cannot be undone — and the old primary stays fenced.
    public func teardown() {
        if fenced && !promoted {
            try? primary.unfence()
            if primary.postmasterPID() == nil { try? primary.start(timeout: timeout) }
            fenced = false
        }
        if changedSynchronous && !promoted {
            try? primary.setSynchronousStandbys(nil)
            changedSynchronous = false
        }
    }

    // MARK: evidence

    private func oldPrimaryDown() -> FaultEvidence {
        let probe = TCPProbe.connect(to: primary.endpoint, timeout: .milliseconds(300))
        if probe.answered { return .no("old primary \(primary.endpoint) still accepts connections") }
        if let pid = primary.postmasterPID() { return .no("old primary's postmaster \(pid) still runs") }
        guard primary.isFenced else { return .no("old primary \(primary.endpoint) is down but not fenced") }
        return .yes("old primary \(primary.endpoint) refuses connections, fenced (standby.signal)")
    }

    private func describeWritable(_ node: PostgresNode) -> FaultEvidence {
        do {
            guard try !node.isInRecovery() else { return .no("\(node.endpoint) is still in recovery") }
            try node.probeWrite("\(name)-verify")
            return .yes("new primary \(node.endpoint): pg_is_in_recovery()=false, accepted a write")
        } catch {
            return .no("new primary \(node.endpoint): \(error)")
        }
    }

    private func rebuiltStandby() -> FaultEvidence {
        do {
            guard try primary.isInRecovery() else { return .no("rebuilt \(primary.endpoint) is not in recovery") }
            let key = "\(name)-replicated-\(UInt32.random(in: 0...UInt32.max))"
            try replica.probeWrite(key)
            let seen = Self.poll(within: .seconds(10)) { (try? primary.probeHas(key)) == true ? true : nil }
            guard seen == true else { return .no("a write on \(replica.endpoint) did not reach \(primary.endpoint)") }
            let states = try replica.standbys().map { "\($0.state)/\($0.syncState)" }.joined(separator: ",")
            return .yes(
                "old primary \(primary.endpoint) rebuilt as standby (pg_stat_replication \(states)), replicates")
        } catch {
            return .no("rebuilt standby \(primary.endpoint): \(error)")
        }
    }

    /// Calls `body` every 50 ms until it returns non-nil or `limit` passes.
    static func poll<T>(within limit: Duration, _ body: () -> T?) -> T? {
        let deadline = ContinuousClock.now + limit
        while true {
            if let value = body() { return value }
            if ContinuousClock.now >= deadline { return nil }
            usleep(50_000)
        }
    }
}

extension PostgresFailover {
    /// A failover of the embedded stack's PostgreSQL pair, in its current roles: whichever of `postgres-primary`
    /// and `postgres-replica` answers `pg_is_in_recovery() = false` is the primary (after a rebuild drill the two
    /// have swapped). Throws unless exactly one is a primary and the other a standby. `name`: the scenario's fault
    /// name (default `pg-failover-<primary>`).
    public static func embedded(
        _ stack: EmbeddedStack, name: String? = nil, fence: Fence = .stop, replication: Replication = .asynchronous,
        heal: Heal = .rebuildAsReplica, directory: PrimaryDirectory? = nil, lag: Duration = .zero
    ) throws -> PostgresFailover {
        let first = try PostgresNode.embedded("postgres-primary", of: stack)
        let second = try PostgresNode.embedded("postgres-replica", of: stack)
        let roles = [first, second].map { node in (node, try? node.isInRecovery()) }
        guard let primary = roles.first(where: { $0.1 == false })?.0,
            let replica = roles.first(where: { $0.1 == true })?.0
        else {
            let seen = roles.map { "\($0.0.name): \($0.1.map { $0 ? "standby" : "primary" } ?? "no answer")" }
            throw ProcessFaultError("the embedded PostgreSQL pair is not one primary + one standby (\(seen))")
        }
        return PostgresFailover(
            name: name, primary: primary, replica: replica, fence: fence, replication: replication, heal: heal,
            directory: directory, lag: lag)
    }
}
