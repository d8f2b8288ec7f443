import KilnCore
import KilnScenario

// Sections two backends share: `graph:` (FalkorDB or Neo4j, by `kind:`) and `timeseries:` (ClickHouse or
// TimescaleDB). They live here, not in one backend's folder, because each is read by two backends whose targets do
// not depend on each other; the section parser is contributed once (by FalkorDB and ClickHouse, see their folders).

/// The `graph:` section: FalkorDB (RESP) or Neo4j (HTTP Query API).
public struct GraphStackConfig: StackSection {
    public static let key = "graph"

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
    /// `ca_file_env:` (FalkorDB) — the environment variable holding the path of the CA certificate that signs the
    /// server's certificate. When the stack file sets it, Kiln speaks TLS to `endpoint` and verifies the certificate
    /// and the address against that CA (the variable unset: the system's CA certificates).
    public var caFileEnvironmentVariable: String? = nil

    public init(kind: Kind, endpoint: HostPort, graph: String, user: String?, passwordEnvironmentVariable: String?) {
        self.kind = kind
        self.endpoint = endpoint
        self.graph = graph
        self.user = user
        self.passwordEnvironmentVariable = passwordEnvironmentVariable
    }

    public var addresses: [StackSectionAddress] { [StackSectionAddress("endpoint", endpoint)] }

    public static let parser = StackSectionParser(key: key) { (gr, _) throws(SpecError) in
        var graph = GraphStackConfig(
            kind: try gr.enumeration("kind"),
            endpoint: try gr.hostPort("endpoint"),
            graph: try gr.optionalString("graph") ?? "kiln",
            user: try gr.optionalString("user"),
            passwordEnvironmentVariable: try gr.optionalString("password_env"))
        graph.caFileEnvironmentVariable = try gr.optionalString("ca_file_env")
        if graph.caFileEnvironmentVariable != nil, graph.kind != .falkordb {
            throw gr.error("ca_file_env", "TLS is supported for FalkorDB only")
        }
        try gr.finish()
        return graph
    }
}

/// The `timeseries:` section: ClickHouse (HTTP) or TimescaleDB (libpq).
public struct TimeSeriesStackConfig: StackSection {
    public static let key = "timeseries"

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
    /// `ca_file_env:` (ClickHouse) — the environment variable holding the path of the CA certificate that signs
    /// the server's certificate. When the stack file sets it, Kiln speaks https:// to `endpoint` (ClickHouse's
    /// `https_port`) and verifies the certificate and host name against that CA.
    public var caFileEnvironmentVariable: String? = nil

    /// `https` when the stack names a CA (`ca_file_env`), else `http`.
    public var scheme: String { caFileEnvironmentVariable == nil ? "http" : "https" }
    /// `http(s)://host:port/`.
    public var baseURL: String { "\(scheme)://\(endpoint)/" }
    /// The CA file's path from the environment; nil without `ca_file_env` or when the variable is unset.
    public func caFile(in environment: [String: String]) -> String? {
        StackDefinition.secret(caFileEnvironmentVariable, in: environment)
    }

    public init(kind: Kind, endpoint: HostPort, database: String, user: String?, passwordEnvironmentVariable: String?) {
        self.kind = kind
        self.endpoint = endpoint
        self.database = database
        self.user = user
        self.passwordEnvironmentVariable = passwordEnvironmentVariable
    }

    public var addresses: [StackSectionAddress] { [StackSectionAddress("endpoint", endpoint)] }

    public static let parser = StackSectionParser(key: key) { (ts, _) throws(SpecError) in
        var timeseries = TimeSeriesStackConfig(
            kind: try ts.enumeration("kind"),
            endpoint: try ts.hostPort("endpoint"),
            database: try ts.optionalString("database") ?? "kiln",
            user: try ts.optionalString("user"),
            passwordEnvironmentVariable: try ts.optionalString("password_env"))
        timeseries.caFileEnvironmentVariable = try ts.optionalString("ca_file_env")
        try ts.finish()
        return timeseries
    }
}

extension StackDefinition {
    public typealias Graph = GraphStackConfig
    public typealias TimeSeries = TimeSeriesStackConfig

    /// The `graph:` section; only for code that runs because the scenario uses the graph store.
    public var graph: GraphStackConfig {
        get { requiredSection(GraphStackConfig.self, key: GraphStackConfig.key) }
        set { setSection(GraphStackConfig.key, newValue) }
    }

    /// The `timeseries:` section; only for code that runs because the scenario uses the time-series store.
    public var timeseries: TimeSeriesStackConfig {
        get { requiredSection(TimeSeriesStackConfig.self, key: TimeSeriesStackConfig.key) }
        set { setSection(TimeSeriesStackConfig.key, newValue) }
    }
}

extension StackDefinition {
    /// A section the caller knows the stack lists (the run checked every store a scenario uses against the stack:
    /// `Backends.missingSections`). A stack without it is a programming error in Kiln, not bad input: it stops the
    /// process with a message naming the stack file and the section.
    public func requiredSection<Section: StackSection>(_ type: Section.Type, key: String) -> Section {
        guard let section = sections[key] as? Section else {
            preconditionFailure("\(source) has no `\(key):` section; Kiln read it without checking the stack lists it")
        }
        return section
    }
}
