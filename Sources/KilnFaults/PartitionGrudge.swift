import KilnCore
import KilnScenario

/// One direction between two hosts: packets sent by `from` and received by `to`.
public struct HostLink: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var from: String
    public var to: String

    public init(_ from: String, _ to: String) {
        self.from = from
        self.to = to
    }

    public var reversed: HostLink { HostLink(to, from) }
    public var description: String { "\(from) -> \(to)" }

    public static func < (lhs: HostLink, rhs: HostLink) -> Bool { (lhs.from, lhs.to) < (rhs.from, rhs.to) }
}

/// What a partition shape blocks among a set of hosts: Jepsen's grudge, as directed pairs. Pure: the same shape,
/// hosts and seed give the same grudge on every machine.
public struct PartitionGrudge: Sendable, Equatable {
    /// Every host the partition is judged on, in the order given (the probe matrix's rows and columns).
    public let hosts: [String]
    /// Packets from `link.from` to `link.to` are dropped (at `to`).
    public let blocked: Set<HostLink>
    /// The shape resolved: which host went where, for the report (e.g. `[a,b] | [c,d,e]`).
    public let description: String

    /// Resolves `shape` among `hosts` (the stack's hosts the fault may touch; a shape's drawn hosts come from them,
    /// its named hosts must be among them). `seed` draws the shuffles (one per fault instance).
    public init(shape: HostPartitionShape, hosts: [String], seed: UInt64) throws(PartitionError) {
        guard Set(hosts).count == hosts.count else { throw PartitionError("a host is listed twice in \(hosts)") }
        for named in shape.namedHosts where !hosts.contains(named) {
            throw PartitionError("\(named) is not one of the hosts \(hosts.joined(separator: ", "))")
        }
        self.hosts = hosts
        var blocked: Set<HostLink> = []
        func cut(_ groups: [[String]]) {
            for (index, group) in groups.enumerated() {
                for other in groups[(index + 1)...] {
                    for a in group {
                        for b in other {
                            blocked.insert(HostLink(a, b))
                            blocked.insert(HostLink(b, a))
                        }
                    }
                }
            }
        }
        func show(_ groups: [[String]]) -> String {
            groups.map { "[\($0.joined(separator: ","))]" }.joined(separator: " | ")
        }
        switch shape {
        case .isolate(let named):
            guard hosts.count >= 2 else { throw PartitionError("isolate needs at least 2 hosts, found \(hosts.count)") }
            let loner = named ?? Self.shuffled(hosts, seed: seed)[0]
            let groups = [[loner], hosts.filter { $0 != loner }]
            cut(groups)
            description = "isolate \(loner): " + show(groups)
        case .halves:
            guard hosts.count >= 2 else { throw PartitionError("halves need at least 2 hosts, found \(hosts.count)") }
            let groups = Self.bisect(Self.shuffled(hosts, seed: seed))
            cut(groups)
            description = "halves " + show(groups)
        case .bridge(let named):
            guard hosts.count >= 3 else {
                throw PartitionError("a bridge needs at least 3 hosts, found \(hosts.count)")
            }
            let bridge: String
            let groups: [[String]]
            if let named {
                bridge = named
                groups = Self.bisect(Self.shuffled(hosts.filter { $0 != named }, seed: seed))
            } else {
                // Jepsen's bridge: bisect the shuffled hosts; the first host of the larger half is the bridge.
                let halves = Self.bisect(Self.shuffled(hosts, seed: seed))
                bridge = halves[1][0]
                groups = [halves[0], Array(halves[1].dropFirst())]
            }
            cut(groups)
            description = "bridge \(bridge) between " + show(groups)
        case .majoritiesRing:
            guard hosts.count >= 3 else {
                throw PartitionError(
                    "a majorities ring needs at least 3 hosts (with 2 every host sees both), found \(hosts.count)")
            }
            // Jepsen's majorities-ring: windows of `majority` consecutive hosts of the shuffled ring; the host at the
            // middle of each window receives from that window only.
            let ring = Self.shuffled(hosts, seed: seed)
            let majority = hosts.count / 2 + 1
            var views: [String] = []
            for start in ring.indices {
                let window = (0..<majority).map { ring[(start + $0) % ring.count] }
                let centre = window[majority / 2]
                for other in hosts where !window.contains(other) { blocked.insert(HostLink(other, centre)) }
                views.append("\(centre) sees \(window.joined(separator: ","))")
            }
            description = "majorities ring " + ring.joined(separator: ",") + " (" + views.joined(separator: "; ") + ")"
        case .oneWay(let from, let to):
            guard !from.isEmpty, !to.isEmpty else {
                throw PartitionError("one-way needs hosts on both `from` and `to`")
            }
            guard Set(from).isDisjoint(with: Set(to)) else { throw PartitionError("one-way: a host is on both ends") }
            for a in from { for b in to { blocked.insert(HostLink(a, b)) } }
            description = "drop \(from.joined(separator: ",")) -> \(to.joined(separator: ","))"
        case .sides(let groups):
            guard groups.count >= 2, groups.allSatisfy({ !$0.isEmpty }) else {
                throw PartitionError("sides need at least two non-empty groups")
            }
            let all = groups.flatMap { $0 }
            guard Set(all).count == all.count else { throw PartitionError("sides: a host is in two groups") }
            cut(groups)
            description = "sides " + show(groups)
        }
        self.blocked = blocked
    }

    /// Whether a TCP connect from `a` to `b` completes: the handshake needs packets both ways, so a one-way cut
    /// fails connects in both directions.
    public func connects(_ a: String, _ b: String) -> Bool {
        !blocked.contains(HostLink(a, b)) && !blocked.contains(HostLink(b, a))
    }

    /// Every ordered pair of distinct hosts (the probe matrix).
    public var pairs: [HostLink] {
        hosts.flatMap { a in hosts.filter { $0 != a }.map { HostLink(a, $0) } }
    }

    /// The hosts that receive at least one dropped packet: where rules go.
    public var receivers: Set<String> { Set(blocked.map(\.to)) }

    /// `hosts` in an order drawn from `seed` (Fisher-Yates with SplitMix64 draws).
    static func shuffled(_ hosts: [String], seed: UInt64) -> [String] {
        var result = hosts
        guard result.count > 1 else { return result }
        for index in stride(from: result.count - 1, to: 0, by: -1) {
            let draw = Int(SplitMix64.value(seed: seed, index: UInt64(index), stream: 0x5EED_9A27) % UInt64(index + 1))
            result.swapAt(index, draw)
        }
        return result
    }

    /// Jepsen's bisect: the smaller half first.
    static func bisect(_ hosts: [String]) -> [[String]] {
        let cut = hosts.count / 2
        return [Array(hosts[..<cut]), Array(hosts[cut...])]
    }
}
