import Foundation
import KilnCore
import KilnStack

/// Commands inside a host's namespace (`ip netns exec`), or in the root namespace for Kiln's root host.
enum HostCommands {
    static var tc: String {
        ["/usr/sbin/tc", "/sbin/tc", "/usr/bin/tc"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "tc"
    }

    static func iptables(_ host: FaultHost, _ arguments: [String]) throws -> String {
        guard host.namespace != nil else { return try IPTables.run(arguments) }
        guard let network = host.network else { throw PartitionError("\(host.name): no namespace to enter") }
        do {
            return try HostNetwork.run(in: network, IPTables.executable, ["-w", "5"] + arguments)
        } catch {
            throw PartitionError("iptables \(arguments.joined(separator: " ")) in \(host.name): \(error)")
        }
    }

    /// Inserts `rules` in order, appending each to `installed` once it is in (so a failure midway leaves
    /// `installed` naming exactly what must be removed).
    static func insert(_ rules: [HostRule], recordingIn installed: inout [HostRule]) throws {
        for rule in rules {
            _ = try iptables(rule.host, ["-I"] + rule.arguments)
            installed.append(rule)
        }
    }

    /// Deletes the rules of `installed` in order, dropping each from it once it is gone.
    static func remove(_ installed: inout [HostRule]) throws {
        while let rule = installed.first {
            _ = try iptables(rule.host, ["-D"] + rule.arguments)
            installed.removeFirst()
        }
    }

    static var ss: String {
        ["/usr/bin/ss", "/bin/ss", "/usr/sbin/ss"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "ss"
    }

    /// Deletes every rule tagged `kiln-fault:<runID>` in `host`'s `table` (`filter` or `nat`); returns how many.
    @discardableResult
    static func removeTagged(_ host: FaultHost, runID: String, table: String = "filter") -> Int {
        guard host.namespace != nil || table != "filter" else {
            return (try? PartitionSweeper.removeLeftovers(runID: runID)) ?? 0
        }
        guard let listing = try? iptables(host, ["-t", table, "-S"]) else { return 0 }
        var removed = 0
        for line in listing.split(separator: "\n") where line.hasPrefix("-A ") && isTagged(line, runID: runID) {
            var words = line.split(separator: " ").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            words[0] = "-D"
            if (try? iptables(host, ["-t", table] + words)) != nil { removed += 1 }
        }
        return removed
    }

    static func tagged(_ host: FaultHost, runID: String) -> Int? {
        guard host.namespace != nil else { return try? IPTables.taggedRules(runID: runID).count }
        guard let listing = try? iptables(host, ["-S"]) else { return nil }
        return listing.split(separator: "\n").filter { $0.hasPrefix("-A ") && isTagged($0, runID: runID) }.count
    }

    /// Whether an `iptables -S` line carries a `kiln-fault:` comment of `runID` (whoever owns it).
    static func isTagged(_ line: Substring, runID: String) -> Bool {
        guard let comment = IPTables.comment(of: line), let (id, _) = PartitionRules.parse(comment: comment) else {
            return false
        }
        return id == runID
    }
}

/// A partition between hosts (Jepsen's grudge, `PartitionGrudge`), realised as DROP rules in the receiving hosts'
/// INPUT chains, tagged `kiln-fault:<run-id>`. Evidence is a TCP probe matrix: from inside every host, a connect to
/// every other host's listening port; while active it must equal the grudge exactly (blocked pairs time out, every
/// other pair connects), after the heal every pair must connect. Hosts without a port are probed only from.
/// `teardown` removes this run's rules from every host whatever happened. One caller at a time (the `Fault` contract).
public final class HostPartitionFault: Fault {
    public let name: String
    public let grudge: PartitionGrudge
    public let hosts: [String: FaultHost]
    /// The port each host listens on (its server's, or a `HostListener`'s).
    public let ports: [String: Int]
    public let runID: String
    public let probeTimeout: Duration
    private let rules: [HostRule]
    private var installed: [HostRule] = []
    /// The last matrix probed, for reports and tests.
    public private(set) var lastMatrix: ProbeMatrix?

    public var kind: String { "partition" }
    public var target: String { grudge.description }

    /// `rules` replaces the grudge's own rules (tests: a rule on the wrong host must verify `no`).
    public init(
        name: String, grudge: PartitionGrudge, hosts: [String: FaultHost], ports: [String: Int], runID: String,
        probeTimeout: Duration = .milliseconds(500), rules: [HostRule]? = nil
    ) throws(PartitionError) {
        self.name = name
        self.grudge = grudge
        self.hosts = hosts
        self.ports = ports
        self.runID = runID
        self.probeTimeout = probeTimeout
        for host in grudge.hosts where hosts[host] == nil { throw PartitionError("\(host): unknown host") }
        for host in hosts.values { try HostFaultRules.validate(host) }
        if let rules {
            self.rules = rules
        } else {
            self.rules = try HostFaultRules.partition(grudge, hosts: hosts, runID: runID)
        }
    }

    public func start() throws {
        try HostCommands.insert(rules, recordingIn: &installed)
    }

    public func stop() throws {
        try HostCommands.remove(&installed)
    }

    /// The pairs probed: every ordered pair whose destination listens.
    public var probedPairs: [HostLink] { grudge.pairs.filter { ports[$0.to] != nil } }

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        let matrix: ProbeMatrix
        do {
            matrix = try probeMatrix()
        } catch {
            return .unknown("cannot probe: \(error)")
        }
        lastMatrix = matrix
        guard !probedPairs.isEmpty else { return .unknown("no host listens: nothing to probe") }
        let evidence = matrix.evidence(grudge, phase: phase, pairs: probedPairs)
        guard phase == .active, evidence.verified == .yes, !oneWayLinks.isEmpty else { return evidence }
        let direction = directionEvidence()
        let text = "\(evidence.text); \(direction.text)"
        return direction.verified == .yes ? .yes(text) : direction.verified == .no ? .no(text) : .unknown(text)
    }

    /// Blocked links whose reverse passes: TCP fails both ways on them, so only datagrams show the direction.
    public var oneWayLinks: [HostLink] {
        grudge.blocked.filter { !grudge.blocked.contains($0.reversed) }.sorted()
    }

    /// For every one-way link, 20 numbered UDP datagrams each way (the rules match every protocol): none may arrive
    /// in the blocked direction, and at least 18 must in the open one. A cut put in the reverse direction, which the
    /// TCP matrix cannot tell apart, verifies `no` here.
    func directionEvidence() -> FaultEvidence {
        var notes: [String] = []
        var wrong: [String] = []
        for link in oneWayLinks {
            guard let from = hosts[link.from], let to = hosts[link.to] else { continue }
            do {
                let blocked = try Self.delivered(from: from, to: to)
                let open = try Self.delivered(from: to, to: from)
                notes.append("\(link): \(blocked)/20 datagrams, back \(open)/20")
                if blocked > 0 { wrong.append("\(link) passed \(blocked) of 20 datagrams") }
                if open < 18 { wrong.append("\(link.reversed) (open) passed only \(open) of 20 datagrams") }
            } catch {
                return .unknown("cannot send datagrams on \(link): \(error)")
            }
        }
        let summary = "direction: " + notes.prefix(6).joined(separator: "; ") + (notes.count > 6 ? "; …" : "")
        return wrong.isEmpty
            ? .yes(summary) : .no(summary + "; wrong direction: " + wrong.prefix(6).joined(separator: "; "))
    }

    static func delivered(from: FaultHost, to: FaultHost) throws -> Int {
        let receiver = try UDPReceiver(in: to)
        defer { receiver.close() }
        return try HostSockets.udpDelivery(from: from, to: receiver, count: 20, linger: .milliseconds(100))
    }

    /// Probes every pair at once: one thread per source host, all its connects in flight together, so a matrix
    /// takes about one `probeTimeout` however many pairs it has.
    public func probeMatrix() throws -> ProbeMatrix {
        let collected = Collected()
        let group = DispatchGroup()
        for source in grudge.hosts {
            let targets = grudge.hosts.filter { $0 != source && ports[$0] != nil }
            guard !targets.isEmpty, let host = hosts[source] else { continue }
            let endpoints = targets.map { HostPort(host: hosts[$0]!.address, port: ports[$0]!) }
            group.enter()
            let timeout = probeTimeout
            let thread = Thread {
                defer { group.leave() }
                do {
                    if let network = host.network { try HostNetwork.enterForCurrentThread(network) }
                    let row = HostSockets.connectAllHere(endpoints, timeout: timeout)
                    collected.add(
                        Dictionary(uniqueKeysWithValues: targets.enumerated().map { (HostLink(source, $1), row[$0]) }))
                } catch {
                    collected.fail(error)
                }
            }
            thread.name = "kiln-probe-\(source)"
            thread.start()
        }
        group.wait()
        return try collected.matrix()
    }

    private final class Collected: @unchecked Sendable {
        // @unchecked: both fields change only under `lock`.
        private let lock = NSLock()
        private var results: [HostLink: TCPProbe.Result] = [:]
        private var failure: (any Error)?

        func add(_ row: [HostLink: TCPProbe.Result]) {
            lock.withLock { results.merge(row) { a, _ in a } }
        }

        func fail(_ error: any Error) { lock.withLock { failure = error } }

        func matrix() throws -> ProbeMatrix {
            try lock.withLock {
                if let failure { throw failure }
                return ProbeMatrix(results: results)
            }
        }
    }

    public func teardown() {
        try? stop()
        for host in Set(hosts.values) { HostCommands.removeTagged(host, runID: runID) }
    }
}
