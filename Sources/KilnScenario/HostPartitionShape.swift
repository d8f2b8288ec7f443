/// A partition between hosts of the hosts stack (each server, sink process and client group in its own network
/// namespace), as a scenario writes it. The names follow Jepsen's nemeses (jepsen/nemesis.clj,
/// nemesis/combined.clj). Hosts are named as in the stack (`redis-primary`, `sentinel-2`, `clients-a`, `kiln` for
/// Kiln's root host 10.213.7.1). Shapes that draw (which host, which half) draw from the fault instance's seed, so
/// a run's partitions are the same on every run with the same seed. `KilnFaults.PartitionGrudge` turns a shape into
/// the directed host pairs it blocks.
public enum HostPartitionShape: Sendable, Equatable {
    /// `partition-random-node`: one host loses every other host, both ways. nil: the host is drawn.
    case isolate(String?)
    /// `partition-random-halves`: the hosts are shuffled and cut in two (the smaller half first); each half loses the
    /// other, both ways.
    case halves
    /// `partition-majorities-ring`: the hosts are shuffled into a ring; each host receives only from the majority
    /// centred on it, so every host sees a majority and no two see the same one.
    case majoritiesRing
    /// `bridge`: two halves cut from each other, but one host (drawn, or named) keeps both.
    case bridge(String?)
    /// Packets from every host of `from` to every host of `to` are dropped; the other direction passes.
    case oneWay(from: [String], to: [String])
    /// Named groups (`sides: [[a, b], [c, d, e]]`): each group loses every other group, both ways. Hosts in no
    /// group are untouched.
    case sides([[String]])

    /// The scenario's `shape:` names of the shapes that act between hosts.
    public enum Name: String, Sendable, CaseIterable {
        case isolate
        case halves
        case majoritiesRing = "majorities-ring"
        case bridge
        case oneWay = "one-way"
        case sides
    }

    public var name: Name {
        switch self {
        case .isolate: .isolate
        case .halves: .halves
        case .majoritiesRing: .majoritiesRing
        case .bridge: .bridge
        case .oneWay: .oneWay
        case .sides: .sides
        }
    }

    /// The hosts the scenario named in the shape itself (not the `hosts:` the draw is made from).
    public var namedHosts: [String] {
        switch self {
        case .isolate(let host), .bridge(let host): host.map { [$0] } ?? []
        case .halves, .majoritiesRing: []
        case .oneWay(let from, let to): from + to
        case .sides(let groups): groups.flatMap { $0 }
        }
    }

    public var description: String {
        switch self {
        case .isolate(let host): "isolate \(host ?? "a drawn host")"
        case .halves: "random halves"
        case .majoritiesRing: "majorities ring"
        case .bridge(let host): "bridge through \(host ?? "a drawn host")"
        case .oneWay(let from, let to): "drop \(from.joined(separator: ",")) -> \(to.joined(separator: ","))"
        case .sides(let groups): groups.map { $0.joined(separator: ",") }.joined(separator: " | ")
        }
    }
}
