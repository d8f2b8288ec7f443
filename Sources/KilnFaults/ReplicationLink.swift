import Foundation
import KilnCore

/// The streaming-replication link from a PostgreSQL primary to its standby, as evidence for partitions of that link:
/// whether WAL the primary writes now reaches the standby. Every call blocks (libpq, sleeps) — fault threads only.
public struct ReplicationLink: Sendable {
    public var primary: PostgresNode
    public var standby: PostgresNode
    /// How long a write may take to reach a healthy standby before the link counts as cut.
    public var cutAfter: Duration
    /// How long a healed link may take to deliver again (a TCP connection that lost packets for a while retransmits
    /// on an exponential back-off, so the first delivery after the heal can take seconds).
    public var healWithin: Duration

    public init(primary: PostgresNode, standby: PostgresNode, cutAfter: Duration = .milliseconds(1500),
        healWithin: Duration = .seconds(30)
    ) {
        self.primary = primary
        self.standby = standby
        self.cutAfter = cutAfter
        self.healWithin = healWithin
    }

    /// The local port of the standby's replication connection (`pg_stat_replication.client_port`); nil when no
    /// standby streams from the primary.
    public func standbyClientPort() throws -> Int? {
        let connection = try primary.connect()
        defer { connection.close() }
        let result = try connection.execute(
            "SELECT client_port FROM pg_stat_replication WHERE state = 'streaming' ORDER BY backend_start DESC LIMIT 1")
        return result.rowCount == 0 ? nil : result.value(row: 0, column: 0).flatMap { Int($0) }
    }

    /// Commits a WAL record on the primary (a transactional logical message, so the commit flushes it; an xid alone
    /// writes no WAL) and returns the primary's flushed WAL position.
    func writeOnPrimary() throws -> String {
        let connection = try primary.connect()
        defer { connection.close() }
        try connection.execute("SET statement_timeout = 5000")
        _ = try connection.execute("SELECT pg_logical_emit_message(true, 'kiln', 'replication probe')")
        return try connection.execute("SELECT pg_current_wal_flush_lsn()::text").value(row: 0, column: 0) ?? "0/0"
    }

    /// Bytes of WAL up to `lsn` the standby has not received.
    func standbyBehind(_ lsn: String) throws -> Int64 {
        let connection = try standby.connect()
        defer { connection.close() }
        let result = try connection.execute(
            "SELECT pg_wal_lsn_diff($1::pg_lsn, coalesce(pg_last_wal_receive_lsn(), '0/0'::pg_lsn))::bigint", [lsn])
        return Int64(result.value(row: 0, column: 0) ?? "") ?? Int64.max
    }

    /// `.active`: a fresh write has not reached the standby after `cutAfter` (yes) or has (no). `.healed`: a fresh
    /// write reaches it within `healWithin` (yes) or not (no). A server that does not answer makes it `unknown`.
    public func evidence(_ phase: FaultPhase) -> FaultEvidence {
        do {
            switch phase {
            case .active:
                let lsn = try writeOnPrimary()
                Thread.sleep(forTimeInterval: cutAfter.seconds)
                let behind = try standbyBehind(lsn)
                return behind > 0
                    ? .yes("\(standby.name) stopped receiving: \(behind) bytes behind \(primary.name)'s \(lsn) after \(cutAfter)")
                    : .no("\(standby.name) still received \(primary.name)'s WAL up to \(lsn) within \(cutAfter)")
            case .healed:
                let started = ContinuousClock.now
                let lsn = try writeOnPrimary()
                var behind: Int64 = .max
                while ContinuousClock.now - started < healWithin {
                    behind = try standbyBehind(lsn)
                    if behind <= 0 {
                        let seconds = (ContinuousClock.now - started).seconds
                        return .yes("\(standby.name) received \(primary.name)'s WAL again (\(String(format: "%.1f", seconds)) s after the heal)")
                    }
                    Thread.sleep(forTimeInterval: 0.2)
                }
                return .no("\(standby.name) still \(behind) bytes behind \(primary.name)'s \(lsn) \(healWithin) after the heal")
            }
        } catch {
            return .unknown("cannot read the replication positions: \(error)")
        }
    }
}

/// Which direction of a PostgreSQL replication link a partition cuts (`shape:` of a `partition` fault).
public enum ReplicationCut: String, Sendable, CaseIterable {
    /// Both directions: the standby's packets to the primary (and its reconnects), and the primary's to the standby.
    case split = "split-replica"
    /// One way: only the standby's packets (feedback, acknowledgements, reconnects) are dropped.
    case toPrimary = "replica-to-primary"
    /// One way: only the primary's packets on the live replication connection are dropped.
    case fromPrimary = "primary-to-replica"
}

extension PartitionFault {
    /// A partition of `link`. The standby runs as the `postgres` user and Kiln as root, so an owner rule cuts the
    /// standby's packets (its reconnects too) and leaves Kiln's; the primary's packets to the standby are told apart
    /// by the standby's client port, read from `pg_stat_replication` here (a standby that reconnects from another port
    /// escapes a `primary-to-replica` cut; `split-replica` blocks its reconnect). Evidence: a connect as `postgres`
    /// times out while Kiln's connects (where the standby's direction is cut), and a write on the primary does not
    /// reach the standby while cut and reaches it again after the heal. Throws when no standby streams.
    public static func replication(
        _ cut: ReplicationCut, link: ReplicationLink, runID: String, name: String? = nil, osUser: String = "postgres"
    ) throws -> PartitionFault {
        let primary = link.primary.endpoint
        let toPrimary = PartitionShape.userToServer(user: osUser, server: primary)
        func fromPrimary() throws -> PartitionShape {
            guard let port = try link.standbyClientPort() else {
                throw ProcessFaultError("\(cut.rawValue): no standby streams from \(link.primary.name)")
            }
            return .serverToPort(server: primary, port: port)
        }
        let shape: PartitionShape
        var blocked: [PartitionProbe] = []
        switch cut {
        case .split:
            shape = .all([toPrimary, try fromPrimary()])
            blocked = [PartitionProbe(asUser: osUser, to: primary)]
        case .toPrimary:
            shape = toPrimary
            blocked = [PartitionProbe(asUser: osUser, to: primary)]
        case .fromPrimary:
            shape = try fromPrimary()
        }
        // With only the standby's packets dropped the primary still sends until the standby's unacknowledged window
        // is full, so a write may still arrive: the probe decides that cut, the WAL check its heal.
        let stopsWAL = cut != .toPrimary
        return try PartitionFault(
            name: name ?? "partition-\(cut.rawValue)", shape: shape, runID: runID,
            label: "\(link.primary.name) | \(link.standby.name)", blocked: blocked,
            control: [PartitionProbe(from: "127.0.0.99", to: primary)], probeTimeout: .seconds(1),
            effect: { phase in
                guard stopsWAL || phase == .healed else {
                    return .unknown("the primary may still send into the standby's window; the probe decides")
                }
                return link.evidence(phase)
            })
    }
}
