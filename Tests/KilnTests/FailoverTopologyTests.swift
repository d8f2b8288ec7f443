import Foundation
import KilnCore
import KilnFaults
import KilnStack
import Logging
import Synchronization
import Testing

@Suite("Primary directory")
struct PrimaryDirectoryTests {
    @Test func promotionsMoveTheEntryAndBumpItsGeneration() {
        let first = HostPort(host: "127.0.0.11", port: 15432)
        let second = HostPort(host: "127.0.0.12", port: 15433)
        let directory = PrimaryDirectory(["postgres": first])
        #expect(directory.primary(of: "postgres") == first)
        #expect(directory.entry(of: "postgres")?.generation == 0)
        #expect(directory.primary(of: "redis") == nil)
        #expect(directory.promote("postgres", to: second) == 1)
        #expect(directory.primary(of: "postgres") == second)
        // Back to the first address: a new generation, so clients still reconnect.
        #expect(directory.promote("postgres", to: first) == 2)
        #expect(directory.promote("redis", to: second) == 0)
    }

    @Test func concurrentReadersSeeOnlyWrittenEntries() {
        let endpoints = (0..<8).map { HostPort(host: "127.0.0.\(150 + $0)", port: 5432) }
        let directory = PrimaryDirectory(["postgres": endpoints[0]])
        let strays = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for step in 0..<2000 {
                if worker == 0 {
                    directory.promote("postgres", to: endpoints[step % endpoints.count])
                } else if let seen = directory.primary(of: "postgres"), !endpoints.contains(seen) {
                    strays.add(1, ordering: .relaxed)
                }
            }
        }
        #expect(strays.load(ordering: .relaxed) == 0)
        #expect(directory.entry(of: "postgres")?.generation == 2000)
    }
}

/// Read-only: builds the failover faults for the shared embedded stack without starting them.
@Suite("Failover faults for the embedded stack")
struct EmbeddedFailoverTests {
    private var stack: EmbeddedStack {
        get throws {
            try EmbeddedStack(
                definition: TestStack.definition, paths: TestStack.paths, logger: Logger(label: "kiln.test"))
        }
    }

    @Test func postgresFailoverFindsTheCurrentPrimaryAndStandby() throws {
        let fault = try PostgresFailover.embedded(try stack)
        #expect(
            Set([fault.primary.endpoint, fault.replica.endpoint])
                == Set(
                    [TestStack.definition.postgres.primary] + TestStack.definition.postgres.replicas))
        #expect(fault.primary.postmasterPID() != nil, "the embedded primary's postmaster.pid names no live process")
        #expect(try fault.primary.isInRecovery() == false)
        #expect(try fault.replica.isInRecovery() == true)
        #expect(!fault.primary.isFenced)
    }

    @Test func sentinelAndKafkaFaultsTargetTheStacksServers() throws {
        let stack = try stack
        let redis = try RedisSentinelFailover.embedded(stack, killPrimary: true)
        #expect(redis.sentinels == TestStack.definition.redis.sentinels)
        #expect(redis.kind == "redis-failover:kill")
        let kafka = try KafkaBrokerFault.embedded(stack, action: .pause)
        #expect(kafka.target.contains(TestStack.definition.kafka.bootstrap[0].description))
        #expect(kafka.kind == "kafka:pause")
    }
}
