import Foundation
import KilnCore
import KilnLoad
import KilnScenario
import KilnStack
import KilnStores
import Logging
import Testing

/// The stack side of the backend plugin shape: sections come from the backends, are optional, and everything the
/// embedded stack, `kiln stack env` and the fault runner know about a store comes from its descriptor. No server.
@Suite("Stack sections from the backends")
struct StackSectionTests {
    static let postgresOnly = """
        kind: embedded
        name: pg-only
        postgres:
          primary: 127.0.4.11:25432
          replicas: [127.0.4.12:25433]
        """

    @Test func aPostgresOnlyStackParsesAndListsOnlyPostgres() throws {
        let stack = try StackDefinition.parse(Self.postgresOnly, file: "pg.yaml")
        #expect(stack.sectionKeys == ["postgres"])
        #expect(stack.postgres.primary == HostPort(host: "127.0.4.11", port: 25432))
        #expect(stack.has("postgres") && !stack.has("redis"))
        #expect(stack.section(RedisStackConfig.self) == nil)
        #expect(stack.addresses.map(\.field) == ["postgres.primary", "postgres.replicas"])
    }

    @Test func anUnknownSectionIsAnErrorNamingIt() {
        let error = #expect(throws: SpecError.self) {
            try StackDefinition.parse(Self.postgresOnly + "\nmemcached:\n  primary: 127.0.0.1:11211\n", file: "u.yaml")
        }
        #expect(error?.field == "memcached")
        #expect(error?.line == 7)
        #expect(error?.description.hasPrefix("u.yaml:7:") == true)
        #expect(error?.message.contains("unknown section") == true)
        #expect(error?.message.contains("redis") == true, "names the known sections")
    }

    @Test func aStackWithNoStoreIsRefused() {
        let error = #expect(throws: SpecError.self) { try StackDefinition.parse("kind: embedded\n", file: "e.yaml") }
        #expect(error?.message.contains("at least one store") == true)
    }

    @Test func sectionsAreTheVocabularysOnly() throws {
        // A parser handed only PostgreSQL's section refuses `redis:` (the sections come from above).
        let vocabulary = BackendVocabulary(stackSections: [PostgresStackConfig.parser], proxiable: ["postgres"])
        let text = Self.postgresOnly + "\nredis:\n  primary: 127.0.0.1:6379\n"
        let error = #expect(throws: SpecError.self) { try StackDefinition.parse(text, file: "v.yaml", vocabulary: vocabulary) }
        #expect(error?.field == "redis")
        #expect(try StackDefinition.parse(text, file: "v.yaml").has("redis"))
    }

    @Test func aPostgresOnlyScenarioResolvesItsStackAndAStoreWithoutASectionIsRefused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-pgonly"))
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("stacks"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.postgresOnly.write(
            to: directory.appendingPathComponent("stacks/pg.yaml"), atomically: true, encoding: .utf8)
        func scenario(_ stores: String) throws -> URL {
            let file = directory.appendingPathComponent("s-\(stores.count).yaml")
            try """
                name: pg-only
                stack: stacks/pg.yaml
                dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 1K}
                phases:
                  - {name: load, executor: bulk, rows: 1K, stores: [\(stores)]}
                """.write(to: file, atomically: true, encoding: .utf8)
            return file
        }
        let known = LoadRun.knownOperations()
        let loaded = try LoadScenario.load(contentsOf: scenario("postgres"), knownOperations: known)
        #expect(loaded.stack.name == "pg-only")
        #expect(loaded.stores == ["postgres"])
        #expect(loaded.stack.postgres.replicas == [HostPort(host: "127.0.4.12", port: 25433)])
        try loaded.checkStackServesStores()

        let both = try LoadScenario.load(contentsOf: scenario("postgres, redis"), knownOperations: known)
        #expect(Backends.missingSections(for: both.stores, in: both.stack).map(\.section) == ["redis"])
        let error = #expect(throws: SpecError.self) { try both.checkStackServesStores() }
        #expect(error?.field == "redis")
        #expect(error?.description.contains("pg.yaml") == true)
    }

    @Test func thePatroniAndHostsStackFilesStillParse() throws {
        let stacks = TestStack.paths.home.appendingPathComponent("Scenarios/stacks")
        let hosts = try StackDefinition.load(contentsOf: stacks.appendingPathComponent("embedded-hosts.yaml"))
        #expect(hosts.network == .hosts)
        #expect(hosts.addresses.allSatisfy { $0.address.host.hasPrefix("10.213.7.") })
        let patroni = try PatroniStackSpec.load(contentsOf: stacks.appendingPathComponent("embedded-patroni.yaml"))
        #expect(patroni.nodes.count == 3)
    }

    @Test func aPatroniStackIsAPostgresOnlyStackAPostgresScenarioCanRunOn() throws {
        let file = TestStack.paths.home.appendingPathComponent("Scenarios/stacks/embedded-patroni.yaml")
        let stack = try StackDefinition.load(contentsOf: file)
        #expect(stack.kind == .patroni)
        #expect(stack.sectionKeys == ["postgres"])
        #expect(stack.postgres.primary == HostPort(host: "10.213.7.71", port: 5432))
        #expect(stack.postgres.replicas.map(\.host) == ["10.213.7.72", "10.213.7.73"])
        #expect(stack.postgres.database == "kiln")
        #expect(stack.network == .hosts && stack.sinkHosts.isEmpty)
        #expect(stack.clientGroups.map(\.name) == ["clients-a", "clients-b"])
        // Nothing embedded: `kiln stack` runs a Patroni stack through PatroniCluster.
        #expect(throws: (any Error).self) {
            try EmbeddedStack(definition: stack, paths: TestStack.paths, logger: .init(label: "test"))
        }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-patroni"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let scenarioFile = directory.appendingPathComponent("pg.yaml")
        try """
            name: on-patroni
            stack: \(file.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 1K}
            phases:
              - {name: load, executor: bulk, rows: 1K, stores: [postgres]}
              - {name: mix, executor: closed, duration: 1s, workers: 2, client_groups: [clients-a], mix: {postgres.insert: 1}}
            """.write(to: scenarioFile, atomically: true, encoding: .utf8)
        let scenario = try LoadScenario.load(contentsOf: scenarioFile, knownOperations: LoadRun.knownOperations())
        #expect(scenario.stack.kind == .patroni)
        try scenario.checkStackServesStores()
    }

    @Test func theEmbeddedServersComeFromTheBackendsInTheOldStartOrder() throws {
        let stack = try StackDefinition.load(contentsOf: TestStack.paths.embeddedStackFile)
        let run = URL(fileURLWithPath: "/tmp/stackplug-catalogue")
        let servers = EmbeddedServer.catalogue(
            stack, runDirectory: run, tools: TestStack.paths.tools, libraries: TestStack.paths.libraries)
        #expect(
            servers.map(\.name) == [
                "postgres-primary", "redis-primary", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3", "kafka",
                "falkordb", "clickhouse", "postgres-replica",
            ])
        #expect(servers.map(\.kind.rawValue) == [
            "postgres-primary", "redis-primary", "redis-replica", "sentinel", "sentinel", "sentinel", "kafka",
            "falkordb", "clickhouse", "postgres-replica",
        ])
        #expect(servers.map(\.wire) == [.postgres, .resp, .resp, .resp, .resp, .resp, .kafka, .resp, .http, .postgres])
        #expect(servers.filter(\.isPostgres).map(\.name) == ["postgres-primary", "postgres-replica"])
        #expect(servers.first { $0.name == "redis-replica" }?.log.path == "/tmp/stackplug-catalogue/logs/redis-replica.log")

        let pgOnly = try StackDefinition.parse(Self.postgresOnly, file: "pg.yaml")
        let few = EmbeddedServer.catalogue(
            pgOnly, runDirectory: run, tools: TestStack.paths.tools, libraries: TestStack.paths.libraries)
        #expect(few.map(\.name) == ["postgres-primary", "postgres-replica"])
        #expect(few.last?.description.startsAfter == ["postgres-primary"])
    }

    @Test func environmentAndProxiesComeFromTheBackends() throws {
        let pgOnly = try StackDefinition.parse(Self.postgresOnly, file: "pg.yaml")
        let names = StackEnvironment.variables(pgOnly, paths: TestStack.paths).map(\.name)
        #expect(names.contains("PGHOST") && names.contains("KILN_POSTGRES_REPLICA_URL"))
        #expect(!names.contains("KILN_REDIS_URL") && !names.contains("KILN_KAFKA_BOOTSTRAP"))

        let full = try StackDefinition.load(contentsOf: TestStack.paths.embeddedStackFile)
        let all = StackEnvironment.variables(full, paths: TestStack.paths).map(\.name)
        for name in [
            "KILN_STACK_FILE", "PGHOST", "KILN_REDIS_URL", "KILN_REDIS_SENTINELS", "KILN_KAFKA_BOOTSTRAP",
            "KILN_FALKORDB_URL", "KILN_CLICKHOUSE_URL", "KILN_CLICKHOUSE_NATIVE", "KILN_LIBRDKAFKA_DIR",
        ] {
            #expect(all.contains(name), "\(name)")
        }

        #expect(Set(FaultScheduleSpec.proxiable) == ["redis", "postgres", "clickhouse", "falkordb"])
        #expect(Backends.backend(named: "falkordb")?.stack.proxy?.endpoint(full) == full.graph.endpoint)
        #expect(Backends.backend(named: "redis")?.stack.proxy?.endpoint(pgOnly) == nil)
        var redirected = full
        Backends.backend(named: "clickhouse")?.stack.proxy?.redirect(&redirected, HostPort(host: "127.0.0.1", port: 1))
        #expect(redirected.timeseries.endpoint == HostPort(host: "127.0.0.1", port: 1))
        #expect(redirected.timeseries.database == full.timeseries.database)
    }
}
