import Foundation
import KilnCore
import KilnFaults
import KilnStack
import Testing

/// Clock skew under libfaketime and partitions of the replication link, on private PostgreSQL pairs
/// (`PrivatePostgresPair`), never the shared stack. Each test removes its run's iptables rules in a defer.
@Suite("Clock skew and replication partitions (private PostgreSQL pairs)")
struct ClockAndReplicationFaultTests {
    @Test func clockSkewStepsTheServersWallClockAndStepsItBack() throws {
        let pair = try PrivatePostgresPair(faketime: true)
        defer { pair.shutdown() }
        let fault = try ClockSkewFault(node: pair.primary, offsetSeconds: 600)
        #expect(fault.target == "primary +600.00 s")
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        let skewed = try fault.measureOffset()
        #expect(abs(skewed - 600) < 1, "measured \(skewed) s")
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(record.note.contains("expected +600.00 s"))
        let after = try fault.measureOffset()
        #expect(abs(after) < 1, "measured \(after) s after the heal")
        #expect(pair.primary.clock?.offsetSeconds == 0)
        // Its monotonic clock did not move: the server kept serving (no timeout fired on the jump).
        #expect(try pair.primary.isInRecovery() == false)
    }

    @Test func clockSkewRefusesAServerNotStartedUnderFaketime() throws {
        let pair = try PrivatePostgresPair()
        defer { pair.shutdown() }
        var replica = pair.replica
        replica.clock = FaketimeClock(serverDirectory: pair.directory)
        try replica.clock?.set(offsetSeconds: 0)
        let record = FaultDriver(try ClockSkewFault(node: replica, offsetSeconds: -30)).run(for: .milliseconds(10))
        #expect(record.verified == .no)
        #expect(record.note.contains("does not run under libfaketime"), "\(record.note)")
        #expect(replica.clock?.offsetSeconds == 0, "a refused fault must not leave an offset behind")
    }

    @Test func replicationCutsStopTheWALAndHeal() throws {
        let pair = try PrivatePostgresPair()
        defer { pair.shutdown() }
        let link = ReplicationLink(primary: pair.primary, standby: pair.replica)
        for cut in ReplicationCut.allCases {
            let id = TestStack.uniqueName("test-repl-\(cut.rawValue)")
            defer { _ = try? PartitionSweeper.removeLeftovers(runID: id) }
            // A standby that just reconnected (after the previous cut) must stream again before the next one.
            let deadline = ContinuousClock.now + .seconds(30)
            while try link.standbyClientPort() == nil && ContinuousClock.now < deadline { usleep(200_000) }
            let fault = try PartitionFault.replication(cut, link: link, runID: id)
            #expect(fault.target.hasPrefix("primary | replica"))
            let driver = FaultDriver(fault)
            let started = driver.start()
            #expect(started.verified != .no, "\(cut.rawValue): \(started.note)")
            if cut != .toPrimary {
                #expect(started.note.contains("stopped receiving"), "\(cut.rawValue): \(started.note)")
            } else {
                #expect(started.note.contains("as postgres -> \(pair.primary.endpoint) timed out"), "\(started.note)")
            }
            // Kiln (root) keeps the primary while the standby's link is cut.
            #expect(try pair.primary.isInRecovery() == false)
            let record = driver.stop()
            #expect(record.verified == .yes, "\(cut.rawValue): \(record.note)")
            #expect(record.note.contains("received primary's WAL again"), "\(record.note)")
            #expect(try PartitionSweeper.removeLeftovers(runID: id) == 0)
        }
    }
}
