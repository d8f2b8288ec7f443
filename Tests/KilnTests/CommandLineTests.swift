import Foundation
import KilnCore
import Testing

/// Runs the built `kiln` binary the way a user does and checks exit codes and messages.
@Suite("kiln command line")
struct CommandLineTests {
    struct Outcome {
        var status: Int32
        var output: String
        var seconds: Double
    }

    static func kiln(_ arguments: [String], environment: [String: String]? = nil) throws -> Outcome {
        let binary = TestStack.paths.home.appendingPathComponent(".build/debug/kiln")
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        if let environment { process.environment = environment }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let started = ContinuousClock.now
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let elapsed = started.duration(to: .now)
        return Outcome(
            status: process.terminationStatus, output: String(decoding: data, as: UTF8.self),
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// The shared helper (KilnTestSupport), under the name this target's tests call it by.
    static func temporaryFile(_ name: String, _ text: String) throws -> URL {
        try TestStack.temporaryFile(name, text)
    }

    @Test func unreachableEndpointsAreNamedWithinABoundedTime() throws {
        // Nothing listens on these loopback ports; each store must report its own address.
        let stack = try Self.temporaryFile(
            "dead.yaml",
            """
            kind: external
            postgres: {primary: 127.0.0.1:1}
            redis: {primary: 127.0.0.1:2}
            kafka: {bootstrap: [127.0.0.1:3]}
            graph: {kind: falkordb, endpoint: 127.0.0.1:4}
            timeseries: {kind: clickhouse, endpoint: 127.0.0.1:5}
            """)
        let outcome = try Self.kiln(["smoke", "--stack", stack.path, "--transactions", "10", "--timeout", "3"])
        #expect(outcome.status == KilnExitCode.stackUnavailable.rawValue, "\(outcome.output)")
        #expect(outcome.seconds < 45, "took \(outcome.seconds) s")
        for (store, address) in [("postgres", "127.0.0.1:1"), ("kafka", "127.0.0.1:3"), ("redis", "127.0.0.1:2"),
            ("falkordb", "127.0.0.1:4"), ("clickhouse", "127.0.0.1:5")]
        {
            let line = outcome.output.split(separator: "\n").first { $0.hasPrefix(store + " ") }
            #expect(line?.contains(address) == true, "no row naming \(store) at \(address):\n\(outcome.output)")
            #expect(line?.contains("error") == true, "\(store) row should carry the error:\n\(outcome.output)")
        }
    }

    @Test func aStackFileWithAnUnknownFieldIsInvalidInputNamingFileLineAndField() throws {
        let stack = try Self.temporaryFile(
            "typo.yaml",
            """
            kind: embedded
            postgres:
              primary: 127.0.0.1:5432
              replica: 127.0.0.1:5433
            redis: {primary: 127.0.0.1:6379}
            kafka: {bootstrap: [127.0.0.1:9092]}
            graph: {kind: falkordb, endpoint: 127.0.0.1:6380}
            timeseries: {kind: clickhouse, endpoint: 127.0.0.1:8123}
            """)
        let outcome = try Self.kiln(["stack", "env", "--stack", stack.path])
        #expect(outcome.status == KilnExitCode.invalidInput.rawValue)
        #expect(outcome.output.contains("\(stack.path):4:3: postgres.replica: unknown field"), "\(outcome.output)")
    }

    @Test func aMissingStackFileIsInvalidInput() throws {
        let outcome = try Self.kiln(["stack", "status", "--stack", "/nonexistent/stack.yaml"])
        #expect(outcome.status == KilnExitCode.invalidInput.rawValue)
        #expect(outcome.output.contains("/nonexistent/stack.yaml"))
    }

    @Test func stackEnvPrintsShellExportsOfTheEmbeddedStack() throws {
        let outcome = try Self.kiln(["stack", "env"])
        #expect(outcome.status == 0)
        #expect(outcome.output.contains("export PGHOST='127.0.0.11'"))
        #expect(outcome.output.contains("export KILN_KAFKA_BOOTSTRAP='127.0.0.31:19092'"))
        #expect(outcome.output.contains("export KILN_CLICKHOUSE_URL='http://127.0.0.51:18123'"))
    }

    @Test func statusOfTheRunningEmbeddedStackShowsEveryServerUpWithItsRole() throws {
        let outcome = try Self.kiln(["stack", "status"])
        #expect(outcome.status == 0, "\(outcome.output)")
        let lines = outcome.output.split(separator: "\n").dropFirst()
        #expect(lines.count == 10)
        #expect(lines.allSatisfy { $0.hasSuffix("up") }, "\(outcome.output)")
        #expect(lines.contains { $0.hasPrefix("postgres-replica") && $0.contains("replica") })
    }

    @Test func badNumbersAreUsageErrors() throws {
        let outcome = try Self.kiln(["smoke", "--transactions", "0"])
        #expect(outcome.status == 64)
        #expect(outcome.output.contains("--transactions"))
    }
}
