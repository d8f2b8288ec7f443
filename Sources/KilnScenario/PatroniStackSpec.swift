import Foundation
import KilnCore

/// A `kind: patroni` stack file: an etcd cluster and PostgreSQL nodes managed by Patroni, every member on its own
/// host of Kiln's host network (10.213.7.0/24, one network namespace each). Parsed as strictly as the other stack
/// files: an unknown key or a bad value is a `SpecError` naming file:line:column and the field.
///
/// Guarantees after parsing: every address is a distinct host address of 10.213.7.0/24 (not one of the pipeline sink
/// hosts .61–.64 or the client groups .201–.209, which other stacks own); Patroni's timing satisfies its own rule
/// `loop_wait + 2 × retry_timeout ≤ ttl` with ttl ≥ 20 s; at least two nodes (one leader, one replica) and an odd
/// number of etcd members (a majority must be able to exist).
public struct PatroniStackSpec: Sendable {
    public var name: String
    public var chaosTarget: Bool
    /// etcd client endpoints (the peer port is the client port + 1).
    public var etcdMembers: [HostPort]
    /// PostgreSQL endpoints of the nodes; each node's REST API listens on the same host at `restPort`.
    public var nodes: [HostPort]
    public var restPort: Int
    /// Patroni's cluster name (`scope`) and DCS prefix.
    public var scope: String
    public var ttl: Duration
    public var loopWait: Duration
    public var retryTimeout: Duration
    /// `synchronous_mode` at bootstrap (a drill can change it through the REST API).
    public var synchronousMode: Bool
    public var maximumLagOnFailover: Int
    public var database: String
    public var user: String
    /// Client groups (Kiln's load workers from their own hosts), named, with their addresses.
    public var clientGroups: [(name: String, address: HostAddress)]
    public var source: String

    /// The host name of etcd member `index` (0-based): `etcd-1`, …
    public static func etcdHostName(_ index: Int) -> String { "etcd-\(index + 1)" }
    /// The host name of node `index` (0-based): `pg-1`, …; also its Patroni member name.
    public static func nodeHostName(_ index: Int) -> String { "pg-\(index + 1)" }

    public func restEndpoint(ofNode index: Int) -> HostPort { HostPort(host: nodes[index].host, port: restPort) }
    public func peerPort(ofMember index: Int) -> Int { etcdMembers[index].port + 1 }

    /// True when the file at `url` declares `kind: patroni` (read without validating the rest).
    public static func declaresPatroni(_ url: URL) -> Bool {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return false }
        return text.split(separator: "\n").contains { line in
            let trimmed = line.split(separator: "#", maxSplits: 1).first.map(String.init) ?? ""
            return trimmed.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: " ", with: "") == "kind:patroni"
        }
    }

    public static func load(contentsOf url: URL) throws(SpecError) -> PatroniStackSpec {
        try parse(YAMLFields.document(contentsOf: url))
    }

    public static func parse(_ text: String, file: String) throws(SpecError) -> PatroniStackSpec {
        try parse(YAMLFields.document(text, file: file))
    }

    public static func parse(_ fields: YAMLFields) throws(SpecError) -> PatroniStackSpec {
        let kind = try fields.string("kind")
        guard kind == "patroni" else { throw fields.error("kind", "a Patroni stack file says `kind: patroni`") }
        let name = try fields.string("name")
        guard StackDefinition.isHostName(name) else {
            throw fields.error("name", "a hosts stack's name tags its namespaces: a-z, 0-9 and -, at most 40 characters")
        }
        let network = try fields.string("network")
        guard network == "hosts" else {
            throw fields.error("network", "a Patroni stack runs every member on its own host: `network: hosts`")
        }
        if let subnet = try fields.optionalString("subnet"), subnet != HostAddress.subnet {
            throw fields.error("subnet", "\(subnet.debugDescription): Kiln's hosts live on \(HostAddress.subnet) only")
        }
        let chaosTarget = try fields.bool("chaos_target", default: true)

        let etcd = try fields.mapping("etcd")
        let members = try etcd.hostPorts("members", required: true)
        guard (1...7).contains(members.count), members.count % 2 == 1 else {
            throw etcd.error("members", "1, 3, 5 or 7 etcd members (a majority must exist), found \(members.count)")
        }
        for member in members where member.port == 65535 {
            throw etcd.error("members", "\(member): the peer port is the client port + 1, which must be ≤ 65535")
        }
        try etcd.finish()

        let patroni = try fields.mapping("patroni")
        let nodes = try patroni.hostPorts("nodes", required: true)
        guard (2...9).contains(nodes.count) else {
            throw patroni.error("nodes", "2 to 9 PostgreSQL nodes (one leader and at least one replica), found \(nodes.count)")
        }
        let restPort = try patroni.int("rest_port", default: 8008, range: 1...65535)
        if let clash = nodes.first(where: { $0.port == restPort }) {
            throw patroni.error("rest_port", "\(restPort) is also \(clash)'s PostgreSQL port")
        }
        let scope = try patroni.optionalString("scope") ?? "kiln"
        guard StackDefinition.isHostName(scope) else {
            throw patroni.error("scope", "a-z, 0-9 and -, at most 40 characters")
        }
        let ttl = try patroni.duration("ttl", default: .seconds(20))
        let loopWait = try patroni.duration("loop_wait", default: .seconds(2))
        let retryTimeout = try patroni.duration("retry_timeout", default: .seconds(5))
        for (key, value, range) in [
            ("ttl", ttl, 20...3600), ("loop_wait", loopWait, 1...3600), ("retry_timeout", retryTimeout, 3...3600),
        ] {
            let (seconds, attoseconds) = value.components
            guard attoseconds == 0, range.contains(Int(seconds)) else {
                throw patroni.error(
                    key, "whole seconds between \(range.lowerBound) s and \(range.upperBound) s (Patroni's limits), found \(value)")
            }
        }
        guard loopWait + retryTimeout * 2 <= ttl else {
            throw patroni.error(
                "ttl", "Patroni needs loop_wait + 2 × retry_timeout ≤ ttl (\(loopWait) + 2 × \(retryTimeout) > \(ttl))")
        }
        let synchronousMode = try patroni.bool("synchronous_mode", default: false)
        let maximumLag = try patroni.int("maximum_lag_on_failover", default: 1_048_576, range: 0...Int(Int32.max))
        try patroni.finish()

        var database = "kiln"
        var user = "postgres"
        if let pg = try fields.optionalMapping("postgres") {
            database = try pg.optionalString("database") ?? "kiln"
            user = try pg.optionalString("user") ?? "postgres"
            for (key, value) in [("database", database), ("user", user)] where !isIdentifier(value) {
                throw pg.error(key, "a-z, 0-9 and _, starting with a letter, at most 63 characters")
            }
            try pg.finish()
        }

        // Every member on its own host; the hosts other stacks own are refused so both can run at once.
        var holders: [String: String] = [:]
        for (section, key, addresses) in [("etcd", "members", members), ("patroni", "nodes", nodes)] {
            let mapping = try fields.mapping(section)
            for (index, address) in addresses.enumerated() {
                guard let host = HostAddress(address.host) else {
                    throw mapping.error(
                        key, "\(address.host) (item \(index)) is not a host address of \(HostAddress.subnet) (.2–.254)")
                }
                guard !(61...64).contains(Int(host.octet)), host.octet < 201 || host.octet > 209 else {
                    throw mapping.error(
                        key, "\(address.host) belongs to another stack's hosts (sink hosts .61–.64, client groups .201–.209)")
                }
                if let holder = holders[address.host] {
                    throw mapping.error(key, "\(address.host) is also \(holder)'s: each member needs its own host")
                }
                holders[address.host] = "\(section).\(key)[\(index)]"
            }
        }

        var groups: [(name: String, address: HostAddress)] = []
        if fields.contains("client_groups") {
            let groupFields = try fields.mapping("client_groups")
            for key in groupFields.keys {
                guard StackDefinition.isHostName(key) else {
                    throw groupFields.error(key, "a-z, 0-9 and -, at most 40 characters")
                }
                let text = try groupFields.string(key)
                guard let address = HostAddress(text) else {
                    throw groupFields.error(key, "\(text) is not a host address of \(HostAddress.subnet) (.2–.254)")
                }
                if let holder = holders[text] {
                    throw groupFields.error(key, "\(text) is also \(holder)'s")
                }
                holders[text] = "client_groups.\(key)"
                groups.append((key, address))
            }
            try groupFields.finish()
        }
        try fields.finish()
        return PatroniStackSpec(
            name: name, chaosTarget: chaosTarget, etcdMembers: members, nodes: nodes, restPort: restPort, scope: scope,
            ttl: ttl, loopWait: loopWait, retryTimeout: retryTimeout, synchronousMode: synchronousMode,
            maximumLagOnFailover: maximumLag, database: database, user: user, clientGroups: groups,
            source: fields.file)
    }

    private static func isIdentifier(_ text: String) -> Bool {
        guard let first = text.first, ("a"..."z").contains(first), text.count <= 63 else { return false }
        return text.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }
}
