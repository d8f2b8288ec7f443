import Foundation
import KilnCore
import KilnFaults
import KilnStack
import Logging
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Private hosts of this test process (addresses .160–.199, owner = this process), so that a hosts stack and other
/// tests on the same bridge are never touched. Every test removes its own hosts (never all of this process's: suites
/// run in parallel) in a defer. Test address plan: .100–.109 and .110–.119 HostsStackTests' private stacks, .150–.159
/// their crashed run's client host, .160–.199 these tests.
@Suite("Host network: namespaces on kiln-br0", .serialized)
struct HostNetworkTests {
    static let network = HostNetwork(logger: Logger(label: "test.hosts"))

    /// Distinct free test addresses in .160–.199.
    static func freeAddresses(_ count: Int) throws -> [HostAddress] {
        let held = Set(try network.hosts().map(\.address))
        let free = (160...199).shuffled().compactMap { try? HostAddress(octet: $0) }.filter { !held.contains($0) }
        return Array(free.prefix(count))
    }

    static func ipOutput(_ arguments: [String]) -> String {
        (try? LocalProcess.run("/usr/sbin/ip", arguments)) ?? ""
    }

    /// A listening TCP socket opened by a thread inside `host`'s namespace; returns the port, closes at `close()`.
    final class Listener: @unchecked Sendable {  // fd is written once in init, read-only afterwards
        let fd: Int32
        let port: Int
        init(in host: NetworkHost) throws {
            let port = Int.random(in: 30_000...39_999)
            let fd = try HostNetwork.withNamespace(of: host) { () -> Int32 in
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                inet_pton(AF_INET, host.address.description, &address.sin_addr)
                let bound = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
                #expect(bound == 0, "bind \(host.address):\(port) inside the namespace: errno \(errno)")
                listen(fd, 16)
                return fd
            }
            self.fd = fd
            self.port = port
        }
        func close() { _ = Glibc.close(fd) }
    }

    @Test func addressesAndNamesAreStrict() throws {
        #expect(HostAddress("10.213.7.11")?.octet == 11)
        for bad in [
            "10.213.7.1", "10.213.7.0", "10.213.7.255", "10.213.7.256", "10.213.7.-3", "10.213.7.011",
            "10.213.8.11", "192.0.2.2", "127.0.0.11", "10.213.7.", "10.213.7.11 ", "", "kiln",
        ] {
            #expect(HostAddress(bad) == nil, "\(bad)")
        }
        #expect(throws: HostNetworkError.self) { try HostAddress(octet: 1) }
        #expect(throws: HostNetworkError.self) { try HostAddress(octet: 255) }
        #expect(throws: HostNetworkError.self) { try HostAddress(octet: -7) }
        #expect(throws: HostNetworkError.self) { try HostAddress(octet: Int.max) }
        #expect(HostAddress.isInSubnet("10.213.7.1"))
        #expect(!HostAddress.isInSubnet("10.213.70.1"))
        // Every bridge port name fits Linux's 15 characters.
        for octet in 2...254 {
            let host = NetworkHost(name: "x", address: try HostAddress(octet: octet), owner: .stack("s"))
            #expect(host.bridgePort.count <= 15)
        }
        let owner = HostOwner.currentProcess
        let host = NetworkHost(name: "client-a", address: try HostAddress(octet: 150), owner: owner)
        #expect(HostNetwork.parse(namespace: host.namespace)?.owner == owner)
        #expect(HostNetwork.parse(namespace: host.namespace)?.name == "client-a")
        #expect(HostNetwork.parse(namespace: "kiln.s-embedded-hosts.redis-primary")?.owner == .stack("embedded-hosts"))
        #expect(HostNetwork.parse(namespace: "kiln.q1.x") == nil)
        #expect(HostNetwork.parse(namespace: "kiln.p12.x") == nil)
        let bad = NetworkHost(name: "Bad Name", address: try HostAddress(octet: 150), owner: owner)
        #expect(throws: HostNetworkError.self) { try Self.network.addHost(bad) }
        let long = NetworkHost(
            name: String(repeating: "a", count: 41), address: try HostAddress(octet: 150), owner: owner)
        #expect(throws: HostNetworkError.self) { try Self.network.addHost(long) }
    }

    @Test func hostsTalkThroughTheBridgeAndReachNothingElse() throws {
        let owner = HostOwner.currentProcess
        let addresses = try Self.freeAddresses(2)
        let a = NetworkHost(
            name: TestStack.uniqueName("ta").replacingOccurrences(of: "_", with: "-"), address: addresses[0],
            owner: owner)
        let b = NetworkHost(
            name: TestStack.uniqueName("tb").replacingOccurrences(of: "_", with: "-"), address: addresses[1],
            owner: owner)
        defer { _ = try? Self.network.removeHosts([a, b]) }
        try Self.network.addHost(a)
        try Self.network.addHost(b)
        // Idempotent for the same host; another host on a held address is refused.
        try Self.network.addHost(a)
        #expect(throws: HostNetworkError.self) {
            try Self.network.addHost(NetworkHost(name: "other", address: addresses[0], owner: owner))
        }
        // (Other tests of this process may hold hosts too: suites run in parallel.)
        #expect(Set(try Self.network.hosts()).isSuperset(of: [a, b]))
        #expect(Self.ipOutput(["netns", "list"]).contains(a.namespace))
        #expect(Self.ipOutput(["link", "show", "master", HostNetwork.bridge]).contains(a.bridgePort))

        let listener = try Listener(in: a)
        defer { listener.close() }
        let endpoint = HostPort(host: a.address.description, port: listener.port)
        // From the root namespace (Kiln's client host, 10.213.7.1) through the bridge.
        #expect(TCPProbe.connect(to: endpoint, timeout: .seconds(2)) == .answered)
        // From host b: a worker thread that entered b's namespace.
        let fromB = try HostNetwork.withNamespace(of: b) { TCPProbe.connect(to: endpoint, timeout: .seconds(2)) }
        #expect(fromB == .answered)
        // From b with b's own source address (the thread really is in b: a root-namespace address cannot be bound).
        let bound = try HostNetwork.withNamespace(of: b) {
            TCPProbe.connect(to: endpoint, from: b.address.description, timeout: .seconds(2))
        }
        #expect(bound == .answered)
        let rootOnly = try HostNetwork.withNamespace(of: b) {
            TCPProbe.connect(to: endpoint, from: "127.0.0.11", timeout: .seconds(1))
        }
        #expect(rootOnly != .answered)
        // Nothing beyond the /24: the machine's real network and the root's loopback aliases are unreachable from b.
        let eth0 = Self.ipOutput(["-o", "-4", "addr", "show", "dev", "eth0"]).split(separator: " ")
            .first { $0.contains("/") }.map { String($0.split(separator: "/")[0]) }
        if let eth0 {
            let outside = try HostNetwork.withNamespace(of: b) {
                TCPProbe.connect(to: HostPort(host: eth0, port: 22), timeout: .seconds(1))
            }
            #expect(outside != .answered, "\(eth0) reached from a host")
        }
        let routes = try HostNetwork.run(in: b, "/usr/sbin/ip", ["-4", "route"])
        #expect(!routes.contains("default"), "\(routes)")
        // The calling thread is back in the root namespace.
        #expect(TCPProbe.connect(to: endpoint, timeout: .seconds(2)) == .answered)

        let removed = try Self.network.removeHosts([a, b])
        #expect(removed.contains("namespace \(a.namespace)"), "\(removed)")
        #expect(!Self.ipOutput(["netns", "list"]).contains(a.namespace))
        #expect(!Self.ipOutput(["link", "show"]).contains(a.bridgePort + ":"))
        #expect(!Self.ipOutput(["link", "show"]).contains(b.bridgePort + ":"))
    }

    /// A process that made hosts is killed (-9) while a paused process, an iptables loss rule and a tbf qdisc live in
    /// its host: the sweep removes all of it and says so, and leaves a live owner's and a stack's hosts alone.
    @Test func sweepRemovesWhatAKilledOwnerLeft() throws {
        let addresses = try Self.freeAddresses(3)
        let crashing = try LocalProcess.spawnDetached("/bin/sleep", ["600"], log: URL(fileURLWithPath: "/dev/null"))
        defer { LocalProcess.terminate(crashing, grace: .milliseconds(100)) }
        let deadOwner = HostOwner.process(pid: crashing, startTicks: try #require(HostOwner.startTicks(of: crashing)))
        let me = HostOwner.currentProcess
        let stack = HostOwner.stack(TestStack.uniqueName("t").replacingOccurrences(of: "_", with: "-"))
        let victim = NetworkHost(name: "crashed", address: addresses[0], owner: deadOwner)
        let mine = NetworkHost(name: TestStack.uniqueName("alive").replacingOccurrences(of: "_", with: "-"), address: addresses[1], owner: me)
        let stacks = NetworkHost(name: "server", address: addresses[2], owner: stack)
        defer { _ = try? Self.network.removeHosts([victim, mine, stacks]) }
        try Self.network.addHost(victim)
        try Self.network.addHost(mine)
        try Self.network.addHost(stacks)

        // What a fault leaves: a stopped process in the host, a loss rule and a bandwidth qdisc in its namespace.
        let (ip, arguments) = HostNetwork.command(in: victim, "/bin/sleep", ["600"])
        let inside = try LocalProcess.spawnDetached(ip, arguments, log: URL(fileURLWithPath: "/dev/null"))
        defer { LocalProcess.terminate(inside, grace: .milliseconds(100)) }
        try HostNetwork.run(
            in: victim, "/usr/sbin/iptables",
            ["-w", "5", "-A", "INPUT", "-m", "statistic", "--mode", "random", "--probability", "0.1", "-j", "DROP"])
        try HostNetwork.run(
            in: victim, "/usr/sbin/tc",
            [
                "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "1mbit", "burst", "32kbit",
                "latency", "400ms",
            ])
        usleep(200_000)
        kill(inside, SIGSTOP)
        #expect(Self.network.processes(in: victim).contains(inside))

        // While its owner lives, nothing is swept.
        let early = try Self.network.sweep()
        #expect(!early.contains { $0.contains(victim.namespace) }, "\(early)")
        #expect(Self.ipOutput(["netns", "list"]).contains(victim.namespace))

        kill(crashing, SIGKILL)
        #expect(LocalProcess.waitForExit(crashing, within: .seconds(5)))
        let removed = try Self.network.sweep()
        #expect(removed.contains("namespace \(victim.namespace)"), "\(removed)")
        #expect(removed.contains { $0.hasPrefix("killed 1 process(es) in \(victim.namespace)") }, "\(removed)")
        #expect(!LocalProcess.isAlive(inside))
        #expect(!Self.ipOutput(["netns", "list"]).contains(victim.namespace))
        #expect(!Self.ipOutput(["link", "show"]).contains(victim.bridgePort + ":"))
        // The rule and qdisc lived in the namespace: no such namespace is left to hold them, and the root has none.
        #expect(!((try? LocalProcess.run("/usr/sbin/iptables", ["-S"])) ?? "").contains("statistic"))
        // A live process's and a stack's hosts stay.
        let left = try Self.network.hosts()
        #expect(left.contains(mine))
        #expect(left.contains(stacks))
        #expect(try Self.network.sweep().allSatisfy { !$0.contains(mine.namespace) && !$0.contains(stacks.namespace) })
    }

    /// Faults a killed run leaves on hosts that stay (a stack's): continued, qdiscs and rules removed, reported.
    @Test func clearFaultsUndoesPauseLossAndBandwidthOnLiveHosts() throws {
        let owner = HostOwner.currentProcess
        let address = try #require(try Self.freeAddresses(1).first)
        let host = try Self.network.addHost(
            NetworkHost(
                name: TestStack.uniqueName("tf").replacingOccurrences(of: "_", with: "-"), address: address,
                owner: owner))
        defer { _ = try? Self.network.removeHost(host) }
        let (ip, arguments) = HostNetwork.command(in: host, "/bin/sleep", ["600"])
        let inside = try LocalProcess.spawnDetached(ip, arguments, log: URL(fileURLWithPath: "/dev/null"))
        defer { LocalProcess.terminate(inside, grace: .milliseconds(100)) }
        try HostNetwork.run(
            in: host, "/usr/sbin/iptables",
            ["-w", "5", "-A", "INPUT", "-m", "statistic", "--mode", "random", "--probability", "0.1", "-j", "DROP"])
        try HostNetwork.run(
            in: host, "/usr/sbin/tc",
            [
                "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "1mbit", "burst", "32kbit",
                "latency", "400ms",
            ])
        _ = try LocalProcess.run(
            "/usr/sbin/tc",
            [
                "qdisc", "add", "dev", host.bridgePort, "root", "tbf", "rate", "1mbit", "burst", "32kbit",
                "latency", "400ms",
            ])
        usleep(200_000)
        kill(inside, SIGSTOP)
        usleep(100_000)
        #expect(LocalProcess.isStopped(inside))

        let cleared = Self.network.clearFaults(in: [host])
        #expect(cleared.contains("continued 1 stopped process(es) in \(host.namespace)"), "\(cleared)")
        #expect(cleared.contains("qdisc tbf on eth0 in \(host.namespace)"), "\(cleared)")
        #expect(cleared.contains("qdisc tbf on \(host.bridgePort)"), "\(cleared)")
        #expect(cleared.contains("1 iptables rule(s) (filter) in \(host.namespace)"), "\(cleared)")
        usleep(100_000)
        #expect(!LocalProcess.isStopped(inside))
        #expect(!(try HostNetwork.run(in: host, "/usr/sbin/tc", ["qdisc", "show", "dev", "eth0"])).contains("tbf"))
        #expect(!(try HostNetwork.run(in: host, "/usr/sbin/iptables", ["-S"])).contains("statistic"))
        // Nothing left to clear a second time.
        #expect(Self.network.clearFaults(in: [host]).isEmpty)
        let removed = try Self.network.removeHost(host)
        #expect(removed.contains("namespace \(host.namespace)"), "\(removed)")
        #expect(!Self.ipOutput(["netns", "list"]).contains(host.namespace))
    }
}
