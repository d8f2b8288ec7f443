import Foundation
import KilnCore
import KilnRunner
import KilnScenario
import KilnStack
import KilnStores

/// `kiln stack up|down|status` of an external stack whose file names the script that starts it (`started_by:`, the
/// hardened stack's `scripts/secure-stack`): `up` and `down` run `SCRIPT up|down DIR`, passing Kiln's environment (the
/// passwords) and nothing on argv but the directory; `status` (and `up`, after the script) connects to every server
/// the stack file lists. DIR is `--run-directory`, else `KILN_STACK_DIR`, else `.kiln/stack-<name>`; never the default
/// embedded stack's directory (the script's `down` removes DIR).
enum ScriptedStackCommands {
    /// The stack file's definition when it names a start script; nil otherwise (or when it does not parse: the
    /// ordinary path reports that).
    static func definition(_ options: StackOptions) -> StackDefinition? {
        guard options.stackFile != nil, let definition = try? options.loadStack(), definition.startedBy != nil else {
            return nil
        }
        return definition
    }

    static func directory(_ options: StackOptions, _ definition: StackDefinition) throws -> URL {
        let paths = KilnPaths.resolve()
        let directory = ScriptedStack.directory(
            definition, runDirectory: options.runDirectory, environment: ProcessInfo.processInfo.environment,
            home: paths.home)
        // The script's `down` removes DIR: never an embedded stack's state directory (symlinks resolved: `.kiln` of a
        // worktree is the main checkout's), nor any directory holding an embedded stack's state.json. The script
        // itself also refuses a directory without its own marker.
        let resolved = directory.resolvingSymlinksInPath().standardizedFileURL.path
        let embedded = paths.home.appendingPathComponent(".kiln/stack").resolvingSymlinksInPath().standardizedFileURL.path
        guard resolved != embedded, !resolved.hasPrefix(embedded + "/"),
            !FileManager.default.fileExists(atPath: directory.appendingPathComponent("state.json").path)
        else {
            throw Failure(
                code: .invalidInput,
                message: "\(directory.path) is (or holds) an embedded stack's state directory; give another --run-directory")
        }
        return directory
    }

    /// Runs the stack's script with `command` and `directory`, its output passed through; returns its exit status.
    static func script(_ definition: StackDefinition, _ command: String, _ directory: URL) throws -> Int32 {
        let home = KilnPaths.resolve().home
        let script = definition.startedBy!.hasPrefix("/")
            ? URL(fileURLWithPath: definition.startedBy!) : home.appendingPathComponent(definition.startedBy!)
        guard FileManager.default.isExecutableFile(atPath: script.path) else {
            throw Failure(code: .invalidInput, message: "started_by: \(script.path) is not an executable file")
        }
        let process = Process()
        process.executableURL = script
        process.arguments = [command, directory.path]
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Every server the stack file lists, with whether it accepts a TCP connection.
    static func reachability(_ definition: StackDefinition) -> [(name: String, endpoint: HostPort, up: Bool)] {
        // Named as the backends name their servers (`postgres-primary`, `sentinel-3`), whatever sections are listed.
        let root = URL(fileURLWithPath: "/")
        let paths = EmbeddedPaths(runDirectory: root, tools: root, libraries: root, network: definition.network)
        let servers: [(String, HostPort)] = Backends.all.flatMap { $0.stack.servers(definition, paths) }.map {
            ($0.name, $0.endpoint)
        }
        return servers.map { ($0.0, $0.1, LocalProcess.isListening(host: $0.1.host, port: $0.1.port)) }
    }

    static func status(_ definition: StackDefinition) -> KilnExitCode {
        let servers = reachability(definition)
        for server in servers {
            print("\(server.name.padding(toLength: 20, withPad: " ", startingAt: 0)) \(server.endpoint.description.padding(toLength: 22, withPad: " ", startingAt: 0)) \(server.up ? "up" : "DOWN")")
        }
        // A stack file that lists no server proves nothing is up: never green.
        return !servers.isEmpty && servers.allSatisfy(\.up) ? .ok : .stackUnavailable
    }

    static func up(_ options: StackOptions, _ definition: StackDefinition) throws -> KilnExitCode {
        let directory = try Self.directory(options, definition)
        let status = try script(definition, "up", directory)
        guard status == 0 else {
            print("\(definition.startedBy!) up exited \(status)")
            return .stackUnavailable
        }
        return Self.status(definition)
    }

    static func down(_ options: StackOptions, _ definition: StackDefinition) throws -> KilnExitCode {
        let status = try script(definition, "down", try directory(options, definition))
        let listening = reachability(definition).filter(\.up)
        for server in listening { print("still listening: \(server.name) \(server.endpoint)") }
        return status == 0 && listening.isEmpty ? .ok : .stackUnavailable
    }
}
