import Foundation
import KilnCore
import KilnScenario

/// What a backend provides for the stack side (`Backend.stack`): its stack-file section, the embedded servers it
/// runs, where a fault proxy sits in front of it, and its connection settings as shell variables. `EmbeddedStack`
/// (KilnStack) starts, probes and stops whatever the backends describe; the fault runner asks the descriptors for
/// proxied endpoints and the wire protocol of each server. Nothing here names another store.
public struct BackendStack: Sendable {
    /// The section this backend contributes to stack files (nil when it reads a section another backend
    /// contributes, as Neo4j reads `graph:` and TimescaleDB `timeseries:`).
    public var section: StackSectionParser?
    /// The key of the section the backend's clients read: a scenario that uses the store needs it in its stack.
    public var sectionKey: String?
    /// The embedded servers of `stack` (a stack that does not list the section has none), in start order.
    public var servers: @Sendable (StackDefinition, EmbeddedPaths) -> [EmbeddedServerDescription]
    /// Runs once all of this backend's servers answer, at every `kiln stack up` (idempotent): e.g. Redis Cluster's
    /// `redis-cli --cluster create`. Throws to fail the `up`.
    public var afterStart: (@Sendable (StackDefinition, [EmbeddedServerDescription]) throws -> Void)?
    /// Where a fault proxy sits in front of the store (`proxy: [name]` in a scenario); nil: not proxiable.
    public var proxy: ProxiedEndpoint?
    /// Connection settings as shell variables (`kiln stack env`); empty when the stack does not list the store.
    public var environment: @Sendable (StackDefinition, EmbeddedPaths) -> [(name: String, value: String)]
    /// The one server that acknowledges writes now, for a store whose failover fault moves it (the run's
    /// `PrimaryDirectory` starts with it under the backend's name, and the failover points it elsewhere); nil when
    /// the stack does not list the store, or the store has no single primary a failover moves. May ask the servers
    /// (a primary a past drill left promoted); blocks for at most a few seconds.
    public var currentPrimary: (@Sendable (StackDefinition) -> HostPort?)?
    /// What the names of the backend's servers start with besides the backend's own name (Redis's `sentinel`, for
    /// `sentinel-2`): a fault target naming a server maps to its store through these (`Backend.serverNamePrefixes`).
    public var serverNamePrefixes: [String]
    /// Bytes the embedded servers of `stack` write to disk per bulk-loaded row at the peak of a load — table,
    /// indexes, WAL and transient files, on every server that keeps a copy — measured on this machine (an estimate
    /// for `kiln run`'s free-space warning, not a limit); 0 for a store that keeps its data in memory.
    public var diskBytesPerBulkRow: @Sendable (StackDefinition) -> Int

    public init(
        section: StackSectionParser? = nil, sectionKey: String? = nil,
        servers: @escaping @Sendable (StackDefinition, EmbeddedPaths) -> [EmbeddedServerDescription] = { _, _ in [] },
        afterStart: (@Sendable (StackDefinition, [EmbeddedServerDescription]) throws -> Void)? = nil,
        proxy: ProxiedEndpoint? = nil,
        environment: @escaping @Sendable (StackDefinition, EmbeddedPaths) -> [(name: String, value: String)] = { _, _ in [] },
        currentPrimary: (@Sendable (StackDefinition) -> HostPort?)? = nil, serverNamePrefixes: [String] = [],
        diskBytesPerBulkRow: @escaping @Sendable (StackDefinition) -> Int = { _ in 0 }
    ) {
        self.section = section
        self.sectionKey = sectionKey ?? section?.key
        self.servers = servers
        self.afterStart = afterStart
        self.proxy = proxy
        self.environment = environment
        self.currentPrimary = currentPrimary
        self.serverNamePrefixes = serverNamePrefixes
        self.diskBytesPerBulkRow = diskBytesPerBulkRow
    }

    /// A backend with no stack side (tests, client-only stores).
    public static let none = BackendStack()
}

/// The store endpoint a fault proxy stands in front of, and how to point the run's clients at the proxy instead.
public struct ProxiedEndpoint: Sendable {
    /// The endpoint in `stack` (nil when the stack does not list the store).
    public var endpoint: @Sendable (StackDefinition) -> HostPort?
    /// Rewrites `stack` so the store's clients connect to `proxy`.
    public var redirect: @Sendable (inout StackDefinition, HostPort) -> Void
    /// What the proxy carries (its liveness probe speaks it).
    public var wire: WireProtocol

    public init(
        wire: WireProtocol, endpoint: @escaping @Sendable (StackDefinition) -> HostPort?,
        redirect: @escaping @Sendable (inout StackDefinition, HostPort) -> Void
    ) {
        self.wire = wire
        self.endpoint = endpoint
        self.redirect = redirect
    }
}

/// The wire protocols Kiln's fault probes and client witnesses speak: a closed set, shared by every store that speaks
/// one (Redis, Sentinel, FalkorDB and Redis Cluster all speak RESP).
public enum WireProtocol: String, Sendable, CaseIterable {
    /// libpq (PostgreSQL and TimescaleDB).
    case postgres
    /// RESP.
    case resp
    /// Kafka's binary protocol.
    case kafka
    /// HTTP/1.1 (ClickHouse's HTTP interface, `GET /ping`).
    case http
}

/// The role of an embedded server in its stack (`redis-primary`, `sentinel`): its kind as the stack file started it
/// (a failover may have swapped what it does since; `EmbeddedServerDescription.probe` says what it does now).
/// Backends define their roles as static members in their own folder (`ServerRole.redisPrimary`).
public struct ServerRole: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
}

/// Where the embedded stack keeps things: every server's directory and log under `runDirectory`, the binaries
/// scripts/bootstrap installed under `tools` (.kiln/bin) and `libraries` (.kiln/lib).
public struct EmbeddedPaths: Sendable {
    public var runDirectory: URL
    public var tools: URL
    public var libraries: URL
    public var network: StackDefinition.Network

    public init(runDirectory: URL, tools: URL, libraries: URL, network: StackDefinition.Network) {
        self.runDirectory = runDirectory
        self.tools = tools
        self.libraries = libraries
        self.network = network
    }

    /// The directory of the server `name` (data, config, sockets; removed by `down`).
    public func directory(of name: String) -> URL { runDirectory.appendingPathComponent(name) }
    /// The log of the server `name` (kept after `down`).
    public func log(of name: String) -> URL { runDirectory.appendingPathComponent("logs/\(name).log") }
}

/// One server process a backend asks the embedded stack to run. Built by the backend from its stack section; the
/// embedded stack owns the process (start, record, stop) and never looks inside the description's closures.
public struct EmbeddedServerDescription: Sendable {
    /// Unique in the stack; names its directory, log, namespace host and fault target (`redis-replica-2`).
    public var name: String
    public var role: ServerRole
    /// The address it binds (a host address of 10.213.7.0/24 in a hosts stack).
    public var endpoint: HostPort
    public var wire: WireProtocol
    public var launch: EmbeddedLaunch
    /// Servers (by name) that must answer before this one starts (a replica after its primary). Their
    /// `afterReady` runs first too.
    public var startsAfter: [String]
    /// Proves the server answers a real request and returns what it does now (`primary`, `replica`, `sentinel`,
    /// `broker`…); throws while it does not. Opens its own connection and blocks for at most about
    /// `timeoutSeconds`.
    public var probe: @Sendable (_ endpoint: HostPort, _ timeoutSeconds: Int) throws -> String
    /// Runs after the server answers, at every `up` (idempotent): e.g. creating the `kiln` database.
    public var afterReady: (@Sendable () throws -> Void)?
    /// Programs and files the server needs, with what they are (`("Redis", "/usr/bin/redis-server")`): `up`
    /// names every missing one before starting anything.
    public var requires: [(what: String, path: String)]

    public init(
        name: String, role: ServerRole, endpoint: HostPort, wire: WireProtocol, launch: EmbeddedLaunch,
        startsAfter: [String] = [], requires: [(what: String, path: String)] = [],
        probe: @escaping @Sendable (HostPort, Int) throws -> String, afterReady: (@Sendable () throws -> Void)? = nil
    ) {
        self.name = name
        self.role = role
        self.endpoint = endpoint
        self.wire = wire
        self.launch = launch
        self.startsAfter = startsAfter
        self.requires = requires
        self.probe = probe
        self.afterReady = afterReady
    }
}

/// How the embedded stack starts a server.
public enum EmbeddedLaunch: Sendable {
    /// A detached process: `prepare` creates what it needs in its directory (config files) and returns the
    /// arguments; the embedded stack spawns `program` with them (inside the server's namespace in a hosts stack),
    /// logs to the server's log and records its pid.
    case process(program: String, prepare: @Sendable (_ directory: URL) throws -> [String])
    /// PostgreSQL's life cycle (initdb or pg_basebackup from `replicaOf`, then `pg_ctl start` as the `postgres` user,
    /// the postmaster's pid from postmaster.pid, libfaketime for `faketime:` servers). It stays in KilnStack
    /// (`EmbeddedStack.startPostgres`) because the process faults, failover and durability drills share that
    /// machinery (pg_ctl, the data directory layout, the postmaster pid).
    case postgres(replicaOf: HostPort?, user: String)

    /// True for a PostgreSQL server (its pid lives in postmaster.pid; it stops with `pg_ctl stop`).
    public var isPostgres: Bool {
        if case .postgres = self { return true }
        return false
    }
}

/// A probe's answer that is not what a ready server says.
public struct EmbeddedProbeError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
