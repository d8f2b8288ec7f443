import Foundation
import KilnCore
import KilnFaults
import KilnHTTP
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `kiln proxy` as a user runs it: toxics from the command line, the control API, SIGINT ends it cleanly.
@Suite("kiln proxy command")
struct ProxyCommandTests {
    @Test func runsStandaloneWithControlAPIAndStopsOnSIGINT() throws {
        // Below the kernel's ephemeral range (32768–60999), so no client connection of a parallel test holds it.
        let port = Int.random(in: 29_000...32_000)
        let listen = HostPort(host: "127.0.0.1", port: port)
        let control = HostPort(host: "127.0.0.1", port: port + 1)
        let process = Process()
        process.executableURL = TestStack.paths.home.appendingPathComponent(".build/debug/kiln")
        process.arguments = [
            "proxy", "--listen", listen.description, "--upstream", TestStack.definition.redis.primary.description,
            "--toxic", "latency=50ms,name=lag", "--control", control.description,
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let (ready, _) = TCPProbe.waitFor(answered: true, within: .seconds(30)) {
            TCPProbe.connect(to: control, timeout: .milliseconds(200))
        }
        if ready != .answered {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            Issue.record("kiln proxy did not open its control API on \(control): \(output)")
            return
        }
        let http = try HTTPClient(timeoutSeconds: 5)
        let toxics = try http.get("http://\(control)/toxics").text
        #expect(toxics.contains(#""name":"lag""#))
        let start = ContinuousClock.now
        #expect(TCPProbe.redisPing(listen, timeout: .seconds(10)) == .answered)
        #expect(start.duration(to: .now) >= .milliseconds(45))
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(output.contains("proxy \(listen) -> "), "\(output)")
        #expect(process.terminationStatus == 128 + SIGINT, "\(output)")
        #expect(TCPProbe.connect(to: listen, timeout: .milliseconds(300)) != .answered)
    }

    @Test func rejectsABadToxicAsUsage() throws {
        let outcome = try CommandLineTests.kiln([
            "proxy", "--listen", "127.0.0.1:1", "--upstream", "127.0.0.1:2", "--toxic", "latency=soon",
        ])
        #expect(outcome.status == KilnExitCode.invalidInput.rawValue, "\(outcome.output)")
        #expect(outcome.output.contains("latency=soon"))
    }
}
