import Foundation
import KilnCore
import KilnFaults
import KilnPostgres
import KilnScenario
import KilnStack
import KilnStores
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A private PostgreSQL primary and its streaming replica (initdb + pg_basebackup as the postgres user) on two
/// loopback aliases of 127.0.0.150–199 and random ports, in a temp dir. The failover tests fault these, never the
/// shared stack. `shutdown()` (in a defer) kills both and removes the directory, also after a failed test.
final class PrivatePostgresPair {
    let directory: URL
    let primary: PostgresNode
    let replica: PostgresNode

    /// With `faketime`, the primary starts under libfaketime (its offset file in the pair's directory, at +0).
    init(faketime: Bool = false) throws {
        let directory = URL(fileURLWithPath: "/tmp").appendingPathComponent(TestStack.uniqueName("kiln-pgfo"))
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        guard let owner = getpwnam("postgres") else {
            throw ProcessFaultError("no postgres user; run scripts/bootstrap")
        }
        chown(directory.path, owner.pointee.pw_uid, owner.pointee.pw_gid)
        let octet = Int.random(in: 75...99) * 2
        let port = Int.random(in: 30_000...39_000)
        func node(_ name: String, _ host: String, _ port: Int) -> PostgresNode {
            PostgresNode(
                name: name, endpoint: HostPort(host: host, port: port),
                dataDirectory: directory.appendingPathComponent(name),
                log: directory.appendingPathComponent("\(name).log"))
        }
        var primary = node("primary", "127.0.0.\(octet)", port)
        if faketime { primary.clock = FaketimeClock(serverDirectory: directory) }
        self.primary = primary
        replica = node("replica", "127.0.0.\(octet + 1)", port + 1)
        do {
            try primary.clock?.set(offsetSeconds: 0)
            try LocalProcess.run(
                primary.program("initdb"),
                [
                    "-D", primary.dataDirectory.path, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8",
                    "--locale=C",
                ], user: "postgres")
            let hba = "host all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n"
            try Self.append(hba, to: primary.dataDirectory.appendingPathComponent("pg_hba.conf"))
            try Self.append(
                "shared_buffers = 16MB\nmax_connections = 30\nwal_keep_size = 64MB\n",
                to: primary.dataDirectory.appendingPathComponent("postgresql.conf"))
            try primary.start(timeout: .seconds(30))
            try LocalProcess.run(
                replica.program("pg_basebackup"),
                [
                    "-h", primary.endpoint.host, "-p", String(primary.endpoint.port), "-U", "postgres", "-D",
                    replica.dataDirectory.path, "-R", "-X", "stream", "-c", "fast",
                ], user: "postgres")
            try replica.start(timeout: .seconds(30))
        } catch {
            shutdown()
            throw error
        }
    }

    func shutdown() {
        primary.crash()
        replica.crash()
        try? FileManager.default.removeItem(at: directory)
    }

    private static func append(_ text: String, to file: URL) throws {
        let handle = try FileHandle(forWritingTo: file)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }

    /// A stack definition whose PostgreSQL primary is this pair's primary (the other stores are never used).
    var stack: StackDefinition {
        var stack = TestStack.definition
        stack.postgres.primary = primary.endpoint
        stack.postgres.replicas = [replica.endpoint]
        stack.postgres.database = "postgres"
        return stack
    }
}

/// One thread inserting dataset rows 0, 1, 2… through a `PostgresClient` that follows the directory, recording each
/// row's outcome, until `finish()`.
final class SteadyWriter: Sendable {
    private let outcomes = Mutex<[(row: Int64, outcome: Outcome)]>([])
    private let running = Atomic<Bool>(true)
    /// nil while the thread opens its client; then "" (running) or the open error.
    private let opened = Mutex<String?>(nil)
    private let done = Atomic<Bool>(false)

    /// Opens the client (and its table) on the writer's own thread and starts writing; throws when it cannot open.
    init(_ context: ClientContext) throws {
        let thread = Thread { [self] in
            let client: PostgresClient
            do {
                client = try PostgresClient(context: context)
                try client.setup()
                opened.withLock { $0 = "" }
            } catch {
                opened.withLock { $0 = "\(error)" }
                done.store(true, ordering: .relaxed)
                return
            }
            var row: Int64 = 0
            while running.load(ordering: .relaxed) {
                let outcome = client.invoke(.insert, Request(row: row))
                outcomes.withLock { $0.append((row, outcome)) }
                row += 1
                if !outcome.isOK { usleep(20_000) }
            }
            client.close()
            done.store(true, ordering: .relaxed)
        }
        thread.start()
        while true {
            if let state = opened.withLock({ $0 }) {
                guard state.isEmpty else { throw ProcessFaultError("writer could not open: \(state)") }
                return
            }
            usleep(5_000)
        }
    }

    var okCount: Int { outcomes.withLock { $0.count { $0.outcome.isOK } } }

    /// Stops the thread and returns every op's outcome.
    func finish() -> [(row: Int64, outcome: Outcome)] {
        running.store(false, ordering: .relaxed)
        while !done.load(ordering: .relaxed) { usleep(5_000) }
        return outcomes.withLock { $0 }
    }

    func waitFor(ok count: Int, within limit: Duration) -> Bool {
        let deadline = ContinuousClock.now + limit
        while okCount < count {
            if ContinuousClock.now >= deadline { return false }
            usleep(10_000)
        }
        return true
    }
}

@Suite("PostgreSQL failover on a private primary and streaming replica")
struct PostgresFailoverTests {
    @Test func switchoverPromotesFencesAndRebuildsTheOldPrimary() throws {
        let pair = try PrivatePostgresPair()
        defer { pair.shutdown() }
        let directory = PrimaryDirectory(["postgres": pair.primary.endpoint])
        let fault = PostgresFailover(
            primary: pair.primary, replica: pair.replica, fence: .stop, heal: .rebuildAsReplica, directory: directory)
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        #expect(started.note.contains("refuses connections"), "\(started.note)")
        #expect(directory.primary(of: "postgres") == pair.replica.endpoint)
        #expect(directory.entry(of: "postgres")?.generation == 1)
        #expect(try pair.replica.isInRecovery() == false)
        #expect(TCPProbe.connect(to: pair.primary.endpoint, timeout: .milliseconds(300)) != .answered)
        let failover = try #require(fault.failoverTime)
        print("pg switchover: fence+promote -> write accepted in \(failover.wholeMilliseconds) ms")
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(try pair.primary.isInRecovery() == true)
        #expect(try pair.replica.standbys().count == 1)
    }

    @Test func crashFailoverLeavesOneWritablePrimaryEvenIfTheOldOneRestarts() throws {
        let pair = try PrivatePostgresPair()
        defer { pair.shutdown() }
        let fault = PostgresFailover(primary: pair.primary, replica: pair.replica, fence: .kill, heal: .leaveFenced)
        let record = FaultDriver(fault).run(for: .zero)
        #expect(record.verified == .yes, "\(record.note)")
        #expect(record.note.contains("drill ends with one primary"), "\(record.note)")
        #expect(pair.primary.isFenced)
        // Someone restarts the old primary's data directory: the fence makes it a read-only standby.
        do {
            try pair.primary.start(timeout: .seconds(30))
        } catch {
            let log = (try? String(contentsOf: pair.primary.log, encoding: .utf8)) ?? ""
            Issue.record("restart failed: \(error)\n\(log.split(separator: "\n").suffix(15).joined(separator: "\n"))")
            return
        }
        #expect(try pair.primary.isInRecovery() == true)
        #expect(throws: PostgresError.self) { try pair.primary.probeWrite("split-brain") }
    }

    @Test func aFailedPromotionIsRecordedAndTheOldPrimaryIsUnfenced() throws {
        let pair = try PrivatePostgresPair()
        defer { pair.shutdown() }
        // The "replica" is the primary itself: setup refuses before anything is fenced.
        let fault = PostgresFailover(primary: pair.primary, replica: pair.primary)
        let record = FaultDriver(fault).run(for: .zero)
        #expect(record.verified == .no, "\(record.note)")
        #expect(record.note.contains("not a standby"), "\(record.note)")
        #expect(try pair.primary.isInRecovery() == false)
        #expect(!pair.primary.isFenced)
    }

    @Test func clientsFollowTheDirectoryWithoutARestart() throws {
        let pair = try PrivatePostgresPair()
        defer { pair.shutdown() }
        let directory = PrimaryDirectory(["postgres": pair.primary.endpoint])
        var context = StoreFixtures.context(namespace: TestStack.uniqueName("kiln_fo"), stack: pair.stack)
        context.primaries = directory
        let writer = try SteadyWriter(context)
        #expect(writer.waitFor(ok: 50, within: .seconds(5)))
        let fault = PostgresFailover(primary: pair.primary, replica: pair.replica, fence: .stop, directory: directory)
        let driver = FaultDriver(fault)
        driver.start()
        let before = writer.okCount
        let resumed = writer.waitFor(ok: before + 50, within: .seconds(10))
        let outcomes = writer.finish()
        #expect(resumed, "the writer made no progress on the new primary")
        driver.stop()
        // Every acknowledged row is on the new primary (a switchover loses nothing).
        let acked = outcomes.filter { $0.outcome.isOK }.map(\.row)
        let connection = try pair.replica.connect()
        let count = try connection.execute(
            "SELECT count(*) FROM \(context.namespace)_transactions"
        ).value(row: 0, column: 0)
        #expect(count == String(acked.count))
    }

    /// RPO of a crash failover under steady writes, with 300 ms of replication lag before the kill: async loses the
    /// acknowledged writes of the lag window (reported by key), sync loses none.
    @Test(arguments: [PostgresFailover.Replication.asynchronous, .synchronous])
    func crashFailoverRPO(_ replication: PostgresFailover.Replication) throws {
        let pair = try PrivatePostgresPair()
        defer { pair.shutdown() }
        let directory = PrimaryDirectory(["postgres": pair.primary.endpoint])
        var context = StoreFixtures.context(
            namespace: TestStack.uniqueName("kiln_rpo"), timeout: .seconds(3), stack: pair.stack)
        context.primaries = directory
        let fault = PostgresFailover(
            primary: pair.primary, replica: pair.replica, fence: .kill, replication: replication,
            directory: directory, lag: .milliseconds(300))
        let driver = FaultDriver(fault)
        try fault.setup()
        let writer = try SteadyWriter(context)
        #expect(writer.waitFor(ok: 100, within: .seconds(5)))
        let started = driver.start()
        let afterFailover = writer.okCount
        #expect(writer.waitFor(ok: afterFailover + 50, within: .seconds(10)))
        let outcomes = writer.finish()
        let record = driver.stop()
        #expect(started.verified != .no, "\(started.note)")
        #expect(record.verified == .yes, "\(record.note)")
        let connection = try pair.replica.connect()
        let result = try connection.execute("SELECT txn_id FROM \(context.namespace)_transactions")
        let present = Set((0..<result.rowCount).compactMap { result.value(row: $0, column: 0).flatMap(Int64.init) })
        let acked = outcomes.filter { $0.outcome.isOK }.map { StoreFixtures.dataset.transaction($0.row).txnID }
        let lost = acked.filter { !present.contains($0) }
        let infos = outcomes.count { if case .info = $0.outcome { true } else { false } }
        print(
            "pg \(replication.rawValue) crash failover: \(outcomes.count) ops, \(acked.count) acked, "
                + "\(infos) info, lost \(lost.count) acked writes (RPO) txn_ids \(lost.prefix(20)); "
                + "failover \(fault.failoverTime?.wholeMilliseconds ?? -1) ms")
        switch replication {
        case .asynchronous: #expect(!lost.isEmpty, "async replication with 300 ms lag lost no acked write")
        case .synchronous: #expect(lost.isEmpty, "sync replication lost acked writes: \(lost.prefix(20))")
        }
    }
}
