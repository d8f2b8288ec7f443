import Foundation
import KilnCore

/// Where each of the five stores lives. One file per stack under `Scenarios/stacks/`: the embedded local
/// stack (default), the docker-compose stack, or a user's own hosts. Secrets never appear in the file: a
/// `password_env` field names the environment variable that holds the password.
public struct StackDefinition: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        /// Local processes started by `kiln stack up`.
        case embedded
        /// `docker-compose.yml` of this repository.
        case compose
        /// Hosts Kiln does not manage.
        case external
    }

    /// How the embedded servers are reached (`network:`).
    public enum Network: String, Sendable, CaseIterable {
        /// Every server binds its own 127.0.0.x alias in the root namespace (the default).
        case loopback
        /// Every server runs in its own network namespace with its own 10.213.7.x address, joined to the bridge
        /// kiln-br0 (10.213.7.1, Kiln's client host); the namespaces reach nothing beyond 10.213.7.0/24.
        case hosts
    }

    public struct Postgres: Sendable {
        public var primary: HostPort
        public var replicas: [HostPort]
        public var database: String
        public var user: String
        public var passwordEnvironmentVariable: String?
        /// `sensitive_tables:` — tables (`schema.table` or `table`) that must have Row Level Security; `kiln audit`
        /// checks each. Names: letters, digits and `_` (not first), at most one `.`.
        public var sensitiveTables: [String] = []
    }

    public struct Redis: Sendable {
        public var primary: HostPort
        public var replicas: [HostPort]
        public var sentinels: [HostPort]
        public var masterName: String
        public var passwordEnvironmentVariable: String?
        /// `user:` — the ACL user Kiln authenticates as (`AUTH user password`); nil: the `default` user.
        public var user: String? = nil
        /// `server_settings:` given to the embedded primary and replicas at start (`redis-server --name value`).
        public var serverSettings: [RedisServerSetting: Int] = [:]

        /// The settings as `redis-server` arguments, in a fixed order.
        public var serverArguments: [String] {
            RedisServerSetting.allCases.flatMap { setting in
                serverSettings[setting].map { ["--\(setting.rawValue)", String($0)] } ?? []
            }
        }
    }

    /// Redis settings a stack file may set on its embedded servers: the replication safety valves of Redis's
    /// Sentinel guide ("a primary stops accepting writes when fewer than N replicas acknowledged within M seconds").
    public enum RedisServerSetting: String, Sendable, CaseIterable, Hashable {
        case minReplicasToWrite = "min-replicas-to-write"
        case minReplicasMaxLag = "min-replicas-max-lag"

        var range: ClosedRange<Int> {
            switch self {
            case .minReplicasToWrite: 0...16
            case .minReplicasMaxLag: 1...3600
            }
        }
    }

    public struct Kafka: Sendable {
        public var bootstrap: [HostPort]
        public var bootstrapServers: String { bootstrap.map(\.description).joined(separator: ",") }
    }

    public struct Graph: Sendable {
        public enum Kind: String, Sendable, CaseIterable {
            case falkordb
            case neo4j
        }
        public var kind: Kind
        /// RESP endpoint for FalkorDB; HTTP endpoint (Query API) for Neo4j.
        public var endpoint: HostPort
        public var graph: String
        public var user: String?
        public var passwordEnvironmentVariable: String?
    }

    public struct TimeSeries: Sendable {
        public enum Kind: String, Sendable, CaseIterable {
            case clickhouse
            case timescale
        }
        public var kind: Kind
        /// HTTP endpoint for ClickHouse; libpq endpoint for TimescaleDB.
        public var endpoint: HostPort
        public var database: String
        public var user: String?
        public var passwordEnvironmentVariable: String?
    }

    public var name: String
    public var kind: Kind
    /// Whether faults may act on these servers. External stacks default to false.
    public var chaosTarget: Bool
    public var postgres: Postgres
    public var redis: Redis
    public var kafka: Kafka
    public var graph: Graph
    public var timeseries: TimeSeries
    /// Embedded servers started under libfaketime (`faketime:`), so a `clock-skew` fault can move their wall clock.
    /// PostgreSQL servers only: Redis and FalkorDB (jemalloc) recurse inside libfaketime's clock_gettime at start-up,
    /// and ClickHouse and Tansu are statically linked, so LD_PRELOAD cannot reach them.
    public var faketime: [String] = []
    /// `network:` — loopback aliases (default) or hosts in network namespaces (embedded stacks only).
    public var network: Network = .loopback
    /// Hosts of Kiln's own load-worker groups in a hosts stack (`client_groups:`), at 10.213.7.201 onwards in order;
    /// a worker thread enters one (HostNetwork.enterForCurrentThread) to open its connections from that address.
    public var clientGroups: [(name: String, address: HostAddress)] = []
    /// Hosts of the reference pipeline's sink processes (`pipeline.workers: processes`) in a hosts stack:
    /// `sink-postgres`, `sink-redis`, `sink-falkordb`, `sink-clickhouse` at 10.213.7.61–.64. Empty on loopback and
    /// with `sink_hosts: false` (a second hosts stack, e.g. a test's, beside one that has them).
    public var sinkHosts: [(name: String, address: HostAddress)] {
        guard network == .hosts, hasSinkHosts else { return [] }
        return PipelineSpec.Sink.reference.enumerated().map { index, sink in
            ("sink-\(sink.rawValue)", try! HostAddress(octet: 61 + index))
        }
    }
    /// `sink_hosts:` (hosts stacks; default true).
    public var hasSinkHosts = true
    /// The file this definition was read from, for messages.
    public var source: String

    public static func load(contentsOf url: URL) throws(SpecError) -> StackDefinition {
        try parse(YAMLFields.document(contentsOf: url))
    }

    public static func parse(_ text: String, file: String) throws(SpecError) -> StackDefinition {
        try parse(YAMLFields.document(text, file: file))
    }

    /// Reads a stack from a mapping (a whole stack file, or a `stack:` block inlined in a scenario).
    public static func parse(_ fields: YAMLFields) throws(SpecError) -> StackDefinition {
        let kind: Kind = try fields.enumeration("kind")
        let name = try fields.optionalString("name") ?? kind.rawValue
        let chaosTarget = try fields.bool("chaos_target", default: kind != .external)

        let pg = try fields.mapping("postgres")
        var postgres = Postgres(
            primary: try pg.hostPort("primary"),
            replicas: try pg.hostPorts("replicas"),
            database: try pg.optionalString("database") ?? "kiln",
            user: try pg.optionalString("user") ?? "postgres",
            passwordEnvironmentVariable: try pg.optionalString("password_env"))
        if pg.contains("sensitive_tables") {
            for (text, line, column) in try pg.strings("sensitive_tables") {
                let parts = text.split(separator: ".", omittingEmptySubsequences: false)
                guard (1...2).contains(parts.count), text.count <= 127,
                    parts.allSatisfy({ part in
                        !part.isEmpty && !part.first!.isNumber
                            && part.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
                    })
                else {
                    throw SpecError(
                        file: pg.file, line: line, column: column, field: "postgres.sensitive_tables",
                        message: "\(text.debugDescription) is not a table name (table or schema.table: letters, digits and _, not starting with a digit)")
                }
                postgres.sensitiveTables.append(text)
            }
        }
        try pg.finish()

        let rd = try fields.mapping("redis")
        var redis = Redis(
            primary: try rd.hostPort("primary"),
            replicas: try rd.hostPorts("replicas"),
            sentinels: try rd.hostPorts("sentinels"),
            masterName: try rd.optionalString("master_name") ?? "kiln",
            passwordEnvironmentVariable: try rd.optionalString("password_env"))
        redis.user = try rd.optionalString("user")
        if let settings = try rd.optionalMapping("server_settings") {
            for key in settings.keys {
                guard let setting = RedisServerSetting(rawValue: key) else {
                    let (line, column) = settings.location(key)
                    throw SpecError(
                        file: settings.file, line: line, column: column, field: "redis.server_settings.\(key)",
                        message: "unknown setting (known: "
                            + RedisServerSetting.allCases.map(\.rawValue).joined(separator: ", ") + ")")
                }
                redis.serverSettings[setting] = try settings.int(key, range: setting.range)
            }
            try settings.finish()
            if kind != .embedded {
                throw rd.error("server_settings", "only an embedded stack's servers are started by Kiln")
            }
        }
        try rd.finish()

        let kf = try fields.mapping("kafka")
        let kafka = Kafka(bootstrap: try kf.hostPorts("bootstrap", required: true))
        try kf.finish()

        let gr = try fields.mapping("graph")
        let graph = Graph(
            kind: try gr.enumeration("kind"),
            endpoint: try gr.hostPort("endpoint"),
            graph: try gr.optionalString("graph") ?? "kiln",
            user: try gr.optionalString("user"),
            passwordEnvironmentVariable: try gr.optionalString("password_env"))
        try gr.finish()

        let ts = try fields.mapping("timeseries")
        let timeseries = TimeSeries(
            kind: try ts.enumeration("kind"),
            endpoint: try ts.hostPort("endpoint"),
            database: try ts.optionalString("database") ?? "kiln",
            user: try ts.optionalString("user"),
            passwordEnvironmentVariable: try ts.optionalString("password_env"))
        try ts.finish()

        var faketime: [String] = []
        if fields.contains("faketime") {
            let allowed = ["postgres-primary"] + postgres.replicas.indices.map { $0 == 0 ? "postgres-replica" : "postgres-replica-\($0 + 1)" }
            for (text, line, column) in try fields.strings("faketime") {
                guard kind == .embedded else {
                    throw SpecError(
                        file: fields.file, line: line, column: column, field: "faketime",
                        message: "only an embedded stack starts its servers; start a \(kind.rawValue) stack's processes under faketime yourself")
                }
                guard allowed.contains(text) else {
                    throw SpecError(
                        file: fields.file, line: line, column: column, field: "faketime",
                        message: "'\(text)' cannot run under libfaketime (servers that can: \(allowed.joined(separator: ", "))); "
                            + "Redis and FalkorDB recurse inside libfaketime at start-up, ClickHouse and Tansu are statically linked")
                }
                faketime.append(text)
            }
        }

        let network: Network = try fields.enumeration("network", default: .loopback)
        var clientGroups: [(name: String, address: HostAddress)] = []
        var hasSinkHosts = true
        if network == .hosts {
            hasSinkHosts = try fields.bool("sink_hosts", default: true)
            clientGroups = try parseHosts(
                sinkHosts: hasSinkHosts,
                fields, kind: kind, name: name, postgres: postgres, redis: redis, kafka: kafka, graph: graph,
                timeseries: timeseries)
        } else {
            for key in ["subnet", "client_groups", "sink_hosts"] where fields.contains(key) {
                let (line, column) = fields.location(key)
                throw SpecError(
                    file: fields.file, line: line, column: column, field: key,
                    message: "only a `network: hosts` stack has \(key)")
            }
        }

        try fields.finish()
        var definition = StackDefinition(
            name: name, kind: kind, chaosTarget: chaosTarget, postgres: postgres, redis: redis, kafka: kafka,
            graph: graph, timeseries: timeseries, source: fields.file)
        definition.faketime = faketime
        definition.network = network
        definition.clientGroups = clientGroups
        definition.hasSinkHosts = hasSinkHosts
        return definition
    }

    /// The rules of a `network: hosts` stack: embedded, subnet 10.213.7.0/24 (the only one), a name that can tag its
    /// namespaces, each server on its own host address .2–.254 of that subnet (not .1: Kiln's client host), at most 9
    /// client groups. Returns the client groups with their addresses.
    private static func parseHosts(
        sinkHosts: Bool, _ fields: YAMLFields, kind: Kind, name: String, postgres: Postgres, redis: Redis, kafka: Kafka, graph: Graph,
        timeseries: TimeSeries
    ) throws(SpecError) -> [(name: String, address: HostAddress)] {
        func fail(_ key: String, _ message: String, in section: YAMLFields? = nil) -> SpecError {
            let section = section ?? fields
            let (line, column) = section.location(key)
            return SpecError(
                file: fields.file, line: line, column: column, field: section.fieldPath(key), message: message)
        }
        guard kind == .embedded else {
            throw fail(
                "network", "only an embedded stack runs its servers in Kiln's hosts; a \(kind.rawValue) stack cannot")
        }
        if let subnet = try fields.optionalString("subnet"), subnet != HostAddress.subnet {
            throw fail("subnet", "\(subnet.debugDescription): Kiln's hosts live on \(HostAddress.subnet) only")
        }
        guard isHostName(name) else {
            throw fail("name", "a hosts stack's name tags its namespaces: a-z, 0-9 and -, at most 40 characters")
        }
        let sections: [(section: String, key: String, addresses: [HostPort])] = [
            ("postgres", "primary", [postgres.primary]), ("postgres", "replicas", postgres.replicas),
            ("redis", "primary", [redis.primary]), ("redis", "replicas", redis.replicas),
            ("redis", "sentinels", redis.sentinels), ("kafka", "bootstrap", kafka.bootstrap),
            ("graph", "endpoint", [graph.endpoint]), ("timeseries", "endpoint", [timeseries.endpoint]),
        ]
        var holders: [String: String] = [:]
        for (sectionName, key, addresses) in sections {
            let section = try fields.mapping(sectionName)
            for address in addresses {
                guard HostAddress(address.host) != nil else {
                    throw fail(
                        key,
                        "\(address.host) is not a host address of \(HostAddress.subnet) (.2–.254): every server "
                            + "of a hosts stack has its own address there", in: section)
                }
                if let holder = holders[address.host] {
                    throw fail(key, "\(address.host) is also \(holder)'s: each server needs its own host", in: section)
                }
                holders[address.host] = "\(sectionName).\(key)"
            }
        }
        for octet in sinkHosts ? Array(61...64) : [] {
            if let holder = holders["\(HostAddress.prefix)\(octet)"] {
                let parts = holder.split(separator: ".")
                throw fail(
                    String(parts[1]), "\(HostAddress.prefix)\(octet) is a pipeline sink's host (.61–.64)",
                    in: try fields.mapping(String(parts[0])))
            }
        }
        var groups: [(name: String, address: HostAddress)] = []
        if fields.contains("client_groups") {
            let names = try fields.strings("client_groups")
            for (index, (text, line, column)) in names.enumerated() {
                func error(_ message: String) -> SpecError {
                    SpecError(
                        file: fields.file, line: line, column: column, field: "client_groups[\(index)]",
                        message: message)
                }
                guard index < 9 else { throw error("at most 9 client groups (10.213.7.201–.209)") }
                guard isHostName(text) else {
                    throw error("\(text.debugDescription): a-z, 0-9 and -, at most 40 characters")
                }
                guard !groups.contains(where: { $0.name == text }) else { throw error("\(text) is listed twice") }
                let address = try! HostAddress(octet: 201 + index)
                if let holder = holders[address.description] {
                    throw error("\(address) is also \(holder)'s (client groups take .201–.209)")
                }
                groups.append((text, address))
            }
        }
        return groups
    }

    /// A name that can be part of a namespace name: a-z, 0-9 and -, 1–40 characters.
    public static func isHostName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 40
            && name.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
    }
}

extension StackDefinition {
    /// Resolves a `*_env` field against the environment; nil when the field is unset or the variable is empty.
    public static func secret(_ variable: String?, in environment: [String: String]) -> String? {
        guard let variable, let value = environment[variable], !value.isEmpty else { return nil }
        return value
    }
}
