import Foundation
import KilnKafka
import Testing

@Suite("Kafka wrapper (librdkafka against the embedded broker)")
struct KafkaWrapperTests {
    @Test func theLoadedLibrdkafkaIsNewEnoughForTansu() {
        // 2.3 = 0x0203xxxx; Debian's 2.0.2 cannot parse Tansu's ApiVersions v3 answer.
        #expect(KafkaLibrary.librdkafkaVersionNumber >= 0x0203_0000, "loaded \(KafkaLibrary.librdkafkaVersion)")
    }

    @Test func tenThousandIdempotentMessagesComeBackExactlyOnce() throws {
        let topic = TestStack.uniqueName("kiln-test-kafka")
        let count = 10_000
        let consumer = try KafkaConsumer(bootstrapServers: TestStack.kafkaBootstrap)
        defer { consumer.close() }
        let partitions = try consumer.partitionCount(topic: topic, timeoutMilliseconds: 10_000)
        #expect(partitions >= 1)

        let producer = try KafkaProducer(bootstrapServers: TestStack.kafkaBootstrap, idempotent: true)
        var reports: [KafkaDeliveryReport] = []
        for id in 0..<count {
            try producer.produce(
                topic: topic, key: Array("user-\(id % 97)".utf8), value: Array("message-\(id)".utf8), id: UInt64(id))
            if id % 1000 == 999 { reports += producer.poll() }
        }
        reports += try producer.flush(timeoutMilliseconds: 30_000)
        #expect(reports.count == count)
        let failed = reports.filter { $0.error != nil }
        #expect(failed.isEmpty, "\(failed.count) failed, first: \(String(describing: failed.first?.error))")
        let notPersisted = reports.filter { $0.persistence != .persisted }
        #expect(
            notPersisted.isEmpty,
            "\(notPersisted.count) not persisted, first: \(String(describing: notPersisted.first?.persistence))")
        #expect(Set(reports.map(\.id)) == Set((0..<count).map(UInt64.init)))

        let all = (0..<Int32(partitions)).map { $0 }
        try consumer.assign(topic: topic, partitions: all, from: .beginning)
        var seen: [String: Int] = [:]
        var keysByPartition: [String: Set<Int32>] = [:]
        let deadline = ContinuousClock.now + .seconds(60)
        while !all.allSatisfy({ consumer.partitionsAtEnd[$0] != nil }) && ContinuousClock.now < deadline {
            guard let message = try consumer.poll(timeoutMilliseconds: 500) else { continue }
            seen[String(decoding: message.value, as: UTF8.self), default: 0] += 1
            keysByPartition[String(decoding: message.key ?? [], as: UTF8.self), default: []].insert(message.partition)
        }
        #expect(seen.count == count, "distinct messages read back")
        #expect(seen.values.allSatisfy { $0 == 1 }, "duplicates: \(seen.filter { $0.value > 1 }.count)")
        #expect(Set(seen.keys) == Set((0..<count).map { "message-\($0)" }))
        // Keyed messages stay on one partition per key.
        #expect(keysByPartition.values.allSatisfy { $0.count == 1 })
    }

    @Test func anUnreachableBrokerFailsWithinTheTimeoutInsteadOfHanging() throws {
        let started = ContinuousClock.now
        let consumer = try KafkaConsumer(bootstrapServers: "127.0.0.1:3")
        let error = #expect(throws: KafkaError.self) {
            _ = try consumer.partitionCount(topic: "nowhere", timeoutMilliseconds: 2_000)
        }
        #expect(error?.operation == .metadata)
        #expect(started.duration(to: .now) < .seconds(10))

        let producer = try KafkaProducer(
            bootstrapServers: "127.0.0.1:3", properties: ["message.timeout.ms": "1500"])
        try producer.produce(topic: "nowhere", key: nil, value: Array("secret-value".utf8), id: 1)
        let reports = try producer.flush(timeoutMilliseconds: 10_000)
        #expect(reports.count == 1)
        let failure = try #require(reports.first?.error)
        #expect(failure.code == KafkaError.messageTimedOut)
        #expect(!failure.description.contains("secret-value"))
    }

    @Test func aFullLocalQueueIsBackpressureNotAnError() throws {
        let topic = TestStack.uniqueName("kiln-test-kafka-backpressure")
        // A 100-message local queue: produce() must serve delivery reports and enqueue again, thousands of times.
        let producer = try KafkaProducer(
            bootstrapServers: TestStack.kafkaBootstrap, properties: ["queue.buffering.max.messages": "100"])
        let count = 3_000
        var reports: [KafkaDeliveryReport] = []
        for id in 0..<count {
            try producer.produce(topic: topic, key: nil, value: Array("m\(id)".utf8), partition: 0, id: UInt64(id))
        }
        reports += producer.poll()
        reports += try producer.flush(timeoutMilliseconds: 30_000)
        #expect(producer.outstanding == 0)
        #expect(reports.allSatisfy { $0.error == nil && $0.topic == topic && $0.partition == 0 })
        // One partition of an idempotent producer keeps the order of enqueueing.
        #expect(reports.map(\.id) == (0..<count).map(UInt64.init))
    }

    @Test func aFlushThatTimesOutSaysHowManyMessagesAreStillInFlight() throws {
        let producer = try KafkaProducer(bootstrapServers: "127.0.0.1:3")
        producer.closeFlushTimeoutMilliseconds = 0
        for id in 0..<5 {
            try producer.produce(topic: "nowhere", key: nil, value: [1, 2, 3], id: UInt64(id))
        }
        let started = ContinuousClock.now
        let error = #expect(throws: KafkaError.self) { _ = try producer.flush(timeoutMilliseconds: 300) }
        #expect(started.duration(to: .now) < .seconds(2))
        #expect(error?.operation == .flush)
        #expect(error?.code == KafkaError.timedOut)
        #expect(error?.messagesInFlight == 5)
        #expect(error?.description.contains("5 message(s) still in flight") == true)
    }

    @Test func aQueueThatStaysFullFailsTheProduceWithinTheEnqueueTimeout() throws {
        let producer = try KafkaProducer(
            bootstrapServers: "127.0.0.1:3", properties: ["queue.buffering.max.messages": "10"])
        producer.closeFlushTimeoutMilliseconds = 0
        producer.enqueueTimeoutMilliseconds = 500
        for id in 0..<10 {
            try producer.produce(topic: "nowhere", key: nil, value: [1], id: UInt64(id))
        }
        let started = ContinuousClock.now
        let error = #expect(throws: KafkaError.self) {
            try producer.produce(topic: "nowhere", key: nil, value: [1], id: 10)
        }
        #expect(error?.operation == .produce)
        #expect(error?.code == KafkaError.queueFull)
        #expect(started.duration(to: .now) < .seconds(3))
    }

    @Test func aRejectedPropertyIsNamedButItsValueIsNot() {
        let error = #expect(throws: KafkaError.self) {
            _ = try KafkaProducer(bootstrapServers: "127.0.0.1:3", properties: ["sasl.password.typo": "hunter2"])
        }
        #expect(error?.property == "sasl.password.typo")
        #expect(error?.description.contains("hunter2") == false)
        #expect(error?.debugDescription.contains("hunter2") == false)
    }
}
