import Foundation
import KilnCore
import KilnStack

#if canImport(Glibc)
    import Glibc
#endif

/// Random packet loss on the link between two hosts, without netem: each end drops `probability` of what it
/// receives from the other (iptables `statistic --mode random`, tagged `kiln-fault:<run-id>`). Evidence: numbered UDP
/// datagrams sent each way through the link (the rules match every protocol) and counted at the other end; while
/// active each direction's loss must be within max(30 % of the setting, 4 binomial standard deviations) of it (10 %
/// over 1,500 datagrams: 7–13 %), after the heal at most 1 %. `measured` (default: the link itself) is where the
/// datagrams go: a rule put on another link must then verify `no`. One caller at a time (the `Fault` contract).
public final class LinkLossFault: Fault {
    public let name: String
    public let ends: (FaultHost, FaultHost)
    public let probability: Double
    public let runID: String
    public let measured: (FaultHost, FaultHost)
    public let datagrams: Int
    private let rules: [HostRule]
    private var installed: [HostRule] = []
    /// Loss measured by the last `verify`, per direction (`a -> b`).
    public private(set) var lastLoss: [(link: HostLink, sent: Int, received: Int)] = []

    public var kind: String { "loss" }
    public var target: String { "\(ends.0.name)<->\(ends.1.name) (\(String(format: "%g", probability * 100)) %)" }

    public init(
        name: String, between a: FaultHost, and b: FaultHost, probability: Double, runID: String,
        measured: (FaultHost, FaultHost)? = nil, datagrams: Int = 1_500
    ) throws(PartitionError) {
        guard (100...1_000_000).contains(datagrams) else {
            throw PartitionError("datagrams \(datagrams): 100 to 1,000,000")
        }
        self.name = name
        ends = (a, b)
        self.probability = probability
        self.runID = runID
        self.measured = measured ?? (a, b)
        self.datagrams = datagrams
        rules = try HostFaultRules.loss(between: a, and: b, probability: probability, runID: runID)
    }

    public func start() throws {
        try HostCommands.insert(rules, recordingIn: &installed)
    }

    public func stop() throws {
        try HostCommands.remove(&installed)
    }

    /// Sends `datagrams` each way between the measured hosts and returns the loss per direction.
    public func measure() throws -> [(link: HostLink, sent: Int, received: Int)] {
        var result: [(HostLink, Int, Int)] = []
        for (from, to) in [(measured.0, measured.1), (measured.1, measured.0)] {
            let receiver = try UDPReceiver(in: to)
            defer { receiver.close() }
            let received = try HostSockets.udpDelivery(from: from, to: receiver, count: datagrams)
            result.append((HostLink(from.name, to.name), datagrams, received))
        }
        return result
    }

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        do {
            lastLoss = try measure()
        } catch {
            return .unknown("cannot measure loss: \(error)")
        }
        let expected = phase == .active ? probability : 0
        let deviation = 4 * (probability * (1 - probability) / Double(datagrams)).squareRoot()
        let tolerance = phase == .active ? max(0.3 * probability, deviation) : 0.01
        var lines: [String] = []
        var within = true
        for (link, sent, received) in lastLoss {
            let loss = Double(sent - received) / Double(sent)
            let ok = abs(loss - expected) <= tolerance
            within = within && ok
            lines.append(
                String(format: "%@ lost %d of %d (%.1f %%)", link.description, sent - received, sent, loss * 100))
        }
        let bound = String(format: "expected %.1f %% ± %.1f", expected * 100, tolerance * 100)
        let text = lines.joined(separator: "; ") + " (\(bound))"
        return within ? .yes(text) : .no(text)
    }

    public func teardown() {
        try? stop()
        HostCommands.removeTagged(ends.0, runID: runID)
        HostCommands.removeTagged(ends.1, runID: runID)
    }
}

/// What one host sends held to a rate, without netem: a token bucket (`tc qdisc add dev eth0 root tbf`) on the
/// host's end of its veth. Evidence: a TCP stream from `measured` (default: the host) to a listener on `peer` (default:
/// Kiln's root host) for `window` plus 0.5 s of warm-up; while active the payload rate must be within 10 % of the
/// setting, after the heal above twice it. A bucket put on another host must then verify `no`. One caller at a time.
public final class BandwidthFault: Fault {
    public let name: String
    public let host: FaultHost
    public let bytesPerSecond: Int
    public let peer: FaultHost
    public let measured: FaultHost
    public let window: Duration
    private let qdisc: [String]
    private var installed = false
    /// Bytes per second measured by the last `verify`.
    public private(set) var lastRate: Double?

    public var kind: String { "bandwidth" }
    public var target: String { "\(host.name) (\(bytesPerSecond) B/s)" }

    public init(
        name: String, host: FaultHost, bytesPerSecond: Int, peer: FaultHost = .kiln, measured: FaultHost? = nil,
        window: Duration = .seconds(2)
    ) throws(PartitionError) {
        self.name = name
        self.host = host
        self.bytesPerSecond = bytesPerSecond
        self.peer = peer
        self.measured = measured ?? host
        self.window = window
        qdisc = try HostFaultRules.bandwidth(host, bytesPerSecond: bytesPerSecond)
    }

    public func start() throws {
        try tc(qdisc)
        installed = true
    }

    public func stop() throws {
        guard installed, let device = host.device else { return }
        try tc(["qdisc", "del", "dev", device, "root"])
        installed = false
    }

    private func tc(_ arguments: [String]) throws {
        guard let namespace = host.namespace else { throw PartitionError("\(host.name): not in a namespace") }
        do {
            try LocalProcess.run(HostCommands.tc, ["-n", namespace] + arguments)
        } catch {
            throw PartitionError("tc \(arguments.joined(separator: " ")) in \(host.name): \(error)")
        }
    }

    /// Streams from `measured` to `peer` for 0.5 s + `window` and returns the payload rate over `window`.
    public func measure(window: Duration) throws -> Double {
        let listener = try HostListener(in: peer)
        defer { listener.close() }
        let warmUp = Duration.milliseconds(500)
        let start = ContinuousClock.now
        let end = start + warmUp + window
        let destination = listener.endpoint
        try HostSockets.onHostThread(measured) {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0, var address = TCPProbe.ipv4(destination.host, port: destination.port) else {
                throw PartitionError("socket: \(String(cString: strerror(errno)))")
            }
            defer { Glibc.close(fd) }
            var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else {
                throw PartitionError("connect \(destination): \(String(cString: strerror(errno)))")
            }
            let chunk = [UInt8](repeating: 0x6B, count: 16_384)
            while ContinuousClock.now < end {
                let sent = chunk.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if sent < 0 && errno != EAGAIN && errno != EINTR {
                    throw PartitionError("send: \(String(cString: strerror(errno)))")
                }
            }
        }
        // Bytes still in flight at `end` arrive a little later; only those read inside the window count.
        Thread.sleep(forTimeInterval: 0.1)
        return Double(listener.bytes(from: start + warmUp, to: end)) / window.seconds
    }

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        let rate: Double
        do {
            rate = try measure(window: phase == .active ? window : .seconds(1))
        } catch {
            return .unknown("cannot measure the rate: \(error)")
        }
        lastRate = rate
        let setting = Double(bytesPerSecond)
        let text = String(
            format: "%@ -> %@: %.0f B/s measured (%.2f × the %d B/s set)", measured.name, peer.name, rate,
            rate / setting,
            bytesPerSecond)
        switch phase {
        case .active: return abs(rate - setting) <= 0.1 * setting ? .yes(text) : .no(text + "; expected within 10 %")
        case .healed: return rate > 2 * setting ? .yes(text) : .no(text + "; expected above twice the rate once healed")
        }
    }

    public func teardown() {
        try? stop()
    }
}

/// Latency (and jitter) on one link, without netem: the link's client side connects through a `FaultProxy` placed
/// beside it (listening on Kiln's root host, upstream the server host), and the fault is a latency toxic on that
/// proxy. With `redirect` (the server's address), `start` also puts an iptables `nat OUTPUT` DNAT rule tagged
/// `kiln-fault:<run-id>` into the client host's namespace, so the host's new connections to the server go through
/// the proxy, and closes the host's established connections to it (`ss -K`) so its clients reconnect through the
/// proxy; `stop` removes the rule (connections opened through the proxy stay on it, without the toxic).
/// Evidence is a round trip measured from inside the client host, each on a new connection, to `measured` (default:
/// the server's own address when redirecting, else the proxy): the median of 5 requests must take at least 90 % of
/// `latency - jitter` while active, and less than half the latency after the heal. A toxic whose redirect is on
/// another link, or measured on another proxy, must then verify `no`. One caller at a time.
public final class LinkLatencyFault: Fault {
    public let name: String
    public let client: FaultHost
    public let proxy: FaultProxy
    public let measured: FaultProxy
    public let latency: Duration
    public let jitter: Duration
    /// A request the upstream answers (e.g. `PING\r\n` for Redis; any byte for an echo).
    public let request: [UInt8]
    /// The server whose traffic from `client` is sent through the proxy (nil: the client connects to the proxy itself).
    public let redirect: HostPort?
    /// Where the evidence's round trips go (from inside `client`).
    public let measuredDestination: HostPort
    /// Who measures (default: `client`); another host must see no latency.
    public let measuredFrom: FaultHost
    /// Whether `teardown` stops the proxy (the fault made it for this link).
    public let ownsProxy: Bool
    public let runID: String?
    private let toxic: Toxic
    private var natRule: [String]?
    /// Established connections `start` closed (`ss -K`), for the record's note.
    public private(set) var closedConnections = 0
    /// Round trips (ms) measured by the last `verify`.
    public private(set) var lastRoundTrips: [Double] = []

    public var kind: String { "latency" }
    public var target: String { "\(client.name) -> \(proxy.upstream) via \(proxy.listenAddress)" }

    public init(
        name: String, client: FaultHost, proxy: FaultProxy, latency: Duration, jitter: Duration = .zero,
        request: [UInt8], measured: FaultProxy? = nil, redirect: HostPort? = nil, measuredFrom: FaultHost? = nil,
        runID: String? = nil, ownsProxy: Bool = false
    ) throws(PartitionError) {
        guard latency >= .milliseconds(5), latency <= .seconds(60) else {
            throw PartitionError("latency \(latency) must be between 5 ms (this machine's own jitter) and 60 s")
        }
        guard jitter >= .zero, jitter <= latency else {
            throw PartitionError("jitter \(jitter) must be 0 to the latency")
        }
        guard !request.isEmpty else { throw PartitionError("latency evidence needs a request the upstream answers") }
        self.name = name
        self.client = client
        self.proxy = proxy
        self.measured = measured ?? proxy
        self.redirect = redirect
        self.measuredDestination = measured?.listenAddress ?? redirect ?? proxy.listenAddress
        self.measuredFrom = measuredFrom ?? client
        self.ownsProxy = ownsProxy
        self.runID = runID
        if let redirect {
            guard client.namespace != nil else {
                throw PartitionError(
                    "\(client.name): a redirected link needs a client host in its own namespace (Kiln's root host "
                        + "runs the proxy itself)")
            }
            guard let runID else { throw PartitionError("a redirected link needs a run id to tag its rule") }
            try HostFaultRules.validate(client)
            try HostFaultRules.validate(
                FaultHost(name: "server", address: redirect.host, namespace: "server", device: nil))
            let proxyAddress = proxy.listenAddress
            guard proxyAddress.host == HostFaultRules.rootAddress, (1...65535).contains(proxyAddress.port),
                (1...65535).contains(redirect.port)
            else {
                throw PartitionError(
                    "the proxy of a redirected link must listen on \(HostFaultRules.rootAddress) "
                        + "(found \(proxyAddress))")
            }
            natRule = [
                "-t", "nat", "OUTPUT", "-p", "tcp", "-d", redirect.host + "/32", "--dport", String(redirect.port),
            ] + (try HostFaultRules.tag(runID)) + ["-j", "DNAT", "--to-destination", proxyAddress.description]
        }
        self.latency = latency
        self.jitter = jitter
        self.request = request
        do {
            toxic = Toxic(
                name: name,
                kind: try ToxicKind(
                    type: "latency",
                    attributes: ["latency": Int(latency.wholeMilliseconds), "jitter": Int(jitter.wholeMilliseconds)]))
        } catch {
            throw PartitionError("latency toxic: \(error)")
        }
    }

    private var ruleInstalled = false

    public func start() throws {
        try proxy.addToxic(toxic)
        guard let natRule, let redirect, let network = client.network else { return }
        _ = try HostCommands.iptables(client, Self.insert(natRule))
        ruleInstalled = true
        // Established connections keep their direct path (conntrack); closing them makes the clients reconnect
        // through the proxy. `ss -K` needs the kernel's INET_DIAG_DESTROY; without it they stay direct.
        let arguments = ["-K", "-t", "dst", redirect.host, "dport", "=", String(redirect.port)]
        let output = (try? HostNetwork.run(in: network, HostCommands.ss, arguments)) ?? ""
        closedConnections = output.split(separator: "\n").filter { $0.hasPrefix("ESTAB") }.count
    }

    public func stop() throws {
        _ = proxy.removeToxic(named: toxic.name)
        try removeRule()
    }

    private func removeRule() throws {
        guard ruleInstalled, let natRule else { return }
        _ = try HostCommands.iptables(client, Self.delete(natRule))
        ruleInstalled = false
    }

    /// `-t nat OUTPUT …` as `-t nat -I OUTPUT …` / `-t nat -D OUTPUT …`.
    static func insert(_ rule: [String]) -> [String] { Array(rule.prefix(2)) + ["-I"] + rule.dropFirst(2) }
    static func delete(_ rule: [String]) -> [String] { Array(rule.prefix(2)) + ["-D"] + rule.dropFirst(2) }

    /// Median round trip (ms) of 5 requests from inside `measuredFrom` to `measuredDestination`, each on a new
    /// connection.
    public func medianRoundTrip() throws -> Double {
        let destination = measuredDestination
        let request = request
        let timeout = latency * 4 + .seconds(2)
        let trips = try HostSockets.onHostThread(measuredFrom) { () throws -> [Double] in
            try (0..<5).map { _ in
                let start = ContinuousClock.now
                let result = TCPProbe.request(to: destination, payload: request, timeout: timeout)
                guard result.answered else { throw PartitionError("request through \(destination): \(result)") }
                return start.duration(to: .now).seconds * 1000
            }
        }
        lastRoundTrips = trips
        return trips.sorted()[trips.count / 2]
    }

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        let median: Double
        do {
            median = try medianRoundTrip()
        } catch {
            return phase == .active ? .unknown("cannot measure: \(error)") : .no("after the heal: \(error)")
        }
        let set = Double(latency.wholeMilliseconds)
        let closed =
            phase == .active && redirect != nil ? "; \(closedConnections) established connection(s) closed" : ""
        let text = String(
            format: "%@ -> %@: median round trip %.1f ms (%d ms ± %d set)%@", measuredFrom.name,
            measuredDestination.description, median, Int(latency.wholeMilliseconds), Int(jitter.wholeMilliseconds), closed)
        switch phase {
        case .active:
            let floor = 0.9 * Double((latency - jitter).milliseconds)
            return median >= floor ? .yes(text) : .no(text + String(format: "; expected at least %.0f ms", floor))
        case .healed:
            return median < 0.5 * set ? .yes(text) : .no(text + "; expected below half the latency once healed")
        }
    }

    public func teardown() {
        _ = proxy.removeToxic(named: toxic.name)
        try? removeRule()
        if let runID, redirect != nil { HostCommands.removeTagged(client, runID: runID, table: "nat") }
        if ownsProxy { proxy.stop() }
    }
}
