import KilnCore
import KilnRedis

/// Which node serves each of the 16,384 slots, and the replicas of each primary, as one node reported them in
/// `CLUSTER SLOTS` at one instant.
///
/// Guaranteed: `primary(ofSlot:)` is nil for a slot no range covered (a cluster that is down or being created);
/// never a guess.
public struct RedisClusterTopology: Sendable, Equatable {
    public struct SlotRange: Sendable, Equatable {
        public let slots: ClosedRange<Int>
        public let primary: HostPort
        public let replicas: [HostPort]

        public init(slots: ClosedRange<Int>, primary: HostPort, replicas: [HostPort]) {
            self.slots = slots
            self.primary = primary
            self.replicas = replicas
        }
    }

    public let ranges: [SlotRange]
    /// Index into `ranges` per slot, -1 for an uncovered slot.
    private let ownerIndex: [Int16]

    public init(ranges: [SlotRange]) {
        self.ranges = ranges
        var owner = [Int16](repeating: -1, count: RedisClusterSlot.count)
        for (index, range) in ranges.enumerated() {
            for slot in range.slots { owner[slot] = Int16(index) }
        }
        ownerIndex = owner
    }

    public func primary(ofSlot slot: Int) -> HostPort? {
        let index = ownerIndex[slot]
        return index < 0 ? nil : ranges[Int(index)].primary
    }

    /// Every primary, each once, in slot order.
    public var primaries: [HostPort] {
        var seen = Set<HostPort>()
        return ranges.sorted { $0.slots.lowerBound < $1.slots.lowerBound }.map(\.primary).filter {
            seen.insert($0).inserted
        }
    }

    /// The replicas the cluster reports for `primary` (empty until they have synced).
    public func replicas(of primary: HostPort) -> [HostPort] {
        ranges.first { $0.primary == primary }?.replicas ?? []
    }

    /// How many slots have an owner (16,384 when the whole key space is served).
    public var coveredSlots: Int { ownerIndex.lazy.filter { $0 >= 0 }.count }

    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case notAnArray
        case malformedRange(index: Int)

        public var description: String {
            switch self {
            case .notAnArray: "CLUSTER SLOTS did not answer with an array"
            case .malformedRange(let index): "CLUSTER SLOTS range #\(index) is malformed"
            }
        }
    }

    /// Reads a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, ...], [replica host, port, id, ...]...]...]`.
    /// An empty host (the node does not know its own address) is replaced by `askedNode`'s host.
    public init(clusterSlotsReply reply: RedisReply, askedNode: HostPort) throws(ParseError) {
        guard let entries = reply.array else { throw .notAnArray }
        var ranges: [SlotRange] = []
        for (index, entry) in entries.enumerated() {
            guard let fields = entry.array, fields.count >= 3,
                let start = fields[0].integer, let end = fields[1].integer,
                start >= 0, end >= start, end < Int64(RedisClusterSlot.count)
            else { throw .malformedRange(index: index) }
            var nodes: [HostPort] = []
            for nodeReply in fields[2...] {
                guard let nodeFields = nodeReply.array, nodeFields.count >= 2,
                    let host = nodeFields[0].string, let port = nodeFields[1].integer, (1...65_535).contains(port)
                else { throw .malformedRange(index: index) }
                nodes.append(HostPort(host: host.isEmpty ? askedNode.host : host, port: Int(port)))
            }
            ranges.append(SlotRange(slots: Int(start)...Int(end), primary: nodes[0], replicas: Array(nodes.dropFirst())))
        }
        self.init(ranges: ranges)
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.ranges == rhs.ranges }
}
