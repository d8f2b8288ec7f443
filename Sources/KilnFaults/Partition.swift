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

    public var description: String {
        switch self {
        case .isolate(let node): "isolate \(node)"
        case .split(let a, let b): "split \(a.joined(separator: ",")) | \(b.joined(separator: ","))"
        case .oneWay(let from, let to): "drop \(from) -> \(to)"
        }
    }

    var addresses: [String] {
        switch self {
        case .isolate(let node): [node]
        case .split(let a, let b): a + b
        case .oneWay(let from, let to): [from, to]
        }
    }
}

public struct PartitionError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// iptables rules for a partition. Every rule is in the INPUT chain (loopback traffic passes OUTPUT then INPUT,
/// so one chain covers both directions) and carries `-m comment --comment kiln-fault:<run-id>`, so that
/// `PartitionSweeper` can remove leftovers of a crashed run. Only single IPv4 addresses in 127.0.0.0/8 are
/// accepted: Kiln never partitions a real network.
public enum PartitionRules {
    public static let commentPrefix = "kiln-fault:"

    /// The rules (after `iptables -w -I` / `-D`), in the order they must end up at the top of INPUT (ahead of any
    /// ACCEPT rule already there).
    public static func rules(for shape: PartitionShape, runID: String) throws(PartitionError) -> [[String]] {
        try validate(runID: runID)
        for address in shape.addresses { try validateLoopback(address) }
        let tag = ["-m", "comment", "--comment", commentPrefix + runID]
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

    /// `iptables -S` lines that carry a kiln-fault comment (for `runID` only when given).
    static func taggedRules(runID: String? = nil) throws -> [String] {
        let tag = PartitionRules.commentPrefix + (runID ?? "")
        return try run(["-S"]).split(separator: "\n").map(String.init).filter { line in
            guard let range = line.range(of: "--comment ") else { return false }
            let comment = line[range.upperBound...].split(separator: " ").first.map {
                $0.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
            guard let comment else { return false }
            return runID == nil ? comment.hasPrefix(tag) : comment == tag
        }
    }
}

/// Removes kiln-fault iptables rules: every one (start-up of `kiln stack up`, SIGINT) or one run's.
public enum PartitionSweeper {
    /// Deletes every rule tagged `kiln-fault:` (of `runID` only when given) and returns how many it deleted.
    @discardableResult
    public static func removeLeftovers(runID: String? = nil) throws -> Int {
        var removed = 0
        for line in try IPTables.taggedRules(runID: runID) {
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

/// A TCP probe from one loopback address to a server, used as partition evidence.
public struct PartitionProbe: Sendable, Equatable {
    public var source: String
    public var destination: HostPort

    public init(from source: String, to destination: HostPort) {
        self.source = source
        self.destination = destination
    }

    func run(timeout: Duration) -> TCPProbe.Result {
        TCPProbe.connect(to: destination, from: source, timeout: timeout)
    }

    public var description: String { "\(source) -> \(destination)" }
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
    private var installed: [[String]] = []

    public var kind: String { "partition" }
    public var target: String { shape.description }

    public init(
        name: String? = nil, shape: PartitionShape, runID: String, blocked: [PartitionProbe] = [],
        control: [PartitionProbe] = [], probeTimeout: Duration = .milliseconds(500)
    ) throws(PartitionError) {
        self.name = name ?? "partition-\(shape.addresses.joined(separator: "-"))"
        self.shape = shape
        self.runID = runID
        self.blocked = blocked
        self.control = control
        self.probeTimeout = probeTimeout
        // Refuse bad addresses before anything starts.
        _ = try PartitionRules.rules(for: shape, runID: runID)
        for probe in blocked + control { try PartitionRules.validateLoopback(probe.source) }
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
