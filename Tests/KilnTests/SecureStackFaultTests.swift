import Foundation
import KilnCore
import KilnFaults
import KilnScenario
import KilnStack
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Faults on the hardened stack (`scripts/secure-stack` in a temporary directory, 127.0.33.x): more tests of the
/// serialized suite "kiln audit: the hardened stack", since every test there brings the stack up on the same fixed
/// addresses.
extension AuditHardenedStackTests {
    /// Waits (up to 5 min) until nothing listens on the hardened stack's addresses: another test or helper may be
    /// running its own copy of the stack there.
    static func waitForFreeSecureAddresses(_ stack: StackDefinition) throws {
        let deadline = Date().addingTimeInterval(300)
        while true {
            let busy = stack.addresses.map(\.address).filter { LocalProcess.isListening(host: $0.host, port: $0.port) }
            if busy.isEmpty { return }
            try #require(Date() < deadline, "the hardened stack's addresses are still in use after 5 min: \(busy)")
            Thread.sleep(forTimeInterval: 5)
        }
    }

    @Test func faultsOnTheHardenedStackAreVerifiedByAuthenticatedClientsOrRefused() throws {
        let home = TestStack.paths.home
        let kiln = home.appendingPathComponent(".build/debug/kiln").path
        let script = home.appendingPathComponent("scripts/secure-stack").path
        let stackFile = home.appendingPathComponent("Scenarios/stacks/embedded-secure.yaml")
        let directory = try AuditTestSupport.temporaryDirectory("secure-faults")
        let stackDirectory = directory.appendingPathComponent("stack")
        var environment = SecureStackFixture.randomEnvironment()
        let ca = stackDirectory.appendingPathComponent("tls/ca.crt").path
        environment["KILN_SECURE_TLS_CA"] = ca
        environment["PGSSLMODE"] = "verify-full"
        environment["PGSSLROOTCERT"] = ca
        environment["KILN_STACK_DIR"] = stackDirectory.path
        let definition = try StackDefinition.load(contentsOf: stackFile)
        try Self.waitForFreeSecureAddresses(definition)
        defer {
            _ = try? AuditTestSupport.run(script, ["down", stackDirectory.path], environment: environment)
            try? FileManager.default.removeItem(at: directory)
        }
        let up = try AuditTestSupport.run(script, ["up", stackDirectory.path], environment: environment)
        try #require(up.status == 0, "scripts/secure-stack up: \(up.output)")
        let stack = try ScriptedStack(definition, directory: stackDirectory)
        let postgres = try #require(stack.server(named: "postgres-primary"))
        #expect(ScriptedStack.listeningPID(postgres) != nil, "the pid file's postmaster holds the listening socket")
        let login = ServerProtocol.postgres(
            user: "kiln_app", database: "kiln", password: environment["KILN_SECURE_PG_PASSWORD"])
        // This process's libpq has no PGSSLMODE (other suites share the process): its default, `prefer`, still
        // negotiates TLS with this server, which accepts nothing else (pg_hba: hostssl only).

        // (2) A fault aimed at a process that does not serve the endpoint: the authenticated witness is still served,
        // so the pause is verified `no`, never `yes`.
        let decoy = LocalProcessController(
            name: "decoy", endpoint: postgres.endpoint,
            launch: .command(executable: "/bin/sleep", arguments: ["600"], log: directory.appendingPathComponent("decoy.log")))
        try decoy.start(timeout: .seconds(5))
        defer { decoy.shutdown() }
        let misaimed = ProcessFault(name: "pause-decoy", action: .pause, controller: decoy, speaking: login)
        let driver = FaultDriver(misaimed)
        let misaimedRecord = driver.start()
        #expect(misaimedRecord.verified == .no, "\(misaimedRecord.note)")
        #expect(misaimedRecord.note.contains("logged in as kiln_app, over TLS") && misaimedRecord.note.contains("answered"),
            "\(misaimedRecord.note)")
        driver.stop()
        // A pid file naming a process that holds no socket of the server is never taken for the server.
        var stale = postgres
        stale.pidFile = directory.appendingPathComponent("decoy.pid")
        try "\(try #require(decoy.currentPID()))\n".write(to: stale.pidFile!, atomically: true, encoding: .utf8)
        #expect(ScriptedStack.listeningPID(stale) == nil)

        // (1) `kiln run` with the drill: a pause of PostgreSQL and of Redis, a kill of PostgreSQL and a partition of
        // it, each verified `yes` by a client that logged in (PostgreSQL over TLS as kiln_app, Redis as kiln_app).
        let runs = directory.appendingPathComponent("runs")
        let run = try AuditTestSupport.run(
            kiln,
            [
                "run", home.appendingPathComponent("Scenarios/drills/secure-faults.yaml").path, "--runs-directory",
                runs.path, "--id", "secure-faults",
            ],
            environment: environment)
        let report = try RunReport.decode(Data(contentsOf: runs.appendingPathComponent("secure-faults/report.json")))
        let faults = Dictionary(uniqueKeysWithValues: (report.faults ?? []).map { ($0.name, $0) })
        #expect(faults.keys.sorted() == ["isolate-pg", "kill-pg", "pause-pg", "pause-redis"], "\(run.output)")
        for (name, fault) in faults {
            #expect(fault.verified == .yes, "\(name): \(fault.note ?? "")")
        }
        let pause = try #require(faults["pause-pg"]?.note)
        #expect(pause.contains("SELECT 1 (logged in as kiln_app, over TLS)") && pause.contains("no reply"), "\(pause)")
        #expect(faults["pause-redis"]?.note?.contains("PING (after AUTH as kiln_app, over TLS)") == true, "\(faults["pause-redis"]?.note ?? "")")
        #expect(faults["isolate-pg"]?.note?.contains("a new login to 127.0.33.11:33432") == true, "\(faults["isolate-pg"]?.note ?? "")")
        #expect(run.status == 0, "kiln run: \(run.output)")
        #expect(ScriptedStack.listeningPID(postgres) != nil, "PostgreSQL runs again after the kill")

        // (3) A fault kind that cannot work on this stack is refused before anything starts: exit 64, naming the
        // fault and why.
        for (kind, target, reason, unset) in [
            ("pause", "clickhouse", "serves only https", nil),
            ("kill", "kafka", "speaks only TLS with a SCRAM login", nil),
            ("pg-failover", "postgres", "has none", nil),
            // Without the password no client could log in to show the fault.
            ("restart", "postgres-primary", "KILN_SECURE_PG_PASSWORD is not set", "KILN_SECURE_PG_PASSWORD"),
        ] as [(String, String, String, String?)] {
            let scenario = directory.appendingPathComponent("refused-\(kind).yaml")
            try """
                name: refused-\(kind)
                stack: \(stackFile.path)
                dataset:
                  spec: \(home.appendingPathComponent("Generators/fraud-platform.yaml").path)
                  seed: 1
                  rows: 1K
                namespace: refused
                faults:
                  - name: the-\(kind)
                    kind: \(kind)
                    target: \(target)
                    at: 1s
                    duration: 1s
                phases:
                  - name: p
                    executor: bulk
                    rows: 100
                    stores: [postgres]

                """.write(to: scenario, atomically: true, encoding: .utf8)
            var refusedEnvironment = environment
            if let unset { refusedEnvironment[unset] = nil }
            let refused = try AuditTestSupport.run(
                kiln, ["run", scenario.path, "--runs-directory", runs.path], environment: refusedEnvironment)
            #expect(refused.status == 64, "\(kind) \(target): \(refused.output)")
            #expect(refused.output.contains("fault 'the-\(kind)'") && refused.output.contains(reason), "\(refused.output)")
        }
    }
}
