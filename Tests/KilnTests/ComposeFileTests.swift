import Foundation
import KilnCore
import KilnScenario
import Testing
import Yams

/// docker-compose.yml cannot run here (no Docker engine): it is validated by docker-compose itself, and its
/// published ports are checked against the endpoints of Scenarios/stacks/compose.yaml.
@Suite("docker-compose stack")
struct ComposeFileTests {
    static let composeFile = TestStack.paths.home.appendingPathComponent("docker-compose.yml")

    @Test func dockerComposeAcceptsTheFile() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/docker-compose")
        process.arguments = ["-f", Self.composeFile.path, "config", "-q"]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "docker-compose config: \(message)")
    }

    /// Host port -> (service, container port), from `ports:` entries of the form "127.0.0.1:HOST:CONTAINER".
    static func publishedPorts() throws -> [Int: (service: String, container: Int)] {
        let text = try String(contentsOf: composeFile, encoding: .utf8)
        let root = try #require(try Yams.load(yaml: text) as? [String: Any])
        let services = try #require(root["services"] as? [String: Any])
        var published: [Int: (String, Int)] = [:]
        for (name, body) in services {
            let service = try #require(body as? [String: Any])
            for entry in service["ports"] as? [String] ?? [] {
                let parts = entry.split(separator: ":")
                #expect(parts.count == 3 && parts[0] == "127.0.0.1", "\(name) publishes \(entry) beyond loopback")
                let host = try #require(Int(parts[parts.count - 2]))
                let container = try #require(Int(parts[parts.count - 1]))
                #expect(published[host] == nil, "host port \(host) published twice")
                published[host] = (name, container)
            }
        }
        return published
    }

    @Test func everyEndpointOfTheComposeStackIsPublishedByTheRightService() throws {
        let stack = try StackDefinition.load(
            contentsOf: TestStack.paths.home.appendingPathComponent("Scenarios/stacks/compose.yaml"))
        let published = try Self.publishedPorts()
        var expected: [(HostPort, String, Int)] = [(stack.postgres.primary, "pg-primary", 5432)]
        expected += stack.postgres.replicas.map { ($0, "pg-replica", 5432) }
        expected.append((stack.redis.primary, "redis-primary", 6379))
        expected += stack.redis.replicas.map { ($0, "redis-replica", 6379) }
        expected += stack.redis.sentinels.enumerated().map { ($1, "redis-sentinel-\($0 + 1)", 26379) }
        expected += stack.kafka.bootstrap.enumerated().map { ($1, "kafka-\($0 + 1)", 9092) }
        expected.append((stack.graph.endpoint, "neo4j", 7474))
        expected.append((stack.timeseries.endpoint, "clickhouse", 8123))
        for (endpoint, service, containerPort) in expected {
            #expect(endpoint.host == "127.0.0.1")
            let found = published[endpoint.port]
            #expect(found?.service == service, "\(endpoint) should be published by \(service), found \(String(describing: found))")
            #expect(found?.container == containerPort, "\(endpoint) should map to \(service):\(containerPort)")
        }
        #expect(stack.kafka.bootstrap.count == 3)
        #expect(stack.redis.sentinels.count == 3)
    }

    @Test func composeRunsEveryStoreTheIssueNames() throws {
        let text = try String(contentsOf: Self.composeFile, encoding: .utf8)
        let root = try #require(try Yams.load(yaml: text) as? [String: Any])
        let services = try #require(root["services"] as? [String: Any])
        for name in ["pg-primary", "pg-replica", "timescaledb", "redis-primary", "redis-replica", "redis-sentinel-1",
            "redis-sentinel-2", "redis-sentinel-3", "kafka-1", "kafka-2", "kafka-3", "neo4j", "clickhouse", "falkordb"]
        {
            let service = try #require(services[name] as? [String: Any], "missing service \(name)")
            #expect(service["healthcheck"] != nil, "\(name) has no healthcheck")
            #expect(service["image"] != nil, "\(name) has no image")
        }
    }
}
