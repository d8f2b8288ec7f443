import Foundation
import KilnCore
import KilnScenario
import KilnStack
import Logging
import Synchronization
import Testing

/// `kiln run` and `kiln check` on the shipped Patroni stack (10.213.7.65–.76): the clients start on the node that
/// holds the leader lock, follow a switchover without a restart, and the check reads the leader of that moment.
/// Brings the stack up and down through the `kiln` binary; fails (never skips) when etcd or Patroni is missing.
@Suite("Patroni stack under kiln run", .serialized)
struct PatroniRunTests {
    static let stack = TestStack.paths.home.appendingPathComponent("Scenarios/stacks/embedded-patroni.yaml")
    static let scenario = TestStack.paths.home.appendingPathComponent("Scenarios/patroni-load.yaml")

    /// The ok inserts of a run's history, in end order, with the server that acknowledged each.
    static func acknowledgedInserts(_ runDirectory: URL) throws -> [HistoryEntry] {
        let text = try String(contentsOf: runDirectory.appendingPathComponent("history.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(HistoryEntry.self, from: Data($0.utf8)) }
            .filter { $0.operation.rawValue == "postgres.insert" && $0.outcome == .ok }
            .sorted { $0.endNanos < $1.endNanos }
    }

    @Test func aPatroniStackWithFaultsIsRefusedBeforeAnythingStarts() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-pr"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var text = try String(contentsOf: Self.scenario, encoding: .utf8)
        text = text.replacingOccurrences(of: "stack: stacks/", with: "stack: \(Self.stack.deletingLastPathComponent().path)/")
        text = text.replacingOccurrences(of: "spec: ../Generators", with: "spec: \(TestStack.paths.home.path)/Generators")
        text = text.replacingOccurrences(
            of: "phases:", with: "faults:\n  - {name: k, kind: partition, target: postgres-primary, at: 5s, duration: 5s}\nphases:")
        let file = directory.appendingPathComponent("faulted.yaml")
        try text.write(to: file, atomically: true, encoding: .utf8)
        let run = try CommandLineTests.kiln(["run", file.path, "--runs-directory", directory.path])
        #expect(run.status == 64, "\(run.output)")
        #expect(run.output.contains("kiln patroni drill"), "\(run.output)")
    }

    @Test(.timeLimit(.minutes(10)))
    func loadIsValidAndFollowsASwitchoverInSynchronousMode() throws {
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-patroni-run"))
        try FileManager.default.createDirectory(at: runs, withIntermediateDirectories: true)
        defer {
            _ = try? CommandLineTests.kiln(["stack", "down", "--stack", Self.stack.path])
            try? FileManager.default.removeItem(at: runs)
        }
        let up = try CommandLineTests.kiln(["stack", "up", "--stack", Self.stack.path])
        try #require(up.status == 0, "\(up.output)")
        let spec = try PatroniStackSpec.load(contentsOf: Self.stack)
        let cluster = try PatroniCluster(spec: spec, home: TestStack.paths.home, logger: Logger(label: "test"))

        // 1. The plain load, judged by its check: valid, every acknowledged insert from the one leader.
        let plain = try CommandLineTests.kiln(["run", Self.scenario.path, "--check", "--runs-directory", runs.path, "--id", "plain"])
        #expect(plain.status == 0, "\(plain.output)")
        let plainServers = Set(try Self.acknowledgedInserts(runs.appendingPathComponent("plain")).compactMap(\.server))
        let leader = try #require(cluster.status().leaderIndex)
        #expect(plainServers == [spec.nodes[leader].description], "\(plainServers)")

        // 2. Synchronous mode on, a switchover 10 s into the run: the writes move to the new leader without a restart,
        // the check reads it and finds nothing acknowledged lost.
        try cluster.setSynchronousMode(true)
        // In synchronous mode Patroni switches over only to the synchronous standby.
        let candidate = try #require(cluster.status().nodes.firstIndex { $0.role == "sync_standby" })
        let switched = Mutex<String?>(nil)
        let switcher = Thread {
            Thread.sleep(forTimeInterval: 10)
            do {
                try PatroniCluster(spec: spec, home: TestStack.paths.home, logger: Logger(label: "test"))
                    .switchover(from: leader, to: candidate)
            } catch {
                switched.withLock { $0 = "\(error)" }
            }
        }
        switcher.start()
        let moved = try CommandLineTests.kiln(["run", Self.scenario.path, "--check", "--runs-directory", runs.path, "--id", "switchover"])
        #expect(switched.withLock { $0 } == nil, "switchover: \(switched.withLock { $0 } ?? "")")
        #expect(moved.status == 0, "\(moved.output)")
        let inserts = try Self.acknowledgedInserts(runs.appendingPathComponent("switchover"))
        let servers = inserts.compactMap(\.server)
        #expect(Set(servers) == [spec.nodes[leader].description, spec.nodes[candidate].description], "\(Set(servers))")
        // Time the client saw no leader: last insert acknowledged by the old leader to first by the new one.
        if let lastOld = inserts.last(where: { $0.server == spec.nodes[leader].description }),
            let firstNew = inserts.first(where: { $0.server == spec.nodes[candidate].description })
        {
            #expect(lastOld.endNanos < firstNew.endNanos, "writes acknowledged by the old leader after the new one's first")
            print("patroni switchover under kiln run: \(inserts.count) acknowledged inserts; writes gap old→new leader "
                + "\((firstNew.endNanos - lastOld.endNanos) / 1_000_000) ms")
        }
        #expect(FileManager.default.fileExists(atPath: runs.appendingPathComponent("switchover/check.json").path))
        #expect(moved.output.contains("patroni: the check reads the leader of now, \(spec.nodes[candidate])"), "the check read the new leader")
        try cluster.setSynchronousMode(false)
    }
}
