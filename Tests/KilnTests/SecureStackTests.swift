import Foundation
import KilnCore
import KilnFaults
import KilnRedis
import KilnStores
import KilnScenario
import KilnStack
import Testing

/// The hardened stack (`scripts/secure-stack`, 127.0.33.x) brought up in a temporary directory with random passwords.
enum SecureStackFixture {
    static let passwordVariables = [
        "KILN_SECURE_PG_PASSWORD", "KILN_SECURE_REDIS_PASSWORD", "KILN_AUDIT_REDIS_PASSWORD",
        "KILN_SECURE_CLICKHOUSE_PASSWORD", "KILN_SECURE_REDIS_ADMIN_PASSWORD", "KILN_SECURE_SENTINEL_PASSWORD",
        "KILN_SECURE_KAFKA_PASSWORD",
    ]

    static func randomEnvironment() -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for variable in passwordVariables {
            environment[variable] = (0..<4).map { _ in String(UInt32.random(in: 0...UInt32.max), radix: 36) }.joined(separator: "-")
        }
        return environment
    }

    /// A hardened stack the script started in a temporary directory, with random passwords and the client settings
    /// its CA needs (`KILN_SECURE_TLS_CA`, `PGSSLMODE`, `PGSSLROOTCERT`, `KILN_STACK_DIR`). `down()` stops it and
    /// removes the directory; call it in a `defer` right after `up`.
    struct Running {
        let home = TestStack.paths.home
        let script: String
        let directory: URL
        let stackDirectory: URL
        let environment: [String: String]
        let definition: StackDefinition
        let stack: ScriptedStack

        func down() {
            _ = try? AuditTestSupport.run(script, ["down", stackDirectory.path], environment: environment)
            try? FileManager.default.removeItem(at: directory)
        }
    }

    struct StartFailed: Error, CustomStringConvertible { var description: String }

    /// Waits until no other stack holds the fixed addresses, then runs `scripts/secure-stack up`; throws (with the
    /// script's output) when it fails, after stopping what it started.
    static func up(_ label: String) throws -> Running {
        let home = TestStack.paths.home
        let script = home.appendingPathComponent("scripts/secure-stack").path
        let directory = try AuditTestSupport.temporaryDirectory(label)
        let stackDirectory = directory.appendingPathComponent("stack")
        var environment = randomEnvironment()
        let ca = stackDirectory.appendingPathComponent("tls/ca.crt").path
        environment["KILN_SECURE_TLS_CA"] = ca
        environment["PGSSLMODE"] = "verify-full"
        environment["PGSSLROOTCERT"] = ca
        environment["KILN_STACK_DIR"] = stackDirectory.path
        let definition = try StackDefinition.load(
            contentsOf: home.appendingPathComponent("Scenarios/stacks/embedded-secure.yaml"))
        try AuditHardenedStackTests.waitForFreeSecureAddresses(definition)
        let up = try AuditTestSupport.run(script, ["up", stackDirectory.path], environment: environment)
        guard up.status == 0, let stack = try? ScriptedStack(definition, directory: stackDirectory) else {
            _ = try? AuditTestSupport.run(script, ["down", stackDirectory.path], environment: environment)
            try? FileManager.default.removeItem(at: directory)
            throw StartFailed(description: "scripts/secure-stack up (exit \(up.status)): \(up.output)")
        }
        return Running(
            script: script, directory: directory, stackDirectory: stackDirectory, environment: environment,
            definition: definition, stack: stack)
    }
}

/// More tests of the serialized suite "kiln audit: the hardened stack": every test there brings the stack up on the
/// same fixed addresses, so they must never run at once.
extension AuditHardenedStackTests {
    @Test func sentinelLookupsFailoverLoadAndCheckAuthenticate() throws {
        let home = TestStack.paths.home
        let directory = try AuditTestSupport.temporaryDirectory("secure-sentinel")
        var environment = SecureStackFixture.randomEnvironment()
        environment["KILN_SECURE_TLS_CA"] = directory.appendingPathComponent("tls/ca.crt").path
        let script = home.appendingPathComponent("scripts/secure-stack").path
        defer {
            _ = try? AuditTestSupport.run(script, ["down", directory.path], environment: environment)
            try? FileManager.default.removeItem(at: directory)
        }
        let up = try AuditTestSupport.run(script, ["up", directory.path], environment: environment)
        try #require(up.status == 0, "scripts/secure-stack up: \(up.output)")
        let stack = try StackDefinition.load(contentsOf: home.appendingPathComponent("Scenarios/stacks/embedded-secure.yaml"))
        let redis = stack.redis
        let replica = try #require(redis.replicas.first)
        try #require(redis.sentinels.count == 3)
        let credentials = SentinelCredentials(redis, environment: environment)
        let tls = RedisTLS(caFile: directory.appendingPathComponent("tls/ca.crt").path)
        #expect(redis.tls(in: environment) == tls, "the stack file's ca_file_env names the stack's CA")
        #expect(credentials.sentinels.password == environment["KILN_SECURE_SENTINEL_PASSWORD"] && credentials.sentinels.tls == tls)
        #expect(credentials.servers == RedisCredentials(user: "kiln_admin", password: environment["KILN_SECURE_REDIS_ADMIN_PASSWORD"], tls: tls))

        // The Sentinels speak only TLS and refuse a lookup without AUTH (the resolver then falls back to the stack
        // file's primary), and answer one with it.
        let unauthenticated = try RedisConnection(host: redis.sentinels[0].host, port: redis.sentinels[0].port, timeoutSeconds: 2, tls: tls)
        let refused = #expect(throws: RedisError.self) { try unauthenticated.command(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "kiln"]) }
        #expect(refused?.kind == .server("NOAUTH"), "\(String(describing: refused))")
        unauthenticated.close()
        let plaintext = #expect(throws: RedisError.self) {
            let connection = try RedisConnection(host: redis.sentinels[0].host, port: redis.sentinels[0].port, timeoutSeconds: 2)
            try connection.command(["PING"])
        }
        #expect(plaintext.map { $0.kind == .io || $0.kind == .timeout } == true, "a Sentinel answered plaintext: \(String(describing: plaintext))")
        #expect(RedisPrimaryResolver.askSentinels(redis.sentinels, "kiln", timeoutSeconds: 1) == nil)
        #expect(RedisPrimaryResolver.askSentinels(redis.sentinels, "kiln", timeoutSeconds: 1, credentials: credentials.sentinels) == redis.primary)

        // The failover fault: Sentinels asked with requirepass, the servers fenced and queried as kiln_admin.
        let fault = RedisSentinelFailover(
            masterName: redis.masterName, sentinels: redis.sentinels, trigger: .command, failBack: false,
            timeout: .seconds(60), sentinelCredentials: credentials.sentinels, serverCredentials: credentials.servers)
        defer { fault.teardown() }
        try fault.setup()
        try fault.start()
        #expect(fault.oldPrimary == redis.primary && fault.newPrimary == replica)
        let active = fault.verify(.active)
        #expect(active.verified == .yes, "\(active.text)")
        // Every Redis client follows the new primary through the authenticated Sentinels.
        let resolver = RedisPrimaryResolver(redis, timeout: .seconds(2), environment: environment)
        #expect(resolver.current() == replica)

        // Load and check on the failed-over stack: Redis as kiln_app on the new primary, FalkorDB as kiln_app.
        var runEnvironment = environment
        runEnvironment["PGSSLMODE"] = "verify-full"
        runEnvironment["PGSSLROOTCERT"] = directory.appendingPathComponent("tls/ca.crt").path
        let runs = directory.appendingPathComponent("runs")
        let run = try AuditTestSupport.run(
            home.appendingPathComponent(".build/debug/kiln").path,
            ["run", home.appendingPathComponent("Scenarios/secure-load.yaml").path, "--runs-directory", runs.path, "--id", "secure-sentinel", "--check"],
            environment: runEnvironment)
        #expect(run.status == 0, "kiln run --check after the failover: \(run.output)")
        for place in ["postgres.rows", "redis.features", "falkordb", "clickhouse.rows"] {
            #expect(run.output.contains(place), "\(place) not checked: \(run.output)")
        }
        #expect(run.output.contains("verdict: valid"), "\(run.output)")
        // The rows went to the new primary (the old one is its replica and has them too, so ask ROLE where they are).
        let newPrimary = try credentials.servers.connect(host: replica.host, port: replica.port, timeoutSeconds: 2)
        defer { newPrimary.close() }
        #expect(try newPrimary.command(["ROLE"]).array?.first?.string == "master")
        #expect((try newPrimary.command(["DBSIZE"]).integer ?? 0) > 0)

        try fault.stop()
        let healed = fault.verify(.healed)
        #expect(healed.verified == .yes, "\(healed.text)")
    }

    @Test func kilnStackUpStartsTheHardenedStackAndDownRemovesIt() throws {
        let home = TestStack.paths.home
        let kiln = home.appendingPathComponent(".build/debug/kiln").path
        let stackFile = home.appendingPathComponent("Scenarios/stacks/embedded-secure.yaml").path
        let directory = try AuditTestSupport.temporaryDirectory("secure-stack-up").appendingPathComponent("stack")
        var environment = SecureStackFixture.randomEnvironment()
        environment["KILN_SECURE_TLS_CA"] = directory.appendingPathComponent("tls/ca.crt").path
        environment["KILN_AUDIT_REDIS_USER"] = "kiln_audit"
        defer {
            _ = try? AuditTestSupport.run(kiln, ["stack", "down", "--stack", stackFile, "--run-directory", directory.path], environment: environment)
            try? FileManager.default.removeItem(at: directory.deletingLastPathComponent())
        }
        let up = try AuditTestSupport.run(kiln, ["stack", "up", "--stack", stackFile, "--run-directory", directory.path], environment: environment)
        try #require(up.status == 0, "kiln stack up: \(up.output)")
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("tls/ca.crt").path), "openssl made the CA at stack up")
        let status = try AuditTestSupport.run(kiln, ["stack", "status", "--stack", stackFile, "--run-directory", directory.path], environment: environment)
        #expect(status.status == 0 && status.output.contains("sentinel-3") && !status.output.contains("DOWN"), "\(status.output)")
        let audit = try AuditTestSupport.run(kiln, ["audit", "--stack", stackFile, "--fail-on", "medium"], environment: environment)
        #expect(audit.status == 0 && audit.output.contains("0 at or above medium, 0 not checked"), "\(audit.output)")
        let down = try AuditTestSupport.run(kiln, ["stack", "down", "--stack", stackFile, "--run-directory", directory.path], environment: environment)
        #expect(down.status == 0, "kiln stack down: \(down.output)")
        #expect(!FileManager.default.fileExists(atPath: directory.path))
        let stack = try StackDefinition.load(contentsOf: URL(fileURLWithPath: stackFile))
        for endpoint in [stack.postgres.primary, stack.redis.primary, stack.timeseries.endpoint] + stack.redis.sentinels {
            #expect(!KilnStack.LocalProcess.isListening(host: endpoint.host, port: endpoint.port), "\(endpoint) still listening")
        }
    }
}
