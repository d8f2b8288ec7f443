import Foundation
import KilnCore
import KilnFaults
import KilnPostgres
import KilnScenario
import KilnStack
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A private PostgreSQL (initdb as the postgres user) on a loopback alias of 127.0.13.0/24 and a random port, in a
/// temp dir. These tests pause and kill it, never the shared stack. `shutdown()` (in a defer) always removes it.
final class PrivatePostgres {
    let directory: URL
    let node: PostgresNode

    init() throws {
        let directory = URL(fileURLWithPath: "/tmp").appendingPathComponent(TestStack.uniqueName("kiln-pgproc"))
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        guard let owner = getpwnam("postgres") else {
            throw ProcessFaultError("no postgres user; run scripts/bootstrap")
        }
        chown(directory.path, owner.pointee.pw_uid, owner.pointee.pw_gid)
        node = PostgresNode(
            name: "private-postgres",
            endpoint: HostPort(host: "127.0.13.\(Int.random(in: 100...199))", port: Int.random(in: 40_000...44_999)),
            dataDirectory: directory.appendingPathComponent("data"), log: directory.appendingPathComponent("pg.log"))
        do {
            try LocalProcess.run(
                node.program("initdb"),
                [
                    "-D", node.dataDirectory.path, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8",
                    "--locale=C",
                ],
                user: "postgres")
            let handle = try FileHandle(forWritingTo: node.dataDirectory.appendingPathComponent("postgresql.conf"))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data("shared_buffers = 16MB\nmax_connections = 30\n".utf8))
            try handle.close()
            try node.start(timeout: .seconds(30))
        } catch {
            shutdown()
            throw error
        }
    }

    var protocolSpoken: ServerProtocol { .postgres(user: "postgres", database: "postgres") }

    func shutdown() {
        if let pid = node.postmasterPID() { ProcessTree.resume([], root: pid) }
        node.crash()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// The old behaviour, kept as a fake target: SIGSTOP reaches only the postmaster, whose backends keep serving the
/// connections they hold. Verification must say `no`.
final class PostmasterOnlyController: ProcessController {
    let inner: PostgresNodeController
    var name: String { inner.name }
    var endpoint: HostPort { inner.endpoint }

    init(_ node: PostgresNode) { inner = PostgresNodeController(node) }

    func currentPID() -> pid_t? { inner.currentPID() }
    func send(_ signal: Int32) throws { try inner.send(signal) }
    func start(timeout: Duration) throws { try inner.start(timeout: timeout) }

    func stopServerProcesses(root: pid_t) -> [pid_t] {
        kill(root, SIGSTOP)
        return [root]
    }
}

/// A target that ignores the fault altogether: it signals nothing and claims its processes were stopped.
final class IgnoringController: ProcessController {
    let inner: LocalProcessController
    var name: String { inner.name }
    var endpoint: HostPort { inner.endpoint }

    init(_ inner: LocalProcessController) { self.inner = inner }

    func currentPID() -> pid_t? { inner.currentPID() }
    func send(_ signal: Int32) throws {}
    func start(timeout: Duration) throws { try inner.start(timeout: timeout) }
    func stopServerProcesses(root: pid_t) -> [pid_t] { [] }
}

@Suite("Process faults reach the whole server and are verified from a client's side")
struct ProcessTreeFaultTests {
    @Test func aPauseOfThePostmasterAloneIsNoBecauseAnOpenConnectionStillAnswers() throws {
        let postgres = try PrivatePostgres()
        defer { postgres.shutdown() }
        let fault = ProcessFault(
            action: .pause, controller: PostmasterOnlyController(postgres.node), speaking: postgres.protocolSpoken)
        let record = FaultDriver(fault).run(for: .milliseconds(200))
        #expect(record.verified == .no, "\(record.note)")
        #expect(record.note.contains("SELECT 1 on a connection opened before the pause: answered"), "\(record.note)")
        #expect(record.note.contains("still serves its clients"), "\(record.note)")
        // Never left paused.
        let pid = try #require(postgres.node.postmasterPID())
        #expect(ProcessTree.members(of: pid).allSatisfy { ProcessTree.state(of: $0) != "T" })
    }

    @Test func aPauseOfEveryPostgresProcessIsYesFromTheClientsSide() throws {
        let postgres = try PrivatePostgres()
        defer { postgres.shutdown() }
        let pid = try #require(postgres.node.postmasterPID())
        let members = ProcessTree.members(of: pid)
        #expect(members.count >= 5, "postmaster and its auxiliary processes: \(members)")
        let fault = ProcessFault(
            action: .pause, controller: PostgresNodeController(postgres.node), speaking: postgres.protocolSpoken)
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        #expect(
            started.note.contains("SELECT 1 on a connection opened before the pause: no reply in 3"), "\(started.note)")
        #expect(started.note.contains("a new connection to \(postgres.node.endpoint): no answer"), "\(started.note)")
        // The witness's own backend was forked after the listing above: it must be stopped too.
        let now = ProcessTree.members(of: pid)
        #expect(now.count > members.count)
        #expect(now.allSatisfy { ProcessTree.state(of: $0) == "T" }, "\(now.map { ($0, ProcessTree.state(of: $0)) })")
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(record.note.contains("SELECT 1 on the connection opened before the pause answered"), "\(record.note)")
        #expect(ProcessTree.members(of: pid).allSatisfy { ProcessTree.state(of: $0) != "T" })
        #expect(fault.timeToEvidence.map { $0 < .seconds(2) } == true)
    }

    @Test func aKillOfEveryPostgresProcessIsYesAndANewPostmasterServes() throws {
        let postgres = try PrivatePostgres()
        defer { postgres.shutdown() }
        let pid = try #require(postgres.node.postmasterPID())
        let fault = ProcessFault(
            action: .kill, controller: PostgresNodeController(postgres.node), speaking: postgres.protocolSpoken)
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        #expect(started.note.contains("SELECT 1 on a connection opened before the kill: failed"), "\(started.note)")
        #expect(ProcessTree.descendants(of: pid).isEmpty)
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(record.note.contains("SELECT 1 on a new connection answered"), "\(record.note)")
        let after = try #require(postgres.node.postmasterPID())
        #expect(after != pid)
    }

    @Test func aRestartOfPostgresWithClientsConnectedEndsTheirSessionsAndComesBack() throws {
        let postgres = try PrivatePostgres()
        defer { postgres.shutdown() }
        let pid = try #require(postgres.node.postmasterPID())
        // A client that stays connected: SIGTERM ("smart" shutdown) would wait for it forever.
        let client = try ServerProtocol.postgres(user: "postgres", database: "postgres")
            .openWitness(to: postgres.node.endpoint, timeout: .seconds(5))
        defer { client.close() }
        let started = ContinuousClock.now
        let record = FaultDriver(
            ProcessFault(
                action: .restart, controller: PostgresNodeController(postgres.node), speaking: postgres.protocolSpoken,
                recoveryTimeout: .seconds(20))
        ).run(for: .zero)
        #expect(record.verified == .yes, "\(record.note)")
        #expect(started.duration(to: .now) < .seconds(15))
        #expect(postgres.node.postmasterPID() != pid)
        #expect(!client.exchange(within: .seconds(1)).answered)
    }

    @Test func aRedisTargetThatIgnoresThePauseOrKillIsNo() throws {
        let redis = try PrivateRedis()
        defer { redis.shutdown() }
        for action in [ProcessFault.Action.pause, .kill] {
            let record = FaultDriver(
                ProcessFault(action: action, controller: IgnoringController(redis.controller), speaking: .redis)
            ).run(for: .milliseconds(100))
            #expect(record.verified == .no, "\(action): \(record.note)")
            #expect(record.note.contains("PING on a connection opened before the \(action.rawValue): answered"))
        }
    }

    @Test func aPauseAndAKillOfRedisAreYesFromTheClientsSide() throws {
        let redis = try PrivateRedis()
        defer { redis.shutdown() }
        let pause = FaultDriver(ProcessFault(action: .pause, controller: redis.controller, speaking: .redis))
            .run(for: .milliseconds(200))
        #expect(pause.verified == .yes, "\(pause.note)")
        #expect(pause.note.contains("PING on a connection opened before the pause: no reply in 3"), "\(pause.note)")
        let kill = FaultDriver(ProcessFault(action: .kill, controller: redis.controller, speaking: .redis))
            .run(for: .milliseconds(100))
        #expect(kill.verified == .yes, "\(kill.note)")
        #expect(kill.note.contains("PING on a connection opened before the kill: failed"), "\(kill.note)")
    }

    @Test func aStopReachesEveryProcessOfATreeThatKeepsForking() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-tree"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // A parent that forks a short-lived child every few ms, and a grandchild that lives on.
        let controller = LocalProcessController(
            name: "forker", endpoint: HostPort(host: "127.0.0.1", port: 9),
            launch: .command(
                executable: "/bin/sh",
                arguments: ["-c", "sh -c 'sleep 60' & while true; do /bin/true; done"],
                log: directory.appendingPathComponent("log")))
        try? controller.start(timeout: .milliseconds(1))  // nothing listens: the start only spawns it
        defer { controller.shutdown() }
        let root = try #require(controller.currentPID())
        Thread.sleep(forTimeInterval: 0.2)
        for _ in 0..<5 {
            let stopped = controller.stopServerProcesses(root: root)
            #expect(stopped.first == root)
            let members = ProcessTree.members(of: root)
            #expect(members.count >= 3, "sh, the inner sh and its sleep: \(members)")
            #expect(Set(members).isSubset(of: Set(stopped)), "a process escaped the stop: \(members) vs \(stopped)")
            #expect(members.allSatisfy(ProcessTree.isHeld), "\(members.map { ($0, ProcessTree.state(of: $0)) })")
            ProcessTree.resume(stopped, root: root)
            Thread.sleep(forTimeInterval: 0.02)
            #expect(members.allSatisfy { ProcessTree.state(of: $0) != "T" || !ProcessTree.isRunning($0) })
            Thread.sleep(forTimeInterval: 0.05)
        }
        for pid in ProcessTree.descendants(of: root) { kill(pid, SIGKILL) }
    }
}

/// One thread issuing `protocolSpoken`'s operation at fixed intended times (open model) on one connection opened at
/// the start, recording each op's latency from its intended time (coordinated-omission free) until `finish()`.
final class OpenModelLoad: Sendable {
    struct Sample: Sendable {
        var intended: Date
        var latency: Duration
        var ok: Bool
    }

    private let samples = Mutex<[Sample]>([])
    private let running = Atomic<Bool>(true)
    private let done = Atomic<Bool>(false)

    init(_ protocolSpoken: ServerProtocol, endpoint: HostPort, rate: Int) throws {
        let witness = try protocolSpoken.openWitness(to: endpoint, timeout: .seconds(5))
        nonisolated(unsafe) let connection = witness  // handed to the one load thread, never used here again
        let interval = Duration.nanoseconds(1_000_000_000 / Int64(rate))
        let thread = Thread { [self] in
            let start = ContinuousClock.now
            let wallStart = Date()
            var index: Int64 = 0
            while running.load(ordering: .relaxed) {
                let intended = start + interval * index
                index += 1
                let wait = ContinuousClock.now.duration(to: intended)
                if wait > .zero {
                    Thread.sleep(
                        forTimeInterval: Double(wait.components.attoseconds) / 1e18 + Double(wait.components.seconds))
                }
                let reply = connection.exchange(within: .seconds(60))
                let latency = intended.duration(to: .now)
                let offset = start.duration(to: intended)
                let date = wallStart.addingTimeInterval(
                    Double(offset.components.seconds) + Double(offset.components.attoseconds) / 1e18)
                samples.withLock { $0.append(Sample(intended: date, latency: latency, ok: reply.answered)) }
            }
            connection.close()
            done.store(true, ordering: .releasing)
        }
        thread.start()
    }

    func finish() -> [Sample] {
        running.store(false, ordering: .relaxed)
        while !done.load(ordering: .acquiring) { usleep(10_000) }
        return samples.withLock { $0 }
    }

    /// The p-th percentile (0…1) of the latencies of `samples`, nil when empty.
    static func percentile(_ samples: [Sample], _ p: Double) -> Duration? {
        let sorted = samples.map(\.latency).sorted()
        guard !sorted.isEmpty else { return nil }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }
}

/// A private copy of the embedded stack (127.0.13.x, ports + 1300, its own run directory): a pause of each of its
/// servers under open-model load on that server, then a kill of most of them.
@Suite("Pause and kill of every server of a private stack", .serialized)
struct PrivateStackPauseTests {
    /// The embedded stack file on 127.0.`octet`.x with every port + 100 × `octet`.
    static func privateStack(octet: Int = 13) throws -> (StackDefinition, KilnPaths) {
        var text = try String(contentsOf: TestStack.paths.embeddedStackFile, encoding: .utf8)
        text = text.replacingOccurrences(of: "127.0.0.", with: "127.0.\(octet).")
        for port in [15432, 15433, 16379, 16380, 26379, 26380, 26381, 19092, 16390, 18123] {
            text = text.replacingOccurrences(of: ":\(port)", with: ":\(port + 100 * octet)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            TestStack.uniqueName("kiln-pstack"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("stack.yaml")
        try text.write(to: file, atomically: true, encoding: .utf8)
        return (
            try StackDefinition.load(contentsOf: file),
            KilnPaths(home: TestStack.paths.home, stack: directory.appendingPathComponent("run"))
        )
    }

    static func ms(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    @Test func aPauseOfEachServerStallsItsClientsForThePauseAndIsVerified() throws {
        let (definition, paths) = try Self.privateStack()
        let stack = try EmbeddedStack(definition: definition, paths: paths, logger: Logger(label: "test.pstack"))
        defer {
            for status in stack.status() { if let pid = status.pid { ProcessTree.resume([], root: pid) } }
            stack.down()
            try? FileManager.default.removeItem(at: paths.stack.deletingLastPathComponent())
        }
        try stack.up()
        let pause = Duration.seconds(2)
        var lines: [String] = []
        for server in stack.servers {
            let spoken = ServerProtocol.of(
                server.wire, postgresUser: definition.postgres.user, database: definition.postgres.database)
            let load = try OpenModelLoad(spoken, endpoint: server.endpoint, rate: 100)
            Thread.sleep(forTimeInterval: 1)
            let fault = ProcessFault(
                action: .pause, controller: try LocalProcessController.embedded(server.name, of: stack),
                speaking: spoken)
            let record = FaultDriver(fault).run(for: pause)
            Thread.sleep(forTimeInterval: 1)
            let samples = load.finish()
            #expect(record.verified == .yes, "\(server.name): \(record.note)")
            let started = try #require(fault.allStopped)
            let stopped = try #require(fault.resumed)
            let during = samples.filter { $0.intended >= started && $0.intended <= stopped }
            let before = samples.filter { $0.intended < started.addingTimeInterval(-0.1) }
            let held = Duration.milliseconds(Int64(stopped.timeIntervalSince(started) * 1000))
            let p99 = try #require(OpenModelLoad.percentile(during, 0.99), "\(server.name): no ops during the pause")
            let p99Before = OpenModelLoad.percentile(before, 0.99) ?? .zero
            let worst = during.map(\.latency).max() ?? .zero
            lines.append(
                "\(server.name): pause held \(Self.ms(held)) ms, ops during \(during.count), p99 during "
                    + "\(Self.ms(p99)) ms, max \(Self.ms(worst)) ms, p99 before \(Self.ms(p99Before)) ms, "
                    + "evidence after \(fault.timeToEvidence.map(Self.ms) ?? -1) ms")
            // Ops intended during the pause wait until its end: their latencies spread over [0, held], so the p99
            // is at least 95 % of the time the server was held, and the slowest waited the whole of it.
            #expect(p99 >= pause, "\(server.name): p99 \(p99) during a pause of \(held)")
            #expect(p99 * 100 >= held * 95, "\(server.name): p99 \(p99) during a pause of \(held)")
            #expect(worst * 100 >= held * 97, "\(server.name): max \(worst) during a pause of \(held)")
            #expect(samples.allSatisfy { $0.ok }, "\(server.name): an op failed")
        }
        // kiln killed in the middle of a pause leaves the whole tree stopped: the next `stack up` continues all of it.
        let primary = try #require(stack.status().first { $0.name == "postgres-primary" }?.pid)
        let stopped = ProcessTree.stop(root: primary)
        #expect(stopped.count > 3)
        try stack.up()
        Thread.sleep(forTimeInterval: 0.1)
        #expect(ProcessTree.members(of: primary).allSatisfy { ProcessTree.state(of: $0) != "T" })
        // Kills (restarted by `stack.up` on stop): a client sees a reset connection at once.
        for name in [
            "postgres-replica", "postgres-primary", "redis-replica", "sentinel-3", "kafka", "falkordb", "clickhouse",
        ] {
            let server = try #require(stack.servers.first { $0.name == name })
            let fault = ProcessFault(
                action: .kill, controller: try LocalProcessController.embedded(name, of: stack),
                speaking: .of(
                    server.wire, postgresUser: definition.postgres.user, database: definition.postgres.database),
                recoveryTimeout: .seconds(60))
            let record = FaultDriver(fault).run(for: .zero)
            #expect(record.verified == .yes, "\(name): \(record.note)")
            lines.append("\(name) kill: evidence after \(fault.timeToEvidence.map(Self.ms) ?? -1) ms; \(record.note)")
        }
        print(lines.joined(separator: "\n"))
    }
}
