import Foundation
import KilnBackends
import KilnCore
import KilnKafka
import KilnRedis
import KilnScenario
import Logging
import Testing

@testable import KilnAudit

/// Helpers shared by the audit suites.
enum AuditTestSupport {
    static let logger = Logger(label: "kiln.test.audit")

    static func context(
        _ stack: StackDefinition, environment: [String: String] = [:], runs: [URL] = [], timeout: Int = 5
    ) -> AuditContext {
        AuditContext(stack: stack, environment: environment, runsDirectories: runs, logger: logger, timeoutSeconds: timeout)
    }

    /// The outcome of `id` on the target whose label starts with `target` (nil: no such result).
    static func outcome(_ report: AuditReport, _ id: AuditFindingID, target: String) -> AuditOutcome? {
        report.results.first { $0.id == id && $0.target.hasPrefix(target) }?.outcome
    }

    static func isFinding(_ outcome: AuditOutcome?) -> Bool {
        if case .finding = outcome { return true }
        return false
    }

    static func isPassed(_ outcome: AuditOutcome?) -> Bool {
        if case .passed = outcome { return true }
        return false
    }

    static func temporaryDirectory(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName(name))
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Runs a program, returning its exit status and combined output.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (
        status: Int32, output: String
    ) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// `kiln audit` against the shared embedded stack (read-only: logins, SELECTs, PING, ACL GETUSER/DRYRUN, CONFIG GET,
/// HTTP SELECT 1, Kafka ApiVersions/Metadata): it must report the stack's real weaknesses, by id, with evidence.
@Suite("kiln audit: the embedded stack")
struct AuditEmbeddedStackTests {
    @Test func reportsTheEmbeddedStacksRealWeaknesses() throws {
        let stack = TestStack.definition
        let report = AuditChecks.audit(AuditTestSupport.context(stack), stackFile: "embedded.yaml")
        let primary = "postgres-primary \(stack.postgres.primary)"
        let redis = "redis-primary \(stack.redis.primary)"
        let expectedFindings: [(AuditFindingID, String)] = [
            (.postgresNoPassword, primary), (.postgresTrustInHBA, primary), (.postgresSuperuserApplicationRole, "role postgres"),
            (.postgresTLSNotOffered, primary), (.postgresTLSNotRequired, primary), (.redisNoPassword, redis),
            (.redisDangerousCommands, redis), (.redisDefaultUserEnabled, redis), (.redisProtectedModeOff, redis),
            (.redisNoPassword, "falkordb"), (.redisNoPassword, "sentinel-1"),
            (.clickhouseDefaultUserNoPassword, "clickhouse"), (.kafkaNoSASL, "kafka"),
            // Plaintext everywhere on the embedded stack (loopback: low).
            (.redisPlaintext, redis), (.redisPlaintext, "redis-replica"), (.redisPlaintext, "falkordb"), (.kafkaPlaintext, "kafka"),
        ]
        for (id, target) in expectedFindings {
            let outcome = AuditTestSupport.outcome(report, id, target: target)
            #expect(AuditTestSupport.isFinding(outcome), "\(id.rawValue) on \(target): \(String(describing: outcome))")
        }
        #expect(AuditTestSupport.outcome(report, .redisPlaintext, target: redis)?.text.contains("PING over plain TCP → PONG") == true)
        // The embedded broker is Tansu: the finding says why no setting removes it.
        #expect(AuditTestSupport.outcome(report, .kafkaPlaintext, target: "kafka")?.text.contains("the broker is Tansu") == true)
        // Evidence is what a client saw.
        #expect(AuditTestSupport.outcome(report, .postgresNoPassword, target: primary)?.text.contains("with no password and ran SELECT 1") == true)
        #expect(AuditTestSupport.outcome(report, .postgresTrustInHBA, target: primary)?.text.contains("trust") == true)
        // What the embedded stack does right passes, with evidence: every server on its own loopback alias,
        // scram-sha-256 as the password hash.
        #expect(AuditTestSupport.isPassed(AuditTestSupport.outcome(report, .postgresPasswordEncryption, target: primary)))
        for result in report.results where result.id == .listenerReachableFromOutside {
            #expect(AuditTestSupport.isPassed(result.outcome), "\(result.target): \(result.outcome)")
        }
        // No Neo4j here: never a pass.
        let neo4j = report.results.filter { $0.id == .neo4jAuthDisabled }
        #expect(neo4j.count == 1 && !AuditTestSupport.isPassed(neo4j[0].outcome))
        #expect(report.verdict(failOn: .high) == .findings)
        #expect(report.notChecked.isEmpty, "\(report.notChecked)")
    }

    @Test func commandExitsTwoOnFindingsAndWritesEveryFormat() throws {
        let directory = try AuditTestSupport.temporaryDirectory("kiln-audit-cli")
        defer { try? FileManager.default.removeItem(at: directory) }
        let table = try CommandLineTests.kiln(["audit", "--runs", directory.path])
        #expect(table.status == KilnExitCode.thresholdFailed.rawValue, "\(table.output)")
        #expect(table.output.contains("postgres.no-password") && table.output.contains("FIXES"))
        for format in AuditFormat.allCases {
            let file = directory.appendingPathComponent("audit.\(format.rawValue)")
            let outcome = try CommandLineTests.kiln(["audit", "--format", format.rawValue, "-o", file.path, "--runs", directory.path])
            #expect(outcome.status == KilnExitCode.thresholdFailed.rawValue, "\(format): \(outcome.output)")
            let text = try String(contentsOf: file, encoding: .utf8)
            #expect(text.contains("postgres.hba-trust"), "\(format)")
        }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("audit.json"))) as? [String: Any]
        #expect(json?["verdict"] as? String == "findings")
        let junit = try String(contentsOf: directory.appendingPathComponent("audit.junit"), encoding: .utf8)
        #expect(junit.contains("<failure type=\"critical\""))
    }

    @Test func badFlagsExit64AndADeadStackExits69() throws {
        for arguments in [["--fail-on", "severe"], ["--format", "xml"], ["--timeout", "0"], ["--timeout", "-3"],
            ["--timeout", "99999999999999999999"]]
        {
            let outcome = try CommandLineTests.kiln(["audit"] + arguments)
            #expect(outcome.status == KilnExitCode.invalidInput.rawValue, "\(arguments): \(outcome.output)")
        }
        let broken = try CommandLineTests.temporaryFile(
            "broken.yaml",
            "kind: external\npostgres: {primary: 127.0.0.1:5432, sensitive_tables: [\"cards; DROP TABLE x\"]}\n"
                + "redis: {primary: 127.0.0.1:2}\nkafka: {bootstrap: [127.0.0.1:3]}\n"
                + "graph: {kind: falkordb, endpoint: 127.0.0.1:4}\ntimeseries: {kind: clickhouse, endpoint: 127.0.0.1:5}\n")
        let invalid = try CommandLineTests.kiln(["audit", "--stack", broken.path])
        #expect(invalid.status == KilnExitCode.invalidInput.rawValue, "\(invalid.output)")
        #expect(invalid.output.contains("broken.yaml:2:") && invalid.output.contains("postgres.sensitive_tables"), "\(invalid.output)")

        let dead = try CommandLineTests.temporaryFile(
            "dead.yaml",
            "kind: external\npostgres: {primary: 127.0.33.250:1}\nredis: {primary: 127.0.33.250:2}\n"
                + "kafka: {bootstrap: [127.0.33.250:3]}\ngraph: {kind: falkordb, endpoint: 127.0.33.250:4}\n"
                + "timeseries: {kind: clickhouse, endpoint: 127.0.33.250:5}\n")
        let runs = try AuditTestSupport.temporaryDirectory("kiln-audit-dead")
        defer { try? FileManager.default.removeItem(at: runs) }
        let outcome = try CommandLineTests.kiln(["audit", "--stack", dead.path, "--timeout", "2", "--runs", runs.path])
        #expect(outcome.status == KilnExitCode.stackUnavailable.rawValue, "\(outcome.output)")
        // A hang guard, not a speed test: 28 probes of 2 s each bound a hang-free audit at ~60 s even when every
        // connect times out; alone it takes 0.4 s (refused connects), but under the full suite's load one CI run
        // took 82 s. 180 s still catches a probe without a timeout (libpq's default is forever).
        #expect(outcome.seconds < 180, "took \(outcome.seconds) s")
        // No check of an unreachable server passes (the run-directory scan needs no server and may).
        let passedServerChecks = outcome.output.split(separator: "\n").filter {
            $0.hasPrefix("passed ") && !$0.contains(AuditFindingID.kilnPasswordInRunDirectory.rawValue)
        }
        #expect(passedServerChecks.isEmpty, "an unreachable server passed a check: \(outcome.output)")
        #expect(outcome.output.contains("NOT CHECKED"), "\(outcome.output)")
    }
}

/// The parts of the audit that need no server: hygiene scanning, verdicts, SARIF against the official schema,
/// /proc/net/tcp parsing, strict stack fields.
@Suite("kiln audit: hygiene, verdicts and formats")
struct AuditOutputTests {
    static let deadStack = try! StackDefinition.parse(
        "kind: external\npostgres: {primary: 127.0.33.250:1}\nredis: {primary: 127.0.33.250:2}\n"
            + "kafka: {bootstrap: [127.0.33.250:3]}\ngraph: {kind: falkordb, endpoint: 127.0.33.250:4}\n"
            + "timeseries: {kind: clickhouse, endpoint: 127.0.33.250:5}\n", file: "dead.yaml")

    @Test func hygieneFindsAPlantedPasswordAndNeverPrintsIt() throws {
        let runs = try AuditTestSupport.temporaryDirectory("kiln-audit-runs")
        defer { try? FileManager.default.removeItem(at: runs) }
        let secret = "s3cret-\(UInt64.random(in: 1...UInt64.max))"
        let leaky = runs.appendingPathComponent("run-1/logs")
        try FileManager.default.createDirectory(at: leaky, withIntermediateDirectories: true)
        // The value sits across the 1 MiB chunk boundary: the scan must still see it.
        var bytes = [UInt8](repeating: UInt8(ascii: "x"), count: (1 << 20) - 5)
        bytes += Array("password=\(secret)\n".utf8)
        try Data(bytes).write(to: leaky.appendingPathComponent("pipeline.log"))
        try FileManager.default.createDirectory(at: runs.appendingPathComponent("run-2"), withIntermediateDirectories: true)
        try Data("{\"ok\": true}".utf8).write(to: runs.appendingPathComponent("run-2/report.json"))

        let environment = ["KILN_POSTGRES_PASSWORD": secret, "PGPASSWORD": "another-one-not-leaked", "HOME": "/root"]
        let results = RunDirectorySecretsCheck().run(AuditTestSupport.context(Self.deadStack, environment: environment, runs: [runs]))
        #expect(results.count == 1)
        let outcome = try #require(results.first?.outcome)
        #expect(AuditTestSupport.isFinding(outcome), "\(outcome)")
        #expect(outcome.text.contains("run-1/logs/pipeline.log contains the value of $KILN_POSTGRES_PASSWORD at byte \((1 << 20) + 4)"), "\(outcome.text)")
        #expect(!outcome.text.contains("PGPASSWORD at"), "\(outcome.text)")
        #expect(!outcome.text.contains(secret))
        let report = AuditReport(stackName: "dead", stackFile: "dead.yaml", results: results)
        for format in AuditFormat.allCases {
            #expect(!format.render(report, failOn: .high).contains(secret), "\(format) printed the password")
        }

        // The same tree without the leak passes; a one-byte password is not checked, never passed.
        try FileManager.default.removeItem(at: leaky)
        let clean = RunDirectorySecretsCheck().run(AuditTestSupport.context(Self.deadStack, environment: environment, runs: [runs]))
        #expect(clean.count == 1 && AuditTestSupport.isPassed(clean[0].outcome), "\(clean)")
        let short = RunDirectorySecretsCheck().run(AuditTestSupport.context(Self.deadStack, environment: ["REDISCLI_AUTH": "x"], runs: [runs]))
        #expect(short.contains { if case .notChecked = $0.outcome { true } else { false } }, "\(short)")
        #expect(!short.contains { AuditTestSupport.isPassed($0.outcome) })
    }

    @Test func verdictOrdersFindingsOverNotCheckedOverClean() {
        func report(_ outcomes: [(AuditFindingID, AuditSeverity, AuditOutcome)]) -> AuditReport {
            AuditReport(stackName: "s", stackFile: "s.yaml", results: outcomes.map { AuditResult($0.0, target: "t", severity: $0.1, $0.2) })
        }
        let low = report([(.redisPlaintext, .low, .finding(evidence: "e")), (.redisNoPassword, .critical, .passed(evidence: "e"))])
        #expect(low.verdict(failOn: .high) == .clean)
        #expect(low.verdict(failOn: .low) == .findings)
        let unknown = report([(.redisNoPassword, .critical, .passed(evidence: "e")), (.postgresTrustInHBA, .high, .notChecked(reason: "r"))])
        #expect(unknown.verdict(failOn: .high) == .notChecked)
        let nothing = report([(.redisNoPassword, .critical, .notChecked(reason: "r")), (.neo4jAuthDisabled, .critical, .notApplicable(reason: "r"))])
        #expect(nothing.verdict(failOn: .info) == .stackUnavailable)
        #expect(AuditSeverity.critical > .high && AuditSeverity.low > .info)
        #expect(Set(AuditFindingID.allCases.map(\.rawValue)).count == AuditFindingID.allCases.count)
    }

    /// The SARIF output validates against the official SARIF 2.1.0 schema (OASIS, Reports/sarif-schema-2.1.0.json)
    /// with Python's jsonschema; the validator is proven by a planted invalid document it must reject.
    @Test func sarifValidatesAgainstTheOfficialSchema() throws {
        let results = [
            AuditResult(.postgresTrustInHBA, target: "postgres-primary 127.0.0.11:15432", .finding(evidence: "line 1: host all all 127.0.0.1/32 trust \"quoted\" <xml>")),
            AuditResult(.postgresTrustInHBA, target: "postgres-replica", .notChecked(reason: "no privilege")),
            AuditResult(.redisNoPassword, target: "redis", .passed(evidence: "NOAUTH")),
            AuditResult(.neo4jAuthDisabled, target: "graph", .notApplicable(reason: "no Neo4j")),
        ]
        let report = AuditReport(stackName: "s", stackFile: "Scenarios/stacks/embedded.yaml", results: results)
        let directory = try AuditTestSupport.temporaryDirectory("kiln-audit-sarif")
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = directory.appendingPathComponent("good.sarif")
        try AuditSARIFWriter.render(report).write(to: good, atomically: true, encoding: .utf8)
        var planted = try JSONSerialization.jsonObject(with: Data(contentsOf: good)) as! [String: Any]
        var runs = planted["runs"] as! [[String: Any]]
        var sarifResults = runs[0]["results"] as! [[String: Any]]
        sarifResults[0]["level"] = "fatal"  // not a SARIF level
        runs[0]["results"] = sarifResults
        planted["runs"] = runs
        let bad = directory.appendingPathComponent("bad.sarif")
        try JSONSerialization.data(withJSONObject: planted).write(to: bad)

        let schema = TestStack.paths.home.appendingPathComponent("Reports/sarif-schema-2.1.0.json").path
        let python = TestStack.paths.home.appendingPathComponent(".kiln/venv/bin/python").path
        let script = """
            import json, sys, jsonschema
            schema = json.load(open(sys.argv[1]))
            validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
            for path in sys.argv[2:]:
                errors = list(validator.iter_errors(json.load(open(path))))
                print(path.rsplit('/', 1)[-1], len(errors), '; '.join(e.message for e in errors[:3]))
            """
        let outcome = try AuditTestSupport.run(python, ["-c", script, schema, good.path, bad.path])
        #expect(outcome.status == 0, "jsonschema missing? run scripts/bootstrap: \(outcome.output)")
        let lines = outcome.output.split(separator: "\n")
        #expect(lines.first?.hasPrefix("good.sarif 0 ") == true, "\(outcome.output)")
        #expect(lines.count == 2 && lines[1].hasPrefix("bad.sarif ") && !lines[1].hasPrefix("bad.sarif 0 "), "\(outcome.output)")
        let document = try JSONSerialization.jsonObject(with: Data(contentsOf: good)) as! [String: Any]
        let sarifRuns = document["runs"] as! [[String: Any]]
        let emitted = sarifRuns[0]["results"] as! [[String: Any]]
        #expect(emitted.map { $0["kind"] as? String } == ["fail", "open"], "passed and not-applicable checks are not results")
    }

    @Test func procNetTCPLinesParse() {
        let v4 = "   0: 0B00007F:3C50 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 31337 1 0000000000000000 100 0 0 10 0"
        #expect(ListeningSocket.parse(v4) == ListeningSocket(address: "127.0.0.11", port: 15440, inode: "31337"))
        let wildcard = "   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 42 1 0 100 0 0 10 0"
        #expect(ListeningSocket.parse(wildcard)?.isWildcard == true)
        let established = "   2: 0B00007F:3C50 0100007F:D431 01 00000000:00000000 00:00000000 00000000   108        0 7 1 0 100 0 0 10 0"
        #expect(ListeningSocket.parse(established) == nil)
        let v6any = "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0 100 0 0 10 0"
        #expect(ListeningSocket.parse(v6any) == ListeningSocket(address: "::", port: 8080, inode: "99"))
        let v6loopback = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 98 1 0 100 0 0 10 0"
        #expect(ListeningSocket.parse(v6loopback)?.address == "::1")
        #expect(ListeningSocket.parse("garbage") == nil && ListeningSocket.parse("") == nil)
    }

    @Test func sensitiveTablesAreParsedStrictly() throws {
        let base = "kind: external\nredis: {primary: 127.0.0.1:2}\nkafka: {bootstrap: [127.0.0.1:3]}\n"
            + "graph: {kind: falkordb, endpoint: 127.0.0.1:4}\ntimeseries: {kind: clickhouse, endpoint: 127.0.0.1:5}\n"
        let good = try StackDefinition.parse(base + "postgres:\n  primary: 127.0.0.1:1\n  sensitive_tables: [cards, audit.ledger_2]\n", file: "s.yaml")
        #expect(good.postgres.sensitiveTables == ["cards", "audit.ledger_2"])
        for bad in ["[\"a.b.c\"]", "[\"\"]", "[\"x;y\"]", "[\".cards\"]", "[\(String(repeating: "a", count: 200))]", "7", "{a: b}"] {
            #expect(throws: SpecError.self, "\(bad)") {
                try StackDefinition.parse(base + "postgres:\n  primary: 127.0.0.1:1\n  sensitive_tables: \(bad)\n", file: "s.yaml")
            }
        }
    }
}

/// The hardened stack (scripts/secure-stack + Scenarios/stacks/embedded-secure.yaml) as a private stack on
/// 127.0.33.x: zero findings at every severity and nothing unchecked; each planted weakness found by its id; Kiln's
/// load and check run against it over TLS with passwords (Kafka: TLS + SCRAM-SHA-512).
@Suite("kiln audit: the hardened stack", .serialized)
struct AuditHardenedStackTests {
    @Test func hardenedStackPassesAndPlantedWeaknessesAreFoundByName() throws {
        let home = TestStack.paths.home
        let directory = try AuditTestSupport.temporaryDirectory("audit-secure")
        var environment = ProcessInfo.processInfo.environment
        for variable in SecureStackFixture.passwordVariables {
            environment[variable] = (0..<4).map { _ in String(UInt32.random(in: 0...UInt32.max), radix: 36) }.joined(separator: "-")
        }
        environment["KILN_AUDIT_REDIS_USER"] = "kiln_audit"
        environment["KILN_SECURE_TLS_CA"] = directory.appendingPathComponent("tls/ca.crt").path
        let script = home.appendingPathComponent("scripts/secure-stack").path
        defer {
            _ = try? AuditTestSupport.run(script, ["down", directory.path], environment: environment)
            try? FileManager.default.removeItem(at: directory)
        }
        let up = try AuditTestSupport.run(script, ["up", directory.path], environment: environment)
        try #require(up.status == 0, "scripts/secure-stack up: \(up.output)")
        let stack = try StackDefinition.load(contentsOf: home.appendingPathComponent("Scenarios/stacks/embedded-secure.yaml"))
        let runs = directory.appendingPathComponent("runs")
        func audit() -> AuditReport {
            AuditChecks.audit(AuditTestSupport.context(stack, environment: environment, runs: [runs]), stackFile: "embedded-secure.yaml")
        }

        // A run of Kiln's load and check over verify-full TLS and SCRAM (PostgreSQL), an ACL user (Redis) and a password
        // (ClickHouse).
        var runEnvironment = environment
        runEnvironment["PGSSLMODE"] = "verify-full"
        runEnvironment["PGSSLROOTCERT"] = directory.appendingPathComponent("tls/ca.crt").path
        let kiln = home.appendingPathComponent(".build/debug/kiln").path
        let run = try AuditTestSupport.run(
            kiln, ["run", home.appendingPathComponent("Scenarios/secure-load.yaml").path, "--runs-directory", runs.path, "--id", "secure", "--check"],
            environment: runEnvironment)
        #expect(run.status == 0, "kiln run --check on the hardened stack: \(run.output)")
        for place in ["postgres.rows", "redis.features", "falkordb", "clickhouse.rows", "kafka.messages"] {
            #expect(run.output.contains(place), "\(place) not checked: \(run.output)")
        }
        #expect(run.output.contains("verdict: valid"), "\(run.output)")

        // Kafka over SASL_SSL with the stack file's login: a wrong password, or a CA that never signed the broker's
        // certificate, fails the first metadata request at once with librdkafka's code (not a silent retry until the
        // timeout).
        let kafka = stack.kafka
        try #require(kafka.saslMechanism == .scramSHA512 && kafka.caFileEnvironmentVariable != nil)
        let good = try kafka.clientProperties(in: environment)
        #expect(good["security.protocol"] == "sasl_ssl" && good["ssl.endpoint.identification.algorithm"] == "https")
        let reader = try KafkaConsumer(bootstrapServers: kafka.bootstrapServers, properties: good)
        #expect(try reader.existingPartitionCount(topic: "secureload.transactions", timeoutMilliseconds: 10_000) ?? 0 > 0)
        reader.close()
        var wrongPassword = environment
        wrongPassword["KILN_SECURE_KAFKA_PASSWORD"] = "not-the-password"
        var otherCA = environment
        otherCA["KILN_SECURE_TLS_CA"] = "/etc/ssl/certs/ca-certificates.crt"
        for (label, variables, code) in [("wrong password", wrongPassword, "_AUTHENTICATION"), ("wrong CA", otherCA, "_SSL")] {
            let consumer = try KafkaConsumer(bootstrapServers: kafka.bootstrapServers, properties: try kafka.clientProperties(in: variables))
            let started = ContinuousClock.now
            let error = #expect(throws: KafkaError.self, "\(label)") {
                _ = try consumer.partitionCount(topic: "secureload.transactions", timeoutMilliseconds: 10_000)
            }
            #expect(error?.name == code, "\(label): \(String(describing: error))")
            #expect(ContinuousClock.now - started < .seconds(5), "\(label)")
            consumer.close()
        }

        let clean = audit()
        #expect(clean.findings(atOrAbove: .medium).isEmpty, "\(clean.findings)")
        #expect(clean.notChecked.isEmpty, "\(clean.notChecked)")
        #expect(clean.verdict(failOn: .low) == .clean)
        // Nothing stays at any severity: Redis, its replica, FalkorDB, ClickHouse and Kafka speak only TLS.
        #expect(clean.findings.isEmpty, "\(clean.findings)")
        let kafkaPlaintext = AuditTestSupport.outcome(clean, .kafkaPlaintext, target: "kafka")
        #expect(AuditTestSupport.isPassed(kafkaPlaintext) && kafkaPlaintext?.text.contains("handshake → TLS") == true,
            "\(String(describing: kafkaPlaintext))")
        // kafka.no-sasl spoke Kafka over verified TLS: the broker lists SaslHandshake, and Metadata without a login
        // got no answer.
        let kafkaSASL = AuditTestSupport.outcome(clean, .kafkaNoSASL, target: "kafka")
        #expect(AuditTestSupport.isPassed(kafkaSASL) && kafkaSASL?.text.contains("over TLS lists SaslHandshake") == true
            && kafkaSASL?.text.contains("SCRAM-SHA-512") == true && kafkaSASL?.text.contains("was not answered") == true,
            "\(String(describing: kafkaSASL))")
        #expect(AuditTestSupport.isPassed(AuditTestSupport.outcome(clean, .clickhousePlaintext, target: "clickhouse")))
        for target in ["redis-primary", "redis-replica", "falkordb"] {
            let outcome = AuditTestSupport.outcome(clean, .redisPlaintext, target: target)
            #expect(AuditTestSupport.isPassed(outcome) && outcome?.text.contains("handshake → TLSv1.3") == true,
                "redis.plaintext on \(target): \(String(describing: outcome))")
        }
        // Every other Redis check reached the servers over verified TLS (none is "not checked").
        for id in [AuditFindingID.redisAnyPasswordAccepted, .redisProtectedModeOff] {
            #expect(clean.results.filter { $0.id == id }.count == 3 && clean.results.filter { $0.id == id }.allSatisfy { AuditTestSupport.isPassed($0.outcome) },
                "\(id.rawValue)")
        }
        // A client given the wrong CA (the system's, which never signed the stack's certificate) fails at connect, at
        // once, saying why.
        let started = ContinuousClock.now
        let wrongCA = #expect(throws: RedisError.self) {
            try RedisCredentials(user: "kiln_app", password: environment["KILN_SECURE_REDIS_PASSWORD"], tls: RedisTLS(caFile: nil))
                .connect(host: stack.redis.primary.host, port: stack.redis.primary.port, timeoutSeconds: 5)
        }
        #expect(wrongCA?.kind == .connect && wrongCA?.description.contains("TLS: certificate verify failed") == true,
            "\(String(describing: wrongCA))")
        #expect(ContinuousClock.now - started < .seconds(2))
        for id in [AuditFindingID.postgresTrustInHBA, .postgresTLSNotRequired, .postgresSuperuserApplicationRole, .postgresRowLevelSecurity,
            .redisNoPassword, .redisDangerousCommands, .redisDefaultUserEnabled, .clickhouseDefaultUserNoPassword, .kafkaNoSASL,
            .kilnPasswordInRunDirectory]
        {
            #expect(clean.results.contains { $0.id == id && AuditTestSupport.isPassed($0.outcome) }, "\(id.rawValue) did not pass")
        }
        let command = try AuditTestSupport.run(
            kiln, ["audit", "--stack", home.appendingPathComponent("Scenarios/stacks/embedded-secure.yaml").path, "--runs", runs.path],
            environment: environment)
        #expect(command.status == 0, "\(command.output)")

        // Each planted weakness is found by its id, and gone again once removed.
        let plants: [(String, AuditFindingID)] = [
            ("trust", .postgresTrustInHBA), ("superuser", .postgresSuperuserApplicationRole),
            ("empty-password", .clickhouseDefaultUserNoPassword), ("kafka-plaintext", .kafkaPlaintext),
        ]
        for (weakness, id) in plants {
            let plant = try AuditTestSupport.run(script, ["plant", directory.path, weakness], environment: environment)
            try #require(plant.status == 0, "plant \(weakness): \(plant.output)")
            let planted = audit()
            #expect(planted.findings.contains { $0.id == id },
                "\(weakness): \(id.rawValue) not found in \(planted.findings); plant said: \(plant.output); \(planted.results.filter { $0.id == id })")
            #expect(planted.verdict(failOn: .high) == .findings, "\(weakness)")
            if weakness == "trust" {
                #expect(planted.findings.contains { $0.id == .postgresNoPassword }, "a trust line lets kiln_app in without a password")
            }
            if weakness == "kafka-plaintext" {
                // Tansu's own listener, around the SASL gateway: plaintext and no login. Found at `low` (loopback).
                #expect(planted.findings.contains { $0.id == .kafkaNoSASL }, "kafka.no-sasl not found: \(planted.findings)")
            }
            let unplant = try AuditTestSupport.run(script, ["unplant", directory.path, weakness], environment: environment)
            try #require(unplant.status == 0, "unplant \(weakness): \(unplant.output)")
            #expect(audit().findings(atOrAbove: .medium).isEmpty, "\(weakness) still found after unplant")
        }

        // A password leaked into a run directory of this stack is found by the hygiene check.
        let leaked = runs.appendingPathComponent("secure/logs/leak.txt")
        try FileManager.default.createDirectory(at: leaked.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("dsn=postgres://kiln_app:\(environment["KILN_SECURE_PG_PASSWORD"]!)@host/kiln\n".utf8).write(to: leaked)
        let leak = audit().results.filter { $0.id == .kilnPasswordInRunDirectory }
        #expect(leak.count == 1 && AuditTestSupport.isFinding(leak[0].outcome), "\(leak)")
        #expect(leak.first?.outcome.text.contains("$KILN_SECURE_PG_PASSWORD") == true)
    }
}
