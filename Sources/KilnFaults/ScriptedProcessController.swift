import Foundation
import KilnCore
import KilnStack

#if canImport(Glibc)
    import Glibc
#endif

/// A server of a scripted external stack (`ScriptedStack`, the hardened stack of `scripts/secure-stack`): its pid is
/// the one its pid file names, and only while that process holds the listening socket of the server's address (so a
/// stale pid file never leads a fault to an unrelated process); it starts again by the script's `up DIR`, which
/// starts only the servers that are not running. Not thread-safe: one caller at a time (the fault driver); calls block.
public final class ScriptedProcessController: ProcessController {
    public let name: String
    public let endpoint: HostPort
    public let gracefulStopSignal: Int32
    let server: ScriptedStack.Server
    let script: URL
    let directory: URL
    let environment: [String: String]
    let readyProbe: ServiceProbe

    /// `script`: the stack's `started_by` script; `environment`: what it is run with (it needs the stack's passwords).
    /// `readyProbe`: what must answer after a start (e.g. an authenticated login).
    public init(
        _ server: ScriptedStack.Server, script: URL, directory: URL, environment: [String: String],
        readyProbe: ServiceProbe
    ) {
        self.name = server.name
        self.endpoint = server.endpoint
        self.server = server
        self.script = script
        self.directory = directory
        self.environment = environment
        self.readyProbe = readyProbe
        // PostgreSQL's SIGTERM ("smart" shutdown) waits for every client to leave; SIGINT does not.
        self.gracefulStopSignal = server.wire == .postgres ? SIGINT : SIGTERM
    }

    public func currentPID() -> pid_t? { ScriptedStack.listeningPID(server) }

    public func send(_ signal: Int32) throws {
        guard let pid = currentPID() else { throw ProcessFaultError("\(name) is not running (or does not serve \(endpoint))") }
        guard kill(pid, signal) == 0 else {
            throw ProcessFaultError("kill(\(pid), \(signal)) failed: \(String(cString: strerror(errno)))")
        }
    }

    public func start(timeout: Duration) throws {
        if currentPID() == nil {
            let output = directory.appendingPathComponent("restart-\(name).log")
            let status = try Self.runScript(script, ["up", directory.path], environment: environment, output: output)
            guard status == 0 else {
                throw ProcessFaultError("\(script.lastPathComponent) up \(directory.path) exited \(status) (output: \(output.path))")
            }
        }
        let (result, _) = TCPProbe.waitFor(answered: true, within: timeout) {
            readyProbe.run(endpoint, timeout: .seconds(2))
        }
        guard result.answered else {
            throw ProcessFaultError("\(name) did not answer at \(endpoint) within \(timeout): \(result)")
        }
    }

    /// Runs `script` with `arguments` and `environment` (never a password on argv), its output to `output`; returns
    /// its exit status. Its descriptors other than the output are not inherited (the script closes the rest itself).
    static func runScript(_ script: URL, _ arguments: [String], environment: [String: String], output: URL) throws -> Int32 {
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        defer { try? handle.close() }
        let process = Process()
        process.executableURL = script
        process.arguments = arguments
        process.environment = environment
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }
}
