import ArgumentParser
import Foundation
import KilnCore
import KilnFaults
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
                let logger = options.logger("kiln.stack")
                let stack = try EmbeddedStack(definition: options.loadStack(), paths: options.paths, logger: logger)
                // Partition rules of a run that crashed (kill -9) must not outlive it.
                do {
                    let removed = try PartitionSweeper.removeLeftovers()
                    if removed > 0 { logger.info("removed leftover fault rules", metadata: ["kiln.rules": "\(removed)"]) }
                } catch {
                    logger.warning("could not sweep leftover fault rules", metadata: ["kiln.error": "\(error)"])
                }
                var statuses = try stack.up(readyTimeout: .seconds(timeout))
                if try Self.failBackPostgres(stack, statuses, logger: logger) { statuses = stack.status() }
                print(StatusTable.render(statuses))
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

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop every process this stack started and remove its data (logs are kept).")
        @OptionGroup var options: StackOptions
        @Flag(help: "Keep the servers' data directories.") var keepData = false

        func run() throws {
            try exiting {
                let stack = try EmbeddedStack(
                    definition: options.loadStack(), paths: options.paths, logger: options.logger("kiln.stack"))
                let report = stack.down(keepData: keepData)
                print(report.stopped.isEmpty ? "nothing was running" : "stopped: \(report.stopped.joined(separator: ", "))")
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
                let stack = try EmbeddedStack(
                    definition: options.loadStack(), paths: options.paths, logger: options.logger("kiln.stack"))
                let statuses = stack.status()
                print(StatusTable.render(statuses))
                return statuses.allSatisfy(\.isUp) ? .ok : .stackUnavailable
            }
        }
    }

    struct Env: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the stack's connection settings as shell exports: eval \"$(kiln stack env)\".")
        @OptionGroup var options: StackOptions

        func run() throws {
            try exiting {
                print(StackEnvironment.exports(try options.loadStack(), paths: options.paths))
                return .ok
            }
        }
    }
}

enum StatusTable {
    static func render(_ statuses: [ServerStatus]) -> String {
        var rows = [["SERVER", "ADDRESS", "ROLE", "PID", "HEALTH"]]
        for status in statuses {
            let health: String
            switch status.health {
            case .up: health = "up"
            case .down: health = "down"
            case .unhealthy(let reason): health = "unhealthy: \(reason)"
            }
            rows.append([
                status.name, status.endpoint.description, status.role ?? "-", status.pid.map(String.init) ?? "-", health,
            ])
        }
        return TextTable.render(rows)
    }
}

/// Left-aligned columns separated by two spaces.
enum TextTable {
    static func render(_ rows: [[String]]) -> String {
        let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
