import Foundation
import KilnCore

/// The fault schedule of a scenario (`faults:`, `proxy:`, `chaos:`, `heal_wait:`; Scenarios/README.md, "Faults").
/// Times are offsets from the start of the first phase. A fault instance starts at `at` (+ `every` × k for
/// repeats, + a jitter drawn from the run's seed, so a schedule is the same on every run of the same scenario),
/// holds for `duration`, and is then stopped and verified. Overlapping faults are allowed.
public struct FaultScheduleSpec: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable, Equatable {
        /// SIGKILL, start again at the stop.
        case kill
        /// SIGSTOP, SIGCONT at the stop.
        case pause
        /// SIGTERM and wait for the exit, start again at the stop.
        case restart
        /// A toxic on the fault proxy in front of a store (`toxic:`, Toxiproxy's set, e.g. `latency=100ms`).
        case proxy
        /// iptables rules (`shape:`): `isolate` one server's loopback alias, or on a PostgreSQL primary
        /// `split-replica` (its streaming standby cut off both ways), `replica-to-primary` / `primary-to-replica`
        /// (one-way: only that direction of the replication link dropped).
        case partition
        /// Promote the PostgreSQL streaming replica and fence the old primary (`replication: async|sync`,
        /// `fence: stop|kill`, `heal: rebuild|leave-fenced`, `lag: 300ms` of replication lag first); clients follow
        /// the new primary.
        case pgFailover = "pg-failover"
        /// Redis Sentinel failover (`trigger: command|kill`); clients rediscover the primary through Sentinel.
        case redisFailover = "redis-failover"
        /// A wall-clock step (`offset: +10m`, `-30s`) on a server the stack starts under libfaketime.
        case clockSkew = "clock-skew"
        /// Random packet loss on the link between two hosts (`link: [a, b]`, `probability: 10%`); hosts stack only.
        case loss
        /// What one host sends held to a rate (`target: kafka`, `rate: 1MB/s`); hosts stack only.
        case bandwidth
        /// Latency (and `jitter`) on the link from a client host to a server (`link: [clients-a, redis-primary]`,
        /// `latency: 100ms`): that host's connections to the server go through a fault proxy; hosts stack only.
        case latency
    }

    /// A fault between hosts of the hosts stack (every server, sink and client group in its own network namespace).
    /// The loopback stack refuses these: its servers share one network namespace and connect from 127.0.0.1.
    public enum HostFault: Sendable, Equatable {
        /// A partition `shape` among `hosts` (empty: every server host of the stack; drawn shapes draw from them).
        case partition(HostPartitionShape, among: [String])
        /// Each of the two hosts drops `probability` of the packets it receives from the other.
        case loss(between: String, and: String, probability: Double)
        /// What `host` sends (its veth's egress) held to `bytesPerSecond` by a token bucket.
        case bandwidth(host: String, bytesPerSecond: Int)
        /// What `client` sends to the server host `server` (and its answers) delayed by `latency` ± `jitter`.
        case latency(client: String, server: String, latency: Duration, jitter: Duration)

        /// Every host the scenario named.
        public var namedHosts: [String] {
            switch self {
            case .partition(let shape, let hosts): hosts + shape.namedHosts.filter { !hosts.contains($0) }
            case .loss(let a, let b, _): [a, b]
            case .bandwidth(let host, _): [host]
            case .latency(let client, let server, _, _): [client, server]
            }
        }
    }

    /// `partition` shapes of the loopback stack; all but `isolate` act on a PostgreSQL primary and its streaming
    /// standby.
    public static let partitionShapes = ["isolate", "split-replica", "replica-to-primary", "primary-to-replica"]
    /// `partition` shapes between hosts (the hosts stack); `isolate` is both.
    public static let hostPartitionShapes = HostPartitionShape.Name.allCases.map(\.rawValue)

    public struct Entry: Sendable, Equatable {
        public var name: String
        public var kind: Kind
        /// An embedded server name (`redis-primary`, `postgres-primary`, `kafka`, …), `sink:<store>` for a
        /// reference-pipeline sink process, or the proxied store for `proxy`.
        public var target: String
        public var at: Duration
        public var duration: Duration
        public var every: Duration?
        public var times: Int
        public var jitter: Duration
        /// `proxy`: the toxic in `kiln proxy --toxic` form.
        public var toxic: String?
        /// `partition`: one of `partitionShapes` (`isolate`: nothing reaches the target server from another loopback
        /// address, and nothing from it reaches another).
        public var shape: String?
        /// `partition` between hosts, `loss`, `bandwidth`: what acts on the hosts stack (nil for loopback faults).
        public var hostFault: HostFault? = nil
        /// Failover options (`replication`, `fence`, `heal`, `trigger` as written; `lag_ms` from `lag`); clock-skew's
        /// `offset_s` (signed whole seconds) from `offset`.
        public var options: [String: String] = [:]
        /// Where its target was written, `file:line:column`.
        public var source: String
    }

    public var entries: [Entry]
    /// Stores whose clients connect through a fault proxy (`redis`, `postgres`, `clickhouse`, `falkordb`).
    public var proxied: [String]
    /// Hosts outside the stack's loopback addresses that faults may act on (also needs `--confirm-chaos`).
    public var allow: [String]
    /// After the last phase and every fault's stop: how long to wait before the pipeline convergence and checks.
    public var healWait: Duration

    public init(entries: [Entry] = [], proxied: [String] = [], allow: [String] = [], healWait: Duration = .seconds(5)) {
        self.entries = entries
        self.proxied = proxied
        self.allow = allow
        self.healWait = healWait
    }

    /// `proxiable`: the stores a fault proxy can sit in front of (the backends with a proxied endpoint,
    /// `BackendVocabulary.proxiable`).
    static func parse(_ scenario: YAMLFields, proxiable: [String]) throws(SpecError) -> FaultScheduleSpec? {
        guard scenario.contains("faults") || scenario.contains("proxy") || scenario.contains("chaos") else { return nil }
        var spec = FaultScheduleSpec()
        if scenario.contains("proxy") {
            for (text, line, column) in try scenario.strings("proxy") {
                guard proxiable.contains(text) else {
                    throw SpecError(
                        file: scenario.file, line: line, column: column, field: "proxy",
                        message: "cannot proxy '\(text)' (proxiable stores: \(proxiable.joined(separator: ", ")); "
                            + "Kafka clients follow the broker's advertised address, around any proxy)")
                }
                spec.proxied.append(text)
            }
        }
        if let chaos = try scenario.optionalMapping("chaos") {
            if chaos.contains("allow") { spec.allow = try chaos.strings("allow").map(\.text) }
            try chaos.finish()
        }
        spec.healWait = try scenario.duration("heal_wait", default: .seconds(5))
        var names: Set<String> = []
        if scenario.contains("faults") {
            for (index, fields) in try scenario.mappings("faults").enumerated() {
                let entry = try parseEntry(fields, index: index, proxied: spec.proxied)
                guard names.insert(entry.name).inserted else {
                    throw fields.error("name", "the fault name '\(entry.name)' is used twice")
                }
                spec.entries.append(entry)
            }
        }
        return spec
    }

    static func parseEntry(_ fields: YAMLFields, index: Int, proxied: [String]) throws(SpecError) -> Entry {
        let kindText = try fields.string("kind")
        guard let kind = Kind(rawValue: kindText) else {
            throw fields.error(
                "kind", "unknown fault kind '\(kindText)' (kinds: \(Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let targetAt = fields.location(fields.contains("target") ? "target" : "kind")
        var target: String
        switch kind {
        case .pgFailover: target = try fields.optionalString("target") ?? "postgres"
        case .redisFailover: target = try fields.optionalString("target") ?? "redis"
        case .partition: target = try fields.optionalString("target") ?? "hosts"
        case .loss, .latency: target = "link"
        default: target = try fields.string("target")
        }
        let name = try fields.optionalString("name") ?? "\(kind.rawValue)-\(target.replacingOccurrences(of: ":", with: "-"))-\(index + 1)"
        let at = try fields.duration("at")
        let duration = try fields.duration("duration", default: .seconds(10))
        if duration <= .zero { throw fields.error("duration", "must be longer than zero") }
        let every = fields.contains("every") ? try fields.duration("every") : nil
        let times = try fields.int("times", default: 1, range: 1...10_000)
        if times > 1 && every == nil { throw fields.error("times", "repeats need `every`") }
        if let every, every <= duration { throw fields.error("every", "must be longer than `duration` (\(duration))") }
        // A latency's `jitter` is the toxic's; its start is not jittered.
        let jitter = kind == .latency ? .zero : try fields.duration("jitter", default: .zero)
        var toxic: String?
        var shape: String?
        var options: [String: String] = [:]
        var hostFault: HostFault?
        switch kind {
        case .proxy:
            toxic = try fields.string("toxic")
            guard proxied.contains(target) else {
                throw fields.error("target", "'\(target)' is not proxied: add it to the scenario's `proxy:` list")
            }
        case .partition:
            let text = try fields.optionalString("shape") ?? "isolate"
            if HostPartitionShape.Name(rawValue: text) != nil {
                hostFault = try parseHostPartition(fields, shape: text, target: target)
                if text == "isolate" && fields.contains("target") { shape = text }
            } else {
                // The loopback stack's servers connect to each other from 127.0.0.1, so rules between two aliases
                // would not match their traffic: there splits act on the one link that can be told apart, PostgreSQL
                // replication (its standby runs as the postgres user, Kiln as root).
                guard partitionShapes.contains(text) else {
                    throw fields.error(
                        "shape", "unknown shape '\(text)' (between hosts of the hosts stack: "
                            + "\(hostPartitionShapes.joined(separator: ", ")); on a PostgreSQL primary's replication link: "
                            + "\(partitionShapes.dropFirst().joined(separator: ", ")))")
                }
                if !target.hasPrefix("postgres") {
                    throw fields.error(
                        "shape", "\(text) acts on a PostgreSQL primary and its standby; target a postgres server")
                }
                shape = text
            }
        case .loss:
            let link = try fields.strings("link")
            guard link.count == 2 else {
                throw fields.error(
                    "link", "expected the two hosts of one link, e.g. [clients-a, redis-primary], found \(link.count)")
            }
            for host in link { try checkHostName(host, fields: fields, key: "link") }
            guard link[0].text != link[1].text else {
                throw fields.error("link", "the two ends are the same host '\(link[0].text)'")
            }
            let probability = try fields.string("probability")
            guard let share = Share.parse(probability) else {
                throw fields.error(
                    "probability", "expected a share above 0 and at most 100% such as 10% or 0.1, found '\(probability)'")
            }
            hostFault = .loss(between: link[0].text, and: link[1].text, probability: share)
            target = "\(link[0].text)<->\(link[1].text)"
        case .bandwidth:
            let at = fields.location("target")
            try checkHostName((target, at.line, at.column), fields: fields, key: "target")
            let text = try fields.string("rate")
            guard let rate = ByteRate.parse(text) else {
                throw fields.error(
                    "rate", "expected a rate between 1kB/s and 10GB/s such as 1MB/s, 500kB/s or 8Mbit/s, found '\(text)'")
            }
            hostFault = .bandwidth(host: target, bytesPerSecond: rate)
        case .latency:
            let link = try fields.strings("link")
            guard link.count == 2 else {
                throw fields.error(
                    "link", "expected a client host and a server host, e.g. [clients-a, redis-primary], found "
                        + "\(link.count)")
            }
            for host in link { try checkHostName(host, fields: fields, key: "link") }
            guard link[0].text != link[1].text else {
                throw fields.error("link", "the two ends are the same host '\(link[0].text)'")
            }
            guard link[0].text != "kiln" else {
                throw fields.error(
                    "link", "the client end cannot be kiln: Kiln's own host runs the proxy that delays the link")
            }
            let latency = try fields.duration("latency")
            guard latency >= .milliseconds(5), latency <= .seconds(60) else {
                throw fields.error("latency", "must be between 5ms (this machine's own jitter) and 60s")
            }
            let spread = try fields.duration("jitter", default: .zero)
            guard spread <= latency else { throw fields.error("jitter", "must be at most the latency (\(latency))") }
            hostFault = .latency(client: link[0].text, server: link[1].text, latency: latency, jitter: spread)
            target = "\(link[0].text)->\(link[1].text)"
        case .clockSkew:
            let text = try fields.string("offset")
            let negative = text.hasPrefix("-")
            let magnitude = text.hasPrefix("-") || text.hasPrefix("+") ? String(text.dropFirst()) : text
            guard let value = DurationText.parse(magnitude), value >= .seconds(1) else {
                throw fields.error("offset", "expected a signed duration of at least 1s such as +10m or -30s, found '\(text)'")
            }
            options["offset_s"] = String((negative ? -1 : 1) * value.components.seconds)
        case .pgFailover:
            for (key, allowed) in [("replication", ["async", "sync"]), ("fence", ["stop", "kill", "none"]), ("heal", ["rebuild", "leave-fenced"])] {
                guard let value = try fields.optionalString(key) else { continue }
                guard allowed.contains(value) else {
                    throw fields.error(key, "expected \(allowed.joined(separator: " or ")), found '\(value)'")
                }
                options[key] = value
            }
            if options["fence"] == "none" && options["heal"] == "leave-fenced" {
                throw fields.error("heal", "fence: none needs heal: rebuild (leave-fenced would keep two primaries)")
            }
            // Replication lag before the fence (walsenders paused), so an async failover has acknowledged writes
            // the standby never received: a visible RPO instead of one that depends on luck.
            let lag = try fields.duration("lag", default: .zero)
            if lag > .zero { options["lag_ms"] = String(lag.wholeMilliseconds) }
        case .redisFailover:
            if let value = try fields.optionalString("trigger") {
                guard ["command", "kill"].contains(value) else {
                    throw fields.error("trigger", "expected command or kill, found '\(value)'")
                }
                options["trigger"] = value
            }
        case .kill, .pause, .restart:
            break
        }
        try fields.finish()
        return Entry(
            name: name, kind: kind, target: target, at: at, duration: duration, every: every, times: times,
            jitter: jitter, toxic: toxic, shape: shape, hostFault: hostFault, options: options,
            source: "\(fields.file):\(targetAt.line):\(targetAt.column)")
    }

    /// `shape:` between hosts with its fields: `target` (isolate, bridge; drawn when absent), `hosts` (the hosts
    /// drawn among), `from`/`to` (one-way), `sides` (named groups).
    static func parseHostPartition(_ fields: YAMLFields, shape text: String, target: String) throws(SpecError)
        -> HostFault
    {
        let named: String? = fields.contains("target") ? target : nil
        if let named {
            let at = fields.location("target")
            try checkHostName((named, at.line, at.column), fields: fields, key: "target")
        }
        var hosts: [String] = []
        if fields.contains("hosts") {
            for host in try fields.strings("hosts") {
                try checkHostName(host, fields: fields, key: "hosts")
                guard !hosts.contains(host.text) else { throw fields.error("hosts", "'\(host.text)' is listed twice") }
                hosts.append(host.text)
            }
        }
        func hostList(_ key: String) throws(SpecError) -> [String] {
            var names: [String] = []
            for host in try fields.strings(key) {
                try checkHostName(host, fields: fields, key: key)
                guard !names.contains(host.text) else { throw fields.error(key, "'\(host.text)' is listed twice") }
                names.append(host.text)
            }
            guard !names.isEmpty else { throw fields.error(key, "needs at least one host") }
            return names
        }
        let shape: HostPartitionShape
        switch HostPartitionShape.Name(rawValue: text)! {
        case .isolate: shape = .isolate(named)
        case .halves: shape = .halves
        case .majoritiesRing: shape = .majoritiesRing
        case .bridge: shape = .bridge(named)
        case .oneWay:
            let from = try hostList("from")
            let to = try hostList("to")
            if let both = from.first(where: to.contains) { throw fields.error("to", "'\(both)' is on both ends") }
            shape = .oneWay(from: from, to: to)
        case .sides:
            var groups: [[String]] = []
            var seen: Set<String> = []
            for group in try fields.stringLists("sides") {
                for host in group {
                    try checkHostName(host, fields: fields, key: "sides")
                    guard seen.insert(host.text).inserted else {
                        throw SpecError(
                            file: fields.file, line: host.line, column: host.column, field: fields.fieldPath("sides"),
                            message: "'\(host.text)' is on two sides")
                    }
                }
                guard !group.isEmpty else { throw fields.error("sides", "a side is empty") }
                groups.append(group.map(\.text))
            }
            guard groups.count >= 2 else {
                throw fields.error("sides", "needs at least two sides, found \(groups.count)")
            }
            shape = .sides(groups)
        }
        if !hosts.isEmpty, let stranger = shape.namedHosts.first(where: { !hosts.contains($0) }) {
            throw fields.error("hosts", "'\(stranger)' is named by the shape but is not in `hosts`")
        }
        let minimum = [.majoritiesRing, .bridge].contains(shape.name) ? 3 : 2
        if !hosts.isEmpty && hosts.count < minimum {
            throw fields.error("hosts", "\(text) needs at least \(minimum) hosts, found \(hosts.count)")
        }
        return .partition(shape, among: hosts)
    }

    /// Host names as the hosts stack spells them: lower-case letters, digits and `-`, 1–40 characters.
    static func checkHostName(
        _ host: (text: String, line: Int, column: Int), fields: YAMLFields, key: String
    ) throws(SpecError) {
        let text = host.text
        guard !text.isEmpty, text.count <= 40, text.first?.isLetter == true,
            text.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") })
        else {
            throw SpecError(
                file: fields.file, line: host.line, column: host.column, field: fields.fieldPath(key),
                message: "'\(text.prefix(60))' is not a host name (lower-case letters, digits and -, at most 40)")
        }
    }

    /// One planned start and stop of an entry, as offsets from the first phase's start.
    public struct Instance: Sendable, Equatable {
        public var entry: Entry
        public var number: Int
        public var start: Duration
        public var stop: Duration
        public var name: String { entry.times > 1 ? "\(entry.name)#\(number)" : entry.name }
    }

    /// Every instance of every entry, ordered by start. Jitter comes from `seed`, so the plan is reproducible.
    public func plan(seed: UInt64) -> [Instance] {
        var instances: [Instance] = []
        for (entryIndex, entry) in entries.enumerated() {
            for number in 1...entry.times {
                var start = entry.at + (entry.every ?? .zero) * (number - 1)
                if entry.jitter > .zero {
                    let bits = SplitMix64.value(seed: seed, index: UInt64(number), stream: 0xFA17 &+ UInt64(entryIndex))
                    let draw = Double(bits >> 11) / Double(UInt64(1) << 53)
                    let nanos = Double(entry.jitter.nanoseconds)
                    start += .nanoseconds(Int64(draw * nanos))
                }
                instances.append(Instance(entry: entry, number: number, start: start, stop: start + entry.duration))
            }
        }
        return instances.sorted { $0.start < $1.start }
    }
}

/// A share written as a percentage (`10%`, `0.5%`) or a fraction (`0.1`): above 0, at most 1.
public enum Share {
    public static func parse(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let percent = trimmed.hasSuffix("%")
        guard let number = Double(percent ? String(trimmed.dropLast()) : trimmed), number.isFinite else { return nil }
        let share = percent ? number / 100 : number
        return share > 0 && share <= 1 ? share : nil
    }
}

/// A data rate in bytes per second: `1MB/s`, `500kB/s`, `2GB/s`, `800B/s`, or in bits `8Mbit/s` (decimal units).
/// Between 1 kB/s and 10 GB/s.
public enum ByteRate {
    public static func parse(_ text: String) -> Int? {
        let units: [(String, Double)] = [
            ("Gbit/s", 1e9 / 8), ("Mbit/s", 1e6 / 8), ("kbit/s", 1e3 / 8), ("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3),
            ("KB/s", 1e3), ("B/s", 1),
        ]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let (unit, factor) = units.first(where: { trimmed.hasSuffix($0.0) }),
            let number = Double(trimmed.dropLast(unit.count).trimmingCharacters(in: .whitespaces)), number.isFinite
        else { return nil }
        let rate = number * factor
        guard rate >= 1e3, rate <= 1e10 else { return nil }
        return Int(rate.rounded())
    }
}
