import Foundation
import KilnCore
import KilnFaults
import KilnRedis
import KilnScenario
import KilnStack
import KilnStores
import Logging

/// Putting an embedded stack's servers back in the roles its file names after a failover drill swapped them
/// (`kiln stack up`, and each replay of a drill). Blocking; one caller at a time.
public enum StackRoles {
    /// After a failover drill healed by a rebuild, `postgres-replica` is the primary and `postgres-primary` its
    /// standby: every scenario would then write to a read-only server. This switches them back (a graceful
    /// switchover: stop, promote, rebuild the other as the standby), so the stack matches its file again.
    /// Returns whether it did.
    public static func failBackPostgres(_ stack: EmbeddedStack, _ statuses: [ServerStatus], logger: Logger) throws -> Bool {
        let role = Dictionary(statuses.map { ($0.name, $0.role ?? "") }, uniquingKeysWith: { a, _ in a })
        guard role["postgres-primary"] == "replica", role["postgres-replica"] == "primary" else { return false }
        logger.info("postgres-replica is the primary (a failover drill swapped the roles): failing back to postgres-primary")
        let switchover = try PostgresFailover.embedded(stack, fence: .stop, heal: .rebuildAsReplica)
        try switchover.setup()
        defer { switchover.teardown() }
        try switchover.start()
        try switchover.stop()
        logger.info("postgres-primary is the primary again")
        return true
    }

    /// The same for Redis: after a Sentinel failover `redis-replica` is the primary, and a drill whose partition sides
    /// name `redis-primary` would cut off a replica. A `SENTINEL FAILOVER` (forced, through the first Sentinel that
    /// answers) makes `redis-primary` the primary again; waits up to 60 s until both report their file's roles
    /// (throws otherwise). Returns whether it did.
    public static func failBackRedis(_ stack: EmbeddedStack, _ statuses: [ServerStatus], logger: Logger) throws -> Bool {
        let role = Dictionary(statuses.map { ($0.name, $0.role ?? "") }, uniquingKeysWith: { a, _ in a })
        guard role["redis-primary"] == "replica", role["redis-replica"] == "primary" else { return false }
        logger.info("redis-replica is the primary (a failover drill swapped the roles): failing back to redis-primary")
        var asked = false
        var lastError = ""
        for sentinel in stack.definition.redis.sentinels where !asked {
            do {
                let connection = try RedisConnection(host: sentinel.host, port: sentinel.port, timeoutSeconds: 5)
                let reply = try connection.command(["SENTINEL", "FAILOVER", stack.definition.redis.masterName])
                if case .error(let message) = reply { lastError = "\(sentinel): \(message)"; continue }
                asked = true
            } catch {
                lastError = "\(sentinel): \(error)"
            }
        }
        guard asked else {
            throw StackError(server: "redis-primary", message: "no Sentinel accepted SENTINEL FAILOVER (\(lastError))")
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let now = Dictionary(stack.status().map { ($0.name, $0.role ?? "") }, uniquingKeysWith: { a, _ in a })
            if now["redis-primary"] == "primary", now["redis-replica"] == "replica" {
                logger.info("redis-primary is the primary again")
                return true
            }
            usleep(500_000)
        }
        throw StackError(server: "redis-primary", message: "still not the primary 60 s after SENTINEL FAILOVER")
    }

    /// Before each replay of a drill (a bundle with fault events) on an embedded stack: the servers take the roles
    /// their stack file names again (PostgreSQL and Redis failed back as `kiln stack up` does), so a fault that names
    /// `redis-primary` acts on the primary as in the original, not on the replica a previous replay's failover left.
    /// Never called for a bundle without faults (a replay on the shared stack changes nothing of it).
    public static func restoreFileRoles(_ definition: StackDefinition, logger: Logger) throws -> Bool {
        guard definition.kind == .embedded else { return false }
        let stack = try EmbeddedStack(definition: definition, paths: KilnPaths.resolve().forStack(definition), logger: logger)
        var statuses = stack.status()
        let postgres = try failBackPostgres(stack, statuses, logger: logger)
        if postgres { statuses = stack.status() }
        let redis = try failBackRedis(stack, statuses, logger: logger)
        return postgres || redis
    }
}
