import Foundation
import KilnCore
import KilnRedis
import KilnScenario
import KilnStores

/// A RESP server of the stack (Redis primary, replica, sentinel or FalkorDB) and the credentials its clients use.
struct RedisAuditTarget {
    var server: AuditServer
    var store: AuditStore
    /// The application's ACL user (nil: `default`) and password from the environment.
    var user: String?
    var password: String?
    /// Sentinels: only the unauthenticated-access check applies.
    var isSentinel = false
    /// How Kiln's clients reach the server (the stack's `ca_file_env`): every check but `redis.plaintext` uses it.
    var tls: RedisTLS? = nil

    var userName: String { user ?? "default" }
}

/// The audit's own login for reading ACLs and settings (`KILN_AUDIT_REDIS_USER` / `KILN_AUDIT_REDIS_PASSWORD`);
/// without them the application's login is used, and what it may not read is `not checked`.
enum RedisAuditLogin {
    static let userVariable = "KILN_AUDIT_REDIS_USER"
    static let passwordVariable = "KILN_AUDIT_REDIS_PASSWORD"
}

extension AuditContext {
    var redisTargets: [RedisAuditTarget] {
        var targets: [RedisAuditTarget] = []
        if let redis = stack.section(RedisStackConfig.self) {
            targets += redisTargets(of: redis)
        }
        if let graph = stack.section(GraphStackConfig.self), graph.kind == .falkordb {
            targets.append(
                RedisAuditTarget(
                    server: AuditServer(role: "falkordb", endpoint: graph.endpoint), store: .falkordb,
                    user: graph.user, password: secret(graph.passwordEnvironmentVariable),
                    tls: graph.tls(in: environment)))
        }
        // Redis Cluster nodes speak RESP with the `default` user (the stack file names no credentials for them).
        for (index, node) in (stack.section(RedisClusterStackConfig.self)?.settings.seeds ?? []).enumerated() {
            targets.append(
                RedisAuditTarget(
                    server: AuditServer(role: "redis-cluster-\(index + 1)", endpoint: node),
                    store: AuditStore(rawValue: "redis-cluster"), user: nil, password: nil))
        }
        return targets
    }

    /// The primary, the replicas and the Sentinels of the `redis:` section.
    private func redisTargets(of redis: RedisStackConfig) -> [RedisAuditTarget] {
        let password = secret(redis.passwordEnvironmentVariable)
        let tls = redis.tls(in: environment)
        var targets = [RedisAuditTarget(
            server: AuditServer(role: "redis-primary", endpoint: redis.primary), store: .redis, user: redis.user,
            password: password, tls: tls)]
        for (index, replica) in redis.replicas.enumerated() {
            targets.append(
                RedisAuditTarget(
                    server: AuditServer(role: index == 0 ? "redis-replica" : "redis-replica-\(index + 1)", endpoint: replica),
                    store: .redis, user: redis.user, password: password, tls: tls))
        }
        for (index, sentinel) in redis.sentinels.enumerated() {
            targets.append(
                RedisAuditTarget(
                    server: AuditServer(role: "sentinel-\(index + 1)", endpoint: sentinel), store: .redis, user: nil,
                    password: nil, isSentinel: true, tls: tls))
        }
        return targets
    }

    /// A connection to `endpoint`, over TLS when `tls` is set (the certificate verified), else plaintext.
    func redisConnect(_ endpoint: HostPort, tls: RedisTLS?) -> Result<RedisConnection, RedisError> {
        do throws(RedisError) {
            return .success(
                try RedisConnection(host: endpoint.host, port: endpoint.port, timeoutSeconds: Double(timeoutSeconds), tls: tls))
        } catch {
            return .failure(error)
        }
    }

    /// A connection authenticated as `user`/`password` (no AUTH when `password` is nil).
    func redisLogin(_ endpoint: HostPort, user: String?, password: String?, tls: RedisTLS?) -> Result<RedisConnection, RedisError> {
        let opened = redisConnect(endpoint, tls: tls)
        guard case .success(let connection) = opened, let password else { return opened }
        do throws(RedisError) {
            try connection.authenticate(user: user, password: password)
            return .success(connection)
        } catch {
            connection.close()
            return .failure(error)
        }
    }

    /// The audit login when the environment has one, else the application's.
    func redisAdminLogin(_ target: RedisAuditTarget) -> (connection: RedisConnection, user: String)? {
        if let password = environment[RedisAuditLogin.passwordVariable], !password.isEmpty {
            let user = environment[RedisAuditLogin.userVariable]
            if case .success(let connection) = redisLogin(target.server.endpoint, user: user, password: password, tls: target.tls) {
                return (connection, user ?? "default")
            }
        }
        if case .success(let connection) = redisLogin(target.server.endpoint, user: target.user, password: target.password, tls: target.tls) {
            return (connection, target.userName)
        }
        return nil
    }
}

/// The first word of a server error reply (`NOAUTH`, `WRONGPASS`, `NOPERM`, `ERR`), or nil for another error.
func redisErrorWord(_ error: RedisError) -> String? {
    if case .server(let word) = error.kind { return word }
    return nil
}

/// `redis.no-password`, `redis.any-password-accepted`, `redis.default-user-enabled`, `redis.protected-mode-off`.
struct RedisAccessCheck: AuditCheck {
    var findingIDs: [AuditFindingID] {
        [.redisNoPassword, .redisAnyPasswordAccepted, .redisDefaultUserEnabled, .redisProtectedModeOff]
    }

    func run(_ context: AuditContext) -> [AuditResult] {
        var results: [AuditResult] = []
        for target in context.redisTargets {
            let label = target.server.label
            func result(_ id: AuditFindingID, _ outcome: AuditOutcome) {
                results.append(AuditResult(id, store: target.store, target: label, outcome))
            }
            // Unauthenticated: PING on a fresh connection.
            let unauthenticatedServed: Bool
            switch context.redisConnect(target.server.endpoint, tls: target.tls) {
            case .failure(let error):
                let reason = "could not connect to \(target.server.endpoint): \(error.description)"
                result(.redisNoPassword, .notChecked(reason: reason))
                if !target.isSentinel {
                    for id in [AuditFindingID.redisAnyPasswordAccepted, .redisDefaultUserEnabled, .redisProtectedModeOff] {
                        result(id, .notChecked(reason: reason))
                    }
                }
                continue
            case .success(let connection):
                do throws(RedisError) {
                    let pong = try connection.command(["PING"]).string ?? "?"
                    let who = (try? connection.command(["ACL", "WHOAMI"]).string) ?? nil
                    unauthenticatedServed = true
                    result(
                        .redisNoPassword,
                        .finding(
                            evidence: "connected to \(target.server.endpoint) without AUTH and ran PING → \(pong)"
                                + (who.map { " as user \($0)" } ?? "")))
                } catch {
                    unauthenticatedServed = false
                    if let word = redisErrorWord(error), word == "NOAUTH" {
                        result(.redisNoPassword, .passed(evidence: "PING without AUTH → NOAUTH"))
                    } else {
                        result(.redisNoPassword, .notChecked(reason: "PING without AUTH: \(error.description)"))
                    }
                }
                connection.close()
            }
            guard !target.isSentinel else { continue }

            // Any password: AUTH the application user with a random wrong one.
            let wrong = "kiln-audit-wrong-\(UInt64.random(in: 1...UInt64.max))"
            if unauthenticatedServed && target.user == nil {
                result(.redisAnyPasswordAccepted, .notApplicable(reason: "the default user asks no password (redis.no-password)"))
            } else {
                switch context.redisLogin(target.server.endpoint, user: target.userName, password: wrong, tls: target.tls) {
                case .success(let connection):
                    connection.close()
                    result(.redisAnyPasswordAccepted, .finding(evidence: "AUTH \(target.userName) with a random wrong password → OK"))
                case .failure(let error) where redisErrorWord(error) == "WRONGPASS":
                    result(.redisAnyPasswordAccepted, .passed(evidence: "AUTH \(target.userName) with a random wrong password → WRONGPASS"))
                case .failure(let error) where redisErrorWord(error) == "ERR" && unauthenticatedServed:
                    result(.redisAnyPasswordAccepted, .notApplicable(reason: "the server has no passwords at all (redis.no-password)"))
                case .failure(let error):
                    result(.redisAnyPasswordAccepted, .notChecked(reason: "AUTH with a wrong password: \(error.description)"))
                }
            }

            guard let (admin, adminUser) = context.redisAdminLogin(target) else {
                let reason = "could not log in to \(target.server.endpoint) as the application or audit user"
                result(.redisDefaultUserEnabled, .notChecked(reason: reason))
                result(.redisProtectedModeOff, .notChecked(reason: reason))
                continue
            }
            defer { admin.close() }
            do throws(RedisError) {
                let reply = try admin.command(["ACL", "GETUSER", "default"])
                let fields = reply.array ?? []
                var flags: [String] = []
                for index in stride(from: 0, to: fields.count - 1, by: 2) where fields[index].string == "flags" {
                    flags = (fields[index + 1].array ?? []).compactMap(\.string)
                }
                let evidence = "ACL GETUSER default (as \(adminUser)) → flags [\(flags.joined(separator: " "))]"
                result(.redisDefaultUserEnabled, flags.contains("on") ? .finding(evidence: evidence) : .passed(evidence: evidence))
            } catch {
                result(.redisDefaultUserEnabled, .notChecked(reason: "ACL GETUSER default as \(adminUser): \(error.description)"))
            }
            if !unauthenticatedServed {
                result(
                    .redisProtectedModeOff,
                    .passed(evidence: "unauthenticated clients get NOAUTH, so protected mode has nothing to protect"))
            } else {
                do throws(RedisError) {
                    let reply = try admin.command(["CONFIG", "GET", "protected-mode"]).array ?? []
                    let value = reply.count == 2 ? reply[1].string ?? "?" : "?"
                    let evidence = "CONFIG GET protected-mode → \(value) while clients without AUTH are served"
                    result(.redisProtectedModeOff, value == "yes" ? .passed(evidence: evidence) : .finding(evidence: evidence))
                } catch {
                    result(.redisProtectedModeOff, .notChecked(reason: "CONFIG GET protected-mode as \(adminUser): \(error.description)"))
                }
            }
        }
        return results
    }
}

/// `redis.dangerous-commands`: whether the application user may run CONFIG, DEBUG, FLUSHALL or MODULE. Each is
/// probed in a form that changes nothing (`CONFIG GET maxclients`, `DEBUG HELP`, `MODULE LIST`, and for FLUSHALL
/// `ACL DRYRUN user FLUSHALL` or, without ACL rights, `FLUSHALL KILN-AUDIT-PROBE`, which Redis rejects as a syntax
/// error after the ACL check and before flushing). A command the server disables (`enable-debug-command no`) is
/// not allowed.
struct RedisPrivilegeCheck: AuditCheck {
    var findingIDs: [AuditFindingID] { [.redisDangerousCommands] }

    func run(_ context: AuditContext) -> [AuditResult] {
        context.redisTargets.filter { !$0.isSentinel }.map { target in
            let label = target.server.label
            guard case .success(let app) = context.redisLogin(target.server.endpoint, user: target.user, password: target.password, tls: target.tls) else {
                return AuditResult(
                    .redisDangerousCommands, store: target.store, target: label,
                    .notChecked(reason: "could not log in as \(target.userName)"))
            }
            defer { app.close() }
            var allowed: [String] = []
            var evidence: [String] = []
            func probe(_ name: String, _ arguments: [String], allowedWhen: (RedisError?) -> Bool) {
                var error: RedisError?
                do throws(RedisError) {
                    _ = try app.command(arguments)
                } catch let thrown {
                    error = thrown
                }
                let verdict = allowedWhen(error)
                evidence.append("\(arguments.joined(separator: " ")) → \(error.map { redisErrorWord($0) ?? $0.description } ?? "ok")")
                if verdict { allowed.append(name) }
            }
            probe("CONFIG", ["CONFIG", "GET", "maxclients"]) { $0 == nil }
            probe("DEBUG", ["DEBUG", "HELP"]) { $0 == nil }
            probe("MODULE", ["MODULE", "LIST"]) { $0 == nil }
            var dryRun: String?
            if let (admin, _) = context.redisAdminLogin(target) {
                if let reply = try? admin.command(["ACL", "DRYRUN", target.userName, "FLUSHALL"]) {
                    dryRun = reply.string ?? "?"
                }
                admin.close()
            }
            if let dryRun {
                evidence.append("ACL DRYRUN \(target.userName) FLUSHALL → \(dryRun == "OK" ? "OK" : "denied")")
                if dryRun == "OK" { allowed.append("FLUSHALL") }
            } else {
                probe("FLUSHALL", ["FLUSHALL", "KILN-AUDIT-PROBE"]) { error in
                    error.map { redisErrorWord($0) == "ERR" } ?? true
                }
            }
            let text = "as \(target.userName): " + evidence.joined(separator: "; ")
            return AuditResult(
                .redisDangerousCommands, store: target.store, target: label,
                allowed.isEmpty ? .passed(evidence: text) : .finding(evidence: "allowed \(allowed.joined(separator: ", ")) — " + text))
        }
    }
}
