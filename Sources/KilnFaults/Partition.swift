import Foundation
import KilnCore
import KilnStack

/// Which traffic a partition drops, between loopback aliases (each server binds its own 127.0.0.x, STACK.md).
public enum PartitionShape: Sendable, Equatable {
    /// Nothing reaches `node` from another address, nothing from `node` reaches another address.
    case isolate(String)
    /// No traffic in either direction between any address of `a` and any of `b`.
    case split([String], [String])
    /// Packets from `from` to `to` are dropped; the other direction passes.
    case oneWay(from: String, to: String)
    /// TCP packets that processes of `user` send to `server` (OUTPUT chain, owner match): clients running as that user
    /// lose the server — new connections and live ones — while other users' clients keep it. On the embedded stack
    /// this is how a PostgreSQL standby (walreceiver, user postgres) is cut from its primary while Kiln (root) is not:
    /// every server there connects from 127.0.0.1, so addresses cannot tell the two apart.
    case userToServer(user: String, server: HostPort)
    /// TCP packets from `server` to one local port: the server's side of one live connection (the primary's WAL
    /// stream to its standby's client port). A reconnect from another port escapes it.
    case serverToPort(server: HostPort, port: Int)
    /// Several shapes at once.
    case all([PartitionShape])

    public var description: String {
        switch self {
        case .isolate(let node): "isolate \(node)"
        case .split(let a, let b): "split \(a.joined(separator: ",")) | \(b.joined(separator: ","))"
        case .oneWay(let from, let to): "drop \(from) -> \(to)"
        case .userToServer(let user, let server): "drop user \(user) -> \(server)"
        case .serverToPort(let server, let port): "drop \(server) -> local port \(port)"
        case .all(let shapes): shapes.map(\.description).joined(separator: "; ")
        }
    }

    var addresses: [String] {
        switch self {
        case .isolate(let node): [node]
        case .split(let a, let b): a + b
        case .oneWay(let from, let to): [from, to]
        case .userToServer(_, let server): [server.host]
        case .serverToPort(let server, _): [server.host]
        case .all(let shapes): shapes.flatMap(\.addresses)
        }
    }
}

public struct PartitionError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// iptables rules for a partition. Address rules are in the INPUT chain (loopback traffic passes OUTPUT then INPUT,
/// so one chain covers both directions), owner rules in OUTPUT (the only chain that knows the sending user); every
/// rule carries `-m comment --comment kiln-fault:<run-id>`, so that
/// `PartitionSweeper` can remove leftovers of a crashed run. Only single IPv4 addresses in 127.0.0.0/8 are
/// accepted: Kiln never partitions a real network.
public enum PartitionRules {
    public static let commentPrefix = "kiln-fault:"
    /// Between the run id and the owner in a rule's comment (never in a run id).
    static let ownerSeparator: Character = "@"

    /// The comment of the rules `owner` (default: this process) puts in for `runID`:
    /// `kiln-fault:<run-id>@p<pid>-<start ticks>`, so a sweep can tell a live run's rules from a crashed one's.
    public static func comment(runID: String, owner: HostOwner = .currentProcess) -> String {
        commentPrefix + runID + String(ownerSeparator) + owner.tag
    }

    /// The run id and owner a rule's comment names; nil for a comment that is not Kiln's. The owner is nil for a
    /// comment of an older Kiln that named none.
    public static func parse(comment: String) -> (runID: String, owner: HostOwner?)? {
        guard comment.hasPrefix(commentPrefix) else { return nil }
        let rest = comment.dropFirst(commentPrefix.count)
        guard let at = rest.lastIndex(of: ownerSeparator) else { return (String(rest), nil) }
        return (String(rest[..<at]), HostOwner(tag: rest[rest.index(after: at)...]))
    }

    /// The rules (after `iptables -w -I` / `-D`), in the order they must end up at the top of INPUT (ahead of any
    /// ACCEPT rule already there).
    public static func rules(for shape: PartitionShape, runID: String) throws(PartitionError) -> [[String]] {
        try validate(runID: runID)
        for address in shape.addresses { try validateLoopback(address) }
        let tag = ["-m", "comment", "--comment", comment(runID: runID)]
        func drop(source: String, destination: String) -> [String] {
            ["INPUT", "-s", source + "/32", "-d", destination + "/32"] + tag + ["-j", "DROP"]
        }
        switch shape {
        case .isolate(let node):
            // The node still talks to itself (the ACCEPT comes first); other loopback aliases are cut both ways.
            return [
                ["INPUT", "-s", node + "/32", "-d", node + "/32"] + tag + ["-j", "ACCEPT"],
                ["INPUT", "-s", "127.0.0.0/8", "-d", node + "/32"] + tag + ["-j", "DROP"],
                ["INPUT", "-s", node + "/32", "-d", "127.0.0.0/8"] + tag + ["-j", "DROP"],
            ]
        case .split(let a, let b):
            guard Set(a).isDisjoint(with: Set(b)) else { throw PartitionError("split: an address is on both sides") }
            var rules: [[String]] = []
            for x in a {
                for y in b {
                    rules.append(drop(source: x, destination: y))
                    rules.append(drop(source: y, destination: x))
                }
            }
            return rules
        case .oneWay(let from, let to):
            guard from != to else { throw PartitionError("one-way drop: from and to are the same address") }
            return [drop(source: from, destination: to)]
        case .userToServer(let user, let server):
            guard user.first.map({ $0.isLetter || $0 == "_" }) == true,
                user.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") })
            else { throw PartitionError("\(user.debugDescription) is not a user name") }
            return [
                ["OUTPUT", "-p", "tcp", "-d", server.host + "/32", "--dport", String(server.port), "-m", "owner",
                 "--uid-owner", user] + tag + ["-j", "DROP"]
            ]
        case .serverToPort(let server, let port):
            guard (1...65535).contains(port), (1...65535).contains(server.port) else {
                throw PartitionError("port \(port) or \(server.port) is out of range")
            }
            return [
                ["INPUT", "-p", "tcp", "-s", server.host + "/32", "--sport", String(server.port), "--dport", String(port)]
                    + tag + ["-j", "DROP"]
            ]
        case .all(let shapes):
            var rules: [[String]] = []
            for shape in shapes { rules += try self.rules(for: shape, runID: runID) }
            return rules
        }
    }

    /// Accepts `127.x.y.z` (one host), refuses everything else, including networks and names.
    public static func validateLoopback(_ address: String) throws(PartitionError) {
        let parts = address.split(separator: ".", omittingEmptySubsequences: false)
        let octets = parts.compactMap { UInt8($0) }
        guard parts.count == 4, octets.count == 4, octets[0] == 127 else {
            throw PartitionError(
                "\(address.debugDescription) is not a single 127.0.0.0/8 address; partitions act on loopback aliases only"
            )
        }
        guard octets != [127, 0, 0, 1], octets[3] != 0, octets[3] != 255 else {
            throw PartitionError(
                "\(address) is reserved (127.0.0.1 is every local tool's address): bind the servers to other aliases")
        }
    }

    static func validate(runID: String) throws(PartitionError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
        guard !runID.isEmpty, runID.count <= 200, runID.allSatisfy({ allowed.contains($0) }) else {
            throw PartitionError("run id \(runID.debugDescription) must be letters, digits, _ - . (at most 200)")
        }
    }
}

/// Runs iptables (`-w`: waits for the xtables lock, other runs may change rules at the same time).
enum IPTables {
    static var executable: String {
        ["/usr/sbin/iptables", "/sbin/iptables"].first { FileManager.default.isExecutableFile(atPath: $0) }
            ?? "iptables"
    }

    static func run(_ arguments: [String]) throws -> String {
        do {
            return try LocalProcess.run(executable, ["-w", "5"] + arguments)
        } catch {
            throw PartitionError("iptables \(arguments.joined(separator: " ")): \(error)")
        }
    }

    /// The comment of an `iptables -S` line (`--comment "…"`, quotes removed); nil when it has none.
    static func comment(of line: some StringProtocol) -> String? {
        guard let range = line.range(of: "--comment ") else { return nil }
        return line[range.upperBound...].split(separator: " ").first.map {
            $0.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
    }

    /// `iptables -S` lines that carry a kiln-fault comment (for `runID` only when given, whoever owns it).
    static func taggedRules(runID: String? = nil) throws -> [String] {
        try run(["-S"]).split(separator: "\n").map(String.init).filter { line in
            guard let comment = comment(of: line), let (id, _) = PartitionRules.parse(comment: comment) else {
                return false
            }
            return runID == nil || id == runID
        }
    }
}

/// Removes kiln-fault iptables rules of the root namespace: one run's, every one, or only those whose owning process
/// is gone (what `kiln stack up` sweeps, so runs in progress keep theirs).
public enum PartitionSweeper {
    /// Deletes every rule tagged `kiln-fault:` (of `runID` only when given) and returns how many it deleted.
    @discardableResult
    public static func removeLeftovers(runID: String? = nil) throws -> Int {
        try remove(try IPTables.taggedRules(runID: runID))
    }

    /// Deletes the `kiln-fault:` rules whose owner is no longer running (a crashed or killed run; also rules of an
    /// older Kiln that named no owner), and with `includingThisProcess` this process's own; keeps every rule of
    /// another live process. Returns how many it deleted.
    @discardableResult
    public static func removeOrphaned(includingThisProcess: Bool = false) throws -> Int {
        try remove(try orphanedRules(includingThisProcess: includingThisProcess))
    }

    /// The `iptables -S` lines `removeOrphaned` would delete, without deleting them.
    public static func orphanedRules(includingThisProcess: Bool = false) throws -> [String] {
        let me = HostOwner.currentProcess
        return try IPTables.taggedRules().filter { line in
            guard let comment = IPTables.comment(of: line), let (_, owner) = PartitionRules.parse(comment: comment)
            else { return false }
            guard let owner else { return true }
            return !owner.isAlive || (includingThisProcess && owner == me)
        }
    }

    private static func remove(_ lines: [String]) throws -> Int {
        var removed = 0
        for line in lines {
            // `-S` prints `-A CHAIN spec...`; the same spec after `-D` deletes it. Our comments carry no spaces
            // or quotes (validated run ids), so splitting on spaces is exact.
            var words = line.split(separator: " ").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            guard words.first == "-A" else { continue }
            words[0] = "-D"
            _ = try IPTables.run(words)
            removed += 1
        }
        return removed
    }
}

/// A TCP connect to a server, used as partition evidence: from one loopback address, or by a process running as
/// `user` (the connect then runs in `runuser -u USER -- timeout … bash -c 'exec 3<>/dev/tcp/…'`).
public struct PartitionProbe: Sendable, Equatable {
    public var source: String?
    public var user: String?
    public var destination: HostPort

    public init(from source: String, to destination: HostPort) {
        self.source = source
        self.destination = destination
    }

    public init(asUser user: String, to destination: HostPort) {
        self.user = user
        self.destination = destination
    }

    func run(timeout: Duration) -> TCPProbe.Result {
        guard let user else { return TCPProbe.connect(to: destination, from: source, timeout: timeout) }
        let seconds = String(format: "%.1f", max(timeout.seconds, 0.1))
        do {
            try LocalProcess.run(
                "/usr/bin/timeout",
                ["-s", "KILL", seconds, "/bin/bash", "-c", "exec 3<>/dev/tcp/\(destination.host)/\(destination.port)"],
                user: user)
            return .answered
        } catch let failure as LocalProcess.Failure {
            // timeout's status for a command it killed: 124, or 128+9 with -s KILL.
            return failure.status == 124 || failure.status == 137 ? .timedOut : .refused(failure.description)
        } catch {
            return .refused("\(error)")
        }
    }

    public var description: String {
        if let user { return "as \(user) -> \(destination)" }
        return "\(source ?? "*") -> \(destination)"
    }
}

/// A network partition by iptables on loopback aliases. Evidence: while active, every `blocked` probe times
/// out and every `control` probe connects; after stop, no rule of this run remains and every probe connects.
/// Without probes the verdict is `unknown`. `teardown` removes this run's rules whatever happened.
public final class PartitionFault: Fault {
    public let name: String
    public let shape: PartitionShape
    public let runID: String
    public let blocked: [PartitionProbe]
    public let control: [PartitionProbe]
    public let probeTimeout: Duration
    /// Evidence beyond the probes (e.g. a standby's WAL position), combined with theirs; nil: probes only.
    public let effect: (@Sendable (FaultPhase) -> FaultEvidence)?
    private let label: String?
    private var installed: [[String]] = []

    public var kind: String { "partition" }
    /// The label given (a server name first, so the drill metrics find its store) and the rules' shape.
    public var target: String { label.map { "\($0) (\(shape.description))" } ?? shape.description }

    public init(
        name: String? = nil, shape: PartitionShape, runID: String, label: String? = nil, blocked: [PartitionProbe] = [],
        control: [PartitionProbe] = [], probeTimeout: Duration = .milliseconds(500),
        effect: (@Sendable (FaultPhase) -> FaultEvidence)? = nil
    ) throws(PartitionError) {
        self.name = name ?? "partition-\(shape.addresses.joined(separator: "-"))"
        self.shape = shape
        self.runID = runID
        self.label = label
        self.blocked = blocked
        self.control = control
        self.probeTimeout = probeTimeout
        self.effect = effect
        // Refuse bad addresses before anything starts.
        _ = try PartitionRules.rules(for: shape, runID: runID)
        for probe in blocked + control {
            if let source = probe.source { try PartitionRules.validateLoopback(source) }
        }
    }

    public func start() throws {
        // Inserting at the top in reverse leaves them in `rules` order, ahead of the chain's other rules.
        for rule in try PartitionRules.rules(for: shape, runID: runID).reversed() {
            _ = try IPTables.run(["-I"] + rule)
            installed.append(rule)
        }
    }

    public func stop() throws {
        while let rule = installed.first {
            installed.removeFirst()
            _ = try IPTables.run(["-D"] + rule)
        }
    }

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        let rules: [String]
        do {
            rules = try IPTables.taggedRules(runID: runID)
        } catch {
            return .unknown("cannot list iptables rules: \(error)")
        }
        let probes = probeEvidence(phase, rules: rules)
        guard let effect else { return probes }
        // Either kind of evidence may be undecided (no probe for this direction; no effect to observe); what the
        // other proves then stands, and a `no` from either disproves.
        let observed = effect(phase)
        let text = "\(probes.text); \(observed.text)"
        if probes.verified == .no || observed.verified == .no { return .no(text) }
        if probes.verified == .yes || observed.verified == .yes {
            let rulesAsExpected = phase == .active ? !rules.isEmpty : rules.isEmpty
            return rulesAsExpected ? .yes(text) : .no(text)
        }
        return .unknown(text)
    }

    private func probeEvidence(_ phase: FaultPhase, rules: [String]) -> FaultEvidence {
        switch phase {
        case .active:
            guard rules.count >= installed.count, !installed.isEmpty else {
                return .no("\(installed.count) rules expected, \(rules.count) found")
            }
            guard !blocked.isEmpty else { return .unknown("\(rules.count) rules in place; no probe to prove the drop") }
            var notes: [String] = []
            for probe in blocked {
                let result = probe.run(timeout: probeTimeout)
                guard result == .timedOut else { return .no("\(probe.description) was not blocked: \(result)") }
                notes.append("\(probe.description) timed out")
            }
            for probe in control {
                let result = probe.run(timeout: probeTimeout)
                guard result.answered else { return .unknown("control \(probe.description) failed too: \(result)") }
                notes.append("control \(probe.description) connected")
            }
            return .yes("\(rules.count) rules; " + notes.joined(separator: "; "))
        case .healed:
            guard rules.isEmpty else { return .no("\(rules.count) kiln-fault:\(runID) rules remain") }
            let probes = blocked + control
            guard !probes.isEmpty else { return .unknown("rules removed; no probe to prove traffic flows") }
            for probe in probes {
                let result = probe.run(timeout: probeTimeout)
                guard result.answered else { return .no("\(probe.description) still fails: \(result)") }
            }
            return .yes("rules removed; \(probes.count) probes connected")
        }
    }

    public func teardown() {
        try? stop()
        _ = try? PartitionSweeper.removeLeftovers(runID: runID)
    }
}
