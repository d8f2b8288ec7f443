import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnScenario
import KilnStack
import Logging

@main
struct Kiln: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "Test, benchmark and chaos harness for a five-database fraud-detection stack.",
        discussion: """
            Exit codes: 0 ok; 1 consistency anomaly; 2 threshold or regression failed; 3 checker unknown;
            64 invalid input (usage, scenario, stack file); 69 stack unavailable; 70 internal error.
            """,
        subcommands: [
            StackCommand.self, SmokeCommand.self, GenerateCommand.self, RunCommand.self, MergeCommand.self, K8sCommand.self, CheckCommand.self, PipelineCommand.self,
            BenchCommand.self, ReportCommand.self, CompareCommand.self, BaselineCommand.self, TrendCommand.self, ProxyCommand.self, ValidateCommand.self, ElleCommand.self,
            PatroniCommand.self, AuditCommand.self, ReplayCommand.self, ShrinkCommand.self,
        ]
    )

    /// ArgumentParser's own `main`, with one handler for every error a command's `run` throws: ArgumentParser's own
    /// (help, usage: 64, `ExitCode`) keep its handling; every other error goes through `ErrorExit`, so Kiln's
    /// failures keep their documented codes and an unexpected error exits 70 with its message, never
    /// ArgumentParser's 1 (which Kiln documents as "consistency anomaly").
    static func main() {
        var command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            try command.run()
        } catch let error where error is ExitCode || error is CleanExit || error is ValidationError
            || String(reflecting: type(of: error)).hasPrefix("ArgumentParser.")
        {
            // ArgumentParser's own errors (help requests surface from `run` as its internal CommandError).
            exit(withError: error)
        } catch {
            let (code, message) = ErrorExit.of(error)
            FileHandle.standardError.write(Data("\(message)\n".utf8))
            Foundation.exit(code.rawValue)
        }
    }
}

/// Options every command that touches a stack shares.
struct StackOptions: ParsableArguments {
    @Option(name: .customLong("stack"), help: "Stack file (default: Scenarios/stacks/embedded.yaml of this checkout).")
    var stackFile: String?

    @Option(help: "Run directory of the embedded stack (default: .kiln/stack, .kiln/stack-NAME for a `network: hosts` stack, or KILN_STACK_DIR).")
    var runDirectory: String?

    @Flag(name: .shortAndLong, help: "Log more detail.")
    var verbose = false

    var paths: KilnPaths {
        var paths = KilnPaths.resolve()
        if let runDirectory { paths.stack = URL(fileURLWithPath: runDirectory) }
        return paths
    }

    /// `paths`, with a hosts stack's own default run directory, so that it and the loopback stack can run at once.
    func paths(for definition: StackDefinition) -> KilnPaths {
        runDirectory != nil ? paths : paths.forStack(definition)
    }

    func loadStack() throws -> StackDefinition {
        let url = stackFile.map { URL(fileURLWithPath: $0) } ?? paths.embeddedStackFile
        do {
            return try StackDefinition.load(contentsOf: url)
        } catch {
            throw Failure(code: .invalidInput, message: error.description)
        }
    }

    /// Exit 64 when the stack file's servers are not those of the run directory's state.json (StackDirectoryGuard):
    /// `up` would take the other stack's servers for its own, `down` would stop them.
    func refuseForeignRunDirectory(_ definition: StackDefinition) throws {
        if let refusal = StackDirectoryGuard.refusal(definition, paths: paths(for: definition)) {
            throw Failure(code: .invalidInput, message: refusal)
        }
    }

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { _ in ConsoleLogHandler(logLevel: .info) }
        logger.logLevel = verbose ? .debug : .info
        return logger
    }
}

extension ParsableCommand {
    /// Runs `body` and exits with the code it returns (nothing for `.ok`). Errors propagate unchanged to `Kiln.main`,
    /// the one handler (`ErrorExit`).
    func exiting(_ body: () throws -> KilnExitCode) throws {
        let code = try body()
        if code != .ok { throw ExitCode(code.rawValue) }
    }
}
