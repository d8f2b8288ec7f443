import Foundation
import KilnCheck
import KilnCore
import Testing

@Suite("dual-primary windows from the history")
struct DualPrimaryWindowTests {
    typealias Ack = DualPrimaryAnalysis.Ack
    static let old = "10.213.7.21:6379"
    static let new = "10.213.7.22:6380"

    /// An ack invoked at `start` seconds, completed 1 ms later.
    static func ack(_ server: String, _ start: Double, store: String = "redis", partition: String? = nil) -> Ack {
        let ns = UInt64(start * 1e9)
        return Ack(store: store, server: server, partition: partition, start: ns, end: ns + 1_000_000)
    }

    @Test func aCleanFailoverHasNoWindow() {
        let acks = stride(from: 0.0, to: 5, by: 0.1).map { Self.ack(Self.old, $0) }
            + stride(from: 6.0, to: 10, by: 0.1).map { Self.ack(Self.new, $0) }
        #expect(DualPrimaryAnalysis.windows(acks).isEmpty)
    }

    @Test func aWriteInFlightAcrossTheFailoverIsNotSplitBrain() {
        // Invoked on the old primary at 4.9 s, answered at 6.5 s, after the new primary's first ack at 6.0 s.
        var acks = stride(from: 0.0, to: 4.9, by: 0.1).map { Self.ack(Self.old, $0) }
        acks.append(Ack(store: "redis", server: Self.old, start: 4_900_000_000, end: 6_500_000_000))
        acks += stride(from: 6.0, to: 10, by: 0.1).map { Self.ack(Self.new, $0) }
        #expect(DualPrimaryAnalysis.windows(acks).isEmpty)
    }

    @Test func aFailbackIsNotSplitBrain() {
        let acks = stride(from: 0.0, to: 3, by: 0.1).map { Self.ack(Self.old, $0) }
            + stride(from: 4.0, to: 7, by: 0.1).map { Self.ack(Self.new, $0) }
            + stride(from: 8.0, to: 10, by: 0.1).map { Self.ack(Self.old, $0) }
        #expect(DualPrimaryAnalysis.windows(acks).isEmpty)
    }

    @Test func twoPrimariesAcknowledgingTogetherGiveTheWindowAndItsWrites() throws {
        // Minority clients keep writing to the old primary until 12 s; the majority's new primary from 5 s on.
        let acks = stride(from: 0.0, to: 12, by: 0.5).map { Self.ack(Self.old, $0) }
            + stride(from: 5.0, to: 20, by: 0.5).map { Self.ack(Self.new, $0) }
            + stride(from: 0.0, to: 20, by: 0.5).map { Self.ack("127.0.0.11:15432", $0, store: "postgres") }
        let windows = DualPrimaryAnalysis.windows(acks)
        let window = try #require(windows.first)
        #expect(windows.count == 1)
        #expect(window.store == "redis")
        #expect(window.first == Self.old)
        #expect(window.second == Self.new)
        #expect(window.startNanos == 5_001_000_000)
        #expect(window.endNanos == 11_501_000_000)
        #expect(window.firstWrites == 13)  // 5.5 … 11.5
        #expect(window.secondWrites == 14)  // 5.0 … 11.5
        #expect(window.description.contains("both acknowledged writes for 6.5 s"))
    }

    @Test func theHistoryFileIsReadWithItsServers() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("dual-\(UUID()).jsonl")
        defer { try? FileManager.default.removeItem(at: file) }
        let lines = [
            #"{"phase":"p","op":"redis.set","worker":0,"row":1,"rows":1,"outcome":"ok","server":"\#(Self.old)","intended_ns":0,"start_ns":1000,"end_ns":2000}"#,
            #"{"phase":"p","op":"redis.set","worker":1,"row":2,"rows":1,"outcome":"info","error":"timeout","server":"\#(Self.new)","intended_ns":0,"start_ns":1000,"end_ns":2000}"#,
            #"{"phase":"p","op":"kafka.produce","worker":1,"row":3,"rows":1,"outcome":"ok","intended_ns":0,"start_ns":1000,"end_ns":2000}"#,
        ]
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        let acks = try DualPrimaryAnalysis.acks(fromHistory: file)
        #expect(acks == [Ack(store: "redis", server: Self.old, start: 1000, end: 2000)])
    }

    static func historyFile(_ acks: [Ack]) throws -> URL {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("dual-\(UUID()).jsonl")
        let text = acks.map { ack in
            HistoryEntry(
                phase: "p", operation: OperationID(rawValue: "\(ack.store).set"), worker: 0, row: 1, rows: 1, outcome: .ok,
                server: ack.server, partition: ack.partition, intendedNanos: 0, startNanos: ack.start, endNanos: ack.end
            ).jsonLine
        }.joined(separator: "\n")
        try (text + "\n").write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    @Test func theCheckResultIsInvalidWithTheWindowValidAfterACleanFailoverAndAbsentWithOneServer() throws {
        let split = try Self.historyFile(
            stride(from: 0.0, to: 12, by: 0.5).map { Self.ack(Self.old, $0) }
                + stride(from: 5.0, to: 20, by: 0.5).map { Self.ack(Self.new, $0) })
        let clean = try Self.historyFile(
            stride(from: 0.0, to: 5, by: 0.5).map { Self.ack(Self.old, $0) }
                + stride(from: 6.0, to: 20, by: 0.5).map { Self.ack(Self.new, $0) })
        let single = try Self.historyFile(stride(from: 0.0, to: 5, by: 0.5).map { Self.ack(Self.old, $0) })
        defer { for file in [split, clean, single] { try? FileManager.default.removeItem(at: file) } }

        let invalid = try #require(DualPrimaryAnalysis.results(history: split).first)
        #expect(invalid.place == "dual-primary.redis")
        #expect(invalid.validity == .invalid)
        #expect(invalid.counts["dual-primary"] == 1)
        #expect(invalid.anomalies.first?.detail.contains("both acknowledged writes for 6.5 s") == true)
        let valid = try #require(DualPrimaryAnalysis.results(history: clean).first)
        #expect(valid.validity == .valid)
        #expect(DualPrimaryAnalysis.results(history: single).isEmpty)
    }

    /// Redis Cluster's masters each own slots: three of them acknowledging at once is the healthy state, never a
    /// split brain (its backend declares `writePrimaries: .partitionedByKey`); the same acks of a one-primary store
    /// are one.
    @Test func aStoreWithOnePrimaryPerKeyRangeIsNotJudgedBySplitBrain() throws {
        let masters = ["127.0.0.91:17001", "127.0.0.92:17002", "127.0.0.93:17003"]
        func acks(_ store: String) -> [Ack] {
            masters.flatMap { master in stride(from: 0.0, to: 10, by: 0.5).map { Self.ack(master, $0, store: store) } }
        }
        let cluster = try Self.historyFile(acks("redis-cluster"))
        let redis = try Self.historyFile(acks("redis"))
        defer { for file in [cluster, redis] { try? FileManager.default.removeItem(at: file) } }
        #expect(DualPrimaryAnalysis.results(history: cluster).isEmpty)
        #expect(DualPrimaryAnalysis.results(history: redis).first?.validity == .invalid)
    }

    /// Per slot, Redis Cluster is judged like a one-primary store: each master writing its own slots at once is
    /// healthy (no result); a slot moving from a failed master to its promoted replica without overlap is valid; the
    /// old master still acknowledging writes to the slot after the new one took it (a minority partition before
    /// node_timeout) is that slot's split brain, found by name. Bulk acks (no slot) are never judged.
    @Test func redisClusterIsJudgedPerSlot() throws {
        let (a, b, c) = ("127.0.0.91:17001", "127.0.0.92:17002", "127.0.0.94:17004")
        func slotAcks(_ server: String, _ slot: Int, from: Double, to: Double) -> [Ack] {
            stride(from: from, to: to, by: 0.5).map { Self.ack(server, $0, store: "redis-cluster", partition: "slot \(slot)") }
        }
        let healthy = try Self.historyFile(
            slotAcks(a, 1, from: 0, to: 10) + slotAcks(b, 2, from: 0, to: 10)
                + stride(from: 0.0, to: 10, by: 1).map { Self.ack(c, $0, store: "redis-cluster") })
        let failover = try Self.historyFile(slotAcks(a, 7, from: 0, to: 5) + slotAcks(c, 7, from: 6, to: 12) + slotAcks(b, 2, from: 0, to: 12))
        let split = try Self.historyFile(slotAcks(a, 7, from: 0, to: 12) + slotAcks(c, 7, from: 5, to: 20) + slotAcks(b, 2, from: 0, to: 20))
        defer { for file in [healthy, failover, split] { try? FileManager.default.removeItem(at: file) } }

        #expect(DualPrimaryAnalysis.results(history: healthy).isEmpty)
        let valid = try #require(DualPrimaryAnalysis.results(history: failover).first)
        #expect(valid.place == "dual-primary.redis-cluster")
        #expect(valid.validity == .valid)
        #expect(valid.source.contains("1 part(s)"), "\(valid.source)")
        let invalid = try #require(DualPrimaryAnalysis.results(history: split).first)
        #expect(invalid.validity == .invalid)
        #expect(invalid.counts["dual-primary"] == 1)
        #expect(invalid.anomalies.first?.detail.hasPrefix("redis-cluster slot 7: \(a) and \(c) both acknowledged") == true,
            "\(invalid.anomalies)")
    }
}
