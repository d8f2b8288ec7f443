import Dispatch
import Foundation
import KilnCore
import KilnHTTP
import KilnPostgres
import KilnRedis
import KilnScenario
import KilnStores

/// Each server's version as a client sees it, for a replay bundle ("on which servers did this fail?"): PostgreSQL
/// `SHOW server_version`, Redis and Sentinel `INFO server` (`redis_version`), FalkorDB its `graph` module's version
/// from `MODULE LIST`, ClickHouse `SELECT version()`, and for the Kafka-API broker — which does not report a
/// version — the ApiVersions v0 answer (how many APIs, Produce/Fetch/Metadata's highest versions), the broker's
/// fingerprint. Read-only; one short connection per server, all servers at once, each bounded by `timeoutSeconds`.
public enum ServerVersions {
    /// One server of a stack file: the name `kiln stack status` shows, and where it listens.
    public struct Server: Sendable, Equatable {
        public enum Kind: String, Sendable { case postgres, redis, sentinel, kafka, falkordb, clickhouse }
        public var name: String
        public var kind: Kind
        public var endpoint: HostPort
    }

    /// Every server a stack file names, as the backends describe them (the embedded stack's names:
    /// `postgres-primary`, `sentinel-1`, `redis-cluster-3`, …), whatever sections the stack lists; the kind follows
    /// the server's wire protocol (and, for RESP, its role: a Sentinel, the graph store, or a Redis server).
    public static func servers(_ stack: StackDefinition) -> [Server] {
        let root = URL(fileURLWithPath: "/")
        let paths = EmbeddedPaths(runDirectory: root, tools: root, libraries: root, network: stack.network)
        return Backends.all.flatMap { $0.stack.servers(stack, paths) }.map { server in
            let kind: Server.Kind =
                switch server.wire {
                case .postgres: .postgres
                case .kafka: .kafka
                case .http: .clickhouse
                case .resp:
                    server.role == .sentinel ? .sentinel : server.role == .falkordb ? .falkordb : .redis
                }
            return Server(name: server.name, kind: kind, endpoint: server.endpoint)
        }
    }

    /// Server name → its version text, or `unknown: <why>` when the server did not answer (never invented).
    public static func query(
        _ stack: StackDefinition, timeoutSeconds: Int = 2,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> [String: String] {
        let servers = servers(stack)
        let results = Results(count: servers.count)
        DispatchQueue.concurrentPerform(iterations: servers.count) { index in
            let text: String
            do {
                text = try version(of: servers[index], stack: stack, timeoutSeconds: timeoutSeconds, environment: environment)
            } catch {
                text = "unknown: \(error)"
            }
            results.set(index, text)
        }
        return Dictionary(uniqueKeysWithValues: zip(servers.map(\.name), results.values))
    }

    /// The version text of one server; throws when it cannot be read.
    public static func version(
        of server: Server, stack: StackDefinition, timeoutSeconds: Int, environment: [String: String]
    ) throws -> String {
        switch server.kind {
        case .postgres:
            let connection = try PostgresConnection(
                PostgresEndpoint(
                    host: server.endpoint.host, port: server.endpoint.port, database: "postgres",
                    user: stack.section(PostgresStackConfig.self)?.user ?? "postgres",
                    password: stack.section(PostgresStackConfig.self)?.passwordEnvironmentVariable.flatMap { environment[$0] }),
                connectTimeoutSeconds: timeoutSeconds)
            let version = try connection.execute("SHOW server_version").value(row: 0, column: 0) ?? ""
            return "PostgreSQL \(version)"
        case .redis, .sentinel, .falkordb:
            let redis = stack.section(RedisStackConfig.self)
            let tls =
                server.kind == .falkordb
                ? stack.section(GraphStackConfig.self)?.tls(in: environment) : redis?.tls(in: environment)
            let connection = try RedisConnection(
                host: server.endpoint.host, port: server.endpoint.port, timeoutSeconds: Double(timeoutSeconds), tls: tls)
            if server.kind == .redis, let variable = redis?.passwordEnvironmentVariable, let password = environment[variable] {
                _ = try connection.command(redis?.user.map { ["AUTH", $0, password] } ?? ["AUTH", password])
            }
            let graph = stack.section(GraphStackConfig.self)
            if server.kind == .falkordb, let variable = graph?.passwordEnvironmentVariable, let password = environment[variable] {
                _ = try connection.command(graph?.user.map { ["AUTH", $0, password] } ?? ["AUTH", password])
            }
            let info = try connection.command(["INFO", "server"])
            if case .error(let message) = info { throw Unanswered(description: "INFO server: \(message)") }
            let redisVersion = infoField(info.string ?? "", "redis_version") ?? "?"
            guard server.kind == .falkordb else {
                return server.kind == .sentinel ? "Redis Sentinel \(redisVersion)" : "Redis \(redisVersion)"
            }
            let modules = try connection.command(["MODULE", "LIST"])
            if case .error(let message) = modules { throw Unanswered(description: "MODULE LIST: \(message)") }
            guard let graph = moduleVersion(modules, name: "graph") else {
                throw Unanswered(description: "MODULE LIST names no graph module (redis \(redisVersion))")
            }
            return "FalkorDB \(graph) (graph module), Redis \(redisVersion)"
        case .clickhouse:
            let timeseries = stack.section(TimeSeriesStackConfig.self)
            let client = try HTTPClient(
                timeoutSeconds: Double(timeoutSeconds), connectTimeoutSeconds: Double(timeoutSeconds),
                caFile: timeseries?.caFile(in: environment))
            var headers: [String: String] = [:]
            if let user = timeseries?.user { headers["X-ClickHouse-User"] = user }
            if let variable = timeseries?.passwordEnvironmentVariable, let password = environment[variable] {
                headers["X-ClickHouse-Key"] = password
            }
            let scheme = timeseries?.scheme ?? "http"
            let response = try client.get("\(scheme)://\(server.endpoint)/?query=SELECT%20version()", headers: headers)
                .expectOK()
            return "ClickHouse \(response.text.trimmingCharacters(in: .whitespacesAndNewlines))"
        case .kafka:
            let ranges = try KafkaWireProbe(endpoint: server.endpoint, timeoutSeconds: timeoutSeconds).apiVersionRanges()
            return kafkaFingerprint(ranges)
        }
    }

    /// `redis_version:7.2.4` of an INFO text.
    public static func infoField(_ info: String, _ field: String) -> String? {
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("\(field):") {
            return String(line.dropFirst(field.count + 1)).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    /// The `ver` of module `name` in a MODULE LIST reply (an array of [name, N, ver, V, …] maps), as
    /// major.minor.patch (FalkorDB encodes 4.2.1 as 40201).
    public static func moduleVersion(_ reply: RedisReply, name: String) -> String? {
        for module in reply.array ?? [] {
            let fields = module.array ?? []
            var values: [String: RedisReply] = [:]
            var index = 0
            while index + 1 < fields.count {
                if let key = fields[index].string { values[key] = fields[index + 1] }
                index += 2
            }
            guard values["name"]?.string?.lowercased() == name else { continue }
            guard let version = values["ver"]?.integer ?? values["ver"]?.string.flatMap({ Int64($0) }) else { return "?" }
            return "\(version / 10_000).\(version / 100 % 100).\(version % 100)"
        }
        return nil
    }

    /// `Kafka API: 30 APIs (Produce v0-9, Fetch v0-12, Metadata v0-12)`: what ApiVersions v0 tells of a broker.
    public static func kafkaFingerprint(_ ranges: [(key: Int16, min: Int16, max: Int16)]) -> String {
        let named: [(Int16, String)] = [(0, "Produce"), (1, "Fetch"), (3, "Metadata")]
        let parts = named.compactMap { key, name in
            ranges.first { $0.key == key }.map { "\(name) v\($0.min)-\($0.max)" }
        }
        return "Kafka API: \(ranges.count) APIs (\(parts.joined(separator: ", ")))"
    }

    struct Unanswered: Error, CustomStringConvertible {
        var description: String
    }

    /// The answers of the concurrent queries, one slot per server.
    private final class Results: @unchecked Sendable {
        // @unchecked: `slots` is only touched under `lock`.
        private let lock = NSLock()
        private var slots: [String]
        init(count: Int) { slots = Array(repeating: "unknown: not queried", count: count) }
        func set(_ index: Int, _ value: String) {
            lock.lock()
            slots[index] = value
            lock.unlock()
        }
        var values: [String] {
            lock.lock()
            defer { lock.unlock() }
            return slots
        }
    }
}
