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

    public struct Postgres: Sendable {
        public var primary: HostPort
        public var replicas: [HostPort]
        public var database: String
        public var user: String
        public var passwordEnvironmentVariable: String?
    }

    public struct Redis: Sendable {
        public var primary: HostPort
        public var replicas: [HostPort]
        public var sentinels: [HostPort]
        public var masterName: String
        public var passwordEnvironmentVariable: String?
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
        let postgres = Postgres(
            primary: try pg.hostPort("primary"),
            replicas: try pg.hostPorts("replicas"),
            database: try pg.optionalString("database") ?? "kiln",
            user: try pg.optionalString("user") ?? "postgres",
            passwordEnvironmentVariable: try pg.optionalString("password_env"))
        try pg.finish()

        let rd = try fields.mapping("redis")
        let redis = Redis(
            primary: try rd.hostPort("primary"),
            replicas: try rd.hostPorts("replicas"),
            sentinels: try rd.hostPorts("sentinels"),
            masterName: try rd.optionalString("master_name") ?? "kiln",
            passwordEnvironmentVariable: try rd.optionalString("password_env"))
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

        try fields.finish()
        var definition = StackDefinition(
            name: name, kind: kind, chaosTarget: chaosTarget, postgres: postgres, redis: redis, kafka: kafka,
            graph: graph, timeseries: timeseries, source: fields.file)
        definition.faketime = faketime
        return definition
    }
}

extension StackDefinition {
    /// Resolves a `*_env` field against the environment; nil when the field is unset or the variable is empty.
    public static func secret(_ variable: String?, in environment: [String: String]) -> String? {
        guard let variable, let value = environment[variable], !value.isEmpty else { return nil }
        return value
    }
}
