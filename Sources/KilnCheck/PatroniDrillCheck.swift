import Foundation
import KilnCore

/// The check of a Patroni HA drill, from the history and what the final leader holds — what clients saw, never the
/// state Kiln set:
/// - **lost**: writes acknowledged `ok` whose txn_id the final leader does not hold (RPO in writes);
/// - **phantom**: txn_ids the leader holds whose write ended `fail` (definitely not applied) — or that were never sent;
/// - **split-brain**: two nodes acknowledged writes in overlapping real-time windows (`DualPrimaryAnalysis`, the
///   same rule as `dual-primary.<store>` of `kiln check`);
/// - timings from the clients' view: time to a new leader (first REST round naming one other leader), the longest
///   span without an acknowledged write that touches the fault (unavailability), and RTO (fault start → the first
///   acknowledgement that ends that span; 0 when that span is shorter than `outageThresholdMs`).
/// `info` writes (outcome unknown) may be present or absent: never an anomaly. Valid iff nothing is lost, nothing is
/// phantom and no two nodes overlap. Pure: no I/O.
public enum PatroniDrillCheck {
    public enum Outcome: String, Sendable, Codable { case ok, fail, info }

    /// One write of the history. Times are monotonic nanoseconds of one clock.
    public struct Write: Sendable, Equatable, Codable {
        public var txnID: Int64
        public var worker: Int
        public var outcome: Outcome
        /// The node (host:port) the write went to; nil when no connection was open.
        public var server: String?
        public var start: UInt64
        public var end: UInt64

        public init(txnID: Int64, worker: Int, outcome: Outcome, server: String?, start: UInt64, end: UInt64) {
            self.txnID = txnID
            self.worker = worker
            self.outcome = outcome
            self.server = server
            self.start = start
            self.end = end
        }
    }

    public struct Result: Sendable, Codable {
        public var valid: Bool
        public var acknowledged: Int
        public var failed: Int
        public var unknown: Int
        /// Acknowledged txn_ids the final leader lacks, ascending.
        public var lost: [Int64]
        public var phantom: [Int64]
        public var unknownPresent: Int
        public var splitBrain: [DualPrimaryWindow]
        public var timeToNewLeaderMs: Double?
        public var unavailabilityMs: Double
        public var rtoMs: Double?
        /// Nodes that acknowledged writes, in order of their first acknowledgement.
        public var ackingNodes: [String]
    }

    /// - Parameters:
    ///   - present: txn_ids the final leader holds.
    ///   - faultStart / loadEnd: monotonic nanoseconds.
    ///   - leaderRounds: the REST watch's rounds (time, leaders); `initialLeader` the leader before the fault.
    /// A span without acknowledgements shorter than this is jitter (a slow commit, a reconnect), not an outage:
    /// RTO is then 0.
    public static let outageThresholdMs = 1000.0

    public static func check(
        writes: [Write], present: Set<Int64>, faultStart: UInt64, loadEnd: UInt64,
        leaderRounds: [(at: UInt64, leaders: [String])], initialLeader: String
    ) -> Result {
        let sent = Set(writes.map(\.txnID))
        var lost: [Int64] = []
        var phantom: [Int64] = []
        var unknownPresent = 0
        for write in writes {
            switch write.outcome {
            case .ok: if !present.contains(write.txnID) { lost.append(write.txnID) }
            case .fail: if present.contains(write.txnID) { phantom.append(write.txnID) }
            case .info: if present.contains(write.txnID) { unknownPresent += 1 }
            }
        }
        phantom += present.filter { !sent.contains($0) }
        let acks = writes.filter { $0.outcome == .ok && $0.server != nil }
        let windows = DualPrimaryAnalysis.windows(
            acks.map { DualPrimaryAnalysis.Ack(store: "postgres", server: $0.server!, start: $0.start, end: $0.end) })

        let newLeaderAt = leaderRounds.first { $0.at >= faultStart && $0.leaders.count == 1 && $0.leaders[0] != initialLeader }?.at
        // The longest span without an acknowledgement that touches [faultStart, loadEnd].
        let ackTimes = acks.map(\.end).sorted()
        var longest: (from: UInt64, to: UInt64?) = (faultStart, nil)
        var previous = ackTimes.last { $0 <= faultStart } ?? faultStart
        for time in ackTimes where time > faultStart {
            if longest.to == nil || time - previous > longest.to! - longest.from {
                longest = (previous, time)
            }
            previous = time
        }
        var unavailability = longest.to.map { Double($0 - longest.from) / 1e6 } ?? 0
        var rto = longest.to.map { Double($0 > faultStart ? $0 - faultStart : 0) / 1e6 }
        if loadEnd > previous, Double(loadEnd - previous) / 1e6 > unavailability {
            // No acknowledgement after the last one until the load ended: the outage outlasted the load.
            unavailability = Double(loadEnd - previous) / 1e6
            rto = nil
        }
        if unavailability < outageThresholdMs {
            // Never longer without an acknowledgement than ordinary jitter: no outage to recover from.
            rto = 0
        }
        var nodes: [String] = []
        for ack in acks.sorted(by: { $0.end < $1.end }) where !nodes.contains(ack.server!) { nodes.append(ack.server!) }
        return Result(
            valid: lost.isEmpty && phantom.isEmpty && windows.isEmpty,
            acknowledged: acks.count + writes.filter { $0.outcome == .ok && $0.server == nil }.count,
            failed: writes.filter { $0.outcome == .fail }.count, unknown: writes.filter { $0.outcome == .info }.count,
            lost: lost.sorted(), phantom: phantom.sorted(), unknownPresent: unknownPresent, splitBrain: windows,
            timeToNewLeaderMs: newLeaderAt.map { Double($0 - faultStart) / 1e6 }, unavailabilityMs: unavailability,
            rtoMs: rto, ackingNodes: nodes)
    }
}
