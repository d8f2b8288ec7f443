import Foundation
import KilnFaults
import Testing
import Yams

@Suite("docker-compose and Chaos Mesh controllers")
struct RemoteControllerTests {
    let docker = DockerComposeController(project: "kiln")

    @Test func dockerCommandsForProcessFaults() throws {
        let kill = try docker.commands(for: .process(.kill, service: "redis-primary"))
        #expect(kill.start == [["docker", "kill", "--signal", "SIGKILL", "kiln-redis-primary-1"]])
        #expect(kill.stop == [["docker", "start", "kiln-redis-primary-1"]])
        let pause = try docker.commands(for: .process(.pause, service: "pg-primary"))
        #expect(pause.start == [["docker", "pause", "kiln-pg-primary-1"]])
        #expect(pause.stop == [["docker", "unpause", "kiln-pg-primary-1"]])
        let restart = try docker.commands(for: .process(.restart, service: "kafka-1"))
        #expect(restart.start == [["docker", "stop", "--time", "10", "kiln-kafka-1-1"]])
    }

    @Test func dockerIsolationDisconnectsAndReconnectsWithTheServiceAlias() throws {
        let isolate = try docker.commands(for: .partition(.isolate("pg-replica")))
        #expect(isolate.start == [["docker", "network", "disconnect", "kiln_default", "kiln-pg-replica-1"]])
        #expect(
            isolate.stop == [
                ["docker", "network", "connect", "--alias", "pg-replica", "kiln_default", "kiln-pg-replica-1"]
            ])
        #expect(throws: ControllerError.self) {
            try docker.commands(for: .partition(.oneWay(from: "pg-primary", to: "pg-replica")))
        }
    }

    @Test func podChaosManifestParsesAndSelectsTheService() throws {
        let chaos = ChaosMeshController(namespace: "fraud")
        let yaml = try chaos.manifest(
            for: .process(.kill, service: "redis-primary"), name: "kill-redis", durationSeconds: 30)
        let document = try #require(try Yams.load(yaml: yaml) as? [String: Any])
        #expect(document["kind"] as? String == "PodChaos")
        let spec = try #require(document["spec"] as? [String: Any])
        #expect(spec["action"] as? String == "pod-kill")
        let selector = try #require(spec["selector"] as? [String: Any])
        #expect(selector["namespaces"] as? [String] == ["fraud"])
        let expressions = try #require(selector["expressionSelectors"] as? [[String: Any]])
        #expect(expressions.first?["values"] as? [String] == ["redis-primary"])
        #expect(expressions.first?["operator"] as? String == "In")
        let pause = try chaos.manifest(for: .process(.pause, service: "pg"), name: "pause-pg", durationSeconds: 12)
        #expect(pause.contains("action: pod-failure"))
        #expect(pause.contains("duration: \"12s\""))
    }

    @Test func networkChaosManifestsForEachShape() throws {
        let chaos = ChaosMeshController(namespace: "fraud")
        let split = try chaos.manifest(
            for: .partition(.split(["pg-primary"], ["pg-replica", "pipeline"])), name: "split-pg", durationSeconds: 60)
        let document = try #require(try Yams.load(yaml: split) as? [String: Any])
        #expect(document["kind"] as? String == "NetworkChaos")
        let spec = try #require(document["spec"] as? [String: Any])
        #expect(spec["direction"] as? String == "both")
        #expect(spec["duration"] as? String == "60s")
        let target = try #require(spec["target"] as? [String: Any])
        let targetSelector = try #require(target["selector"] as? [String: Any])
        let expressions = try #require(targetSelector["expressionSelectors"] as? [[String: Any]])
        #expect(expressions.first?["values"] as? [String] == ["pg-replica", "pipeline"])

        let oneWay = try chaos.manifest(
            for: .partition(.oneWay(from: "a", to: "b")), name: "drop-a-b", durationSeconds: 5)
        #expect(oneWay.contains("direction: to"))
        let isolate = try chaos.manifest(
            for: .partition(.isolate("kafka-1")), name: "isolate-kafka", durationSeconds: 5)
        #expect(isolate.contains("operator: NotIn"))
        #expect(throws: ControllerError.self) {
            try chaos.manifest(for: .partition(.isolate("x")), name: "Bad_Name", durationSeconds: 5)
        }
    }
}
