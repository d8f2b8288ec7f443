import Foundation
import KilnCore
import KilnStores

/// Split-brain evidence from the history alone: the windows in which two servers of one store both acknowledged
/// writes (`ok` entries with a `server`), which no single-primary store may do.
///
/// Two servers X (the one that acknowledged first) and Y overlap when X acknowledged a write that was *invoked after*
/// Y had already acknowledged one, and Y acknowledged another write invoked after that: real-time order, so an op in
/// flight across a clean failover (invoked on X before Y took over) never counts, and neither does a failback (X again
/// after Y stopped for good). The window runs from Y's first acknowledgement to the end of X's last such write.
/// Times are the history's run-relative monotonic nanoseconds.
public struct DualPrimaryWindow: Sendable, Equatable, Codable {
    public var store: String
    /// The server that acknowledged first (the old primary), then the other.
    public var first: String
    public var second: String
    public var startNanos: UInt64
    public var endNanos: UInt64
    /// Writes each acknowledged inside the window (for `first`: only those invoked after `second`'s first ack).
    public var firstWrites: Int
    public var secondWrites: Int

    public var milliseconds: Double { Double(endNanos - startNanos) / 1e6 }

    public var description: String {
        String(
            format: "%@: %@ and %@ both acknowledged writes for %.1f s (%.1f s – %.1f s into the run): %d and %d writes",
            store, first, second, milliseconds / 1000, Double(startNanos) / 1e9, Double(endNanos) / 1e9, firstWrites,
            secondWrites)
    }

    enum CodingKeys: String, CodingKey {
        case store, first, second
        case startNanos = "start_ns"
        case endNanos = "end_ns"
        case firstWrites = "first_writes"
        case secondWrites = "second_writes"
    }
}

public enum DualPrimaryAnalysis {
    /// One acknowledged write: its store, the server that acknowledged it, invoke and completion times.
    public struct Ack: Sendable, Equatable {
        public var store: String
        public var server: String
        /// The key-space part written (`slot 1234`) for a store with several primaries; nil otherwise.
        public var partition: String?
        public var start: UInt64
        public var end: UInt64

        public init(store: String, server: String, partition: String? = nil, start: UInt64, end: UInt64) {
            self.store = store
            self.server = server
            self.partition = partition
            self.start = start
            self.end = end
        }
    }

    /// Every overlapping pair of servers per store, ordered by store and window start.
    public static func windows(_ acks: [Ack]) -> [DualPrimaryWindow] {
        var result: [DualPrimaryWindow] = []
        let byStore = Dictionary(grouping: acks, by: \.store)
        for store in byStore.keys.sorted() {
            let byServer = Dictionary(grouping: byStore[store]!, by: \.server)
            // Servers in the order of their first acknowledgement.
            let servers = byServer.keys.sorted { a, b in
                let firstA = byServer[a]!.map(\.end).min()!
                let firstB = byServer[b]!.map(\.end).min()!
                return firstA != firstB ? firstA < firstB : a < b
            }
            for (i, x) in servers.enumerated() {
                for y in servers[(i + 1)...] {
                    if let window = overlap(store: store, x: x, xAcks: byServer[x]!, y: y, yAcks: byServer[y]!) {
                        result.append(window)
                    }
                }
            }
        }
        return result.sorted { ($0.store, $0.startNanos) < ($1.store, $1.startNanos) }
    }

    private static func overlap(store: String, x: String, xAcks: [Ack], y: String, yAcks: [Ack]) -> DualPrimaryWindow? {
        let yFirstEnd = yAcks.map(\.end).min()!
        let yLastStart = yAcks.map(\.start).max()!
        // X's writes invoked after Y had acknowledged one, and followed by a write Y acknowledged.
        let interleaved = xAcks.filter { $0.start > yFirstEnd && $0.end < yLastStart }
        guard let end = interleaved.map(\.end).max() else { return nil }
        let secondWrites = yAcks.filter { $0.end >= yFirstEnd && $0.end <= end }.count
        return DualPrimaryWindow(
            store: store, first: x, second: y, startNanos: yFirstEnd, endNanos: end, firstWrites: interleaved.count,
            secondWrites: secondWrites)
    }

    /// The acknowledged writes of a run directory's `history.jsonl` that name their server (lines without `server`,
    /// written by clients that cannot say or by older Kiln versions, are skipped), read in chunks.
    public static func acks(fromHistory file: URL) throws -> [Ack] {
        var acks: [Ack] = []
        // Only acknowledged writes that name a server matter; other lines are skipped before decoding.
        let marker = Data(#""server":"#.utf8)
        try HistoryFile.forEachEntry(of: file, accept: { $0.range(of: marker) != nil }) { _, entry in
            guard entry.outcome == .ok, let server = entry.server else { return }
            acks.append(
                Ack(
                    store: entry.operation.store, server: server, partition: entry.partition, start: entry.startNanos,
                    end: entry.endNanos))
        }
        return acks
    }
}

extension DualPrimaryAnalysis {
    /// Acks of a store whose primaries each own a part of the key space, regrouped so that each part is a store
    /// of its own for `windows` (`redis-cluster slot 1234`): two masters acknowledging writes to the same slot in
    /// overlapping windows is that slot's split brain; different slots on different masters are normal. Acks
    /// without a part (bulk writes spanning slots) cannot be judged and are left out.
    public static func perPartition(_ acks: [Ack]) -> [Ack] {
        acks.compactMap { ack in
            guard let partition = ack.partition else { return nil }
            var regrouped = ack
            regrouped.store = "\(ack.store) \(partition)"
            return regrouped
        }
    }

    /// One `dual-primary.<store>` result per store whose acknowledged writes came from two or more servers (a
    /// failover happened): invalid with one anomaly per window when two of them acknowledged writes in real-time
    /// overlap, valid otherwise. Stores that one server served throughout get no result (nothing to decide). A
    /// store with several primaries by key (`WritePrimaries.partitionedByKey`) is judged per part: a result when
    /// some part's writes came from two or more servers, one anomaly per window of two servers on one part.
    public static func results(history file: URL) -> [PlaceResult] {
        let started = Date()
        let acks: [Ack]
        do {
            acks = try self.acks(fromHistory: file)
        } catch {
            return [.undecided("dual-primary", source: "history", error: error, since: started)]
        }
        var results: [PlaceResult] = []
        for (store, storeAcks) in Dictionary(grouping: acks, by: \.store).sorted(by: { $0.key < $1.key }) {
            let servers = Set(storeAcks.map(\.server))
            guard servers.count > 1 else { continue }
            let found: [DualPrimaryWindow]
            var source = "history (\(servers.sorted().joined(separator: ", ")))"
            switch Backends.backend(named: store)?.writePrimaries ?? .one {
            case .one:
                found = windows(storeAcks)
            case .partitionedByKey:
                let parts = perPartition(storeAcks)
                let moved = Dictionary(grouping: parts, by: \.store).filter { Set($0.value.map(\.server)).count > 1 }
                guard !moved.isEmpty else { continue }
                found = windows(parts)
                source = "history, per key-space part: \(moved.count) part(s) written through two or more of "
                    + "\(servers.sorted().joined(separator: ", "))"
            }
            let anomalies = found.map { window in
                Anomaly(
                    kind: .dualPrimary, txnID: 0, key: "\(window.first) + \(window.second)", detail: window.description)
            }
            results.append(
                .invariant(
                    "dual-primary.\(store)", source: source,
                    expected: Int64(storeAcks.count), scanned: Int64(storeAcks.count),
                    counts: found.isEmpty ? [:] : [Anomaly.Kind.dualPrimary.rawValue: Int64(found.count)],
                    anomalies: anomalies, since: started))
        }
        return results
    }
}
