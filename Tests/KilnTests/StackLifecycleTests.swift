import Foundation
import KilnCore
import KilnScenario
import KilnStack
import Logging
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Starts a second, private embedded stack (other addresses and ports, its own run directory) so that
/// up/kill/down can be exercised without disturbing the stack the other tests use.
@Suite("Embedded stack lifecycle", .serialized)
struct StackLifecycleTests {
    static func privateStack() throws -> (StackDefinition, KilnPaths) {
        var text = try String(contentsOf: TestStack.paths.embeddedStackFile, encoding: .utf8)
        // 127.0.0.x -> 127.0.1.x and every port + 100: nothing shared with the main embedded stack.
        text = text.replacingOccurrences(of: "127.0.0.", with: "127.0.1.")
        for port in [15432, 15433, 16379, 16380, 26379, 26380, 26381, 19092, 16390, 18123] {
            text = text.replacingOccurrences(of: ":\(port)", with: ":\(port + 100)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-stack"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("stack.yaml")
        try text.write(to: file, atomically: true, encoding: .utf8)
        let definition = try StackDefinition.load(contentsOf: file)
        return (definition, KilnPaths(home: TestStack.paths.home, stack: directory.appendingPathComponent("run")))
    }

    @Test func upIsIdempotentKilledServersShowDownAndDownLeavesNothing() throws {
        let (definition, paths) = try Self.privateStack()
        let stack = try EmbeddedStack(definition: definition, paths: paths, logger: Logger(label: "test.stack"))
        defer {
            stack.down()
            try? FileManager.default.removeItem(at: paths.stack.deletingLastPathComponent())
        }

        let first = try stack.up()
        let roles = Dictionary(uniqueKeysWithValues: first.map { ($0.name, $0.role ?? "?") })
        #expect(first.allSatisfy { $0.isUp }, "\(first)")
        #expect(roles["postgres-primary"] == "primary")
        #expect(roles["postgres-replica"] == "replica")
        #expect(roles["redis-primary"] == "primary")
        #expect(roles["redis-replica"] == "replica")
        #expect(roles["sentinel-3"] == "sentinel")
        #expect(roles["kafka"] == "broker")
        #expect(roles["falkordb"] == "graph")
        #expect(roles["clickhouse"] == "timeseries")
        #expect(first.count == 10)

        // A second `up` starts nothing new: same pids, still all up.
        let second = try stack.up()
        #expect(second.map(\.pid) == first.map(\.pid))
        #expect(second.allSatisfy { $0.isUp })

        // Killing one server shows it down while the others stay up; `up` brings it back.
        let victim = try #require(first.first { $0.name == "redis-replica" }?.pid)
        kill(victim, SIGKILL)
        #expect(LocalProcess.waitForExit(victim, within: .seconds(5)))
        let afterKill = stack.status()
        #expect(afterKill.first { $0.name == "redis-replica" }?.health == .down)
        #expect(afterKill.filter { $0.name != "redis-replica" }.allSatisfy { $0.isUp })
        let repaired = try stack.up()
        #expect(repaired.allSatisfy { $0.isUp })
        #expect(repaired.first { $0.name == "redis-replica" }?.pid != victim)

        let pids = repaired.compactMap(\.pid)
        let report = stack.down()
        #expect(report.failures.isEmpty)
        #expect(report.stillListening.isEmpty)
        #expect(pids.allSatisfy { !LocalProcess.isAlive($0) }, "still alive after down")
        for server in stack.servers {
            #expect(!LocalProcess.isListening(host: server.endpoint.host, port: server.endpoint.port), "\(server.name)")
        }
        #expect(stack.status().allSatisfy { $0.health == .down })
        #expect(!FileManager.default.fileExists(atPath: paths.stack.appendingPathComponent("postgres-primary").path))
    }

    @Test func aForeignProcessOnAnAddressIsReportedNotKilled() throws {
        let (definition, paths) = try Self.privateStack()
        // Something that is not ours listens on the private stack's Redis primary address.
        let primary = definition.redis.primary
        let squatter = try LocalProcess.spawnDetached(
            "/usr/bin/redis-server",
            ["--bind", primary.host, "--port", String(primary.port), "--save", "", "--protected-mode", "no"],
            log: URL(fileURLWithPath: "/dev/null"))
        defer { LocalProcess.terminate(squatter) }
        let deadline = ContinuousClock.now + .seconds(5)
        while !LocalProcess.isListening(host: primary.host, port: primary.port) && ContinuousClock.now < deadline {
            usleep(50_000)
        }
        let stack = try EmbeddedStack(definition: definition, paths: paths, logger: Logger(label: "test.stack"))
        defer {
            stack.down()
            try? FileManager.default.removeItem(at: paths.stack.deletingLastPathComponent())
        }
        let error = #expect(throws: StackError.self) { try stack.up() }
        #expect(error?.server == "redis-primary")
        #expect(error?.description.contains("\(primary)") == true)
        #expect(error?.description.contains("already in use") == true)
        stack.down()
        #expect(LocalProcess.isAlive(squatter), "down must not touch a process the stack did not start")
    }

    @Test func aStackFileOfAnotherKindIsRefused() throws {
        let compose = try StackDefinition.load(
            contentsOf: TestStack.paths.home.appendingPathComponent("Scenarios/stacks/compose.yaml"))
        #expect(throws: StackError.self) {
            _ = try EmbeddedStack(definition: compose, paths: TestStack.paths, logger: Logger(label: "test"))
        }
    }
}
