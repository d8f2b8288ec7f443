import Foundation
import KilnCore
import KilnFaults
import KilnStack
import Logging
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A private redis-server on its own loopback alias (127.0.0.121) and a random port, with a temp dir; the tests
/// fault this one, never the shared stack's servers. `shutdown()` (in a defer) always removes it.
final class PrivateRedis {
    let directory: URL
    let controller: LocalProcessController

    init() throws {
        let port = Int.random(in: 21_000...28_999)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-redis"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let endpoint = HostPort(host: "127.0.0.121", port: port)
        controller = LocalProcessController(
            name: "private-redis", endpoint: endpoint,
            launch: .command(
                executable: "/usr/bin/redis-server",
                arguments: [
                    "--bind", endpoint.host, "--port", String(port), "--save", "", "--appendonly", "no",
                    "--dir", directory.path,
                ],
                log: directory.appendingPathComponent("redis.log")),
            readyProbe: .redisPing)
        try controller.start(timeout: .seconds(10))
    }

    func shutdown() {
        controller.shutdown()
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite("Process faults on a private redis-server")
struct ProcessFaultTests {
    @Test func killIsVerifiedGoneAndBack() throws {
        let redis = try PrivateRedis()
        defer { redis.shutdown() }
        let before = try #require(redis.controller.currentPID())
        let fault = ProcessFault(action: .kill, controller: redis.controller, speaking: .redis)
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.note.contains("gone"), "\(started.note)")
        #expect(TCPProbe.connect(to: redis.controller.endpoint, timeout: .milliseconds(300)) != .answered)
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(record.kind == "kill")
        let after = try #require(redis.controller.currentPID())
        #expect(after != before)
        #expect(TCPProbe.redisPing(redis.controller.endpoint, timeout: .seconds(1)) == .answered)
    }

    @Test func pauseIsVerifiedByARequestProbe() throws {
        let redis = try PrivateRedis()
        defer { redis.shutdown() }
        let pid = try #require(redis.controller.currentPID())
        let driver = FaultDriver(ProcessFault(action: .pause, controller: redis.controller, speaking: .redis))
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        // Paused: the kernel still completes the handshake, but no reply comes.
        #expect(TCPProbe.connect(to: redis.controller.endpoint, timeout: .milliseconds(300)) == .answered)
        #expect(TCPProbe.redisPing(redis.controller.endpoint, timeout: .milliseconds(300)) == .timedOut)
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(redis.controller.currentPID() == pid)
    }

    @Test func pauseWithAConnectProbeIsUnknownNotAssumed() throws {
        let redis = try PrivateRedis()
        defer { redis.shutdown() }
        let record = FaultDriver(ProcessFault(action: .pause, controller: redis.controller, probe: .connect))
            .run(for: .milliseconds(50))
        #expect(record.verified == .unknown, "\(record.note)")
        #expect(TCPProbe.redisPing(redis.controller.endpoint, timeout: .seconds(1)) == .answered)
    }

    @Test func gracefulRestartComesBackWithANewPID() throws {
        let redis = try PrivateRedis()
        defer { redis.shutdown() }
        let record = FaultDriver(ProcessFault(action: .restart, controller: redis.controller, speaking: .redis))
            .run(for: .milliseconds(100))
        #expect(record.verified == .yes, "\(record.note)")
        #expect(record.startedAt != nil)
        #expect(record.stoppedAt != nil)
    }

    @Test func aFaultOnAServerThatIsNotRunningIsRecordedAsNo() throws {
        let redis = try PrivateRedis()
        redis.shutdown()
        let record = FaultDriver(ProcessFault(action: .kill, controller: redis.controller)).run(for: .zero)
        #expect(record.verified == .no)
        #expect(record.note.contains("not running"))
    }

    @Test func faultRecordUsesSnakeCaseKeys() throws {
        let record = FaultRecord(
            name: "kill-redis", kind: "kill", target: "redis-primary", plannedStart: 1000, startedAt: 1005,
            stoppedAt: 2000, verified: .yes, note: "active: gone; healed: back")
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = String(decoding: try encoder.encode(record), as: UTF8.self)
        #expect(
            json == #"{"kind":"kill","name":"kill-redis","note":"active: gone; healed: back","planned_start":1000,"#
                + #""started_at":1005,"stopped_at":2000,"target":"redis-primary","verified":"yes"}"#)
        #expect(try JSONDecoder().decode(FaultRecord.self, from: Data(json.utf8)) == record)
    }
}

/// Read-only: resolves a controller for the shared stack's servers without faulting them.
@Suite("Local process controller for embedded servers")
struct EmbeddedControllerTests {
    @Test func targetsANamedServerOfTheRunningStack() throws {
        let stack = try KilnStack.EmbeddedStack(
            definition: TestStack.definition, paths: TestStack.paths, logger: Logger(label: "kiln.test"))
        let controller = try LocalProcessController.embedded("redis-primary", of: stack)
        #expect(controller.endpoint == TestStack.definition.redis.primary)
        let pid = try #require(controller.currentPID(), "the embedded stack's redis-primary is not running")
        #expect(pid > 0)
        #expect(throws: ProcessFaultError.self) { try LocalProcessController.embedded("no-such-server", of: stack) }
    }
}
