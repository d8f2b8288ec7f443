import Foundation
import KilnBackend
import KilnCore
import KilnRedis
import KilnScenario

/// The `redis:` section of a stack file: a primary, its replicas and the Sentinels that watch them.
public struct RedisStackConfig: StackSection {
    public static let key = "redis"

    public var primary: HostPort
    public var replicas: [HostPort]
    public var sentinels: [HostPort]
    public var masterName: String
    public var passwordEnvironmentVariable: String?
    /// `user:` — the ACL user Kiln authenticates as (`AUTH user password`); nil: the `default` user.
    public var user: String? = nil
    /// `sentinel_user:` / `sentinel_password_env:` — what Kiln sends the Sentinels (`requirepass` or an ACL user
    /// in sentinel.conf); no password variable: no AUTH to the Sentinels.
    public var sentinelUser: String? = nil
    public var sentinelPasswordEnvironmentVariable: String? = nil
    /// `admin_user:` / `admin_password_env:` — the ACL user a fault uses for `ROLE`, `REPLICAOF` and
    /// `CLIENT KILL` on the servers when the application user may not (nil: `user` / `password_env`).
    public var adminUser: String? = nil
    public var adminPasswordEnvironmentVariable: String? = nil
    /// `ca_file_env:` — the environment variable holding the path of the CA certificate (PEM) that signs the servers'
    /// certificates. When the stack file sets it, Kiln speaks only TLS to the primary, the replicas and the Sentinels
    /// (their `tls-port`), verifying each certificate against that CA and the address connected to; the variable
    /// unset: the system's CA certificates. Absent: plaintext.
    public var caFileEnvironmentVariable: String? = nil
    /// `server_settings:` given to the embedded primary and replicas at start (`redis-server --name value`).
    public var serverSettings: [ServerSetting: Int] = [:]

    public init(
        primary: HostPort, replicas: [HostPort], sentinels: [HostPort], masterName: String,
        passwordEnvironmentVariable: String?
    ) {
        self.primary = primary
        self.replicas = replicas
        self.sentinels = sentinels
        self.masterName = masterName
        self.passwordEnvironmentVariable = passwordEnvironmentVariable
    }

    /// Redis settings a stack file may set on its embedded servers: the replication safety valves of Redis's
    /// Sentinel guide ("a primary stops accepting writes when fewer than N replicas acknowledged within M seconds").
    public enum ServerSetting: String, Sendable, CaseIterable, Hashable {
        case minReplicasToWrite = "min-replicas-to-write"
        case minReplicasMaxLag = "min-replicas-max-lag"

        var range: ClosedRange<Int> {
            switch self {
            case .minReplicasToWrite: 0...16
            case .minReplicasMaxLag: 1...3600
            }
        }
    }

    /// The settings as `redis-server` arguments, in a fixed order.
    public var serverArguments: [String] {
        ServerSetting.allCases.flatMap { setting in
            serverSettings[setting].map { ["--\(setting.rawValue)", String($0)] } ?? []
        }
    }

    public var addresses: [StackSectionAddress] {
        [StackSectionAddress("primary", primary)] + replicas.map { StackSectionAddress("replicas", $0) }
            + sentinels.map { StackSectionAddress("sentinels", $0) }
    }

    public static let parser = StackSectionParser(key: key) { (rd, context) throws(SpecError) in
        var redis = RedisStackConfig(
            primary: try rd.hostPort("primary"),
            replicas: try rd.hostPorts("replicas"),
            sentinels: try rd.hostPorts("sentinels"),
            masterName: try rd.optionalString("master_name") ?? "kiln",
            passwordEnvironmentVariable: try rd.optionalString("password_env"))
        redis.user = try rd.optionalString("user")
        redis.sentinelUser = try rd.optionalString("sentinel_user")
        redis.sentinelPasswordEnvironmentVariable = try rd.optionalString("sentinel_password_env")
        redis.adminUser = try rd.optionalString("admin_user")
        redis.adminPasswordEnvironmentVariable = try rd.optionalString("admin_password_env")
        redis.caFileEnvironmentVariable = try rd.optionalString("ca_file_env")
        if redis.caFileEnvironmentVariable != nil, context.kind == .embedded {
            throw rd.error("ca_file_env", "Kiln starts an embedded stack's Redis servers without TLS")
        }
        if let settings = try rd.optionalMapping("server_settings") {
            for key in settings.keys {
                guard let setting = ServerSetting(rawValue: key) else {
                    let (line, column) = settings.location(key)
                    throw SpecError(
                        file: settings.file, line: line, column: column, field: "redis.server_settings.\(key)",
                        message: "unknown setting (known: "
                            + ServerSetting.allCases.map(\.rawValue).joined(separator: ", ") + ")")
                }
                redis.serverSettings[setting] = try settings.int(key, range: setting.range)
            }
            try settings.finish()
            if context.kind != .embedded {
                throw rd.error("server_settings", "only an embedded stack's servers are started by Kiln")
            }
        }
        try rd.finish()
        return redis
    }
}

extension RedisStackConfig {
    /// TLS for every server of the section (`ca_file_env` set), else nil (plaintext).
    public func tls(in environment: [String: String]) -> RedisTLS? {
        caFileEnvironmentVariable.map { RedisTLS(caFile: StackDefinition.secret($0, in: environment)) }
    }

    /// The application's login on the primary and replicas: `user`, the password from `password_env`, and TLS.
    public func credentials(in environment: [String: String]) -> RedisCredentials {
        RedisCredentials(
            user: user, password: StackDefinition.secret(passwordEnvironmentVariable, in: environment), tls: tls(in: environment))
    }
}

extension GraphStackConfig {
    /// TLS to the graph server (`ca_file_env` set), else nil (plaintext).
    public func tls(in environment: [String: String]) -> RedisTLS? {
        caFileEnvironmentVariable.map { RedisTLS(caFile: StackDefinition.secret($0, in: environment)) }
    }

    /// The application's login on FalkorDB: `user`, the password from `password_env`, and TLS.
    public func credentials(in environment: [String: String]) -> RedisCredentials {
        RedisCredentials(
            user: user, password: StackDefinition.secret(passwordEnvironmentVariable, in: environment), tls: tls(in: environment))
    }
}

extension StackDefinition {
    public typealias Redis = RedisStackConfig
    public typealias RedisServerSetting = RedisStackConfig.ServerSetting

    /// The `redis:` section. Only for code that runs because the scenario uses Redis (checked against the stack
    /// when the run starts); `section(RedisStackConfig.self)` is the optional form.
    public var redis: RedisStackConfig {
        get { requiredSection(RedisStackConfig.self, key: RedisStackConfig.key) }
        set { setSection(RedisStackConfig.key, newValue) }
    }
}

extension ServerRole {
    public static let redisPrimary = ServerRole("redis-primary")
    public static let redisReplica = ServerRole("redis-replica")
    public static let sentinel = ServerRole("sentinel")
}

extension RedisStackConfig {
    /// The embedded servers of the section: the primary, its replicas (each `--replicaof` the primary), then the
    /// Sentinels (a quorum of a majority) that watch them.
    static func embeddedServers(_ stack: StackDefinition, _ paths: EmbeddedPaths) -> [EmbeddedServerDescription] {
        guard let redis = stack.section(RedisStackConfig.self) else { return [] }
        let program = "/usr/bin/redis-server"
        let requires = [(what: "Redis", path: program)]
        var servers: [EmbeddedServerDescription] = []
        func dataServer(_ name: String, _ role: ServerRole, _ endpoint: HostPort) -> EmbeddedServerDescription {
            EmbeddedServerDescription(
                name: name, role: role, endpoint: endpoint, wire: .resp,
                launch: .process(program: program) { directory in
                    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                    // Redis reports a replica by the source address of its link (127.0.0.1 here), where nothing
                    // listens: the Sentinels would see every replica as down and refuse to fail over. Announce the
                    // bound address.
                    var arguments = RedisStackConfig.serverArguments(endpoint, directory: directory)
                        + ["--replica-announce-ip", endpoint.host] + redis.serverArguments
                    if role == .redisReplica {
                        arguments += ["--replicaof", redis.primary.host, String(redis.primary.port)]
                    }
                    return arguments
                },
                requires: requires, probe: { endpoint, timeout in try RedisStackConfig.role(endpoint, timeout, redis) })
        }
        servers.append(dataServer("redis-primary", .redisPrimary, redis.primary))
        for (index, replica) in redis.replicas.enumerated() {
            servers.append(dataServer(index == 0 ? "redis-replica" : "redis-replica-\(index + 1)", .redisReplica, replica))
        }
        let quorum = redis.sentinels.count / 2 + 1
        for (index, sentinel) in redis.sentinels.enumerated() {
            servers.append(
                EmbeddedServerDescription(
                    name: "sentinel-\(index + 1)", role: .sentinel, endpoint: sentinel, wire: .resp,
                    launch: .process(program: program) { directory in
                        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                        let config = directory.appendingPathComponent("sentinel.conf")
                        // Sentinel rewrites this file as it learns the topology; a fresh start begins from the stack
                        // file.
                        let text = """
                            bind \(sentinel.host)
                            port \(sentinel.port)
                            protected-mode no
                            dir \(directory.path)
                            sentinel announce-ip \(sentinel.host)
                            sentinel monitor \(redis.masterName) \(redis.primary.host) \(redis.primary.port) \(quorum)
                            sentinel down-after-milliseconds \(redis.masterName) 5000
                            sentinel failover-timeout \(redis.masterName) 30000
                            sentinel parallel-syncs \(redis.masterName) 1

                            """
                        try text.write(to: config, atomically: true, encoding: .utf8)
                        return [config.path, "--sentinel"]
                    },
                    requires: requires,
                    probe: { endpoint, timeout in try RedisStackConfig.role(endpoint, timeout, redis) }))
        }
        return servers
    }

    /// Arguments of a Redis-protocol server (Redis, FalkorDB, Redis Cluster nodes): no persistence, bound to its own
    /// address, in the foreground.
    public static func serverArguments(_ endpoint: HostPort, directory: URL) -> [String] {
        [
            "--bind", endpoint.host, "--port", String(endpoint.port), "--save", "", "--appendonly", "no",
            "--protected-mode", "no", "--dir", directory.path, "--daemonize", "no",
        ]
    }

    /// `ROLE`: `primary`, `replica` (only with a connected link) or `sentinel` (only when it knows the master).
    static func role(_ endpoint: HostPort, _ timeoutSeconds: Int, _ redis: RedisStackConfig) throws -> String {
        let connection = try RedisConnection(host: endpoint.host, port: endpoint.port, timeoutSeconds: Double(timeoutSeconds))
        let reply = try connection.command(["ROLE"])
        guard let fields = reply.array, let kind = fields.first?.string else {
            throw EmbeddedProbeError("ROLE returned no role")
        }
        switch kind {
        case "master": return "primary"
        case "slave":
            let link = fields.count > 3 ? fields[3].string ?? "" : ""
            guard link == "connected" else { throw EmbeddedProbeError("replica link is \(link)") }
            return "replica"
        case "sentinel":
            let master = try connection.command(["SENTINEL", "get-master-addr-by-name", redis.masterName])
            guard let address = master.array, address.count == 2 else {
                throw EmbeddedProbeError("sentinel does not know master \(redis.masterName)")
            }
            return "sentinel"
        default: return kind
        }
    }

    /// The stack side of the Redis backend.
    static let stackSide = BackendStack(
        section: parser, servers: embeddedServers,
        proxy: ProxiedEndpoint(
            wire: .resp, endpoint: { $0.section(RedisStackConfig.self)?.primary },
            redirect: { stack, proxy in stack.redis.primary = proxy }),
        environment: { stack, _ in
            guard let redis = stack.section(RedisStackConfig.self) else { return [] }
            var variables = [(name: "KILN_REDIS_URL", value: "redis://\(redis.primary)")]
            if !redis.sentinels.isEmpty {
                variables.append(("KILN_REDIS_SENTINELS", redis.sentinels.map(\.description).joined(separator: ",")))
                variables.append(("KILN_REDIS_MASTER_NAME", redis.masterName))
            }
            return variables
        },
        // The stack file's primary: the Sentinel failover fault moves it (clients ask the Sentinels themselves).
        currentPrimary: { $0.section(RedisStackConfig.self)?.primary },
        serverNamePrefixes: ["sentinel"])
}
