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
                if try StackRoles.failBackPostgres(stack, statuses, logger: logger) { statuses = stack.status() }
                if try StackRoles.failBackRedis(stack, statuses, logger: logger) { statuses = stack.status() }
                print(StatusTable.render(statuses))
                let hosts = stack.hostStatus()
                if !hosts.isEmpty { print("\n" + StatusTable.render(hosts: hosts)) }
                return .ok
            }
        }

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
