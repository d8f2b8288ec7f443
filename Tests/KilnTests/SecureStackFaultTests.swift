import Foundation
import KilnCore
import KilnFaults
import KilnRedis
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
        // The same for the TLS witnesses: a fault whose evidence comes from a server that ignores it is `no`.
        // Redis over TLS: the replica (a real TLS server) is paused, while the witness logs in to the primary, a
        // second TLS server that is not paused.
        let tlsCA = RedisTLS(caFile: ca)
        let redisPrimary = try #require(stack.server(named: "redis-primary"))
        let redisReplica = try #require(stack.server(named: "redis-replica"))
        let redisLogin = ServerProtocol.redisLogin(
            user: "kiln_app", password: try #require(environment["KILN_SECURE_REDIS_PASSWORD"]), tls: tlsCA)
        let replicaController = ScriptedProcessController(
            redisReplica, script: URL(fileURLWithPath: script), directory: stackDirectory, environment: environment,
            readyProbe: .login(redisLogin))
        let misaimedRedis = FaultDriver(
            ProcessFault(
                name: "pause-redis-misaimed", action: .pause,
                controller: EndpointSwappedController(replicaController, endpoint: redisPrimary.endpoint),
                speaking: redisLogin))
        let misaimedRedisRecord = misaimedRedis.start()
        misaimedRedis.stop()
        #expect(misaimedRedisRecord.verified == .no, "\(misaimedRedisRecord.note)")
        #expect(
            misaimedRedisRecord.note.contains("PING (after AUTH as kiln_app, over TLS)")
                && misaimedRedisRecord.note.contains("answered"), "\(misaimedRedisRecord.note)")
        // FalkorDB behind stunnel and ClickHouse over HTTPS: a process that serves nothing is paused; the witness
        // (TLS through stunnel as kiln_app; SELECT 1 over HTTPS as kiln_app) is still served.
        let falkordb = try #require(stack.server(named: "falkordb"))
        let clickhouse = try #require(stack.server(named: "clickhouse"))
        let clickhouseLogin = ServerProtocol.clickhouseHTTPS(
            user: "kiln_app", password: try #require(environment["KILN_SECURE_CLICKHOUSE_PASSWORD"]), caFile: ca)
        for (label, endpoint, spoken, operation) in [
            ("falkordb", falkordb.endpoint,
                ServerProtocol.redisLogin(user: "kiln_app", password: environment["KILN_SECURE_REDIS_PASSWORD"]!, tls: tlsCA),
                "PING (after AUTH as kiln_app, over TLS)"),
            ("clickhouse", clickhouse.endpoint, clickhouseLogin, "SELECT 1 (as kiln_app, over HTTPS)"),
        ] as [(String, HostPort, ServerProtocol, String)] {
            let sleeper = LocalProcessController(
                name: "decoy-\(label)", endpoint: endpoint,
                launch: .command(
                    executable: "/bin/sleep", arguments: ["600"], log: directory.appendingPathComponent("decoy-\(label).log")))
            try sleeper.start(timeout: .seconds(5))
            defer { sleeper.shutdown() }
            let driver = FaultDriver(ProcessFault(name: "pause-decoy-\(label)", action: .pause, controller: sleeper, speaking: spoken))
            let record = driver.start()
            driver.stop()
            #expect(record.verified == .no, "\(label): \(record.note)")
            #expect(record.note.contains(operation) && record.note.contains("answered"), "\(label): \(record.note)")
        }
        // ClickHouse's HTTPS witness counts only an authenticated SELECT 1: a wrong password (401/403/516) or a client
        // that does not trust the certificate is never "up".
        let wrongPassword = #expect(throws: ProcessFaultError.self) {
            try ServerProtocol.clickhouseHTTPS(user: "kiln_app", password: "not-the-password", caFile: ca)
                .openWitness(to: clickhouse.endpoint, timeout: .seconds(5)).close()
        }
        #expect(wrongPassword?.description.contains("HTTP ") == true, "\(String(describing: wrongPassword))")
        #expect(!(wrongPassword?.description.contains(environment["KILN_SECURE_CLICKHOUSE_PASSWORD"]!) ?? true))
        let untrusted = #expect(throws: ProcessFaultError.self) {
            try ServerProtocol.clickhouseHTTPS(user: "kiln_app", password: environment["KILN_SECURE_CLICKHOUSE_PASSWORD"]!, caFile: nil)
                .openWitness(to: clickhouse.endpoint, timeout: .seconds(5)).close()
        }
        #expect(untrusted != nil)

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
        #expect(
            faults.keys.sorted() == ["isolate-pg", "kill-pg", "pause-clickhouse", "pause-kafka", "pause-pg", "pause-redis"],
            "\(run.output)")
        for (name, fault) in faults {
            #expect(fault.verified == .yes, "\(name): \(fault.note ?? "")")
        }
        let pause = try #require(faults["pause-pg"]?.note)
        #expect(pause.contains("SELECT 1 (logged in as kiln_app, over TLS)") && pause.contains("no reply"), "\(pause)")
        #expect(faults["pause-redis"]?.note?.contains("PING (after AUTH as kiln_app, over TLS)") == true, "\(faults["pause-redis"]?.note ?? "")")
        #expect(faults["isolate-pg"]?.note?.contains("a new login to 127.0.33.11:33432") == true, "\(faults["isolate-pg"]?.note ?? "")")
        // ClickHouse paused: SELECT 1 over HTTPS as kiln_app (password, the stack's CA) on the connection opened before
        // it got no reply, nor did a new authenticated one.
        let clickhousePause = faults["pause-clickhouse"]?.note ?? ""
        #expect(
            clickhousePause.contains("SELECT 1 (as kiln_app, over HTTPS) on a connection opened before the pause: no reply"),
            "\(clickhousePause)")
        // Kafka paused (Tansu, in its namespace): the metadata request over TLS after the SCRAM login got no reply on
        // the client that logged in before it, nor did a new login's.
        let kafkaPause = faults["pause-kafka"]?.note ?? ""
        #expect(
            kafkaPause.contains(
                "Metadata (SCRAM-SHA-512 login as kiln_app, over TLS) on a connection opened before the pause: no reply"),
            "\(kafkaPause)")
        #expect(run.status == 0, "kiln run: \(run.output)")
        #expect(ScriptedStack.listeningPID(postgres) != nil, "PostgreSQL runs again after the kill")

        // (3) A fault kind that cannot work on this stack is refused before anything starts: exit 64, naming the
        // fault and why.
        for (kind, target, reason, unset) in [
            // Without the CA no client could verify ClickHouse's certificate (its witness speaks HTTPS).
            ("pause", "clickhouse", "KILN_SECURE_TLS_CA is not set", "KILN_SECURE_TLS_CA"),
            // Without its password no client can log in to Kafka.
            ("pause", "kafka", "KILN_SECURE_KAFKA_PASSWORD", "KILN_SECURE_KAFKA_PASSWORD"),
            ("pg-failover", "postgres", "has none", nil),
            // Without the password no client could log in to show the fault.
            ("restart", "postgres-primary", "KILN_SECURE_PG_PASSWORD is not set", "KILN_SECURE_PG_PASSWORD"),
        ] as [(String, String, String, String?)] {
            let scenario = directory.appendingPathComponent("refused-\(kind)-\(target).yaml")
            try """
                name: refused-\(kind)-\(target)
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

        // (4) `kiln stack down` stops every server and returns promptly for a stack started from this process, whose
        // threads block SIGTERM (libdispatch's workers do; a blocked mask survives exec) and which may leave the servers
        // it adopted as zombies. The bound is a hang guard, not a speed test: each server's own SIGTERM shutdown takes
        // at most a few seconds (ClickHouse's is the longest; the whole down took ~3 s here), while the script used to
        // wait its full 10 s before SIGKILL for each of the 9 servers that never saw SIGTERM, or whose zombie still
        // answered `kill -0` (≥ 90 s; measured 102-107 s).
        let started = ContinuousClock.now
        let down = try AuditTestSupport.run(
            kiln, ["stack", "down", "--stack", stackFile.path, "--run-directory", stackDirectory.path],
            environment: environment)
        let took = started.duration(to: .now)
        #expect(down.status == 0, "kiln stack down: \(down.output)")
        #expect(took < .seconds(30), "kiln stack down took \(took): \(down.output)")
        let listening = definition.addresses.map(\.address).filter { LocalProcess.isListening(host: $0.host, port: $0.port) }
        #expect(listening.isEmpty, "still listening after down: \(listening)")
        #expect(!FileManager.default.fileExists(atPath: stackDirectory.path))
    }
}

/// A controller that signals `inner`'s process but names another server's endpoint: a fault aimed at one server
/// whose evidence is gathered from another that ignores it (a decoy).
final class EndpointSwappedController: ProcessController {
    let inner: any ProcessController
    let endpoint: HostPort
    var name: String { "\(inner.name) (evidence from \(endpoint))" }

    init(_ inner: any ProcessController, endpoint: HostPort) {
        self.inner = inner
        self.endpoint = endpoint
    }

    func currentPID() -> pid_t? { inner.currentPID() }
    func send(_ signal: Int32) throws { try inner.send(signal) }
    func start(timeout: Duration) throws { try inner.start(timeout: timeout) }
    func stopServerProcesses(root: pid_t) -> [pid_t] { inner.stopServerProcesses(root: root) }
}

/// `kiln validate` of scenarios with faults on the hardened stack (no server: nothing is started or read but the
/// files): the refusals the files decide are exit 64 at the fault's FILE:LINE:COL with `kiln run`'s reason; what only a
/// started stack and its environment can show is named as not checked.
@Suite("kiln validate: faults on the hardened stack")
struct SecureStackFaultTests {
    /// `servers.json` names a server by its pid file, or (a server listening in a network namespace of its own behind
    /// a front) by an object that says where it listens; a half-given or malformed listener is refused, not ignored.
    @Test func serversFileNamesAListenerInANamespace() throws {
        let definition = try StackDefinition.load(
            contentsOf: TestStack.paths.home.appendingPathComponent("Scenarios/stacks/embedded-secure.yaml"))
        let directory = try AuditTestSupport.temporaryDirectory("servers-json")
        defer { try? FileManager.default.removeItem(at: directory) }
        func stack(_ json: String) throws -> ScriptedStack {
            try json.write(to: directory.appendingPathComponent(ScriptedStack.serversFile), atomically: true, encoding: .utf8)
            return try ScriptedStack(definition, directory: directory)
        }
        let both = try stack(
            #"{"postgres-primary": "postgres.pid", "kafka": {"pid": "kafka.pid", "listens": "127.0.0.1:9092", "netns": "kiln-secure-kafka"}}"#)
        let kafka = try #require(both.server(named: "kafka"))
        #expect(kafka.pidFile == directory.appendingPathComponent("kafka.pid"))
        #expect(kafka.listener == ScriptedStack.NamespacedListener(
            endpoint: HostPort(host: "127.0.0.1", port: 9092), namespace: "kiln-secure-kafka"))
        #expect(both.server(named: "postgres-primary")?.listener == nil)
        #expect(try stack(#"{"kafka": {"pid": "kafka.pid"}}"#).server(named: "kafka")?.listener == nil)
        // A unix-socket listener (FalkorDB behind stunnel): a path inside the stack's directory.
        let unix = try stack(#"{"falkordb": {"pid": "falkordb.pid", "listens_unix": "falkordb-socket/falkordb.sock"}}"#)
        #expect(unix.server(named: "falkordb")?.unixSocket == directory.appendingPathComponent("falkordb-socket/falkordb.sock"))
        #expect(unix.server(named: "falkordb")?.listener == nil)
        #expect(both.server(named: "kafka")?.unixSocket == nil)
        for bad in [
            #"{"falkordb": {"pid": "falkordb.pid", "listens_unix": "/tmp/falkordb.sock"}}"#,
            #"{"falkordb": {"pid": "falkordb.pid", "listens_unix": "../elsewhere/falkordb.sock"}}"#,
            #"{"falkordb": {"pid": "falkordb.pid", "listens_unix": ""}}"#,
            #"{"falkordb": {"pid": "f.pid", "listens_unix": "s.sock", "listens": "127.0.0.1:1", "netns": "n"}}"#,
            #"{"kafka": {"pid": "kafka.pid", "listens": "127.0.0.1:9092"}}"#,
            #"{"kafka": {"pid": "kafka.pid", "listens": "nowhere", "netns": "kiln-secure-kafka"}}"#,
            #"{"kafka": {"pid": "kafka.pid", "listens": "127.0.0.1:9092", "netns": "../x"}}"#,
        ] {
            #expect(throws: ScriptedStackError.self, "\(bad)") { try stack(bad) }
        }
    }

    @Test func validateRefusesWhatRunRefusesAndSaysWhatItCouldNotCheck() throws {
        let home = TestStack.paths.home
        let kiln = home.appendingPathComponent(".build/debug/kiln").path
        let stackFile = home.appendingPathComponent("Scenarios/stacks/embedded-secure.yaml")
        let directory = try AuditTestSupport.temporaryDirectory("secure-validate")
        defer { try? FileManager.default.removeItem(at: directory) }
        // No password nor CA in the environment: validate must not need them.
        var environment = ProcessInfo.processInfo.environment
        for variable in SecureStackFixture.passwordVariables + ["KILN_SECURE_TLS_CA", "KILN_STACK_DIR"] {
            environment[variable] = nil
        }
        func scenario(_ name: String, kind: String, target: String, extra: String = "", trailer: String = "") throws -> URL {
            let file = directory.appendingPathComponent("\(name).yaml")
            try """
                name: \(name)
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
                    duration: 1s\(extra)
                phases:
                  - name: p
                    executor: bulk
                    rows: 100
                    stores: [postgres]
                \(trailer)
                """.write(to: file, atomically: true, encoding: .utf8)
            return file
        }
        // Line 11, column 13: the fault entry's `target:` (where `kiln run` places its refusal too).
        for (name, kind, target, extra, reason) in [
            ("pg-failover", "pg-failover", "postgres", "", "has none"),
            ("clock", "clock-skew", "postgres-primary", "\n    offset: +10m", "libfaketime"),
            ("stranger", "pause", "mysql-primary", "", "'mysql-primary' is not a server of the stack"),
            ("pg-proxy", "proxy", "postgres", "\n    toxic: latency=10ms", "not the fault proxy's address"),
            ("chain-shape", "partition", "postgres-primary", "\n    shape: split-replica", "has none"),
        ] {
            let file = try scenario(
                name, kind: kind, target: target, extra: extra, trailer: kind == "proxy" ? "proxy: [\(target)]\n" : "")
            let validated = try AuditTestSupport.run(kiln, ["validate", file.path], environment: environment)
            #expect(validated.status == 64, "\(name): \(validated.output)")
            #expect(validated.output.contains("\(file.path):11:13: faults: fault 'the-\(kind)'"), "\(name): \(validated.output)")
            #expect(validated.output.contains(reason), "\(name): \(validated.output)")
        }
        // Faults the files allow: valid (exit 0), and the output names what validate could not check (the passwords,
        // the CA file and the listening pids), which `kiln run` checks before anything starts.
        for (name, kind, target) in [
            ("pause-clickhouse", "pause", "clickhouse"), ("kill-pg", "kill", "postgres-primary"),
            ("pause-falkordb", "pause", "falkordb"), ("partition-kafka", "partition", "kafka"),
        ] {
            let file = try scenario(name, kind: kind, target: target)
            let validated = try AuditTestSupport.run(kiln, ["validate", file.path], environment: environment)
            #expect(validated.status == 0, "\(name): \(validated.output)")
            #expect(validated.output.contains("not checked by validate: the passwords and CA files"), "\(name): \(validated.output)")
        }
        // The drill itself validates.
        let drill = try AuditTestSupport.run(
            kiln, ["validate", home.appendingPathComponent("Scenarios/drills/secure-faults.yaml").path], environment: environment)
        #expect(drill.status == 0, "\(drill.output)")
    }
}
