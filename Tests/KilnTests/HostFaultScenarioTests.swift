import Foundation
import KilnScenario
import Testing

/// `faults:` entries that act between hosts (partition shapes, loss, bandwidth): strict parsing with file:line:column
/// and field, and the loopback stack's refusal before anything starts.
@Suite("Host fault scenario syntax")
struct HostFaultScenarioTests {
    func entries(_ body: String) throws -> [FaultScheduleSpec.Entry] {
        try #require(try FaultScheduleSpecTests.load("faults:\n" + body).faults).entries
    }

    @Test func everyShapeLossAndBandwidthParse() throws {
        let parsed = try entries(
            """
              - {kind: partition, shape: sides, sides: [[redis-primary, sentinel-1, clients-a], [redis-replica, sentinel-2, sentinel-3, clients-b]], at: 5s}
              - {kind: partition, shape: halves, hosts: [redis-primary, redis-replica, sentinel-1, sentinel-2, sentinel-3], at: 5s}
              - {kind: partition, shape: majorities-ring, at: 5s}
              - {kind: partition, shape: bridge, target: sentinel-2, hosts: [sentinel-1, sentinel-2, sentinel-3], at: 5s}
              - {kind: partition, shape: bridge, at: 5s}
              - {kind: partition, shape: isolate, at: 5s}
              - {kind: partition, shape: one-way, from: [clients-a], to: [redis-primary, kafka], at: 5s}
              - {kind: partition, target: redis-primary, at: 5s}
              - {kind: loss, link: [clients-a, redis-primary], probability: 10%, at: 5s}
              - {kind: loss, link: [kafka, kiln], probability: 0.25, at: 5s}
              - {kind: bandwidth, target: kafka, rate: 1MB/s, at: 5s}
              - {kind: bandwidth, target: clickhouse, rate: 8Mbit/s, at: 5s}
            """)
        #expect(
            parsed[0].hostFault
                == .partition(
                    .sides([
                        ["redis-primary", "sentinel-1", "clients-a"],
                        ["redis-replica", "sentinel-2", "sentinel-3", "clients-b"],
                    ]),
                    among: []))
        #expect(
            parsed[1].hostFault
                == .partition(
                    .halves, among: ["redis-primary", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"]))
        #expect(parsed[2].hostFault == .partition(.majoritiesRing, among: []))
        #expect(
            parsed[3].hostFault == .partition(.bridge("sentinel-2"), among: ["sentinel-1", "sentinel-2", "sentinel-3"]))
        #expect(parsed[4].hostFault == .partition(.bridge(nil), among: []))
        #expect(parsed[5].hostFault == .partition(.isolate(nil), among: []))
        #expect(parsed[5].shape == nil, "a drawn isolate has no loopback form")
        #expect(
            parsed[6].hostFault == .partition(.oneWay(from: ["clients-a"], to: ["redis-primary", "kafka"]), among: []))
        // The loopback stack's isolate stays what it was, and also names the host for the hosts stack.
        #expect(parsed[7].shape == "isolate")
        #expect(parsed[7].hostFault == .partition(.isolate("redis-primary"), among: []))
        #expect(parsed[8].hostFault == .loss(between: "clients-a", and: "redis-primary", probability: 0.1))
        #expect(parsed[8].target == "clients-a<->redis-primary")
        #expect(parsed[9].hostFault == .loss(between: "kafka", and: "kiln", probability: 0.25))
        #expect(parsed[10].hostFault == .bandwidth(host: "kafka", bytesPerSecond: 1_000_000))
        #expect(parsed[11].hostFault == .bandwidth(host: "clickhouse", bytesPerSecond: 1_000_000))
    }

    @Test func adversarialValuesNameTheFileLineColumnAndField() throws {
        let cases: [(String, String, String)] = [
            ("{kind: partition, shape: sides, sides: [[a, b]], at: 1s}", "sides", "at least two sides"),
            ("{kind: partition, shape: sides, sides: [[a, b], [b, c]], at: 1s}", "sides", "on two sides"),
            ("{kind: partition, shape: sides, sides: [[a], []], at: 1s}", "sides", "empty"),
            ("{kind: partition, shape: sides, sides: [a, b], at: 1s}", "sides[0]", "list of names"),
            ("{kind: partition, shape: sides, sides: [[a, {x: 1}], [b]], at: 1s}", "sides[0][1]", "expected a name"),
            ("{kind: partition, shape: sides, at: 1s}", "sides", "missing"),
            ("{kind: partition, shape: sides, sides: [[Redis_Primary], [b]], at: 1s}", "sides", "not a host name"),
            ("{kind: partition, shape: halves, hosts: [a], at: 1s}", "hosts", "at least 2"),
            ("{kind: partition, shape: majorities-ring, hosts: [a, b], at: 1s}", "hosts", "at least 3"),
            ("{kind: partition, shape: halves, hosts: [a, a, b], at: 1s}", "hosts", "twice"),
            ("{kind: partition, shape: bridge, target: z, hosts: [a, b, c], at: 1s}", "hosts", "not in `hosts`"),
            ("{kind: partition, shape: one-way, from: [a], to: [a], at: 1s}", "to", "both ends"),
            ("{kind: partition, shape: one-way, from: [a], at: 1s}", "to", "missing"),
            ("{kind: partition, shape: zigzag, at: 1s}", "shape", "unknown shape 'zigzag'"),
            (
                "{kind: partition, shape: halves, hosts: [\(String(repeating: "x", count: 500))], at: 1s}", "hosts",
                "not a host name"
            ),
            ("{kind: loss, link: [a], probability: 10%, at: 1s}", "link", "two hosts"),
            ("{kind: loss, link: [a, a], probability: 10%, at: 1s}", "link", "same host"),
            ("{kind: loss, link: [a, b], probability: 0, at: 1s}", "probability", "above 0"),
            ("{kind: loss, link: [a, b], probability: -5%, at: 1s}", "probability", "above 0"),
            ("{kind: loss, link: [a, b], probability: 150%, at: 1s}", "probability", "above 0"),
            ("{kind: loss, link: [a, b], probability: 1e999, at: 1s}", "probability", "above 0"),
            ("{kind: loss, link: [a, b], probability: lots, at: 1s}", "probability", "above 0"),
            ("{kind: loss, link: [a, b], at: 1s}", "probability", "missing"),
            ("{kind: loss, link: [a, b], probability: 10%, rate: 1MB/s, at: 1s}", "rate", "unknown field"),
            ("{kind: bandwidth, target: a, rate: 0MB/s, at: 1s}", "rate", "between 1kB/s"),
            ("{kind: bandwidth, target: a, rate: -1MB/s, at: 1s}", "rate", "between 1kB/s"),
            ("{kind: bandwidth, target: a, rate: 99999999GB/s, at: 1s}", "rate", "between 1kB/s"),
            ("{kind: bandwidth, target: a, rate: fast, at: 1s}", "rate", "between 1kB/s"),
            ("{kind: bandwidth, target: a, rate: 1MB, at: 1s}", "rate", "between 1kB/s"),
            ("{kind: bandwidth, target: 10.0.0.1, rate: 1MB/s, at: 1s}", "target", "not a host name"),
            ("{kind: latency, link: [a], latency: 100ms, at: 1s}", "link", "a client host and a server host"),
            ("{kind: latency, link: [a, a], latency: 100ms, at: 1s}", "link", "same host"),
            ("{kind: latency, link: [kiln, a], latency: 100ms, at: 1s}", "link", "cannot be kiln"),
            ("{kind: latency, link: [a, B_1], latency: 100ms, at: 1s}", "link", "not a host name"),
            ("{kind: latency, link: [a, b], at: 1s}", "latency", "missing"),
            ("{kind: latency, link: [a, b], latency: 1ms, at: 1s}", "latency", "between 5ms"),
            ("{kind: latency, link: [a, b], latency: 2m, at: 1s}", "latency", "between 5ms"),
            ("{kind: latency, link: [a, b], latency: slow, at: 1s}", "latency", "expected a duration"),
            ("{kind: latency, link: [a, b], latency: 100ms, jitter: 200ms, at: 1s}", "jitter", "at most the latency"),
            ("{kind: latency, link: [a, b], latency: 100ms, probability: 10%, at: 1s}", "probability", "unknown field"),
        ]
        for (entry, field, message) in cases {
            let error = try #require(FaultScheduleSpecTests.error("faults:\n  - " + entry), "accepted: \(entry)")
            #expect(error.field.hasSuffix(field), "\(entry): \(error)")
            #expect(error.message.contains(message), "\(entry): \(error)")
            #expect(error.line == 5 && error.column > 0, "\(entry): \(error)")
            #expect(error.description.contains("faults.yaml:5:"), "\(error)")
        }
    }

    @Test func theLoopbackStackRefusesHostFaultsBeforeAnythingStarts() throws {
        for (index, entry) in [
            "{kind: partition, shape: halves, at: 1s}",
            "{kind: loss, link: [clients-a, redis-primary], probability: 10%, at: 1s}",
            "{kind: bandwidth, target: kafka, rate: 1MB/s, at: 1s}",
            "{kind: latency, link: [clients-a, redis-primary], latency: 100ms, at: 1s}",
        ].enumerated() {
            let file = try CommandLineTests.temporaryFile(
                "hosts-only-\(index).yaml",
                """
                name: hosts-only
                stack: \(TestStack.paths.embeddedStackFile.path)
                dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 10K}
                namespace: hosts_only
                faults:
                  - \(entry)
                phases:
                  - {name: load, executor: bulk, rows: 1K, stores: [kafka]}
                """)
            let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
            let result = try CommandLineTests.kiln(["run", file.path, "--runs-directory", runs.path])
            #expect(result.status == 64, "\(result.output)")
            #expect(result.output.contains("hosts-only-\(index).yaml:6"), "\(result.output)")
            #expect(result.output.contains("acts between hosts in their own network namespaces"), "\(result.output)")
            // `kiln validate` refuses it too, with the same message.
            let validated = try CommandLineTests.kiln(["validate", file.path])
            #expect(validated.status == 64, "\(validated.output)")
            let line = try #require(result.output.split(separator: "\n").first { $0.contains("acts between hosts") })
            let message = try #require(line.range(of: "hosts-only-\(index).yaml:6:")).lowerBound
            #expect(validated.output.contains(line[message...]), "run: \(line)\nvalidate: \(validated.output)")
        }
    }

    @Test func aLatencyOnALinkParses() throws {
        let parsed = try entries(
            """
              - {kind: latency, link: [clients-a, redis-primary], latency: 100ms, jitter: 10ms, at: 10s, duration: 20s}
              - {name: slow, kind: latency, link: [redis-replica, redis-primary], latency: 5ms, at: 1s}
            """)
        #expect(
            parsed[0].hostFault
                == .latency(
                    client: "clients-a", server: "redis-primary", latency: .milliseconds(100), jitter: .milliseconds(10)))
        #expect(parsed[0].jitter == .zero, "a latency's jitter is the toxic's, not the start's")
        #expect(parsed[0].duration == .seconds(20))
        #expect(parsed[0].target == "clients-a->redis-primary")
        #expect(parsed[1].hostFault == .latency(client: "redis-replica", server: "redis-primary", latency: .milliseconds(5), jitter: .zero))
        #expect(HostsRequirement.reason(parsed[0])?.contains("latency on a link") == true)
    }

    @Test func clientGroupsOfAPhaseAreStrictAndNeedAHostsStack() throws {
        let file = try CommandLineTests.temporaryFile(
            "groups-on-loopback.yaml",
            """
            name: groups
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 10K}
            namespace: groups_loopback
            phases:
              - {name: load, executor: bulk, rows: 1K, stores: [kafka], client_groups: [clients-a]}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let result = try CommandLineTests.kiln(["run", file.path, "--runs-directory", runs.path])
        #expect(result.status == 64, "\(result.output)")
        #expect(result.output.contains("client_groups need a hosts stack"), "\(result.output)")
        #expect(result.output.contains("groups-on-loopback.yaml:6:"), "\(result.output)")
        let validated = try CommandLineTests.kiln(["validate", file.path])
        #expect(validated.status == 64, "\(validated.output)")
        #expect(validated.output.contains("groups-on-loopback.yaml:6:"), "\(validated.output)")
        #expect(validated.output.contains("client_groups need a hosts stack"), "\(validated.output)")
        for (groups, message) in [
            ("[Clients_A]", "not a client group name"), ("[a, a]", "listed twice"), ("[]", "at least one"),
        ] {
            let broken = try CommandLineTests.temporaryFile(
                "groups-bad.yaml",
                """
                name: groups
                stack: \(TestStack.paths.embeddedStackFile.path)
                dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 10K}
                phases:
                  - {name: load, executor: bulk, rows: 1K, stores: [kafka], client_groups: \(groups)}
                """)
            let error = try #require(
                #expect(throws: SpecError.self) {
                    try LoadScenario.load(contentsOf: broken, knownOperations: ["kafka.bulk"])
                },
                "accepted client_groups: \(groups)")
            #expect(error.field.hasSuffix("client_groups"), "\(error)")
            #expect(error.message.contains(message), "\(error)")
            #expect(error.line == 5, "\(error)")
        }
    }
}
