import Foundation
import KilnCore
import KilnData
import KilnFaults
import KilnLoad
import KilnScenario
import KilnStack
import Logging
import Testing

/// Private hosts of one test (addresses .130–.149, this file's block of the tests' range; owned by this process, so
/// a hosts stack and other tests on the bridge are never touched), each with a draining TCP listener. `remove()` (in
/// a defer) deletes the namespaces, and with them every rule and qdisc a fault left inside.
final class PrivateHosts {
    static let network = HostNetwork(logger: Logger(label: "test.partition-hosts"))
    let hosts: [FaultHost]
    let listeners: [HostListener]
    private let network: [NetworkHost]

    init(_ names: [String]) throws {
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        var created: [NetworkHost] = []
        do {
            for name in names {
                var attempt = 0
                while true {
                    let held = Set(try Self.network.hosts().map(\.address))
                    guard
                        let octet = (130...149).shuffled().first(where: {
                            (try? HostAddress(octet: $0)).map { !held.contains($0) } ?? false
                        })
                    else { throw PartitionError("no free test address in .130-.149") }
                    let host = NetworkHost(
                        name: "pt\(tag)-\(name)", address: try HostAddress(octet: octet), owner: .currentProcess)
                    do {
                        created.append(try Self.network.addHost(host))
                        break
                    } catch {
                        // Another test process took the address between the listing and the add.
                        attempt += 1
                        if attempt >= 5 { throw error }
                    }
                }
            }
            network = created
            // The shapes use the test's short names; the namespaces carry the unique ones.
            hosts = zip(names, created).map { name, host in
                var fault = FaultHost(host)
                fault.name = name
                return fault
            }
            listeners = try hosts.map { try HostListener(in: $0) }
        } catch {
            for host in created { _ = try? Self.network.removeHost(host) }
            throw error
        }
    }

    subscript(_ name: String) -> FaultHost { hosts.first { $0.name == name }! }
    var byName: [String: FaultHost] { Dictionary(uniqueKeysWithValues: hosts.map { ($0.name, $0) }) }
    var ports: [String: Int] {
        Dictionary(uniqueKeysWithValues: zip(hosts.map(\.name), listeners.map(\.endpoint.port)))
    }

    /// Rules tagged with `runID` still inside any of the hosts.
    func taggedRules(_ runID: String) -> Int {
        network.reduce(0) { total, host in
            let listing = (try? HostNetwork.run(in: host, "/usr/sbin/iptables", ["-w", "5", "-S"])) ?? ""
            return total + listing.split(separator: "\n").filter { $0.contains("kiln-fault:\(runID)") }.count
        }
    }

    func qdiscs() -> String {
        network.map {
            (try? LocalProcess.run("/usr/sbin/tc", ["-n", $0.namespace, "qdisc", "show", "dev", "eth0"])) ?? ""
        }
        .joined()
    }

    func remove() {
        for listener in listeners { listener.close() }
        for host in network { _ = try? Self.network.removeHost(host) }
    }
}

/// Partitions, loss and bandwidth between real network namespaces: every shape's probe matrix while active and after
/// the heal, and a fault that does not act where it claims (a rule on the wrong host, no rule) verifying `no`.
@Suite("Faults between hosts (network namespaces)", .serialized)
struct HostPartitionFaultTests {
    func runID() -> String { TestStack.uniqueName("test-hosts") }

    @Test func everyShapeMatchesItsProbeMatrixThenHealsToAFullMesh() throws {
        let names = ["a", "b", "c", "d", "e"]
        let hosts = try PrivateHosts(names)
        defer { hosts.remove() }
        let shapes: [HostPartitionShape] = [
            .isolate(nil), .isolate("c"), .halves, .majoritiesRing, .bridge(nil), .bridge("e"),
            .oneWay(from: ["a"], to: ["b", "c"]), .sides([["a", "b"], ["c"]]), .sides([["a"], ["b"], ["c", "d"]]),
        ]
        for (index, shape) in shapes.enumerated() {
            let id = runID()
            defer { #expect(hosts.taggedRules(id) == 0) }
            let grudge = try PartitionGrudge(shape: shape, hosts: names, seed: UInt64(index))
            let fault = try HostPartitionFault(
                name: "p\(index)", grudge: grudge, hosts: hosts.byName, ports: hosts.ports, runID: id,
                probeTimeout: .milliseconds(300))
            let driver = FaultDriver(fault)
            let started = driver.start()
            #expect(started.verified != .no, "\(shape.description): \(started.note)")
            #expect(started.note.contains("the matrix matches"), "\(shape.description): \(started.note)")
            let record = driver.stop()
            #expect(record.verified == .yes, "\(shape.description): \(record.note)")
        }
    }

    @Test func aPartitionBetweenTwoHostsLeavesTheOthersTrafficUntouched() throws {
        let hosts = try PrivateHosts(["a", "b", "c", "d"])
        defer { hosts.remove() }
        let id = runID()
        let grudge = try PartitionGrudge(shape: .sides([["a"], ["b"]]), hosts: ["a", "b", "c", "d"], seed: 0)
        let fault = try HostPartitionFault(
            name: "ab", grudge: grudge, hosts: hosts.byName, ports: hosts.ports, runID: id,
            probeTimeout: .milliseconds(300))
        let driver = FaultDriver(fault)
        driver.start()
        defer { driver.stop() }
        let matrix = try #require(fault.lastMatrix)
        #expect(matrix.results[HostLink("a", "b")] == .timedOut)
        #expect(matrix.results[HostLink("b", "a")] == .timedOut)
        for pair in grudge.pairs where Set([pair.from, pair.to]) != ["a", "b"] {
            #expect(matrix.results[pair] == .answered, "\(pair)")
        }
    }

    @Test func aRuleOnTheWrongHostOrNoRuleVerifiesNo() throws {
        let names = ["a", "b", "c"]
        let hosts = try PrivateHosts(names)
        defer { hosts.remove() }
        let id = runID()
        defer { #expect(hosts.taggedRules(id) == 0) }
        let intended = try PartitionGrudge(shape: .isolate("a"), hosts: names, seed: 0)
        let misplaced = try HostFaultRules.partition(
            PartitionGrudge(shape: .isolate("b"), hosts: names, seed: 0), hosts: hosts.byName, runID: id)
        for rules in [misplaced, []] {
            let fault = try HostPartitionFault(
                name: "wrong", grudge: intended, hosts: hosts.byName, ports: hosts.ports, runID: id,
                probeTimeout: .milliseconds(300), rules: rules)
            let driver = FaultDriver(fault)
            let started = driver.start()
            #expect(started.verified == .no, "\(started.note)")
            #expect(started.note.contains("c -> a connected (expected to time out)"), "\(started.note)")
            driver.stop()
        }
    }

    @Test func aOneWayCutInTheReverseDirectionVerifiesNo() throws {
        let names = ["a", "b", "c"]
        let hosts = try PrivateHosts(names)
        defer { hosts.remove() }
        let id = runID()
        defer { #expect(hosts.taggedRules(id) == 0) }
        let intended = try PartitionGrudge(shape: .oneWay(from: ["a"], to: ["b"]), hosts: names, seed: 0)
        let reversed = try HostFaultRules.partition(
            PartitionGrudge(shape: .oneWay(from: ["b"], to: ["a"]), hosts: names, seed: 0), hosts: hosts.byName,
            runID: id)
        let fault = try HostPartitionFault(
            name: "reversed", grudge: intended, hosts: hosts.byName, ports: hosts.ports, runID: id,
            probeTimeout: .milliseconds(300), rules: reversed)
        let driver = FaultDriver(fault)
        let started = driver.start()
        // The TCP matrix cannot tell (a handshake needs both directions); the datagrams can.
        #expect(started.note.contains("the matrix matches"), "\(started.note)")
        #expect(started.verified == .no, "\(started.note)")
        #expect(started.note.contains("wrong direction: a -> b passed 20 of 20"), "\(started.note)")
        driver.stop()
        let right = FaultDriver(
            try HostPartitionFault(
                name: "right", grudge: intended, hosts: hosts.byName, ports: hosts.ports, runID: id,
                probeTimeout: .milliseconds(300)))
        let active = right.start()
        #expect(active.verified != .no, "\(active.note)")
        #expect(active.note.contains("a -> b: 0/20 datagrams, back 20/20"), "\(active.note)")
        #expect(right.stop().verified == .yes)
    }

    @Test func tenPercentLossMeasuresSevenToThirteenPercentAndHeals() throws {
        let hosts = try PrivateHosts(["a", "b"])
        defer { hosts.remove() }
        let id = runID()
        defer { #expect(hosts.taggedRules(id) == 0) }
        let fault = try LinkLossFault(name: "loss", between: hosts["a"], and: hosts["b"], probability: 0.1, runID: id)
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        for (link, sent, received) in fault.lastLoss {
            let loss = Double(sent - received) / Double(sent)
            #expect(sent >= 1_000)
            #expect((0.07...0.13).contains(loss), "\(link): \(loss)")
        }
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        for (_, sent, received) in fault.lastLoss { #expect(sent - received <= sent / 100) }
    }

    @Test func lossOnAnotherLinkVerifiesNo() throws {
        let hosts = try PrivateHosts(["a", "b", "c"])
        defer { hosts.remove() }
        let id = runID()
        defer { #expect(hosts.taggedRules(id) == 0) }
        let fault = try LinkLossFault(
            name: "loss", between: hosts["a"], and: hosts["c"], probability: 0.1, runID: id,
            measured: (hosts["a"], hosts["b"]))
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified == .no, "\(started.note)")
        driver.stop()
    }

    @Test func bandwidthHoldsOneMegabytePerSecondWithinTenPercentAndHeals() throws {
        let hosts = try PrivateHosts(["a", "b"])
        defer { hosts.remove() }
        let fault = try BandwidthFault(name: "bw", host: hosts["a"], bytesPerSecond: 1_000_000, peer: hosts["b"])
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        let rate = try #require(fault.lastRate)
        #expect(abs(rate - 1_000_000) <= 100_000, "\(rate) B/s")
        #expect(hosts.qdiscs().contains("tbf"))
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(!hosts.qdiscs().contains("tbf"))
    }

    @Test func aBucketOnAnotherHostVerifiesNo() throws {
        let hosts = try PrivateHosts(["a", "b", "c"])
        defer { hosts.remove() }
        let fault = try BandwidthFault(
            name: "bw", host: hosts["c"], bytesPerSecond: 1_000_000, peer: hosts["b"], measured: hosts["a"],
            window: .seconds(1))
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified == .no, "\(started.note)")
        driver.stop()
        #expect(!hosts.qdiscs().contains("tbf"))
    }

    @Test func latencyThroughTheLinksProxyIsMeasuredFromTheClientHost() throws {
        let hosts = try PrivateHosts(["a", "b", "c"])
        defer { hosts.remove() }
        let echoB = try HostListener(in: hosts["b"], echo: true)
        let echoC = try HostListener(in: hosts["c"], echo: true)
        defer {
            echoB.close()
            echoC.close()
        }
        let toB = FaultProxy(listen: HostPort(host: HostFaultRules.rootAddress, port: 0), upstream: echoB.endpoint)
        let toC = FaultProxy(listen: HostPort(host: HostFaultRules.rootAddress, port: 0), upstream: echoC.endpoint)
        try toB.start()
        try toC.start()
        defer {
            toB.stop()
            toC.stop()
        }
        let fault = try LinkLatencyFault(
            name: "lat", client: hosts["a"], proxy: toB, latency: .milliseconds(50), jitter: .milliseconds(10),
            request: [0x2A])
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        let trips = fault.lastRoundTrips.sorted()
        #expect(trips.count == 5 && trips[2] >= 36, "\(trips): \(started.note)")
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(toB.toxics.isEmpty)
        // The toxic on a -> b's proxy, measured on a -> c's: the link measured ignores it.
        let elsewhere = try LinkLatencyFault(
            name: "lat2", client: hosts["a"], proxy: toB, latency: .milliseconds(50), request: [0x2A], measured: toC)
        let wrong = FaultDriver(elsewhere)
        #expect(wrong.start().verified == .no)
        wrong.stop()
    }
}

/// `kind: latency` on a link (FaultRunner's form): a proxy on Kiln's bridge address, a DNAT rule in the client host's
/// namespace. Only that host's traffic to the server is slowed; another client host of the same server is not.
@Suite("Latency on one link between hosts", .serialized)
struct LinkLatencyRedirectTests {
    /// `count` round trips (ms) from inside `host` to `destination`, each on a new connection.
    static func roundTrips(from host: FaultHost, to destination: HostPort, count: Int) throws -> [Double] {
        try HostSockets.onHostThread(host) { () throws -> [Double] in
            try (0..<count).map { _ in
                let start = ContinuousClock.now
                let result = TCPProbe.request(to: destination, payload: [0x2A], timeout: .seconds(3))
                guard result.answered else { throw PartitionError("request to \(destination): \(result)") }
                let elapsed = start.duration(to: .now).components
                return Double(elapsed.seconds) * 1000 + Double(elapsed.attoseconds) / 1e15
            }
        }
    }

    static func p50(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    /// DNAT rules tagged `runID` in `host`'s nat table.
    static func natRules(_ host: FaultHost, _ runID: String) -> Int {
        guard let network = host.network else { return -1 }
        let listing = (try? HostNetwork.run(in: network, "/usr/sbin/iptables", ["-w", "5", "-t", "nat", "-S"])) ?? ""
        return listing.split(separator: "\n").filter { $0.contains("kiln-fault:\(runID)") }.count
    }

    @Test func onlyTheSlowedLinksClientSeesTheLatencyAndTheHealRestoresIt() throws {
        let hosts = try PrivateHosts(["slow", "fast", "server"])
        defer { hosts.remove() }
        let server = try HostListener(in: hosts["server"], echo: true)
        defer { server.close() }
        let id = TestStack.uniqueName("test-latency")
        let proxy = FaultProxy(listen: HostPort(host: HostFaultRules.rootAddress, port: 0), upstream: server.endpoint)
        try proxy.start()
        let fault = try LinkLatencyFault(
            name: "lat", client: hosts["slow"], proxy: proxy, latency: .milliseconds(100), jitter: .milliseconds(10),
            request: [0x2A], redirect: server.endpoint, runID: id, ownsProxy: true)
        defer { fault.teardown() }
        let before = try Self.roundTrips(from: hosts["slow"], to: server.endpoint, count: 20)
        // A connection the slow host opened before the fault: `start` closes it (ss -K), so its client reconnects
        // through the proxy.
        let established = try HostSockets.onHostThread(hosts["slow"]) { () throws -> Int32 in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(server.endpoint.port).bigEndian
            inet_pton(AF_INET, server.endpoint.host, &address.sin_addr)
            guard
                withUnsafePointer(to: &address, {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }) == 0
            else { throw PartitionError("connect: \(String(cString: strerror(errno)))") }
            return fd
        }
        defer { close(established) }
        let driver = FaultDriver(fault)
        let started = driver.start()
        // `yes` needs the heal too; until then a proved start reads `unknown`, a disproved one `no`.
        #expect(started.verified != .no && started.note.contains("median round trip"), "\(started.note)")
        #expect(fault.closedConnections >= 1, "\(started.note)")
        #expect(Self.natRules(hosts["slow"], id) == 1)
        var byte: UInt8 = 0x2A
        #expect(send(established, &byte, 1, Int32(MSG_NOSIGNAL)) < 0 || recv(established, &byte, 1, 0) <= 0)
        let slow = try Self.roundTrips(from: hosts["slow"], to: server.endpoint, count: 20)
        let fast = try Self.roundTrips(from: hosts["fast"], to: server.endpoint, count: 20)
        print(
            String(
                format: "latency 100ms±10 on slow->server: p50 before %.2f ms; active: slow p50 %.1f ms, fast p50 %.2f ms",
                Self.p50(before), Self.p50(slow), Self.p50(fast)))
        #expect(Self.p50(slow) >= 90, "latency - jitter: \(slow.sorted())")
        #expect(Self.p50(fast) < 50, "\(fast.sorted())")
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(Self.natRules(hosts["slow"], id) == 0)
        let after = try Self.roundTrips(from: hosts["slow"], to: server.endpoint, count: 20)
        print(String(format: "after the heal: slow p50 %.2f ms (%@)", Self.p50(after), record.note))
        #expect(Self.p50(after) < 50, "\(after.sorted())")
    }

    @Test func aLinkThatIgnoresTheFaultVerifiesNo() throws {
        let hosts = try PrivateHosts(["slow", "fast", "server"])
        defer { hosts.remove() }
        let server = try HostListener(in: hosts["server"], echo: true)
        defer { server.close() }
        let id = TestStack.uniqueName("test-latency")
        let proxy = FaultProxy(listen: HostPort(host: HostFaultRules.rootAddress, port: 0), upstream: server.endpoint)
        try proxy.start()
        // The redirect is on slow -> server; the evidence is measured from `fast`, whose link the fault does not touch.
        let fault = try LinkLatencyFault(
            name: "lat", client: hosts["slow"], proxy: proxy, latency: .milliseconds(60), request: [0x2A],
            redirect: server.endpoint, measuredFrom: hosts["fast"], runID: id, ownsProxy: true)
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified == .no, "\(started.note)")
        driver.stop()
        #expect(Self.natRules(hosts["slow"], id) == 0)
    }

    @Test func aRedirectNeedsAClientInANamespaceAndAProxyOnKilnsHost() throws {
        let proxy = FaultProxy(listen: HostPort(host: "127.0.0.1", port: 0), upstream: HostPort(host: "10.213.7.140", port: 1))
        defer { proxy.stop() }
        let server = HostPort(host: "10.213.7.140", port: 6379)
        #expect(throws: PartitionError.self) {
            try LinkLatencyFault(
                name: "x", client: .kiln, proxy: proxy, latency: .milliseconds(50), request: [1], redirect: server,
                runID: "t")
        }
        let client = FaultHost(name: "c", address: "10.213.7.141", namespace: "kiln.x.c")
        #expect(throws: PartitionError.self) {
            try LinkLatencyFault(
                name: "x", client: client, proxy: proxy, latency: .milliseconds(50), request: [1], redirect: server,
                runID: "t")
        }
    }
}

/// Faults between hosts on a private hosts stack (HostsStackTests' copy of embedded-hosts.yaml on .120–.129, one at a
/// time) with private client-group hosts.
@Suite("Faults between hosts on the hosts stack", .serialized)
struct HostsStackPartitionTests {
    /// The shipped embedded-hosts.yaml with its ten servers on .120–.129 (this file's block), no client groups and no
    /// sink hosts (their addresses belong to the shipped stack), its own name and run directory.
    static func privateStack() throws -> (file: URL, definition: StackDefinition, paths: KilnPaths) {
        var text = try String(contentsOf: HostsStackTests.shipped, encoding: .utf8)
        for (index, octet) in [11, 12, 21, 22, 23, 24, 25, 31, 41, 51].enumerated() {
            text = text.replacingOccurrences(of: "10.213.7.\(octet):", with: "10.213.7.\(120 + index):")
        }
        text =
            text.replacingOccurrences(of: "name: embedded-hosts", with: "name: t\(UInt32.random(in: 0...UInt32.max))")
            .split(separator: "\n").filter { !$0.hasPrefix("client_groups:") && !$0.hasPrefix("sink_hosts:") }
            .joined(separator: "\n") + "\nsink_hosts: false\n"
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-hosts"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("stack.yaml")
        try text.write(to: file, atomically: true, encoding: .utf8)
        return (
            file, try StackDefinition.load(contentsOf: file),
            KilnPaths(home: TestStack.paths.home, stack: directory.appendingPathComponent("run"))
        )
    }

    /// Brings up the private hosts stack of `privateStack()` (its namespaces owned by `owner` when given), runs
    /// `body` with it and its file, and takes it down and removes its directory (and its hosts) whatever `body`
    /// does.
    static func withPrivateStackUp(
        label: String, owner: HostOwner? = nil, _ body: (_ stack: EmbeddedStack, _ file: URL, _ definition: StackDefinition) throws -> Void
    ) throws {
        let (file, definition, paths) = try privateStack()
        let stack = try EmbeddedStack(definition: definition, paths: paths, logger: Logger(label: label), hostOwner: owner)
        defer {
            stack.down()
            // By the stack's own hosts, never by owner: a process owner also covers a parallel test's hosts.
            if owner != nil { _ = try? PrivateHosts.network.removeHosts(stack.hostList) }
            try? FileManager.default.removeItem(at: paths.stack.deletingLastPathComponent())
        }
        let statuses = try stack.up()
        #expect(statuses.allSatisfy { $0.isUp }, "\(statuses.filter { !$0.isUp })")
        try body(stack, file, definition)
    }

    /// A load run of one phase (`phase`: the YAML flow mapping's entries, without braces) whose workers run inside
    /// client group `group`'s host of `clients`, against the private hosts stack of `stack`.
    static func runClientGroup(
        _ group: String, of clients: PrivateHosts, stack: URL, timeout: String, label: String, phase: String
    ) throws -> RunReport {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("scn"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let scenarioFile = directory.appendingPathComponent("scenario.yaml")
        try """
        name: groups
        stack: \(stack.path)
        dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 10K}
        timeout: \(timeout)
        phases:
          - {\(phase), client_groups: [\(group)]}
        """.write(to: scenarioFile, atomically: true, encoding: .utf8)
        let scenario = try LoadScenario.load(contentsOf: scenarioFile, knownOperations: LoadRun.knownOperations())
        let dataset = try Dataset(spec: Fixtures.spec, seed: 3, rows: 10_000)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let run = try LoadRun(
            scenario: scenario, dataset: dataset,
            directory: try RunDirectory(root: root, id: "run", scenarioFile: scenarioFile),
            stop: StopFlag(), environment: [:], revision: nil, logger: Logger(label: label), progress: nil)
        let groupHosts = clients.byName
        run.enterClientGroup = { name in
            guard let network = groupHosts[name]?.network else { throw PartitionError("no group \(name)") }
            try HostNetwork.enterForCurrentThread(network)
        }
        return try run.run()
    }

    /// Every partition shape: the probe matrix between every pair of the twelve hosts (to the servers' own ports and
    /// the groups' listeners) equals the shape while active and is complete after the heal.
    @Test func everyShapeOnTheHostsStackMatchesItsMatrixAndHeals() throws {
        try Self.withPrivateStackUp(label: "test.hosts-partitions", owner: HostOwner.currentProcess) { stack, _, _ in
            // After the stack's hosts, so that their free addresses are not the stack's fixed ones.
            let clients = try PrivateHosts(["clients-a", "clients-b"])
            defer { clients.remove() }
            var hosts = clients.byName
            var ports = clients.ports
            for server in stack.servers {
                guard let network = stack.hosts[server.name] else { continue }
                hosts[server.name] = FaultHost(network)
                ports[server.name] = server.endpoint.port
            }
            let names = stack.servers.map(\.name) + ["clients-a", "clients-b"]
            #expect(names.count == 12)
            let shapes: [HostPartitionShape] = [
                .isolate("redis-primary"), .isolate(nil), .halves, .majoritiesRing, .bridge(nil), .bridge("kafka"),
                .oneWay(from: ["clients-a"], to: ["postgres-primary", "redis-primary"]),
                .sides([
                    ["redis-primary", "sentinel-1", "clients-a"],
                    ["redis-replica", "sentinel-2", "sentinel-3", "clients-b"],
                ]),
                .sides([["postgres-primary", "clients-a"], ["postgres-replica", "clients-b"]]),
            ]
            for (index, shape) in shapes.enumerated() {
                let id = TestStack.uniqueName("test-stack-partition")
                let grudge = try PartitionGrudge(shape: shape, hosts: names, seed: UInt64(index))
                let fault = try HostPartitionFault(
                    name: "shape-\(index)", grudge: grudge, hosts: hosts, ports: ports, runID: id,
                    probeTimeout: .milliseconds(500))
                let driver = FaultDriver(fault)
                let started = ContinuousClock.now
                let active = driver.start()
                let activeTime = started.duration(to: .now)
                #expect(active.note.contains("132 pairs probed"), "\(active.note)")
                #expect(active.note.contains("the matrix matches"), "\(shape.description): \(active.note)")
                let record = driver.stop()
                #expect(record.verified == .yes, "\(shape.description): \(record.note)")
                print(
                    "hosts-stack partition \(grudge.description): start + evidence \(activeTime), blocked pairs \(grudge.blocked.count)"
                )
            }
            for server in stack.servers {
                guard let network = stack.hosts[server.name] else { continue }
                let rules = (try? HostNetwork.run(in: network, "/usr/sbin/iptables", ["-S"])) ?? ""
                #expect(!rules.contains("kiln-fault:"), "\(server.name): \(rules)")
            }
        }
    }

    /// Kiln's load workers of a client group run inside that group's host: with redis-primary cut off from clients-b
    /// only, clients-b's workers get no acknowledged write, clients-a's keep writing (the minority client that keeps
    /// writing to a primary the majority abandoned).
    @Test func aGroupsWorkersSeeThePartitionOfTheirHost() throws {
        try Self.withPrivateStackUp(label: "test.client-groups", owner: HostOwner.currentProcess) { stack, file, definition in
            let clients = try PrivateHosts(["clients-a", "clients-b"])
            defer { clients.remove() }
            var hosts = clients.byName
            hosts["redis-primary"] = FaultHost(try #require(stack.hosts["redis-primary"]))
            let grudge = try PartitionGrudge(
                shape: .sides([["redis-primary"], ["clients-b"]]), hosts: ["redis-primary", "clients-a", "clients-b"],
                seed: 0)
            let fault = try HostPartitionFault(
                name: "cut-b", grudge: grudge, hosts: hosts, ports: ["redis-primary": definition.redis.primary.port],
                runID: TestStack.uniqueName("test-groups"), probeTimeout: .milliseconds(300))
            let driver = FaultDriver(fault)
            #expect(driver.start().verified != .no)
            defer { driver.stop() }
            var okByGroup: [String: Int64] = [:]
            for group in ["clients-a", "clients-b"] {
                let report = try Self.runClientGroup(
                    group, of: clients, stack: file, timeout: "1s", label: "test.client-groups",
                    phase: "name: writes, executor: constant-arrival-rate, rate: 50, duration: 2s, workers: 2, drop_after: 5s, "
                        + "mix: {redis.feature-update: 1}")
                let operations = report.phases.flatMap(\.operations)
                okByGroup[group] = operations.reduce(0) { $0 + $1.ok }
                print(
                    "client group \(group): ok \(operations.reduce(0) { $0 + $1.ok }) fail \(operations.reduce(0) { $0 + $1.fail }) info \(operations.reduce(0) { $0 + $1.info })"
                )
            }
            #expect((okByGroup["clients-a"] ?? 0) >= 90, "\(okByGroup)")
            #expect(okByGroup["clients-b"] == 0, "\(okByGroup)")
        }
    }

    /// A latency's second end must be a server host (the proxy forwards to its port): refused before anything starts.
    @Test func aLatencyToAHostWithoutAServerIsRefused() throws {
        let (stackFile, _, paths) = try HostsStackPartitionTests.privateStack()
        defer { try? FileManager.default.removeItem(at: paths.stack.deletingLastPathComponent()) }
        let file = try CommandLineTests.temporaryFile(
            "latency-to-kiln.yaml",
            """
            name: latency-to-kiln
            stack: \(stackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 10K}
            namespace: latency_to_kiln
            faults:
              - {kind: latency, link: [redis-primary, kiln], latency: 50ms, at: 1s}
            phases:
              - {name: load, executor: bulk, rows: 1K, stores: [kafka]}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let result = try CommandLineTests.kiln(["run", file.path, "--runs-directory", runs.path])
        #expect(result.status == 64, "\(result.output)")
        #expect(result.output.contains("latency-to-kiln.yaml:6:"), "\(result.output)")
        #expect(result.output.contains("must be a server host"), "\(result.output)")
    }

    /// `kind: latency` on a private hosts stack. Through `kiln run`: a latency on [redis-replica, redis-primary] (the
    /// replica's replication connection is closed and comes back through the proxy) verifies yes at its start and its
    /// stop and leaves no rule. Through the library, as FaultRunner builds it: with clients-a -> redis-primary slowed
    /// by 100 ms, clients-a's workers' p50 is at least 100 ms while clients-b's stays below 50 ms.
    @Test func aLatencyOnOneLinkSlowsOnlyThatLinksClients() throws {
        try Self.withPrivateStackUp(label: "test.link-latency") { stack, file, definition in
            let replica = try #require(stack.hosts["redis-replica"])
            let scenario = try CommandLineTests.temporaryFile(
                "link-latency.yaml",
                """
                name: link-latency
                stack: \(file.path)
                dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 10K}
                namespace: link_latency
                heal_wait: 0s
                faults:
                  - {name: slow-replica, kind: latency, link: [redis-replica, redis-primary], latency: 100ms, jitter: 10ms, at: 1s, duration: 3s}
                phases:
                  - {name: reads, executor: constant-arrival-rate, rate: 20, duration: 5s, workers: 2, mix: {redis.feature-read: 1}}
                """)
            let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
            let result = try CommandLineTests.kiln(["run", scenario.path, "--runs-directory", runs.path, "--id", "lat"])
            let report = try RunReport.decode(Data(contentsOf: runs.appendingPathComponent("lat/report.json")))
            let fault = try #require(report.faults?.first { $0.name == "slow-replica" }, "\(result.output)")
            #expect(fault.kind == "latency")
            #expect(fault.verified == .yes, "\(fault.note)")
            print("kiln run latency [redis-replica, redis-primary]: \(fault.verified) (\(fault.note))")
            let nat = (try? HostNetwork.run(in: replica, "/usr/sbin/iptables", ["-w", "5", "-t", "nat", "-S"])) ?? ""
            #expect(!nat.contains("kiln-fault:"), "\(nat)")

            let clients = try PrivateHosts(["clients-a", "clients-b"])
            defer { clients.remove() }
            let primary = definition.redis.primary
            let proxy = FaultProxy(listen: HostPort(host: HostFaultRules.rootAddress, port: 0), upstream: primary)
            try proxy.start()
            let latency = try LinkLatencyFault(
                name: "slow-a", client: clients["clients-a"], proxy: proxy, latency: .milliseconds(100),
                // No jitter here: with ±10 ms the median delay is the latency itself, and a 60-sample p50 falls either side.
                request: Array("PING\r\n".utf8), redirect: primary,
                runID: TestStack.uniqueName("test-link-latency"), ownsProxy: true)
            let driver = FaultDriver(latency)
            let started = driver.start()
            #expect(started.verified != .no, "\(started.note)")
            var p50ByGroup: [String: Double] = [:]
            for group in ["clients-a", "clients-b"] {
                let report = try Self.runClientGroup(
                    group, of: clients, stack: file, timeout: "2s", label: "test.link-latency",
                    phase: "name: reads, executor: constant-arrival-rate, rate: 20, duration: 3s, workers: 4, drop_after: 5s, "
                        + "mix: {redis.feature-read: 1}")
                let operation = try #require(report.phases.first?.operations.first)
                p50ByGroup[group] = operation.latencyMs.p50 ?? -1
                print(
                    "latency 100ms on clients-a -> redis-primary: \(group) redis.feature-read ok \(operation.ok), "
                        + "p50 \(operation.latencyMs.p50 ?? -1) ms, p99 \(operation.latencyMs.p99 ?? -1) ms")
            }
            let record = driver.stop()
            #expect(record.verified == .yes, "\(record.note)")
            #expect((p50ByGroup["clients-a"] ?? 0) >= 100, "\(p50ByGroup)")
            #expect((p50ByGroup["clients-b"] ?? 999) < 50, "\(p50ByGroup)")
        }
    }

    /// `kiln run` with faults between hosts on a private hosts stack (owned by its stack name, like `kiln stack up`, so
    /// the `kiln` process finds the same namespaces; `down` in a defer removes them): every fault is built from the
    /// scenario, verified yes at its start and its stop, and leaves no rule or qdisc behind.
    @Test func aScenariosHostFaultsRunAndVerifyOnTheHostsStack() throws {
        try Self.withPrivateStackUp(label: "test.host-fault-run") { stack, stackFile, definition in
            let file = try CommandLineTests.temporaryFile(
                "host-faults.yaml",
                """
                name: host-faults
                stack: \(stackFile.path)
                dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 10K}
                namespace: host_faults
                heal_wait: 0s
                proxy: [redis]
                faults:
                  - {name: sentinels, kind: partition, shape: sides, sides: [[redis-primary, sentinel-1], [redis-replica, sentinel-2, sentinel-3]], at: 1s, duration: 2s}
                  - {name: drawn, kind: partition, shape: halves, at: 4s, duration: 2s}
                  - {name: lossy, kind: loss, link: [redis-primary, kiln], probability: 10%, at: 7s, duration: 2s}
                  - {name: slow, kind: bandwidth, target: kafka, rate: 1MB/s, at: 10s, duration: 4s}
                  - {name: delayed, kind: proxy, target: redis, toxic: "latency=50ms", at: 15s, duration: 2s}
                phases:
                  - {name: reads, executor: constant-arrival-rate, rate: 20, duration: 18s, workers: 2, mix: {redis.feature-read: 1}}
                """)
            let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
            let result = try CommandLineTests.kiln(["run", file.path, "--runs-directory", runs.path, "--id", "h"])
            let report = try RunReport.decode(Data(contentsOf: runs.appendingPathComponent("h/report.json")))
            let faults = Dictionary(uniqueKeysWithValues: (report.faults ?? []).map { ($0.name, $0) })
            for name in ["sentinels", "drawn", "lossy", "slow", "delayed"] {
                let fault = try #require(faults[name], "\(result.output)")
                #expect(fault.verified == .yes, "\(name): \(fault.note)")
                print("kiln run fault \(name) (\(fault.kind) \(fault.target)): \(fault.note)")
            }
            #expect(faults["sentinels"]?.note?.contains("90 pairs probed among 10 hosts, 12 expected blocked") == true)
            #expect(faults["delayed"]?.target.hasPrefix("10.213.7.1:") == true, "\(String(describing: faults["delayed"]))")
            for host in stack.hostList {
                let rules = (try? HostNetwork.run(in: host, "/usr/sbin/iptables", ["-S"])) ?? ""
                #expect(!rules.contains("kiln-fault:"), "\(host.name): \(rules)")
                let qdiscs =
                    (try? LocalProcess.run("/usr/sbin/tc", ["-n", host.namespace, "qdisc", "show", "dev", "eth0"])) ?? ""
                #expect(!qdiscs.contains("tbf"), "\(host.name): \(qdiscs)")
            }
            #expect(!((try? LocalProcess.run("/usr/sbin/iptables", ["-S"])) ?? "").contains("kiln-fault:h"))
        }
    }

    /// `kill -9` of `kiln run` while a partition (rules in several namespaces), a loss to Kiln's host (rules in the
    /// root namespace too) and a bandwidth fault (a qdisc) are active; the next `kiln stack up` removes all of it.
    @Test func kill9OfARunDuringHostFaultsThenStackUpLeavesNothing() throws {
        let (stackFile, definition, paths) = try HostsStackPartitionTests.privateStack()
        let arguments = ["--stack", stackFile.path, "--run-directory", paths.stack.path]
        let stack = try EmbeddedStack(definition: definition, paths: paths, logger: Logger(label: "test.kill9-hosts"))
        let run = Process()
        defer {
            if run.isRunning { kill(run.processIdentifier, SIGKILL) }
            _ = try? CommandLineTests.kiln(["stack", "down"] + arguments)
            try? FileManager.default.removeItem(at: paths.stack.deletingLastPathComponent())
        }
        let up = try CommandLineTests.kiln(["stack", "up"] + arguments)
        try #require(up.status == 0, "\(up.output)")
        let file = try CommandLineTests.temporaryFile(
            "host-faults-kill9.yaml",
            """
            name: host-faults-kill9
            stack: \(stackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 3, rows: 10K}
            namespace: host_faults_kill9
            faults:
              - {name: cut, kind: partition, shape: sides, sides: [[redis-primary, sentinel-1], [redis-replica, sentinel-2]], at: 1s, duration: 60s}
              - {name: lossy, kind: loss, link: [kafka, kiln], probability: 10%, at: 1s, duration: 60s}
              - {name: slow, kind: bandwidth, target: clickhouse, rate: 1MB/s, at: 1s, duration: 60s}
            phases:
              - {name: reads, executor: constant-arrival-rate, rate: 10, duration: 60s, workers: 2, mix: {redis.feature-read: 1}}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        run.executableURL = TestStack.paths.home.appendingPathComponent(".build/debug/kiln")
        run.arguments = ["run", file.path, "--runs-directory", runs.path, "--id", "k9"]
        run.standardOutput = FileHandle.nullDevice
        run.standardError = FileHandle.nullDevice
        try run.run()
        func rules(_ host: NetworkHost) -> Int {
            ((try? HostNetwork.run(in: host, "/usr/sbin/iptables", ["-S"])) ?? "").split(separator: "\n")
                .filter { $0.contains("kiln-fault:k9") }.count
        }
        func rootRules() -> Int {
            ((try? LocalProcess.run("/usr/sbin/iptables", ["-S"])) ?? "").split(separator: "\n")
                .filter { $0.contains("kiln-fault:k9") }.count
        }
        func shaped(_ host: NetworkHost) -> Bool {
            ((try? LocalProcess.run("/usr/sbin/tc", ["-n", host.namespace, "qdisc", "show", "dev", "eth0"])) ?? "")
                .contains("tbf")
        }
        let redisPrimary = try #require(stack.hosts["redis-primary"])
        let kafka = try #require(stack.hosts["kafka"])
        let clickhouse = try #require(stack.hosts["clickhouse"])
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline
            && !(rules(redisPrimary) > 0 && rules(kafka) > 0 && rootRules() > 0 && shaped(clickhouse))
        {
            usleep(200_000)
        }
        try #require(
            rules(redisPrimary) == 2 && rules(kafka) == 1 && rootRules() == 1 && shaped(clickhouse),
            "faults never all active")
        kill(run.processIdentifier, SIGKILL)
        run.waitUntilExit()
        let again = try CommandLineTests.kiln(["stack", "up"] + arguments)
        #expect(again.status == 0, "\(again.output)")
        #expect(
            again.output.contains("removed leftover: 1 iptables fault rule(s) of finished runs in the root namespace"), "\(again.output)"
        )
        #expect(
            again.output.contains("removed leftover: qdisc tbf on eth0 in \(clickhouse.namespace)"), "\(again.output)")
        #expect(again.output.contains("iptables rule(s) (filter) in \(redisPrimary.namespace)"), "\(again.output)")
        for host in stack.hostList { #expect(rules(host) == 0, "\(host.name)") }
        #expect(rootRules() == 0)
        #expect(!shaped(clickhouse))
        // Everything the partition cut connects again.
        let grudge = try PartitionGrudge(
            shape: .sides([["redis-primary"], ["redis-replica"]]), hosts: ["redis-primary", "redis-replica"], seed: 0)
        var hosts: [String: FaultHost] = [:]
        for name in grudge.hosts { hosts[name] = FaultHost(try #require(stack.hosts[name])) }
        let probe = try HostPartitionFault(
            name: "after", grudge: grudge, hosts: hosts,
            ports: [
                "redis-primary": definition.redis.primary.port, "redis-replica": definition.redis.replicas[0].port,
            ],
            runID: "after-k9", rules: [])
        #expect(probe.verify(.healed).verified == .yes)
    }
}
