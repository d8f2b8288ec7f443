import Foundation
import KilnCheck
import KilnCore
import KilnFaults
import KilnPipeline
import KilnRedis
import KilnScenario
import KilnStores
import Testing

/// One "current primary" for Redis (`RedisPrimaryResolver`), used by the load client, the pipeline sink, the scanner
/// and the staleness lookups: after a Sentinel failover every one of them reaches the new primary. Runs on a PRIVATE
/// primary, replica and three Sentinels on 127.0.36.x and ports 36000–36999 (never the shared stack).
@Suite("Redis current primary after a Sentinel failover", .serialized)
struct RedisPrimaryFollowTests {
    static func privateGroup() throws -> PrivateRedisSentinels {
        try PrivateRedisSentinels(hostPrefix: "127.0.36.", octets: 10...240, ports: 36_000...36_980)
    }

    @Test func sinkAndScannerFollowTheNewPrimary() throws {
        let group = try Self.privateGroup()
        defer { group.shutdown() }
        let context = StoreFixtures.context(
            namespace: TestStack.uniqueName("kfollow"), timeout: .seconds(2), stack: group.stack)
        let resolver = RedisPrimaryResolver(group.stack.redis, timeout: .seconds(2))
        #expect(resolver.current() == group.primary.endpoint)

        let sink = try RedisSink(context: context, spec: PipelineSpec(sinks: [.redis]))
        defer { sink.close() }
        try sink.setup(fresh: true)
        let before = try sink.apply([SinkMessage(partition: 0, offset: 0, row: 0, producedAtMillis: nil)], next: [:])
        #expect(before.applied + before.skipped == 1)
        #expect(sink.servedBy == group.primary.endpoint)

        let fault = RedisSentinelFailover(
            masterName: group.masterName, sentinels: group.sentinelEndpoints, timeout: .seconds(20))
        let driver = FaultDriver(fault)
        defer { driver.stop() }
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        let newPrimary = try #require(fault.newPrimary)
        #expect(newPrimary == group.replica.endpoint)
        #expect(resolver.current() == newPrimary)

        // The sink's connection to the old primary is killed or answers READONLY: the batch throws, and a retry
        // (what the pipeline worker does) reconnects through the Sentinels. Never a silent write to the old server.
        var applied: ApplyResult?
        var errors: [String] = []
        for offset in Int64(1)...10 where applied == nil {
            do {
                applied = try sink.apply(
                    [SinkMessage(partition: 0, offset: offset, row: offset, producedAtMillis: nil)], next: [:])
            } catch {
                errors.append("\(error)")
                Thread.sleep(forTimeInterval: 0.3)
            }
        }
        #expect(applied != nil, "\(errors)")
        #expect(sink.servedBy == newPrimary, "sink still on \(sink.servedBy?.description ?? "-")")

        // The load client writes txn keys after the failover; the scanner opened now reads the new primary and
        // finds them.
        let client = try RedisClient(context: context)
        defer { client.close() }
        for row in Int64(100)..<110 { #expect(client.invoke(.set, Request(row: row)) == .ok) }
        #expect(client.servedBy == newPrimary)
        let scanner = try RedisScanner(context: context)
        defer { scanner.close() }
        #expect(scanner.servedBy == newPrimary)
        var found: Set<Int64> = []
        try scanner.scan { found.insert($0.txnID) }
        let expected = Set((Int64(100)..<110).map { context.dataset.transaction($0).txnID })
        #expect(expected.isSubset(of: found), "scanner saw \(found.count) txn keys")

        // The control: without the Sentinels in the stack, the stack file's (demoted) primary is what a reader
        // would reach — the defect the resolver exists to prevent.
        var blind = context
        blind.stack.redis.sentinels = []
        let blindScanner = try RedisScanner(context: blind)
        defer { blindScanner.close() }
        #expect(blindScanner.servedBy == group.primary.endpoint)
        #expect(blindScanner.servedBy != newPrimary)
    }

    /// A Sentinel answer naming a server the stack file does not list is ignored: the stack's primary is used.
    @Test func aForeignSentinelAnswerIsIgnored() throws {
        let group = try Self.privateGroup()
        defer { group.shutdown() }
        var stack = group.stack
        // The stack file lists another primary (and no replica): the Sentinels' answer is foreign to it.
        stack.redis.primary = HostPort(host: "127.0.36.254", port: 36_999)
        stack.redis.replicas = []
        let resolver = RedisPrimaryResolver(stack.redis, timeout: .seconds(1))
        #expect(RedisPrimaryResolver.askSentinels(stack.redis.sentinels, group.masterName, timeoutSeconds: 1)
            == group.primary.endpoint)
        #expect(resolver.current() == stack.redis.primary)
    }

    /// Unreachable Sentinels: the stack file's primary, within the per-Sentinel bound (1 s each), never a hang.
    @Test func unreachableSentinelsFallBackToTheStackFile() {
        var stack = TestStack.definition
        stack.redis.primary = HostPort(host: "127.0.36.253", port: 36_998)
        stack.redis.sentinels = [HostPort(host: "127.0.36.252", port: 36_997), HostPort(host: "127.0.36.252", port: 36_996)]
        let start = ContinuousClock.now
        #expect(RedisPrimaryResolver(stack.redis, timeout: .seconds(5)).current() == stack.redis.primary)
        #expect(start.duration(to: .now) < .seconds(3))
    }

    @Test func keyLayoutIsTheOneTheClientWrites() {
        let keys = RedisKeys(namespace: "kiln")
        #expect(keys.txn(42) == "kiln:txn:42")
        #expect(keys.features(user: 7) == "kiln:user:7:features")
        #expect(keys.scores == "kiln:fraud:scores")
        #expect(keys.stream == "kiln:stream:fraud-events")
        #expect(keys.streamGroup == "kiln-load")
        #expect(keys.pipelineOffsets == "kiln:pipeline:offsets")
        #expect(keys.everything == "kiln:*")
    }
}
