import Foundation
import KilnCore

/// An HA drill against a Patroni stack (`Scenarios/drills/patroni-*.yaml`): writers insert numbered transactions
/// through the current leader at a fixed rate while one fault acts; the drill is judged by its check (acknowledged
/// writes lost, by txn_id, and whether two nodes acknowledged writes in overlapping windows), never by its steps.
/// Parsed strictly: unknown keys and bad values name file:line:column and the field.
public struct PatroniDrillSpec: Sendable {
    /// The closed set of faults a Patroni drill runs.
    public enum FaultKind: String, Sendable, CaseIterable {
        /// SIGKILL of every process of the leader's host (Patroni and PostgreSQL); healed by starting Patroni again.
        case killLeader = "kill-leader"
        /// SIGSTOP of every process of the leader's host for `duration` (longer than the TTL), then SIGCONT.
        case pauseLeader = "pause-leader"
        /// The leader's host loses every etcd member (both directions); its clients and replicas still reach it.
        case partitionLeaderFromEtcd = "partition-leader-etcd"
        /// The leader and client group `clients-a` on one side; the replicas, etcd and `clients-b` on the other.
        case partitionLeader = "partition-leader"
        /// SIGKILL of one etcd member (not the Raft leader's host of the leader) for `duration`, then restart.
        case killEtcdMember = "kill-etcd-member"
        /// SIGKILL of a majority of etcd members for `duration`, then restart.
        case loseEtcdQuorum = "lose-etcd-quorum"
        /// A planned `POST /switchover` to a replica.
        case switchover
    }

    public var name: String
    /// The Patroni stack file, resolved against the drill file's directory.
    public var stack: URL
    public var synchronousMode: Bool
    public var writers: Int
    /// Writes per second over all writers.
    public var rate: Int
    public var duration: Duration
    public var fault: FaultKind
    public var faultAt: Duration
    public var faultDuration: Duration
    /// After the load, how long to wait for one leader with every node streaming before the check reads.
    public var settle: Duration
    public var source: String

    public static func load(contentsOf url: URL) throws(SpecError) -> PatroniDrillSpec {
        try parse(YAMLFields.document(contentsOf: url), directory: url.deletingLastPathComponent())
    }

    public static func parse(_ text: String, file: String, directory: URL) throws(SpecError) -> PatroniDrillSpec {
        try parse(YAMLFields.document(text, file: file), directory: directory)
    }

    public static func parse(_ fields: YAMLFields, directory: URL) throws(SpecError) -> PatroniDrillSpec {
        let name = try fields.string("name")
        let stackText = try fields.string("stack")
        let stack = stackText.hasPrefix("/")
            ? URL(fileURLWithPath: stackText) : directory.appendingPathComponent(stackText).standardizedFileURL
        guard PatroniStackSpec.declaresPatroni(stack) else {
            throw fields.error("stack", "\(stack.path) is not a `kind: patroni` stack file (or cannot be read)")
        }
        let synchronousMode = try fields.bool("synchronous_mode", default: false)
        let writers = try fields.int("writers", default: 4, range: 1...64)
        let rate = try fields.int("rate", default: 200, range: 1...20_000)
        let duration = try fields.duration("duration", default: .seconds(60))
        guard duration >= .seconds(5), duration <= .seconds(3600) else {
            throw fields.error("duration", "between 5 s and 1 h, found \(duration)")
        }
        let settle = try fields.duration("settle", default: .seconds(90))
        guard settle >= .seconds(1), settle <= .seconds(3600) else {
            throw fields.error("settle", "between 1 s and 1 h, found \(settle)")
        }
        let faultFields = try fields.mapping("fault")
        let kind: FaultKind = try faultFields.enumeration("kind")
        let at = try faultFields.duration("at")
        let faultDuration = try faultFields.duration("duration", default: .seconds(30))
        guard at >= .zero, at < duration else {
            throw faultFields.error("at", "must start within the load (0 ≤ at < \(duration)), found \(at)")
        }
        guard faultDuration > .zero, faultDuration <= .seconds(3600) else {
            throw faultFields.error("duration", "between 0 and 1 h, found \(faultDuration)")
        }
        try faultFields.finish()
        try fields.finish()
        return PatroniDrillSpec(
            name: name, stack: stack, synchronousMode: synchronousMode, writers: writers, rate: rate,
            duration: duration, fault: kind, faultAt: at, faultDuration: faultDuration, settle: settle,
            source: fields.file)
    }
}
