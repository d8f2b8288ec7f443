import Foundation
import KilnCheck
import KilnCore
import KilnFaults
import KilnHTTP
import KilnScenario
import KilnStack
import Logging
import Testing

/// Patroni stack and drill files: strict parsing, the errors a user sees (file:line:column and field).
@Suite("Patroni stack and drill files")
struct PatroniSpecTests {
    static let shipped = TestStack.paths.home.appendingPathComponent("Scenarios/stacks/embedded-patroni.yaml")

    @Test func theShippedStackParses() throws {
        let spec = try PatroniStackSpec.load(contentsOf: Self.shipped)
        #expect(spec.etcdMembers.map(\.host) == ["10.213.7.65", "10.213.7.66", "10.213.7.67"])
        #expect(spec.nodes.map(\.host) == ["10.213.7.71", "10.213.7.72", "10.213.7.73"])
        #expect(spec.ttl == .seconds(20))
        #expect(spec.clientGroups.map(\.name) == ["clients-a", "clients-b"])
        #expect(PatroniStackSpec.declaresPatroni(Self.shipped))
        #expect(!PatroniStackSpec.declaresPatroni(TestStack.paths.embeddedStackFile))
    }

    @Test func everyShippedDrillParses() throws {
        let drills = try FileManager.default.contentsOfDirectory(
            at: TestStack.paths.home.appendingPathComponent("Scenarios/drills"), includingPropertiesForKeys: nil
        ).filter { $0.lastPathComponent.hasPrefix("patroni-") }
        #expect(drills.count == PatroniDrillSpec.FaultKind.allCases.count)
        let kinds = try drills.map { try PatroniDrillSpec.load(contentsOf: $0).fault }
        #expect(Set(kinds) == Set(PatroniDrillSpec.FaultKind.allCases))
    }

    static func stackError(_ replace: String, with replacement: String) throws -> SpecError? {
        let text = try String(contentsOf: shipped, encoding: .utf8)
        #expect(text.contains(replace), "fixture: \(replace)")
        do {
            _ = try PatroniStackSpec.parse(text.replacingOccurrences(of: replace, with: replacement), file: "p.yaml")
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [
        ("ttl: 20s", "ttl: 5s", "patroni.ttl"),
        ("ttl: 20s", "ttl: -3s", "patroni.ttl"),
        ("ttl: 20s", "ttl: 99999999999999999999s", "patroni.ttl"),
        ("loop_wait: 2s", "loop_wait: 0s", "patroni.loop_wait"),
        ("retry_timeout: 5s", "retry_timeout: 10s", "patroni.ttl"),
        ("rest_port: 8008", "rest_port: 0", "patroni.rest_port"),
        ("rest_port: 8008", "rest_port: 5432", "patroni.rest_port"),
        ("nodes: [10.213.7.71:5432, 10.213.7.72:5432, 10.213.7.73:5432]", "nodes: [10.213.7.71:5432]", "patroni.nodes"),
        ("nodes: [10.213.7.71:5432,", "nodes: [127.0.0.1:5432,", "patroni.nodes"),
        ("nodes: [10.213.7.71:5432,", "nodes: [10.213.7.62:5432,", "patroni.nodes"),
        ("nodes: [10.213.7.71:5432,", "nodes: [10.213.7.65:5432,", "patroni.nodes"),
        ("members: [10.213.7.65:2379, 10.213.7.66:2379, 10.213.7.67:2379]", "members: [10.213.7.65:2379, 10.213.7.66:2379]", "etcd.members"),
        ("network: hosts", "network: loopback", "network"),
        ("synchronous_mode: false", "synchronous_mode: maybe", "patroni.synchronous_mode"),
        ("maximum_lag_on_failover: 1048576", "maximum_lag_on_failover: -1", "patroni.maximum_lag_on_failover"),
        ("scope: kiln", "scope: kiln\n  bogus: 1", "patroni.bogus"),
        ("clients-a: 10.213.7.75", "clients-a: 10.213.7.71", "client_groups.clients-a"),
    ])
    func badValuesNameTheirField(_ replace: String, _ replacement: String, _ field: String) throws {
        let error = try #require(try Self.stackError(replace, with: replacement))
        #expect(error.field == field, "\(error)")
        #expect(error.line > 0 && error.column > 0, "\(error)")
        #expect(error.description.hasPrefix("p.yaml:\(error.line):\(error.column): \(field): "), "\(error)")
    }

    @Test(arguments: [
        ("kind: kill-leader", "kind: nuke-it", "fault.kind"),
        ("at: 10s", "at: 99s", "fault.at"),
        ("at: 10s", "at: -1s", "fault.at"),
        ("writers: 4", "writers: 0", "writers"),
        ("rate: 200", "rate: 100000000000000000000", "rate"),
        ("duration: 70s", "duration: 0s", "duration"),
        ("stack: ../stacks/embedded-patroni.yaml", "stack: ../stacks/embedded.yaml", "stack"),
    ])
    func badDrillValuesNameTheirField(_ replace: String, _ replacement: String, _ field: String) throws {
        let file = TestStack.paths.home.appendingPathComponent("Scenarios/drills/patroni-kill-leader.yaml")
        let text = try String(contentsOf: file, encoding: .utf8)
        #expect(text.contains(replace))
        do {
            _ = try PatroniDrillSpec.parse(
                text.replacingOccurrences(of: replace, with: replacement), file: "d.yaml",
                directory: file.deletingLastPathComponent())
            Issue.record("accepted \(replacement)")
        } catch {
            #expect(error.field == field, "\(error)")
            #expect(error.description.hasPrefix("d.yaml:\(error.line):\(error.column): \(field): "), "\(error)")
        }
    }
}

/// The drill's check on hand-built histories: what it must find and what it must not call an anomaly.
@Suite("Patroni drill check")
struct PatroniDrillCheckTests {
    typealias W = PatroniDrillCheck.Write
    static let a = "10.213.7.71:5432"
    static let b = "10.213.7.72:5432"
    static let s: UInt64 = 1_000_000_000  // one second in ns

    static func check(_ writes: [W], present: Set<Int64>, rounds: [(at: UInt64, leaders: [String])] = []) -> PatroniDrillCheck.Result {
        PatroniDrillCheck.check(
            writes: writes, present: present, faultStart: 10 * s, loadEnd: 30 * s, leaderRounds: rounds, initialLeader: a)
    }

    /// A clean failover: a acknowledges until 10 s, nothing for 5 s, b from 15 s.
    static var cleanFailover: [W] {
        var writes: [W] = []
        for second in 1...10 {
            let end: UInt64 = UInt64(second) * s
            writes.append(W(txnID: Int64(second), worker: 0, outcome: .ok, server: a, start: end - s / 2, end: end))
        }
        writes.append(W(txnID: 11, worker: 0, outcome: .info, server: a, start: 10 * s + 1, end: 12 * s))
        writes.append(W(txnID: 12, worker: 0, outcome: .fail, server: nil, start: 12 * s, end: 12 * s + 5))
        for second in 15...29 {
            let end: UInt64 = UInt64(second) * s
            writes.append(W(txnID: Int64(second), worker: 0, outcome: .ok, server: b, start: end - s / 2, end: end))
        }
        return writes
    }

    @Test func aCleanFailoverIsValidAndTimed() {
        let writes = Self.cleanFailover
        let present = Set(writes.filter { $0.outcome == .ok }.map(\.txnID))
        let result = Self.check(writes, present: present, rounds: [(11 * Self.s, []), (14 * Self.s, [Self.b])])
        #expect(result.valid)
        #expect(result.lost.isEmpty && result.phantom.isEmpty && result.splitBrain.isEmpty)
        #expect(result.timeToNewLeaderMs == 4000)
        #expect(result.unavailabilityMs == 5000)
        #expect(result.rtoMs == 5000)
        #expect(result.ackingNodes == [Self.a, Self.b])
    }

    @Test func lostAcknowledgedWritesAreNamedByTxnID() {
        let writes = Self.cleanFailover
        var present = Set(writes.filter { $0.outcome == .ok }.map(\.txnID))
        present.subtract([9, 10])
        let result = Self.check(writes, present: present)
        #expect(!result.valid)
        #expect(result.lost == [9, 10])
    }

    @Test func unknownWritesMayBeEitherWay() {
        let writes = Self.cleanFailover
        let present = Set(writes.filter { $0.outcome == .ok }.map(\.txnID)).union([11])
        let result = Self.check(writes, present: present)
        #expect(result.valid)
        #expect(result.unknownPresent == 1)
    }

    @Test func failedOrUnsentRowsThatAppearArePhantom() {
        let writes = Self.cleanFailover
        let present = Set(writes.filter { $0.outcome == .ok }.map(\.txnID)).union([12, 999])
        let result = Self.check(writes, present: present)
        #expect(!result.valid)
        #expect(result.phantom == [12, 999])
    }

    @Test func twoNodesAcknowledgingInOverlapIsSplitBrain() {
        // a keeps acknowledging writes invoked after b's first acknowledgement, and b acknowledges after those.
        var writes = Self.cleanFailover
        for second in 16...18 {
            let start: UInt64 = UInt64(second) * Self.s + Self.s / 4
            let end: UInt64 = UInt64(second) * Self.s + Self.s / 3
            writes.append(W(txnID: Int64(100 + second), worker: 1, outcome: .ok, server: Self.a, start: start, end: end))
        }
        let present = Set(writes.filter { $0.outcome == .ok }.map(\.txnID))
        let result = Self.check(writes, present: present)
        #expect(!result.valid)
        #expect(result.splitBrain.count == 1)
        #expect(result.splitBrain.first?.first == Self.a && result.splitBrain.first?.second == Self.b)
    }

    @Test func noOutageMeansRTOZero() {
        // Acknowledgements every 100 ms throughout: the longest gap is jitter, not an outage.
        var writes: [W] = []
        for tenth in 1...299 {
            let end: UInt64 = UInt64(tenth) * Self.s / 10
            writes.append(W(txnID: Int64(tenth), worker: 0, outcome: .ok, server: Self.a, start: end - 1000, end: end))
        }
        let result = Self.check(writes, present: Set(writes.map(\.txnID)))
        #expect(result.valid)
        #expect(result.rtoMs == 0)
        #expect(result.unavailabilityMs < 200)
        #expect(result.timeToNewLeaderMs == nil)
    }

    @Test func anOutageThatOutlastsTheLoadHasNoRTO() {
        let writes = Array(Self.cleanFailover.prefix(10))
        let result = Self.check(writes, present: Set(writes.map(\.txnID)))
        #expect(result.rtoMs == nil)
        #expect(result.unavailabilityMs == 20000)
    }
}

/// A private Patroni cluster (etcd .68–.70, nodes .77–.79, its own name, run directory and namespaces) started and
/// stopped through the `kiln` binary as a user does. Fails (never skips) when etcd or Patroni is not installed.
@Suite("Patroni HA drills on a private cluster", .serialized)
struct PatroniClusterTests {
    static func privateStack() throws -> (file: URL, name: String, directory: URL) {
        var text = try String(contentsOf: PatroniSpecTests.shipped, encoding: .utf8)
        for (from, to) in [(65, 68), (66, 69), (67, 70), (71, 77), (72, 78), (73, 79)] {
            text = text.replacingOccurrences(of: "10.213.7.\(from):", with: "10.213.7.\(to):")
        }
        let name = "tp\(UInt32.random(in: 0...UInt32.max))"
        text = text.replacingOccurrences(of: "name: embedded-patroni", with: "name: \(name)")
        text = text.components(separatedBy: "client_groups:")[0]
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-patroni"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("stack.yaml")
        try text.write(to: file, atomically: true, encoding: .utf8)
        return (file, name, directory)
    }

    static func drillFile(_ kind: String, stack: URL, in directory: URL) throws -> URL {
        let text = """
            name: t-\(kind)
            stack: \(stack.path)
            writers: 4
            rate: 200
            duration: 50s
            settle: 90s
            fault: {kind: \(kind), at: 5s, duration: 30s}
            """
        let file = directory.appendingPathComponent("\(kind).yaml")
        try text.write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    static func report(_ directory: URL) throws -> [String: Any] {
        let data = try Data(contentsOf: directory.appendingPathComponent("patroni-drill.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Nothing of stack `name` remains: no namespace, no process running from its run directory, no data directory.
    static func expectNothingLeft(name: String, runDirectory: URL) {
        let namespaces = (try? LocalProcess.run("/usr/sbin/ip", ["netns", "list"])) ?? "?"
        #expect(!namespaces.contains("kiln.s-\(name)."), "\(namespaces)")
        let processes = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid -> String? in
            guard Int32(pid) != nil, let line = LocalProcess.commandLine(Int32(pid)!) else { return nil }
            return line.contains(runDirectory.path) ? "\(pid): \(line)" : nil
        }
        #expect(processes.isEmpty, "\(processes)")
        for member in ["etcd-1", "etcd-2", "etcd-3", "pg-1", "pg-2", "pg-3"] {
            #expect(!FileManager.default.fileExists(atPath: runDirectory.appendingPathComponent(member).path))
        }
    }

    @Test(.timeLimit(.minutes(15)))
    func upStatusSwitchoverAndLeaderKillDrillsThenDownLeavesNothing() throws {
        let (file, name, directory) = try Self.privateStack()
        let runDirectory = TestStack.paths.home.appendingPathComponent(".kiln/stack-\(name)")
        defer {
            _ = try? CommandLineTests.kiln(["stack", "down", "--stack", file.path])
            try? FileManager.default.removeItem(at: runDirectory)
            try? FileManager.default.removeItem(at: directory)
        }
        let up = try CommandLineTests.kiln(["stack", "up", "--stack", file.path])
        try #require(up.status == 0, "\(up.output)")
        let spec = try PatroniStackSpec.load(contentsOf: file)
        let cluster = try PatroniCluster(spec: spec, home: TestStack.paths.home, logger: Logger(label: "test"))

        // Status is what the REST API and etcd say: one leader, two streaming replicas, three healthy members.
        let before = cluster.status()
        #expect(before.isHealthy)
        let leader = try #require(before.leaderIndex)
        #expect(before.etcd.filter(\.healthy).count == 3)
        let status = try CommandLineTests.kiln(["stack", "status", "--stack", file.path])
        #expect(status.status == 0, "\(status.output)")
        #expect(status.output.contains("\(before.nodes[leader].name)  \(before.nodes[leader].endpoint)"))

        // The watch follows a switchover (REST /leader), and status reflects it.
        let primaries = PrimaryDirectory(["postgres": spec.nodes[leader]])
        let watch = PatroniLeaderWatch(
            restEndpoints: spec.nodes.indices.map { spec.restEndpoint(ofNode: $0) }, nodes: spec.nodes, directory: primaries)
        let candidate = (leader + 1) % spec.nodes.count
        try cluster.switchover(from: leader, to: candidate)
        var clients: [HTTPClient?] = Array(repeating: nil, count: spec.nodes.count)
        let deadline = ContinuousClock.now + .seconds(30)
        while watch.poll(clients: &clients) != [candidate], ContinuousClock.now < deadline { usleep(200_000) }
        #expect(primaries.entry(of: "postgres")?.endpoint == spec.nodes[candidate])
        #expect(primaries.entry(of: "postgres")?.generation == 1)
        var after = cluster.status()
        while !after.isHealthy, ContinuousClock.now < deadline + .seconds(60) {
            usleep(500_000)
            after = cluster.status()
        }
        #expect(after.leaderIndex == candidate)
        #expect(after.nodes[leader].role == "replica" && after.nodes[leader].state == "streaming")

        // A fault the target ignores (set up, never started) must be verified `no`, never `yes`.
        let current = try #require(cluster.status().leaderIndex)
        for kind in [PatroniDrillSpec.FaultKind.killLeader, .pauseLeader, .partitionLeaderFromEtcd, .killEtcdMember, .switchover] {
            let ignored = PatroniFault(kind, cluster: cluster, leader: current, runID: "ignored", logger: Logger(label: "test"))
            try ignored.setup()
            let evidence = ignored.verify(.active)
            ignored.teardown()
            #expect(evidence.verified == .no, "\(kind): \(evidence.text)")
        }

        // Leader loss with synchronous_mode: no acknowledged write may be lost.
        let sync = try CommandLineTests.kiln([
            "patroni", "drill", try Self.drillFile("kill-leader", stack: file, in: directory).path, "--synchronous-mode", "on",
            "--runs-directory", directory.path, "--id", "sync",
        ])
        #expect(sync.status == 0, "\(sync.output)")
        let syncReport = try Self.report(directory.appendingPathComponent("sync"))
        let syncCheck = try #require(syncReport["check"] as? [String: Any], "\(sync.output)")
        #expect((syncCheck["lost"] as? [Any])?.isEmpty == true, "\(sync.output)")
        #expect((syncReport["fault_record"] as? [String: Any])?["verified"] as? String == "yes", "\(sync.output)")
        #expect(syncCheck["timeToNewLeaderMs"] != nil, "\(sync.output)")

        // Without it, loss is measured, whatever it is; a planted loss of 3 acknowledged rows must be found by txn_id.
        let async = try CommandLineTests.kiln([
            "patroni", "drill", try Self.drillFile("kill-leader", stack: file, in: directory).path, "--synchronous-mode", "off",
            "--runs-directory", directory.path, "--id", "async", "--plant-loss", "3",
        ])
        #expect(async.status == 1, "\(async.output)")
        let asyncReport = try Self.report(directory.appendingPathComponent("async"))
        let planted = try #require(asyncReport["planted_loss"] as? [Int])
        let lost = try #require((asyncReport["check"] as? [String: Any])?["lost"] as? [Int])
        #expect(planted.count == 3)
        #expect(Set(planted).isSubset(of: Set(lost)), "planted \(planted), lost \(lost)")
        #expect(async.output.contains("RPO: \(lost.count) acknowledged writes lost"), "\(async.output)")

        let down = try CommandLineTests.kiln(["stack", "down", "--stack", file.path])
        #expect(down.status == 0, "\(down.output)")
        Self.expectNothingLeft(name: name, runDirectory: runDirectory)
    }
}
