import Foundation
import KilnCore
import KilnFaults
import KilnHTTP
import KilnRedis
import KilnStores
import Testing

/// The fault proxy in front of the shared stack's Redis (127.0.0.21:16379). Each test runs its own proxy on a
/// free port of 127.0.0.1 and its own keys; the shared Redis is never faulted, only the path to it.
@Suite("Fault proxy against Redis")
struct FaultProxyTests {
    static var redis: HostPort {
        let (host, port) = TestStack.redisPrimary
        return HostPort(host: host, port: port)
    }

    private func withProxy<T>(_ toxics: [Toxic] = [], _ body: (FaultProxy) throws -> T) throws -> T {
        let proxy = FaultProxy(listen: HostPort(host: "127.0.0.1", port: 0), upstream: Self.redis, toxics: toxics)
        try proxy.start()
        defer { proxy.stop() }
        return try body(proxy)
    }

    private func connect(_ proxy: FaultProxy, timeout: Double = 5) throws -> RedisConnection {
        let address = proxy.listenAddress
        return try RedisConnection(host: address.host, port: address.port, timeoutSeconds: timeout)
    }

    /// Median milliseconds of `count` calls of `body`.
    private func medianMilliseconds(_ count: Int, _ body: () throws -> Void) rethrows -> Double {
        var samples: [Double] = []
        for _ in 0..<count {
            let start = ContinuousClock.now
            try body()
            let elapsed = start.duration(to: .now)
            samples.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
        }
        return samples.sorted()[count / 2]
    }

    @Test func forwardsCommandsUnchangedWithoutToxics() throws {
        try withProxy { proxy in
            let connection = try connect(proxy)
            let key = TestStack.uniqueName("proxy_plain")
            defer { _ = try? connection.command(["DEL", key]) }
            #expect(try connection.command(["PING"]).string == "PONG")
            try connection.command(["SET", key, "value"])
            #expect(try connection.command(["GET", key]).string == "value")
            #expect(proxy.statistics.connectionsAccepted == 1)
            #expect(proxy.statistics.bytesUpstream > 0)
        }
    }

    @Test func latencyToxicAddsItsDelayToTheMedian() throws {
        try withProxy { proxy in
            let connection = try connect(proxy)
            let key = TestStack.uniqueName("proxy_latency")
            try connection.command(["SET", key, "v"])
            defer { _ = try? connection.command(["DEL", key]) }
            let before = try medianMilliseconds(21) { _ = try connection.command(["GET", key]) }
            // Added at run time: it applies to this live connection too.
            try proxy.addToxic(Toxic(name: "lag", kind: .latency(latency: 100, jitter: 0)))
            let during = try medianMilliseconds(21) { _ = try connection.command(["GET", key]) }
            #expect(proxy.removeToxic(named: "lag"))
            let after = try medianMilliseconds(11) { _ = try connection.command(["PING"]) }
            let added = during - before
            print(
                "proxy latency: p50 before \(before) ms, with 100 ms toxic \(during) ms (added \(added) ms), after \(after) ms"
            )
            #expect(added >= 90)
            #expect(added <= 110)
            #expect(after < 50)
        }
    }

    @Test func bandwidthToxicHoldsTheRate() throws {
        let toxic = Toxic(name: "narrow", kind: .bandwidth(rate: 1000))
        try withProxy([toxic]) { proxy in
            let direct = try RedisConnection(host: Self.redis.host, port: Self.redis.port, timeoutSeconds: 10)
            let key = TestStack.uniqueName("proxy_bandwidth")
            let value = String(repeating: "x", count: 500_000)
            try direct.command(["SET", key, value])
            defer { _ = try? direct.command(["DEL", key]) }
            let connection = try connect(proxy, timeout: 10)
            _ = try connection.command(["PING"])
            let start = ContinuousClock.now
            let reply = try connection.command(["GET", key])
            let elapsed = start.duration(to: .now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            #expect(reply.string?.count == 500_000)
            let rate = 500_000 / seconds / 1000
            print("proxy bandwidth: 500 kB at 1000 KB/s took \(seconds) s = \(rate) KB/s")
            #expect(rate >= 900)
            #expect(rate <= 1100)
        }
    }

    @Test func blackholeTurnsARedisWriteIntoAnInfoTimeout() throws {
        let toxic = Toxic(name: "hole", kind: .timeout(timeout: 0), stream: .upstream)
        try withProxy { proxy in
            var stack = TestStack.definition
            stack.redis.primary = proxy.listenAddress
            let context = StoreClientFixtures.context(
                namespace: TestStack.uniqueName("proxyhole"), stack: stack, timeout: .milliseconds(500))
            let client = try RedisClient(context: context)
            defer { client.close() }
            let set = RedisOperation.set
            let read = RedisOperation.featureRead
            #expect(client.invoke(set, Request(row: 1)) == .ok)
            try proxy.addToxic(toxic)
            let start = ContinuousClock.now
            let write = client.invoke(set, Request(row: 2))
            let elapsed = start.duration(to: .now)
            print("proxy blackhole: Redis set -> \(write) after \(elapsed)")
            #expect(write == .info("timeout"))
            #expect(elapsed >= .milliseconds(450))
            let reading = client.invoke(read, Request(row: 1))
            print("proxy blackhole: Redis feature-read -> \(reading)")
            #expect(reading == .fail("timeout"))
            proxy.removeToxic(named: "hole")
            #expect(client.invoke(set, Request(row: 3)) == .ok)
        }
    }

    @Test func resetPeerResetsTheClientConnection() throws {
        try withProxy([Toxic(name: "rst", kind: .resetPeer(timeout: 100))]) { proxy in
            let connection = try connect(proxy)
            #expect(try connection.command(["PING"]).string == "PONG")
            Thread.sleep(forTimeInterval: 0.3)
            #expect(throws: RedisError.self) { try connection.command(["PING"]) }
        }
        try withProxy([Toxic(name: "rst0", kind: .resetPeer(timeout: 0))]) { proxy in
            let result = TCPProbe.redisPing(proxy.listenAddress, timeout: .seconds(1))
            print("proxy reset_peer(0): PING through the proxy -> \(result)")
            #expect(result != .answered)
            #expect(result != .timedOut)
        }
    }

    @Test func limitDataClosesAfterTheLimit() throws {
        try withProxy([Toxic(name: "cap", kind: .limitData(bytes: 14))]) { proxy in
            let connection = try connect(proxy)
            // "+PONG\r\n" is 7 bytes: two replies fit, the third is cut off.
            #expect(try connection.command(["PING"]).string == "PONG")
            #expect(try connection.command(["PING"]).string == "PONG")
            #expect(throws: RedisError.self) { try connection.command(["PING"]) }
        }
    }

    @Test func controlAPIListsAddsAndRemovesToxics() throws {
        try withProxy { proxy in
            let server = ProxyControlServer(proxy: proxy)
            let address = try server.start(listen: HostPort(host: "127.0.0.1", port: 0))
            defer { server.stop() }
            let http = try HTTPClient(timeoutSeconds: 5)
            #expect(try http.get("http://\(address)/toxics").text == "[]")
            let body = #"{"name":"lag","type":"latency","stream":"downstream","attributes":{"latency":50}}"#
            let created = try http.post(
                "http://\(address)/toxics", body: Array(body.utf8), contentType: "application/json")
            #expect(created.status == 200)
            #expect(proxy.toxics.map(\.name) == ["lag"])
            let duplicate = try http.post(
                "http://\(address)/toxics", body: Array(body.utf8), contentType: "application/json")
            #expect(duplicate.status == 409)
            let bad = try http.post(
                "http://\(address)/toxics", body: Array(#"{"type":"latency"}"#.utf8), contentType: "application/json")
            #expect(bad.status == 400)
            #expect(bad.text.contains("latency is required"))
            #expect(try http.get("http://\(address)/toxics").text.contains(#""latency":50"#))
            #expect(try http.get("http://\(address)/proxy").text.contains(#""upstream":"\#(Self.redis)""#))
            // DELETE through the router (KilnHTTP sends GET and POST only).
            #expect(
                ProxyControlServer.respond(to: proxy, method: "DELETE", path: "/toxics/lag", body: Data()).0.code == 204
            )
            #expect(
                ProxyControlServer.respond(to: proxy, method: "DELETE", path: "/toxics/lag", body: Data()).0.code == 404
            )
            #expect(proxy.toxics.isEmpty)
        }
    }

    @Test func proxyFaultVerifiesAddedLatencyAndItsRemoval() throws {
        try withProxy { proxy in
            let fault = ProxyFault(
                proxy: proxy, toxic: Toxic(name: "lag", kind: .latency(latency: 100, jitter: 0)), probe: .redisPing)
            let record = FaultDriver(fault).run(for: .milliseconds(100))
            #expect(record.verified == .yes, "\(record.note)")
            #expect(record.kind == "proxy:latency")
            #expect(proxy.toxics.isEmpty)
        }
    }

    @Test func aLatencyBelowWhatAProbeResolvesIsUnknownNotDisproved() throws {
        try withProxy { proxy in
            let fault = ProxyFault(
                proxy: proxy, toxic: Toxic(name: "tiny", kind: .latency(latency: 1, jitter: 0)), probe: .redisPing)
            let record = FaultDriver(fault).run(for: .milliseconds(100))
            #expect(record.verified == .unknown, "\(record.note)")
            #expect(record.note.contains("cannot tell a 1 ms latency"))
            #expect(record.note.contains("healed: toxic removed"))
            #expect(proxy.toxics.isEmpty)
        }
    }
}
