import Foundation
import KilnCore
import KilnStack

/// One host of the hosts stack as the link faults see it. `namespace` nil is Kiln's root host (10.213.7.1): its
/// rules go into the root namespace's tables and name the root address as destination, so they touch nothing but
/// traffic to Kiln's bridge address.
public struct FaultHost: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var address: String
    public var namespace: String?
    /// The host's end of its veth pair (inside `namespace`), for bandwidth faults.
    public var device: String?
    /// The host network's own record, which entering the namespace needs (nil: the root host, or a host described
    /// only by its names, as in unit tests).
    public var network: NetworkHost?

    public init(name: String, address: String, namespace: String?, device: String? = nil) {
        self.name = name
        self.address = address
        self.namespace = namespace
        self.device = device
    }

    /// A host of the host network (its namespace, `eth0`).
    public init(_ host: NetworkHost) {
        self.init(
            name: host.name, address: host.address.description, namespace: host.namespace, device: NetworkHost.interface
        )
        network = host
    }

    /// Kiln's root host: the bridge address in the root namespace, where load workers and probes run by default.
    public static let kiln = FaultHost(name: "kiln", address: HostFaultRules.rootAddress, namespace: nil)

    public var description: String { "\(name) (\(address))" }
}

/// An iptables rule (arguments after `-I` / `-D`) or tc command in one host's namespace.
public struct HostRule: Sendable, Equatable, CustomStringConvertible {
    public var host: FaultHost
    public var arguments: [String]

    public var description: String { "\(host.name): \(arguments.joined(separator: " "))" }
}

/// The rules that realise faults between hosts. Every address must be a single host of Kiln's own subnet
/// 10.213.7.0/24 (never a real network); every rule carries `-m comment --comment kiln-fault:<run-id>`.
public enum HostFaultRules {
    public static let subnetPrefix = "10.213.7."
    public static let rootAddress = "10.213.7.1"

    /// Accepts 10.213.7.1 … 10.213.7.254, refuses everything else.
    public static func validate(_ host: FaultHost) throws(PartitionError) {
        let parts = host.address.split(separator: ".", omittingEmptySubsequences: false)
        guard host.address.hasPrefix(subnetPrefix), parts.count == 4, let last = UInt8(parts[3]),
            (1...254).contains(last)
        else {
            throw PartitionError(
                "\(host.name): \(host.address.debugDescription) is not a host of Kiln's subnet 10.213.7.0/24; faults "
                    + "between hosts act on Kiln's own namespaces only")
        }
        if host.namespace == nil && host.address != rootAddress {
            throw PartitionError("\(host.name): only Kiln's root host \(rootAddress) lives outside a namespace")
        }
    }

    static func tag(_ runID: String) throws(PartitionError) -> [String] {
        try PartitionRules.validate(runID: runID)
        return ["-m", "comment", "--comment", PartitionRules.comment(runID: runID)]
    }

    /// DROP rules for every blocked pair of `grudge`, in the receiving host's INPUT chain (Jepsen drops at the
    /// receiver). `hosts` maps every host of the grudge to where it lives.
    public static func partition(_ grudge: PartitionGrudge, hosts: [String: FaultHost], runID: String)
        throws(PartitionError) -> [HostRule]
    {
        let tag = try tag(runID)
        var rules: [HostRule] = []
        for link in grudge.blocked.sorted() {
            guard let from = hosts[link.from], let to = hosts[link.to] else {
                throw PartitionError("\(link): a host has no address")
            }
            try validate(from)
            try validate(to)
            rules.append(HostRule(host: to, arguments: inputDrop(from: from, to: to) + tag + ["-j", "DROP"]))
        }
        return rules
    }

    /// Random loss on the link between `a` and `b`: each end drops a `probability` of what it receives from the
    /// other (iptables `statistic --mode random`), so each direction loses that share.
    public static func loss(between a: FaultHost, and b: FaultHost, probability: Double, runID: String)
        throws(PartitionError) -> [HostRule]
    {
        guard probability > 0, probability <= 1, probability.isFinite else {
            throw PartitionError("loss probability \(probability) must be above 0 and at most 1")
        }
        guard a.address != b.address else { throw PartitionError("loss: \(a.name) and \(b.name) are the same host") }
        try validate(a)
        try validate(b)
        let tag = try tag(runID)
        let statistic = ["-m", "statistic", "--mode", "random", "--probability", String(format: "%.6f", probability)]
        return [
            HostRule(host: b, arguments: inputDrop(from: a, to: b) + statistic + tag + ["-j", "DROP"]),
            HostRule(host: a, arguments: inputDrop(from: b, to: a) + statistic + tag + ["-j", "DROP"]),
        ]
    }

    private static func inputDrop(from: FaultHost, to: FaultHost) -> [String] {
        ["INPUT", "-s", from.address + "/32", "-d", to.address + "/32"]
    }

    /// `tc qdisc add` arguments (after `tc`) for a token bucket of `bytesPerSecond` on the host's veth: what the host
    /// sends is held to that rate. Burst: 20 ms of the rate, at least 16 KiB (a few full frames); queue: 100 ms.
    public static func bandwidth(_ host: FaultHost, bytesPerSecond: Int) throws(PartitionError) -> [String] {
        guard (1_000...10_000_000_000).contains(bytesPerSecond) else {
            throw PartitionError("rate \(bytesPerSecond) B/s must be between 1 kB/s and 10 GB/s")
        }
        try validate(host)
        guard host.namespace != nil, let device = host.device else {
            throw PartitionError("\(host.name): bandwidth faults need a host in its own namespace with a veth device")
        }
        guard !device.isEmpty, device.count <= 15,
            device.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") })
        else { throw PartitionError("\(device.debugDescription) is not a network device name") }
        let burst = max(16 * 1024, bytesPerSecond / 50)
        return [
            "qdisc", "add", "dev", device, "root", "tbf", "rate", "\(bytesPerSecond * 8)bit", "burst", "\(burst)",
            "latency", "100ms",
        ]
    }
}

/// The TCP connects observed between hosts, and how they differ from what a grudge expects.
public struct ProbeMatrix: Sendable, Equatable {
    public var results: [HostLink: TCPProbe.Result]

    public init(results: [HostLink: TCPProbe.Result]) { self.results = results }

    /// Pairs whose connect does not match `expected` (true: must connect; false: must time out), each as
    /// `a -> b connected (expected to time out)`; a pair not probed is a difference too. Empty when the matrix
    /// matches exactly.
    public func differences(pairs: [HostLink], expected: (HostLink) -> Bool) -> [String] {
        pairs.sorted().compactMap { pair in
            guard let result = results[pair] else { return "\(pair) not probed" }
            let shouldConnect = expected(pair)
            // A dropped packet shows as a timeout; a refusal means packets got through to a closed port.
            if shouldConnect ? result.answered : result == .timedOut { return nil }
            return "\(pair) \(Self.show(result)) (expected \(shouldConnect ? "to connect" : "to time out"))"
        }
    }

    /// `active`: the grudge's matrix; `healed`: every pair connects. Judged on `pairs` (default: every ordered pair
    /// of the grudge's hosts).
    public func evidence(_ grudge: PartitionGrudge, phase: FaultPhase, pairs: [HostLink]? = nil) -> FaultEvidence {
        let pairs = pairs ?? grudge.pairs
        let differing = differences(pairs: pairs) { phase == .healed || grudge.connects($0.from, $0.to) }
        let blocked = pairs.filter { !(phase == .healed || grudge.connects($0.from, $0.to)) }.count
        let summary = "\(pairs.count) pairs probed among \(grudge.hosts.count) hosts, \(blocked) expected blocked"
        guard differing.isEmpty else {
            let shown = differing.prefix(12).joined(separator: "; ")
            let more = differing.count > 12 ? "; … \(differing.count - 12) more" : ""
            return .no("\(summary); \(differing.count) differ: \(shown)\(more)")
        }
        return .yes("\(summary); the matrix matches \(phase == .active ? grudge.description : "a full mesh")")
    }

    static func show(_ result: TCPProbe.Result) -> String {
        switch result {
        case .answered: "connected"
        case .timedOut: "timed out"
        case .refused(let reason): "refused (\(reason))"
        }
    }
}
