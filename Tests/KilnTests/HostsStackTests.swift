import Foundation
import KilnCore
import KilnFaults
import KilnScenario
import KilnSmoke
import KilnStack
import Logging
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The embedded stack in hosts mode (`network: hosts`), started privately by each test: the shipped
/// Scenarios/stacks/embedded-hosts.yaml with its ten servers moved to .100–.109 or .110–.119 (`block`; the tests' range,
/// so a running hosts stack on .11–.51 is never touched, and two tests never share an address), no client groups (their .201+ addresses belong to the shipped stack), its own name and
/// run directory. Every test stops it and removes its hosts in a defer. Needs only what the loopback stack needs, plus
/// iproute2 (root).
@Suite("Hosts stack: servers in network namespaces", .serialized)
struct HostsStackTests {
    static let shipped = TestStack.paths.home.appendingPathComponent("Scenarios/stacks/embedded-hosts.yaml")

    static func privateHostsStack(block: Int) throws -> (file: URL, definition: StackDefinition, paths: KilnPaths) {
        var text = try String(contentsOf: shipped, encoding: .utf8)
        for (index, octet) in [11, 12, 21, 22, 23, 24, 25, 31, 41, 51].enumerated() {
            text = text.replacingOccurrences(of: "10.213.7.\(octet):", with: "10.213.7.\(block + index):")
        }
        let name = "t\(UInt32.random(in: 0...UInt32.max))"
        text =
            text.replacingOccurrences(of: "name: embedded-hosts", with: "name: \(name)")
            .replacingOccurrences(of: "sink_hosts: true", with: "sink_hosts: false")
            .split(separator: "\n").filter { !$0.hasPrefix("client_groups:") }.joined(separator: "\n") + "\n"
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            TestStack.uniqueName("kiln-hosts"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("stack.yaml")
        try text.write(to: file, atomically: true, encoding: .utf8)
        return (
            file, try StackDefinition.load(contentsOf: file),
            KilnPaths(home: TestStack.paths.home, stack: directory.appendingPathComponent("run"))
        )
    }

    static func output(_ executable: String, _ arguments: [String]) -> String {
        (try? LocalProcess.run(executable, arguments)) ?? ""
    }

    // MARK: the stack file

    @Test func theShippedHostsStackParses() throws {
        let stack = try StackDefinition.load(contentsOf: Self.shipped)
        #expect(stack.network == .hosts)
        let addresses = ChaosSafety.stackAddresses(stack).map(\.host)
        #expect(addresses.allSatisfy { HostAddress($0) != nil }, "\(addresses)")
        #expect(Set(addresses).count == addresses.count)
        #expect(stack.clientGroups.map(\.name) == ["clients-a", "clients-b"])
        #expect(stack.clientGroups.map(\.address.description) == ["10.213.7.201", "10.213.7.202"])
        #expect(stack.sinkHosts.map(\.name) == ["sink-postgres", "sink-redis", "sink-falkordb", "sink-clickhouse"])
        #expect(stack.sinkHosts.map(\.address.description) == (61...64).map { "10.213.7.\($0)" })
        #expect(try StackDefinition.load(contentsOf: TestStack.paths.embeddedStackFile).network == .loopback)
        // Its own run directory by default, so that it runs beside the loopback stack.
        let paths = KilnPaths(home: TestStack.paths.home)
        #expect(paths.forStack(stack).stack.lastPathComponent == "stack-embedded-hosts")
        #expect(paths.forStack(TestStack.definition).stack == paths.stack)
        var explicit = paths
        explicit.stack = URL(fileURLWithPath: "/tmp/elsewhere")
        #expect(explicit.forStack(stack).stack.path == "/tmp/elsewhere")
    }

    /// Every bad value gives file:line:column and the field, never a crash.
    @Test(arguments: [
        ("subnet: 10.213.7.0/24", "subnet: 10.0.0.0/8", "subnet", "10.213.7.0/24 only"),
        ("subnet: 10.213.7.0/24", "subnet: 999999999999999999999999", "subnet", "10.213.7.0/24 only"),
        ("10.213.7.11:15432", "192.0.2.2:15432", "postgres.primary", "not a host address"),
        ("10.213.7.11:15432", "10.213.7.1:15432", "postgres.primary", "not a host address"),
        ("10.213.7.11:15432", "10.213.7.255:15432", "postgres.primary", "not a host address"),
        ("10.213.7.11:15432", "127.0.0.11:15432", "postgres.primary", "not a host address"),
        ("10.213.7.12:15433", "10.213.7.11:15433", "postgres.replicas", "also postgres.primary"),
        ("10.213.7.41:16390", "10.213.7.201:16390", "client_groups[0]", "also graph.endpoint"),
        ("network: hosts", "network: namespaces", "network", "unknown value"),
        ("10.213.7.41:16390", "10.213.7.63:16390", "graph.endpoint", "pipeline sink's host"),
        ("sink_hosts: true", "sink_hosts: maybe", "sink_hosts", "expected true or false"),
        ("kind: embedded", "kind: external", "network", "only an embedded stack"),
        ("name: embedded-hosts", "name: Embedded_Hosts", "name", "tags its namespaces"),
        ("[clients-a, clients-b]", "[clients-a, clients-a]", "client_groups[1]", "listed twice"),
        ("[clients-a, clients-b]", "[c1, c2, c3, c4, c5, c6, c7, c8, c9, c10]", "client_groups[9]", "at most 9"),
        ("[clients-a, clients-b]", "[\"../etc\"]", "client_groups[0]", "a-z, 0-9"),
    ])
    func badHostsFieldsAreNamed(_ replacing: String, _ with: String, _ field: String, _ message: String) throws {
        let text = try String(contentsOf: Self.shipped, encoding: .utf8).replacingOccurrences(of: replacing, with: with)
        do {
            _ = try StackDefinition.parse(text, file: "bad-hosts.yaml")
            Issue.record("accepted \(with)")
        } catch {
            #expect(error.field == field, "\(error)")
            #expect(error.message.contains(message), "\(error)")
            #expect(error.line > 0 && error.column > 0, "\(error)")
            #expect(error.description.hasPrefix("bad-hosts.yaml:\(error.line):\(error.column): \(field): "))
        }
        // A loopback stack refuses the hosts-only fields.
        let loopback = try String(contentsOf: TestStack.paths.embeddedStackFile, encoding: .utf8)
        #expect(throws: SpecError.self) {
            try StackDefinition.parse(loopback + "subnet: 10.213.7.0/24\n", file: "l.yaml")
        }
        #expect(throws: SpecError.self) { try StackDefinition.parse(loopback + "client_groups: [a]\n", file: "l.yaml") }
    }

    @Test func chaosSafetyAcceptsTheSubnetOnlyForHostsKilnCreated() throws {
        let hosts = try StackDefinition.load(contentsOf: Self.shipped)
        let target = hosts.redis.primary
        // Kiln holds the address: accepted without chaos.allow.
        try ChaosSafety.check(targets: [target], stack: hosts, kilnHostAddresses: { [target.host] })
        // No Kiln host holds it (the stack is down, or something else took the address): refused.
        let refusal = #expect(throws: ChaosSafety.Refusal.self) {
            try ChaosSafety.check(targets: [target], stack: hosts, kilnHostAddresses: { [] })
        }
        #expect(refusal?.reason.contains("no host Kiln created") == true)
        // The same addresses in a stack that is not in hosts mode are external hosts.
        var loopbackMode = hosts
        loopbackMode.network = .loopback
        #expect(throws: ChaosSafety.Refusal.self) {
            try ChaosSafety.check(targets: [target], stack: loopbackMode, kilnHostAddresses: { [target.host] })
        }
        var external = hosts
        external.kind = .external
        #expect(throws: ChaosSafety.Refusal.self) {
            try ChaosSafety.check(targets: [target], stack: external, kilnHostAddresses: { [target.host] })
        }
    }

    // MARK: the servers

    /// up: every server in its own namespace, reached from the root namespace through the bridge, replication between
    /// the servers' own addresses, a smoke round trip that agrees on all five stores; down: no namespace, veth or
    /// process of the stack is left.
    @Test func upStatusSmokeDownLeavesNothing() throws {
        let (_, definition, paths) = try Self.privateHostsStack(block: 100)
        let owner = HostOwner.currentProcess
        let network = HostNetwork(logger: Logger(label: "test.hosts"))
        let stack = try EmbeddedStack(
            definition: definition, paths: paths, logger: Logger(label: "test.hosts-stack"), hostOwner: owner)
        defer {
            stack.down()
            _ = try? network.removeHosts(stack.hostList)
            try? FileManager.default.removeItem(at: paths.stack.deletingLastPathComponent())
        }
        let statuses = try stack.up()
        #expect(statuses.count == 10)
        #expect(statuses.allSatisfy { $0.isUp }, "\(statuses.filter { !$0.isUp })")
        for status in statuses {
            let host = try #require(stack.hosts[status.name])
            #expect(status.namespace == host.namespace)
            #expect(host.address.description == status.endpoint.host)
            // The server process lives in its host's namespace, and answers through the bridge.
            #expect(network.processes(in: host).contains(try #require(status.pid)), "\(status.name)")
            #expect(TCPProbe.connect(to: status.endpoint, timeout: .seconds(2)) == .answered, "\(status.name)")
        }
        #expect(stack.hostStatus().allSatisfy { $0.present })
        // Servers connect to each other from their own addresses (what a partition between two of them needs).
        let redisReplica = definition.redis.replicas[0].host
        let clients = Self.output(
            "/usr/bin/redis-cli",
            ["-h", definition.redis.primary.host, "-p", String(definition.redis.primary.port), "client", "list"])
        #expect(clients.contains("addr=\(redisReplica):"), "\(clients)")
        let standby = Self.output(
            "/usr/bin/psql",
            [
                "-h", definition.postgres.primary.host, "-p", String(definition.postgres.primary.port), "-U",
                "postgres", "-Atc",
                "SELECT client_addr FROM pg_stat_replication",
            ])
        #expect(standby.trimmingCharacters(in: .whitespacesAndNewlines) == definition.postgres.replicas[0].host)
        let sentinel = definition.redis.sentinels[0]
        let master = Self.output(
            "/usr/bin/redis-cli", ["-h", sentinel.host, "-p", String(sentinel.port), "sentinel", "master", "kiln"])
        #expect(master.contains("num-other-sentinels\n2"), "\(master)")

        let smoke = SmokeRun(
            stack: definition, dataset: try SmokeRun.dataset(spec: Fixtures.specURL, seed: 7, rows: 2_000),
            logger: Logger(label: "test.smoke"), timeout: .seconds(20))
        let results = smoke.run()
        #expect(Set(results.map(\.store)).count >= 5)
        for result in results { #expect(result.agrees, "\(result.place.id): \(result.summary)") }

        let pids = statuses.compactMap(\.pid)
        let report = stack.down()
        #expect(report.failures.isEmpty, "\(report.failures)")
        #expect(report.stillListening.isEmpty)
        #expect(pids.allSatisfy { !LocalProcess.isAlive($0) })
        for host in stack.hostList {
            #expect(report.removedHosts.contains("namespace \(host.namespace)"), "\(report.removedHosts)")
        }
        let namespaces = Self.output("/usr/sbin/ip", ["netns", "list"])
        let links = Self.output("/usr/sbin/ip", ["link", "show"])
        for host in stack.hostList {
            #expect(!namespaces.contains(host.namespace))
            #expect(!links.contains(" \(host.bridgePort):") && !links.contains(" \(host.bridgePort)@"))
        }
        // The bridge goes with the last host on it.
        if try network.hosts().isEmpty { #expect(!links.contains(HostNetwork.bridge)) }
        #expect(stack.status().allSatisfy { $0.health == .down })
    }

    /// What `kill -9` of Kiln in the middle of faults leaves on a hosts stack — a paused server tree, a tbf qdisc in one
    /// host and on one bridge port, an iptables loss rule in another, a crashed run's client host with a process in it
    /// — is removed by the next `kiln stack up`, which says what it removed; `kiln stack down` then leaves nothing.
    @Test func kiln9DuringFaultsThenStackUpRemovesEverything() throws {
        let (file, definition, paths) = try Self.privateHostsStack(block: 110)
        let arguments = ["--stack", file.path, "--run-directory", paths.stack.path]
        let network = HostNetwork(logger: Logger(label: "test.hosts"))
        let stack = try EmbeddedStack(definition: definition, paths: paths, logger: Logger(label: "test.hosts-stack"))
        var crashedRun: pid_t = 0
        defer {
            _ = try? CommandLineTests.kiln(["stack", "down"] + arguments)
            _ = try? network.removeHosts(stack.hostList)
            if crashedRun > 0 { LocalProcess.terminate(crashedRun, grace: .milliseconds(100)) }
            _ = try? network.sweep()
            try? FileManager.default.removeItem(at: paths.stack.deletingLastPathComponent())
        }
        let up = try CommandLineTests.kiln(["stack", "up"] + arguments)
        try #require(up.status == 0, "\(up.output)")
        #expect(up.output.contains("NAMESPACE"))
        let status = try CommandLineTests.kiln(["stack", "status"] + arguments)
        #expect(status.status == 0, "\(status.output)")
        for host in stack.hostList { #expect(status.output.contains(host.namespace)) }

        // A real `kiln run` pauses redis-primary (through the chaos gate, which accepts the Kiln host's address) and is
        // killed -9 during the pause.
        let redisPrimary = try #require(stack.hosts["redis-primary"])
        let scenario = paths.stack.deletingLastPathComponent().appendingPathComponent("pause.yaml")
        try """
            name: hosts-pause
            stack: \(file.path)
            dataset: {spec: \(TestStack.paths.home.path)/Generators/fraud-platform.yaml, seed: 5, rows: 5K}
            namespace: hostspause
            fresh: true
            faults:
              - {name: pause-redis, kind: pause, target: redis-primary, at: 1s, duration: 60s}
            phases:
              - {name: load, executor: constant-arrival-rate, rate: 20, duration: 60s, workers: 2, mix: {redis.feature-read: 1}}
            """.write(to: scenario, atomically: true, encoding: .utf8)
        let run = Process()
        run.executableURL = TestStack.paths.home.appendingPathComponent(".build/debug/kiln")
        run.arguments = ["run", scenario.path, "--runs-directory", paths.stack.deletingLastPathComponent().path]
        run.environment = ProcessInfo.processInfo.environment.merging(["KILN_STACK_DIR": paths.stack.path]) { $1 }
        let runLog = paths.stack.deletingLastPathComponent().appendingPathComponent("run.log")
        FileManager.default.createFile(atPath: runLog.path, contents: nil)
        run.standardOutput = try FileHandle(forWritingTo: runLog)
        run.standardError = run.standardOutput
        try run.run()
        let pausedByRun = network.processes(in: redisPrimary)
        let pauseDeadline = ContinuousClock.now + .seconds(30)
        while !pausedByRun.contains(where: { LocalProcess.isStopped($0) }) && ContinuousClock.now < pauseDeadline {
            usleep(100_000)
        }
        kill(run.processIdentifier, SIGKILL)
        run.waitUntilExit()
        let runOutput = (try? String(contentsOf: runLog, encoding: .utf8)) ?? ""
        try #require(pausedByRun.contains { LocalProcess.isStopped($0) }, "kiln run did not pause redis-primary: \(runOutput)")

        // A "kiln run" that made a client host and started a process in it, then faulted the stack.
        crashedRun = try LocalProcess.spawnDetached("/bin/sleep", ["600"], log: URL(fileURLWithPath: "/dev/null"))
        let runOwner = HostOwner.process(
            pid: crashedRun, startTicks: try #require(HostOwner.startTicks(of: crashedRun)))
        let clientAddress = try #require(
            (150...159).compactMap { try? HostAddress(octet: $0) }.first { address in
                !((try? network.hosts()) ?? []).contains { $0.address == address }
            })
        let clientHost = try network.addHost(NetworkHost(name: "clients-a", address: clientAddress, owner: runOwner))
        let (ip, sleepArguments) = HostNetwork.command(in: clientHost, "/bin/sleep", ["600"])
        let clientProcess = try LocalProcess.spawnDetached(ip, sleepArguments, log: URL(fileURLWithPath: "/dev/null"))
        defer { LocalProcess.terminate(clientProcess, grace: .milliseconds(100)) }

        let postgres = try #require(stack.hosts["postgres-primary"])
        let redisReplica = try #require(stack.hosts["redis-replica"])
        let kafka = try #require(stack.hosts["kafka"])
        let clickhouse = try #require(stack.hosts["clickhouse"])
        let pausedTree = network.processes(in: postgres)
        #expect(pausedTree.count > 3, "postgres tree: \(pausedTree)")
        for pid in pausedTree { kill(pid, SIGSTOP) }
        try HostNetwork.run(
            in: redisReplica, "/usr/sbin/iptables",
            [
                "-w", "5", "-A", "INPUT", "-p", "tcp", "-m", "statistic", "--mode", "random", "--probability", "0.1",
                "-j", "DROP",
            ])
        let tbf = ["root", "tbf", "rate", "8mbit", "burst", "64kbit", "latency", "400ms"]
        try HostNetwork.run(in: kafka, "/usr/sbin/tc", ["qdisc", "add", "dev", "eth0"] + tbf)
        try LocalProcess.run("/usr/sbin/tc", ["qdisc", "add", "dev", clickhouse.bridgePort] + tbf)
        usleep(200_000)
        #expect(pausedTree.allSatisfy { LocalProcess.isStopped($0) })
        kill(crashedRun, SIGKILL)
        #expect(LocalProcess.waitForExit(crashedRun, within: .seconds(5)))

        let again = try CommandLineTests.kiln(["stack", "up"] + arguments)
        #expect(again.status == 0, "\(again.output)")
        let said = again.output
        #expect(
            said.contains(
                "removed leftover: continued \(pausedTree.count) stopped process(es) in \(postgres.namespace)"),
            "\(said)")
        #expect(said.contains("removed leftover: continued 1 stopped process(es) in \(redisPrimary.namespace)"), "\(said)")
        #expect(pausedByRun.allSatisfy { !LocalProcess.isStopped($0) })
        #expect(said.contains("removed leftover: 1 iptables rule(s) (filter) in \(redisReplica.namespace)"), "\(said)")
        #expect(said.contains("removed leftover: qdisc tbf on eth0 in \(kafka.namespace)"), "\(said)")
        #expect(said.contains("removed leftover: qdisc tbf on \(clickhouse.bridgePort)"), "\(said)")
        // The crashed run's client host: every Kiln on this machine that sweeps (each `kiln run` on any embedded
        // stack, each `kiln stack up`) removes hosts whose owner died, so between the kill above and this `up` another
        // helper's run may have removed it first (the flake: this `up` then had nothing to report). What must hold is
        // that it is gone with its process; when it was this `up` that removed it, it said both.
        let sweptHere = said.contains("removed leftover: namespace \(clientHost.namespace)")
        #expect(sweptHere == said.contains("removed leftover: killed 1 process(es) in \(clientHost.namespace)"), "\(said)")
        if !sweptHere {
            print("note: \(clientHost.namespace) was swept by another Kiln before this `stack up`")
        }
        usleep(200_000)
        #expect(pausedTree.allSatisfy { !LocalProcess.isStopped($0) })
        #expect(!LocalProcess.isAlive(clientProcess))
        #expect(!Self.output("/usr/sbin/ip", ["netns", "list"]).contains(clientHost.namespace))
        #expect(!(try HostNetwork.run(in: kafka, "/usr/sbin/tc", ["qdisc", "show", "dev", "eth0"])).contains("tbf"))
        #expect(!Self.output("/usr/sbin/tc", ["qdisc", "show", "dev", clickhouse.bridgePort]).contains("tbf"))
        #expect(!(try HostNetwork.run(in: redisReplica, "/usr/sbin/iptables", ["-S"])).contains("statistic"))
        // The paused PostgreSQL answers again; a third `up` finds nothing left.
        #expect(TCPProbe.connect(to: definition.postgres.primary, timeout: .seconds(2)) == .answered)
        let third = try CommandLineTests.kiln(["stack", "up"] + arguments)
        #expect(third.status == 0)
        #expect(!third.output.contains("removed leftover"), "\(third.output)")

        let down = try CommandLineTests.kiln(["stack", "down"] + arguments)
        #expect(down.status == 0, "\(down.output)")
        let namespaces = Self.output("/usr/sbin/ip", ["netns", "list"])
        let links = Self.output("/usr/sbin/ip", ["link", "show"])
        for host in stack.hostList {
            #expect(down.output.contains("removed: namespace \(host.namespace)"), "\(down.output)")
            #expect(!namespaces.contains(host.namespace))
            #expect(!links.contains(" \(host.bridgePort):") && !links.contains(" \(host.bridgePort)@"))
        }
    }

    /// On the loopback stack too: a server tree a killed run left paused (the postmaster and its backends) is
    /// continued by the next `up`'s sweep, which says so. A private loopback stack (127.0.2.x, ports + 200).
    @Test func aPausedServerTreeIsContinuedOnTheLoopbackStackToo() throws {
        var text = try String(contentsOf: TestStack.paths.embeddedStackFile, encoding: .utf8)
        text = text.replacingOccurrences(of: "127.0.0.", with: "127.0.2.")
        for port in [15432, 15433, 16379, 16380, 26379, 26380, 26381, 19092, 16390, 18123] {
            text = text.replacingOccurrences(of: ":\(port)", with: ":\(port + 200)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-loop"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("stack.yaml")
        try text.write(to: file, atomically: true, encoding: .utf8)
        let paths = KilnPaths(home: TestStack.paths.home, stack: directory.appendingPathComponent("run"))
        let stack = try EmbeddedStack(
            definition: try StackDefinition.load(contentsOf: file), paths: paths, logger: Logger(label: "test.loop"))
        var tree: [pid_t] = []
        defer {
            for pid in tree { kill(pid, SIGCONT) }
            stack.down()
            try? FileManager.default.removeItem(at: directory)
        }
        let statuses = try stack.up()
        let postmaster = try #require(statuses.first { $0.name == "postgres-primary" }?.pid)
        tree = [postmaster] + LocalProcess.descendants(of: postmaster)
        #expect(tree.count > 3, "\(tree)")
        for pid in tree { kill(pid, SIGSTOP) }
        usleep(200_000)
        #expect(tree.allSatisfy { LocalProcess.isStopped($0) })
        let removed = stack.removeLeftovers()
        #expect(removed.contains("continued \(tree.count) stopped process(es) of postgres-primary"), "\(removed)")
        usleep(200_000)
        #expect(tree.allSatisfy { !LocalProcess.isStopped($0) })
        #expect(try stack.up().allSatisfy { $0.isUp })
        #expect(!stack.removeLeftovers().contains { $0.contains("postgres-primary") })
    }
}
