import Foundation
import KilnCore
import KilnFaults
import KilnKafka
import KilnRedis
import KilnScenario
import KilnStack
import KilnStores
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A private Redis primary, its replica and three Sentinels (down-after 3 s: with 1 s a loaded CI machine let
/// the Sentinels fail the new primary over again, and they kept re-promoting the fenced old one) on loopback aliases of
/// 127.0.0.150–199 and random ports, in a temp dir: the Sentinel tests fail these over, never the shared stack.
/// `shutdown()` (in a defer) stops every process and removes the directory, also after a failed test.
final class PrivateRedisSentinels {
    let directory: URL
    let masterName = "kfo"
    let primary: LocalProcessController
    let replica: LocalProcessController
    let sentinels: [LocalProcessController]

    /// Servers on `<hostPrefix><octet>`, `+1`, `+2` and ports `port`, `+1`, `+10…12`, both picked at random from
    /// the ranges (a helper with its own address and port range passes them).
    init(
        hostPrefix: String = "127.0.0.", octets: ClosedRange<Int> = 150...197,
        ports: ClosedRange<Int> = 40_000...48_000
    ) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-sentinel"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let octet = Int.random(in: octets)
        let port = Int.random(in: ports)
        let directory = directory
        func server(_ name: String, _ host: String, _ port: Int, _ extra: [String]) -> LocalProcessController {
            let data = directory.appendingPathComponent(name)
            try? FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
            return LocalProcessController(
                name: name, endpoint: HostPort(host: host, port: port),
                launch: .command(
                    executable: "/usr/bin/redis-server",
                    arguments: [
                        "--bind", host, "--port", String(port), "--save", "", "--appendonly", "no", "--dir", data.path,
                        "--replica-announce-ip", host,
                    ] + extra,
                    log: directory.appendingPathComponent("\(name).log")),
                readyProbe: .redisPing)
        }
        let primaryHost = "\(hostPrefix)\(octet)"
        primary = server("primary", primaryHost, port, [])
        replica = server("replica", "\(hostPrefix)\(octet + 1)", port + 1, ["--replicaof", primaryHost, String(port)])
        let sentinelHost = "\(hostPrefix)\(octet + 2)"
        sentinels = try (0..<3).map { index in
            let sentinelPort = port + 10 + index
            let data = directory.appendingPathComponent("sentinel-\(index)")
            try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
            let config = data.appendingPathComponent("sentinel.conf")
            try """
            bind \(sentinelHost)
            port \(sentinelPort)
            protected-mode no
            dir \(data.path)
            sentinel announce-ip \(sentinelHost)
            sentinel monitor kfo \(primaryHost) \(port) 2
            sentinel down-after-milliseconds kfo 3000
            sentinel failover-timeout kfo 10000
            sentinel parallel-syncs kfo 1

            """.write(to: config, atomically: true, encoding: .utf8)
            return LocalProcessController(
                name: "sentinel-\(index)", endpoint: HostPort(host: sentinelHost, port: sentinelPort),
                launch: .command(
                    executable: "/usr/bin/redis-server", arguments: [config.path, "--sentinel"],
                    log: directory.appendingPathComponent("sentinel-\(index).log")),
                readyProbe: .redisPing)
        }
        do {
            for process in [primary, replica] + sentinels { try process.start(timeout: .seconds(10)) }
        } catch {
            shutdown()
            throw error
        }
    }

    var sentinelEndpoints: [HostPort] { sentinels.map(\.endpoint) }

    func shutdown() {
        for process in sentinels + [replica, primary] { process.shutdown() }
        try? FileManager.default.removeItem(at: directory)
    }

    /// A stack definition whose Redis is this group (the other stores are never used).
    var stack: StackDefinition {
        var stack = TestStack.definition
        stack.redis.primary = primary.endpoint
        stack.redis.replicas = [replica.endpoint]
        stack.redis.sentinels = sentinelEndpoints
        stack.redis.masterName = masterName
        return stack
    }
}

@Suite("Redis Sentinel failover on a private primary, replica and three Sentinels")
struct RedisSentinelFailoverTests {
    @Test func sentinelFailoverElectsTheReplicaAndFailsBack() throws {
        let group = try PrivateRedisSentinels()
        defer { group.shutdown() }
        let directory = PrimaryDirectory(["redis": group.primary.endpoint])
        let fault = RedisSentinelFailover(
            masterName: group.masterName, sentinels: group.sentinelEndpoints, trigger: .command, failBack: true,
            directory: directory, timeout: .seconds(20))
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        #expect(fault.newPrimary == group.replica.endpoint)
        #expect(directory.primary(of: "redis") == group.replica.endpoint)
        print("redis SENTINEL FAILOVER: new primary after \(fault.electionTime?.wholeMilliseconds ?? -1) ms")
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(directory.primary(of: "redis") == group.primary.endpoint)
        let role = try RedisConnection(host: group.primary.endpoint.host, port: group.primary.endpoint.port)
            .command(["ROLE"]).array?.first?.string
        #expect(role == "master")
    }

    @Test func killedPrimaryIsReplacedByElectionAndRejoinsAsReplica() throws {
        let group = try PrivateRedisSentinels()
        defer { group.shutdown() }
        let fault = RedisSentinelFailover(
            masterName: group.masterName, sentinels: group.sentinelEndpoints, trigger: .killPrimary(group.primary),
            timeout: .seconds(20))
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        #expect(started.note.contains("killed"), "\(started.note)")
        print(
            "redis primary SIGKILL: sentinels elected \(fault.newPrimary?.description ?? "-") after "
                + "\(fault.electionTime?.wholeMilliseconds ?? -1) ms (down-after 3000 ms)")
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(record.note.contains("\(group.primary.endpoint) is its connected replica"), "\(record.note)")
    }

    /// Without Kiln's fence the old primary keeps taking writes until Sentinel converts it (the note says when).
    @Test func withoutTheFenceSentinelDemotesTheOldPrimaryItself() throws {
        let group = try PrivateRedisSentinels()
        defer { group.shutdown() }
        let fault = RedisSentinelFailover(
            masterName: group.masterName, sentinels: group.sentinelEndpoints, fenceOldPrimary: false,
            timeout: .seconds(30))
        let driver = FaultDriver(fault)
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        #expect(started.note.contains("converted by Sentinel"), "\(started.note)")
        print("redis SENTINEL FAILOVER without fence: \(started.note)")
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
    }

    @Test func aFailoverThatCannotHappenIsRecordedNo() throws {
        // Sentinels that do not exist: setup refuses within its timeout instead of waiting for an election.
        let fault = RedisSentinelFailover(
            masterName: "kfo", sentinels: [HostPort(host: "127.0.0.199", port: 9)], timeout: .seconds(1))
        let record = FaultDriver(fault).run(for: .zero)
        #expect(record.verified == .no)
        #expect(record.note.contains("not ready"), "\(record.note)")
    }

    @Test func redisClientRediscoversThePrimaryThroughSentinel() throws {
        let group = try PrivateRedisSentinels()
        defer { group.shutdown() }
        let context = StoreFixtures.context(
            namespace: TestStack.uniqueName("kfo"), timeout: .seconds(2), stack: group.stack)
        let client = try RedisClient(context: context)
        defer { client.close() }
        #expect(client.invoke(.set, Request(row: 1)) == .ok)
        let fault = RedisSentinelFailover(
            masterName: group.masterName, sentinels: group.sentinelEndpoints, timeout: .seconds(20))
        let driver = FaultDriver(fault)
        defer { driver.stop() }
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        // The first ops may end info/fail (connection killed by the Sentinels, READONLY); no restart is needed.
        var outcomes: [Outcome] = []
        for row in Int64(2)..<12 {
            outcomes.append(client.invoke(.set, Request(row: row)))
        }
        #expect(outcomes.suffix(5).allSatisfy { $0 == .ok }, "\(outcomes)")
        let newPrimary = try #require(fault.newPrimary)
        let value = try RedisConnection(host: newPrimary.host, port: newPrimary.port)
            .command(["EXISTS", "\(context.namespace):txn:12"]).integer
        #expect(value == 1)
    }
}

@Suite("Kafka broker loss on a private Tansu broker")
struct KafkaBrokerFaultTests {
    final class PrivateTansu {
        let directory: URL
        let controller: LocalProcessController

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                TestStack.uniqueName("kiln-tansu"))
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let endpoint = HostPort(host: "127.0.0.\(Int.random(in: 150...199))", port: Int.random(in: 49_000...55_000))
            let url = "tcp://\(endpoint)"
            controller = LocalProcessController(
                name: "tansu", endpoint: endpoint,
                launch: .command(
                    executable: TestStack.paths.tools.appendingPathComponent("tansu").path,
                    arguments: [
                        "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine",
                        "memory://tansu/",
                    ],
                    log: directory.appendingPathComponent("tansu.log")),
                readyProbe: .request(KafkaBrokerFault.apiVersionsRequest))
            try controller.start(timeout: .seconds(10))
        }

        func shutdown() {
            controller.shutdown()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    @Test func killIsVerifiedAndTheRestartedBrokerAnswersEmpty() throws {
        let tansu = try PrivateTansu()
        defer { tansu.shutdown() }
        let bootstrap = tansu.controller.endpoint.description
        let topic = TestStack.uniqueName("kiln-broker-loss")
        let producer = try KafkaProducer(bootstrapServers: bootstrap, idempotent: true)
        for id in 0..<10 {
            try producer.produce(topic: topic, key: nil, value: Array("event-\(id)".utf8), id: UInt64(id))
        }
        let reports = try producer.flush(timeoutMilliseconds: 10_000)
        #expect(reports.count == 10)
        #expect(reports.allSatisfy { $0.error == nil })
        let driver = FaultDriver(KafkaBrokerFault(action: .kill, controller: tansu.controller))
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        #expect(started.note.contains("memory storage"), "\(started.note)")
        #expect(
            TCPProbe.request(
                to: tansu.controller.endpoint, payload: KafkaBrokerFault.apiVersionsRequest,
                timeout: .milliseconds(300)) != .answered)
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
        #expect(record.kind == "kafka:kill")
        // Memory storage: the ten acknowledged events (and their topic) died with the broker.
        let consumer = try KafkaConsumer(bootstrapServers: bootstrap)
        defer { consumer.close() }
        #expect(try consumer.existingPartitionCount(topic: topic, timeoutMilliseconds: 5_000) == nil)
    }

    @Test func pauseIsProvedByAKafkaRequestNotJustAConnect() throws {
        let tansu = try PrivateTansu()
        defer { tansu.shutdown() }
        let driver = FaultDriver(KafkaBrokerFault(action: .pause, controller: tansu.controller))
        let started = driver.start()
        #expect(started.verified != .no, "\(started.note)")
        #expect(started.note.contains("ApiVersions on a connection opened before the pause: no reply"), "\(started.note)")
        #expect(TCPProbe.connect(to: tansu.controller.endpoint, timeout: .milliseconds(300)) == .answered)
        let record = driver.stop()
        #expect(record.verified == .yes, "\(record.note)")
    }
}
