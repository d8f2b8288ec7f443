import Foundation
import KilnCore
import KilnFaults
import KilnScenario
import KilnStack
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A listening socket on one loopback alias (connections complete in the kernel's backlog; nothing is read).
final class LoopbackListener {
    private var fd: Int32
    let endpoint: HostPort

    init(_ host: String) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, host, &address.sin_addr)
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            _ = Glibc.close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        endpoint = HostPort(host: host, port: Int(UInt16(bigEndian: address.sin_port)))
    }

    deinit { _ = Glibc.close(fd) }
}

/// Partitions with iptables between the tests' own listeners on 127.0.0.131-145 (each test its own addresses,
/// since tests run in parallel). Every test removes its run's rules in a defer, whatever happens.
@Suite("Network partitions (iptables on loopback)")
struct PartitionFaultTests {
    private func runID() -> String { TestStack.uniqueName("test-partition") }

    @Test func oneWayDropBlocksThatPathOnly() throws {
        let id = runID()
        defer { _ = try? PartitionSweeper.removeLeftovers(runID: id) }
        let server = try LoopbackListener("127.0.0.132")
        let fault = try PartitionFault(
            shape: .oneWay(from: "127.0.0.131", to: "127.0.0.132"), runID: id,
            blocked: [PartitionProbe(from: "127.0.0.131", to: server.endpoint)],
            control: [PartitionProbe(from: "127.0.0.133", to: server.endpoint)])
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        #expect(started.note.contains("timed out"))
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(TCPProbe.connect(to: server.endpoint, from: "127.0.0.131", timeout: .milliseconds(500)) == .answered)
    }

    @Test func isolateCutsTheNodeBothWaysButNotOthers() throws {
        let id = runID()
        defer { _ = try? PartitionSweeper.removeLeftovers(runID: id) }
        let node = try LoopbackListener("127.0.0.134")
        let other = try LoopbackListener("127.0.0.136")
        let fault = try PartitionFault(
            shape: .isolate("127.0.0.134"), runID: id,
            blocked: [
                PartitionProbe(from: "127.0.0.135", to: node.endpoint),
                PartitionProbe(from: "127.0.0.134", to: other.endpoint),
            ],
            control: [PartitionProbe(from: "127.0.0.135", to: other.endpoint)])
        let driver = FaultDriver(fault)
        driver.start()
        // The node still reaches itself.
        #expect(TCPProbe.connect(to: node.endpoint, from: "127.0.0.134", timeout: .milliseconds(500)) == .answered)
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
    }

    @Test func splitCutsBothDirections() throws {
        let id = runID()
        defer { _ = try? PartitionSweeper.removeLeftovers(runID: id) }
        let a = try LoopbackListener("127.0.0.137")
        let b = try LoopbackListener("127.0.0.138")
        let fault = try PartitionFault(
            shape: .split(["127.0.0.137"], ["127.0.0.138"]), runID: id,
            blocked: [
                PartitionProbe(from: "127.0.0.137", to: b.endpoint),
                PartitionProbe(from: "127.0.0.138", to: a.endpoint),
            ],
            control: [PartitionProbe(from: "127.0.0.139", to: b.endpoint)])
        let record = FaultDriver(fault).run(for: .milliseconds(10))
        #expect(record.verified == .yes, "\(record.note)")
    }

    @Test func withoutProbesTheVerdictIsUnknown() throws {
        let id = runID()
        defer { _ = try? PartitionSweeper.removeLeftovers(runID: id) }
        let record = FaultDriver(try PartitionFault(shape: .oneWay(from: "127.0.0.140", to: "127.0.0.141"), runID: id))
            .run(for: .zero)
        #expect(record.verified == .unknown, "\(record.note)")
    }

    @Test func sweeperRemovesLeftoversOfACrashedRun() throws {
        let id = runID()
        defer { _ = try? PartitionSweeper.removeLeftovers(runID: id) }
        let server = try LoopbackListener("127.0.0.143")
        let fault = try PartitionFault(shape: .split(["127.0.0.142"], ["127.0.0.143"]), runID: id)
        try fault.start()
        // The run "crashes" here: no stop, no teardown.
        #expect(TCPProbe.connect(to: server.endpoint, from: "127.0.0.142", timeout: .milliseconds(300)) == .timedOut)
        #expect(try PartitionSweeper.removeLeftovers(runID: id) == 2)
        #expect(try PartitionSweeper.removeLeftovers(runID: id) == 0)
        #expect(TCPProbe.connect(to: server.endpoint, from: "127.0.0.142", timeout: .milliseconds(500)) == .answered)
    }

    /// `kiln stack up`'s sweep (`removeOrphaned`): rules of a live owner (this process) stay, those of a gone owner
    /// (a crashed run) and of an older Kiln that named no owner go; the interrupt healer's form also takes its own.
    @Test func theSweepKeepsRulesOfLiveRunsAndRemovesThoseOfGoneOnes() throws {
        let id = runID()
        let gone = HostOwner.process(pid: 4_000_000, startTicks: 1)
        #expect(!gone.isAlive)
        let comments = [
            "live": PartitionRules.comment(runID: id + "-live"),
            "gone": PartitionRules.comment(runID: id + "-gone", owner: gone),
            "old": PartitionRules.commentPrefix + id + "-old",
        ]
        #expect(PartitionRules.parse(comment: comments["live"]!)?.owner == .currentProcess)
        #expect(PartitionRules.parse(comment: comments["gone"]!)?.runID == id + "-gone")
        #expect(PartitionRules.parse(comment: comments["old"]!).map { $0.owner == nil } == true)
        func rule(_ comment: String) -> [String] {
            ["INPUT", "-s", "127.0.0.251/32", "-d", "127.0.0.252/32", "-m", "comment", "--comment", comment, "-j", "DROP"]
        }
        func present() throws -> Set<String> {
            let listing = try LocalProcess.run("/usr/sbin/iptables", ["-w", "5", "-S", "INPUT"])
            return Set(comments.filter { listing.contains("\"\($0.value)\"") }.map(\.key))
        }
        defer {
            for comment in comments.values {
                while (try? LocalProcess.run("/usr/sbin/iptables", ["-w", "5", "-D"] + rule(comment))) != nil {}
            }
        }
        for comment in comments.values { try LocalProcess.run("/usr/sbin/iptables", ["-w", "5", "-I"] + rule(comment)) }
        #expect(try present() == ["live", "gone", "old"])
        #expect(try PartitionSweeper.removeOrphaned() >= 2)
        #expect(try present() == ["live"], "a live run's rule must survive the sweep")
        // With this process included the live rule is selected too — only selected: deleting would also remove the
        // rules of the partition tests running beside this one in the same process. The defer removes it.
        #expect(try PartitionSweeper.orphanedRules(includingThisProcess: true).contains { $0.contains(comments["live"]!) })
        #expect(try !PartitionSweeper.orphanedRules().contains { $0.contains(comments["live"]!) })
    }

    @Test func refusesAddressesOutsideLoopback() {
        for address in ["10.0.0.1", "192.168.1.10", "127.0.0.0/8", "localhost", "127.0.0.1", "8.8.8.8", "127.0.0", ""] {
            #expect(throws: PartitionError.self, "\(address)") {
                _ = try PartitionFault(shape: .isolate(address), runID: "r1")
            }
        }
        #expect(throws: PartitionError.self) {
            _ = try PartitionFault(shape: .oneWay(from: "127.0.0.5", to: "10.1.1.1"), runID: "r1")
        }
        #expect(throws: PartitionError.self) {
            _ = try PartitionFault(shape: .oneWay(from: "127.0.0.5", to: "127.0.0.6"), runID: "bad id; rm")
        }
        #expect(throws: PartitionError.self) {
            _ = try PartitionFault(
                shape: .oneWay(from: "127.0.0.5", to: "127.0.0.6"), runID: "r1",
                blocked: [PartitionProbe(from: "10.0.0.2", to: HostPort(host: "127.0.0.6", port: 1))])
        }
    }

    @Test func everyRuleIsTaggedWithTheRunID() throws {
        let rules = try PartitionRules.rules(for: .split(["127.0.0.5", "127.0.0.6"], ["127.0.0.7"]), runID: "run-42")
        #expect(rules.count == 4)
        #expect(rules.allSatisfy { $0.joined(separator: " ").contains("-m comment --comment kiln-fault:run-42") })
        let isolate = try PartitionRules.rules(for: .isolate("127.0.0.9"), runID: "run-42")
        #expect(isolate.first?.last == "ACCEPT")
        #expect(isolate.dropFirst().allSatisfy { $0.last == "DROP" })
    }
}

@Suite("Chaos safety gate")
struct ChaosSafetyTests {
    @Test func embeddedStackServersArePermitted() throws {
        let stack = TestStack.definition
        try ChaosSafety.check(targets: [stack.redis.primary, stack.postgres.primary], stack: stack)
    }

    @Test func aHostTheStackDoesNotNameIsRefused() {
        #expect(throws: ChaosSafety.Refusal.self) {
            try ChaosSafety.check(targets: [HostPort(host: "127.0.0.99", port: 1)], stack: TestStack.definition)
        }
    }

    @Test func aStackThatIsNotAChaosTargetIsRefused() {
        var stack = TestStack.definition
        stack.chaosTarget = false
        do {
            try ChaosSafety.check(targets: [stack.redis.primary], stack: stack)
            Issue.record("expected a refusal")
        } catch {
            #expect(error.description.contains("chaos_target"))
        }
    }

    @Test func externalHostsNeedAllowAndConfirmation() throws {
        var stack = TestStack.definition
        stack.kind = .external
        stack.chaosTarget = true
        stack.redis.primary = HostPort(host: "redis.internal", port: 6379)
        let target = [stack.redis.primary]
        #expect(throws: ChaosSafety.Refusal.self) { try ChaosSafety.check(targets: target, stack: stack) }
        #expect(throws: ChaosSafety.Refusal.self) {
            try ChaosSafety.check(targets: target, stack: stack, allow: ["redis.internal"], confirmed: false)
        }
        #expect(throws: ChaosSafety.Refusal.self) {
            try ChaosSafety.check(targets: target, stack: stack, allow: ["other.internal"], confirmed: true)
        }
        try ChaosSafety.check(targets: target, stack: stack, allow: ["redis.internal"], confirmed: true)
        try ChaosSafety.check(targets: target, stack: stack, allow: ["redis.internal:6379"], confirmed: true)
        // Even a loopback server of an external stack needs both.
        stack.postgres.primary = HostPort(host: "127.0.0.77", port: 5432)
        #expect(throws: ChaosSafety.Refusal.self) {
            try ChaosSafety.check(targets: [stack.postgres.primary], stack: stack)
        }
    }

    /// An external stack Kiln's own script starts (`started_by:`, the hardened stack) is Kiln's on loopback, like the
    /// embedded one; off loopback it still needs `chaos.allow` and confirmation, and `chaos_target: false` refuses.
    @Test func scriptedStackLoopbackServersArePermitted() throws {
        var stack = try StackDefinition.load(
            contentsOf: TestStack.paths.home.appendingPathComponent("Scenarios/stacks/embedded-secure.yaml"))
        #expect(stack.kind == .external && stack.startedBy != nil && stack.chaosTarget)
        try ChaosSafety.check(targets: [stack.postgres.primary, stack.redis.primary], stack: stack)
        stack.redis.primary = HostPort(host: "redis.internal", port: 6379)
        #expect(throws: ChaosSafety.Refusal.self) { try ChaosSafety.check(targets: [stack.redis.primary], stack: stack) }
        stack.chaosTarget = false
        #expect(throws: ChaosSafety.Refusal.self) { try ChaosSafety.check(targets: [stack.postgres.primary], stack: stack) }
    }
}

/// Which process serves an address (`ListeningSockets`, how faults on a scripted stack check a pid file): read from
/// all of /proc/net/tcp, also beyond its first page.
@Suite("Listening sockets")
struct ListeningSocketsTests {
    @Test func theListenerIsFoundAmongManySockets() throws {
        // More than a page of /proc/net/tcp (about 27 lines) before the listener.
        var filler: [Int32] = []
        defer { for fd in filler { close(fd) } }
        for _ in 0..<60 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            _ = try Self.listen(fd, host: "127.0.0.1")
            filler.append(fd)
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        let port = try Self.listen(fd, host: "127.0.0.1").port
        let endpoint = HostPort(host: "127.0.0.1", port: port)
        let inodes = ListeningSockets.inodes(listeningOn: endpoint)
        #expect(inodes.count == 1)
        #expect(ListeningSockets.process(getpid(), holdsAnyOf: inodes))
        #expect(!ListeningSockets.process(getppid(), holdsAnyOf: inodes))
        #expect(ListeningSockets.inodes(listeningOn: HostPort(host: "127.0.0.2", port: port)).isEmpty)
    }

    /// Binds `fd` to `host` on a free port and listens; returns the port.
    static func listen(_ fd: Int32, host: String) throws -> (port: Int, fd: Int32) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        inet_pton(AF_INET, host, &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 1) == 0 else { throw PartitionError("bind/listen failed: \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (Int(UInt16(bigEndian: address.sin_port)), fd)
    }
}
