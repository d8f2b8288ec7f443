import Foundation
import KilnCore
import KilnScenario
import KilnStack
import Testing
import KilnTestSupport

@Suite("Stack files")
struct StackDefinitionTests {
    static let scenarios = TestStack.paths.home.appendingPathComponent("Scenarios")

    @Test("the shipped stack files parse", arguments: ["embedded.yaml", "embedded-faketime.yaml", "compose.yaml", "external.example.yaml"])
    func shippedFilesParse(_ name: String) throws {
        let stack = try StackDefinition.load(contentsOf: Self.scenarios.appendingPathComponent("stacks/\(name)"))
        #expect(!stack.kafka.bootstrap.isEmpty)
        #expect(stack.redis.masterName == "kiln")
    }

    @Test func embeddedStackPutsEveryServerOnItsOwnAddress() throws {
        let stack = TestStack.definition
        #expect(stack.kind == .embedded)
        #expect(stack.chaosTarget)
        var hosts = [stack.postgres.primary.host, stack.redis.primary.host, stack.graph.endpoint.host,
            stack.timeseries.endpoint.host]
        hosts += stack.postgres.replicas.map(\.host) + stack.redis.replicas.map(\.host)
        hosts += stack.redis.sentinels.map(\.host) + stack.kafka.bootstrap.map(\.host)
        #expect(Set(hosts).count == hosts.count, "hosts: \(hosts)")
        #expect(hosts.allSatisfy { $0.hasPrefix("127.") })
        #expect(stack.redis.sentinels.count == 3)
        #expect(stack.postgres.replicas.count == 1)
    }

    @Test func faketimeListsPostgresServersOnly() throws {
        let stack = try StackDefinition.parse(Self.minimal + "\nfaketime: [postgres-primary]\n", file: "ft.yaml")
        #expect(stack.faketime == ["postgres-primary"])
        #expect(try StackDefinition.parse(Self.minimal, file: "plain.yaml").faketime.isEmpty)
        let shipped = try StackDefinition.load(contentsOf: Self.scenarios.appendingPathComponent("stacks/embedded-faketime.yaml"))
        #expect(shipped.faketime == ["postgres-primary", "postgres-replica"])
        do {
            _ = try StackDefinition.parse(Self.minimal + "\nfaketime: [redis-primary]\n", file: "ft.yaml")
            Issue.record("redis-primary under faketime was accepted")
        } catch {
            #expect(error.field.hasSuffix("faketime"))
            #expect(error.message.contains("recurse inside libfaketime"))
            #expect(error.description.contains("ft.yaml:"))
        }
        let external = Self.minimal.replacingOccurrences(of: "kind: embedded", with: "kind: external")
        #expect(throws: SpecError.self) { try StackDefinition.parse(external + "\nfaketime: [postgres-primary]\n", file: "x.yaml") }
    }

    @Test func externalStacksAreNotChaosTargetsByDefault() throws {
        let text = Self.minimal.replacingOccurrences(of: "kind: embedded", with: "kind: external")
        let stack = try StackDefinition.parse(text, file: "ext.yaml")
        #expect(stack.kind == .external)
        #expect(stack.chaosTarget == false)
    }

    static let minimal = """
        kind: embedded
        postgres:
          primary: 127.0.0.1:5432
        redis:
          primary: 127.0.0.1:6379
        kafka:
          bootstrap: [127.0.0.1:9092]
        graph:
          kind: falkordb
          endpoint: 127.0.0.1:6380
        timeseries:
          kind: clickhouse
          endpoint: 127.0.0.1:8123
        """

    @Test func defaultsFillOptionalFields() throws {
        let stack = try StackDefinition.parse(Self.minimal, file: "min.yaml")
        #expect(stack.postgres.database == "kiln")
        #expect(stack.postgres.user == "postgres")
        #expect(stack.postgres.replicas.isEmpty)
        #expect(stack.kafka.bootstrapServers == "127.0.0.1:9092")
    }

    @Test func unknownFieldNamesFileLineAndPath() {
        let text = Self.minimal.replacingOccurrences(of: "  primary: 127.0.0.1:5432", with: "  primry: 127.0.0.1:5432")
        let error = #expect(throws: SpecError.self) { try StackDefinition.parse(text, file: "bad.yaml") }
        // `primary` is now missing, which is reported first; the unknown key comes after it is supplied.
        #expect(error?.field == "postgres.primary")
        let withBoth = Self.minimal.replacingOccurrences(
            of: "  primary: 127.0.0.1:5432", with: "  primary: 127.0.0.1:5432\n  primry: x")
        let unknown = #expect(throws: SpecError.self) { try StackDefinition.parse(withBoth, file: "bad.yaml") }
        #expect(unknown?.field == "postgres.primry")
        #expect(unknown?.line == 4)
        #expect(unknown?.description.hasPrefix("bad.yaml:4:") == true)
        #expect(unknown?.description.contains("unknown field") == true)
    }

    @Test func redisServerSettingsAreTypedRangeCheckedAndEmbeddedOnly() throws {
        func stack(_ settings: String, kind: String = "embedded") throws -> StackDefinition {
            let text = Self.minimal
                .replacingOccurrences(of: "kind: embedded", with: "kind: \(kind)")
                .replacingOccurrences(of: "  primary: 127.0.0.1:6379", with: "  primary: 127.0.0.1:6379\n  server_settings: \(settings)")
            return try StackDefinition.parse(text, file: "s.yaml")
        }
        let good = try stack("{min-replicas-max-lag: 5, min-replicas-to-write: 1}")
        #expect(good.redis.serverArguments == ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "5"])
        #expect(try stack("{}").redis.serverArguments.isEmpty)
        let cases: [(String, String, String)] = [
            ("{maxmemory: 1}", "redis.server_settings.maxmemory", "unknown setting"),
            ("{min-replicas-to-write: -1}", "redis.server_settings.min-replicas-to-write", "between 0 and 16"),
            ("{min-replicas-max-lag: 0}", "redis.server_settings.min-replicas-max-lag", "between 1 and 3600"),
            ("{min-replicas-max-lag: 99999999999999999999}", "redis.server_settings.min-replicas-max-lag", "integer"),
        ]
        for (settings, field, words) in cases {
            let error = #expect(throws: SpecError.self) { try stack(settings) }
            #expect(error?.field == field, "\(settings): \(String(describing: error))")
            #expect(error?.line == 6, "\(settings)")
            #expect(error?.description.contains(words) == true, "\(settings): \(String(describing: error))")
        }
        let external = #expect(throws: SpecError.self) { try stack("{min-replicas-to-write: 1}", kind: "external") }
        #expect(external?.field == "redis.server_settings")
    }

    @Test func theMinReplicasHostsStackSetsRedisSafetyValves() throws {
        let stack = try StackDefinition.load(
            contentsOf: Self.scenarios.appendingPathComponent("stacks/embedded-hosts-min-replicas.yaml"))
        #expect(stack.redis.serverSettings == [.minReplicasToWrite: 1, .minReplicasMaxLag: 5])
        #expect(stack.network == .hosts)
    }

    @Test func badEndpointInAListNamesItsIndexAndLine() {
        let text = Self.minimal.replacingOccurrences(
            of: "bootstrap: [127.0.0.1:9092]", with: "bootstrap:\n    - 127.0.0.1:9092\n    - broker-without-port")
        let error = #expect(throws: SpecError.self) { try StackDefinition.parse(text, file: "s.yaml") }
        #expect(error?.field == "kafka.bootstrap[1]")
        #expect(error?.line == 9)
        #expect(error?.message.contains("host:port") == true)
    }

    @Test func unknownKindListsTheAllowedOnes() {
        let text = Self.minimal.replacingOccurrences(of: "kind: falkordb", with: "kind: neptune")
        let error = #expect(throws: SpecError.self) { try StackDefinition.parse(text, file: "s.yaml") }
        #expect(error?.field == "graph.kind")
        #expect(error?.message.contains("falkordb, neo4j") == true)
    }

    @Test func brokenYAMLGivesALocation() {
        let error = #expect(throws: SpecError.self) {
            try StackDefinition.parse("kind: embedded\npostgres: [unclosed\n", file: "broken.yaml")
        }
        #expect((error?.line ?? 0) >= 2)
    }

    @Test func portOutOfRangeIsRejected() {
        let text = Self.minimal.replacingOccurrences(of: "127.0.0.1:8123", with: "127.0.0.1:70000")
        let error = #expect(throws: SpecError.self) { try StackDefinition.parse(text, file: "s.yaml") }
        #expect(error?.field == "timeseries.endpoint")
    }

    @Test func hostPortParsing() {
        #expect(HostPort(parsing: "127.0.0.11:15432") == HostPort(host: "127.0.0.11", port: 15432))
        #expect(HostPort(parsing: "[::1]:9092") == HostPort(host: "::1", port: 9092))
        #expect(HostPort(parsing: "[::1]:9092")?.description == "[::1]:9092")
        #expect(HostPort(parsing: "db.internal:0") == nil)
        #expect(HostPort(parsing: "db.internal") == nil)
        #expect(HostPort(parsing: ":5432") == nil)
        #expect(HostPort(parsing: "a b:5432") == nil)
    }

    @Test func smokeScenarioResolvesItsStackRelativeToTheFile() throws {
        let smoke = try SmokeScenario.load(contentsOf: Self.scenarios.appendingPathComponent("smoke.yaml"))
        #expect(smoke.stack.kind == .embedded)
        #expect(smoke.transactions == 10_000)
        // smoke.dataset, relative to the scenario; optional (the inline scenario below has none).
        #expect(smoke.datasetSpec?.path == TestStack.paths.home.appendingPathComponent("Generators/fraud-platform.yaml")
            .standardizedFileURL.path)
    }

    @Test func environmentNeverPrintsPasswords() throws {
        let stack = try StackDefinition.load(contentsOf: Self.scenarios.appendingPathComponent("stacks/compose.yaml"))
        let exports = StackEnvironment.exports(stack, paths: TestStack.paths)
        #expect(exports.contains("export KILN_KAFKA_BOOTSTRAP="))
        #expect(!exports.lowercased().contains("password="))
    }

    @Test func aScenarioMayInlineItsStackOrNameAMissingFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-scn"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let inline = directory.appendingPathComponent("inline.yaml")
        let indented = Self.minimal.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n")
        try "stack:\n\(indented)\nsmoke: {transactions: 5}\n".write(to: inline, atomically: true, encoding: .utf8)
        let scenario = try SmokeScenario.load(contentsOf: inline)
        #expect(scenario.stack.redis.primary == HostPort(host: "127.0.0.1", port: 6379))
        #expect(scenario.transactions == 5)
        #expect(scenario.datasetSpec == nil)

        let missing = directory.appendingPathComponent("missing.yaml")
        try "stack: stacks/nope.yaml\nsmoke: {}\n".write(to: missing, atomically: true, encoding: .utf8)
        let error = #expect(throws: SpecError.self) { try SmokeScenario.load(contentsOf: missing) }
        #expect(error?.field == "stack")
        #expect(error?.line == 1)
        #expect(error?.message.contains("nope.yaml") == true)
    }
}
