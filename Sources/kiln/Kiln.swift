import ArgumentParser
import Foundation
import KilnCore
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

    /// ArgumentParser's own `main`, except that an error a command's `run` throws that is not an `ExitCode` or
    /// `CleanExit` exits 70 (internal error) with its message, never ArgumentParser's 1, which Kiln documents as
    /// "consistency anomaly". Usage errors keep ArgumentParser's handling (64).
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
            FileHandle.standardError.write(Data("kiln: internal error: \(error)\n".utf8))
            Foundation.exit(KilnExitCode.internalError.rawValue)
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

/// A command's failure: printed as one message on stderr, then exit with `code`.
struct Failure: Error, CustomStringConvertible {
    var code: KilnExitCode
    var message: String
    var description: String { message }
}

extension ParsableCommand {
    /// Runs `body`, mapping Kiln's own failures to their documented exit codes.
    func exiting(_ body: () throws -> KilnExitCode) throws {
        let code: KilnExitCode
        do {
            code = try body()
        } catch let failure as Failure {
            FileHandle.standardError.write(Data("kiln: \(failure.message)\n".utf8))
            throw ExitCode(failure.code.rawValue)
        } catch let error as StackError {
            FileHandle.standardError.write(Data("kiln: \(error)\n".utf8))
            throw ExitCode(KilnExitCode.stackUnavailable.rawValue)
        } catch let error as SpecError {
            FileHandle.standardError.write(Data("kiln: \(error)\n".utf8))
            throw ExitCode(KilnExitCode.invalidInput.rawValue)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            // Anything else is Kiln's own fault: exit 70 with the message, never ArgumentParser's 1 ("anomaly").
            FileHandle.standardError.write(Data("kiln: internal error: \(error)\n".utf8))
            throw ExitCode(KilnExitCode.internalError.rawValue)
        }
        if code != .ok { throw ExitCode(code.rawValue) }
    }
}
