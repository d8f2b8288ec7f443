import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnFaults
import KilnRedis
import KilnScenario
import KilnStack
import Logging

struct StackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stack",
        abstract: "Start, stop and inspect the embedded five-server stack on loopback.",
        subcommands: [Up.self, Down.self, Status.self, Env.self]
    )

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start every server not yet running and wait until each answers a real query (idempotent).")
        @OptionGroup var options: StackOptions
        @Option(help: "Seconds to wait for each server to answer.") var timeout = 90

        func run() throws {
            try exiting {
                if PatroniStackCommands.isPatroni(options) { return try PatroniStackCommands.up(options, timeout: timeout) }
                if let scripted = ScriptedStackCommands.definition(options) { return try ScriptedStackCommands.up(options, scripted) }
                let logger = options.logger("kiln.stack")
                let definition = try options.loadStack()
                try options.refuseForeignRunDirectory(definition)
                let stack = try EmbeddedStack(
                    definition: definition, paths: options.paths(for: definition), logger: logger)
                // Partition rules, hosts, qdiscs and paused processes of a crashed (kill -9) run must not outlive it;
                // rules of runs in progress (their owner process alive) stay.
                do {
                    let removed = try PartitionSweeper.removeOrphaned()
                    if removed > 0 {
                        print(
                            "removed leftover: \(removed) iptables fault rule(s) of finished runs in the root namespace")
                    }
                } catch {
                    logger.warning("could not sweep leftover fault rules", metadata: ["kiln.error": "\(error)"])
                }
                for line in stack.removeLeftovers() { print("removed leftover: \(line)") }
                var statuses = try stack.up(readyTimeout: .seconds(timeout))
                if try Self.failBackPostgres(stack, statuses, logger: logger) { statuses = stack.status() }
                if try StackCommand.failBackRedis(stack, statuses, logger: logger) { statuses = stack.status() }
                print(StatusTable.render(statuses))
                let hosts = stack.hostStatus()
                if !hosts.isEmpty { print("\n" + StatusTable.render(hosts: hosts)) }
                return .ok
            }
        }

        /// After a failover drill healed by a rebuild, `postgres-replica` is the primary and `postgres-primary` its
        /// standby: every scenario would then write to a read-only server. This switches them back (a graceful
        /// switchover: stop, promote, rebuild the other as the standby), so the stack matches its file again.
        /// Returns whether it did.
        static func failBackPostgres(_ stack: EmbeddedStack, _ statuses: [ServerStatus], logger: Logger) throws -> Bool {
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
    }

    /// The same for Redis: after a Sentinel failover `redis-replica` is the primary, and a drill whose partition sides
    /// name `redis-primary` would cut off a replica. A `SENTINEL FAILOVER` (forced, through the first Sentinel that
    /// answers) makes `redis-primary` the primary again; waits up to 60 s until both report their file's roles
    /// (throws otherwise). Returns whether it did.
    static func failBackRedis(_ stack: EmbeddedStack, _ statuses: [ServerStatus], logger: Logger) throws -> Bool {
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
    static func restoreFileRoles(_ definition: StackDefinition, logger: Logger) throws -> Bool {
        guard definition.kind == .embedded else { return false }
        let stack = try EmbeddedStack(definition: definition, paths: KilnPaths.resolve().forStack(definition), logger: logger)
        var statuses = stack.status()
        let postgres = try Up.failBackPostgres(stack, statuses, logger: logger)
        if postgres { statuses = stack.status() }
        let redis = try failBackRedis(stack, statuses, logger: logger)
        return postgres || redis
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop every process this stack started and remove its data (logs are kept).")
        @OptionGroup var options: StackOptions
        @Flag(help: "Keep the servers' data directories.") var keepData = false

        func run() throws {
            try exiting {
                if PatroniStackCommands.isPatroni(options) { return try PatroniStackCommands.down(options, keepData: keepData) }
                if let scripted = ScriptedStackCommands.definition(options) { return try ScriptedStackCommands.down(options, scripted) }
                let definition = try options.loadStack()
                try options.refuseForeignRunDirectory(definition)
                let stack = try EmbeddedStack(
                    definition: definition, paths: options.paths(for: definition), logger: options.logger("kiln.stack"))
                let report = stack.down(keepData: keepData)
                print(report.stopped.isEmpty ? "nothing was running" : "stopped: \(report.stopped.joined(separator: ", "))")
                for line in report.removedHosts { print("removed: \(line)") }
                for failure in report.failures { print("failed: \(failure)") }
                for server in report.stillListening { print("still listening (not a process this stack started): \(server)") }
                return report.failures.isEmpty && report.stillListening.isEmpty ? .ok : .stackUnavailable
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show each server's role, pid and health; exits 69 unless all are up.")
        @OptionGroup var options: StackOptions

        func run() throws {
            try exiting {
                if PatroniStackCommands.isPatroni(options) { return try PatroniStackCommands.status(options) }
                if let scripted = ScriptedStackCommands.definition(options) { return ScriptedStackCommands.status(scripted) }
                let definition = try options.loadStack()
                let stack = try EmbeddedStack(
                    definition: definition, paths: options.paths(for: definition), logger: options.logger("kiln.stack"))
                let statuses = stack.status()
                print(StatusTable.render(statuses))
                let hosts = stack.hostStatus()
                if !hosts.isEmpty { print("\n" + StatusTable.render(hosts: hosts)) }
                return statuses.allSatisfy(\.isUp) && hosts.allSatisfy(\.present) ? .ok : .stackUnavailable
            }
        }
    }

    struct Env: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the stack's connection settings as shell exports: eval \"$(kiln stack env)\".")
        @OptionGroup var options: StackOptions

        func run() throws {
            try exiting {
                let definition = try options.loadStack()
                print(StackEnvironment.exports(definition, paths: options.paths(for: definition)))
                return .ok
            }
        }
    }
}
