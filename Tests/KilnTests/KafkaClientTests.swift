import KilnCore
import KilnData
import KilnKafka
import KilnStores
import Testing

@Suite("Kafka client (against the embedded Tansu broker)")
struct KafkaClientTests {
    typealias F = StoreClientFixtures
    static func op(_ name: String) -> KafkaOperation { KafkaOperation(rawValue: name)! }

    let namespace = TestStack.uniqueName("kiln_kafka")

    /// Every message of `topic`, read by assign() from the beginning until each partition reports its end.
    func readAll(_ topic: String, partitions: Int) throws -> [KafkaMessage] {
        let consumer = try KafkaConsumer(bootstrapServers: TestStack.kafkaBootstrap)
        defer { consumer.close() }
        let all = (0..<Int32(partitions)).map { $0 }
        try consumer.assign(topic: topic, partitions: all, from: .beginning)
        var messages: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while !all.allSatisfy({ consumer.partitionsAtEnd[$0] != nil }) && ContinuousClock.now < deadline {
            if let message = try consumer.poll(timeoutMilliseconds: 200) { messages.append(message) }
        }
        return messages
    }

    @Test func bulkProducesEveryRowKeyedByUserWithItsJSON() throws {
        let client = try KafkaClient(context: F.context(namespace: namespace))
        defer { client.close() }
        try client.setup()
        try client.setup()
        #expect(client.topic == "\(namespace).transactions")
        #expect(client.partitions >= 1)
        let rows: Range<Int64> = 0..<3_000
        #expect(client.invoke(Self.op("bulk"), Request(rows: rows)) == .ok)
        #expect(client.invoke(Self.op("produce"), Request(row: 3_000)) == .ok)

        let messages = try readAll(client.topic, partitions: client.partitions)
        #expect(messages.count == 3_001)
        var encoder = RowEncoder(format: .jsonl, dataset: F.dataset, capacity: 4096)
        var expected: [[UInt8]: [UInt8]] = [:]  // value -> key
        for index in 0...Int64(3_000) {
            let txn = F.dataset.transaction(index)
            encoder.removeAll()
            encoder.append(txn)
            expected[Array(encoder.bytes.dropLast())] = Array(String(txn.userID).utf8)
        }
        var unmatched = 0
        for message in messages where expected.removeValue(forKey: message.value) != message.key {
            unmatched += 1
        }
        #expect(unmatched == 0)
        #expect(expected.isEmpty)
        // One partition per user.
        let partitionsByKey = Dictionary(grouping: messages, by: { $0.key ?? [] })
            .mapValues { Set($0.map(\.partition)) }
        #expect(partitionsByKey.values.allSatisfy { $0.count == 1 })
    }

    @Test func consumeReadsUpToAHundredMessagesPerOpUntilCaughtUp() throws {
        let writer = try KafkaClient(context: F.context(namespace: namespace))
        defer { writer.close() }
        try writer.setup()
        #expect(writer.invoke(Self.op("bulk"), Request(rows: 0..<250)) == .ok)

        let reader = try KafkaClient(context: F.context(namespace: namespace))
        defer { reader.close() }
        var counts: [Int] = []
        let deadline = ContinuousClock.now + .seconds(15)
        var total = 0
        repeat {
            #expect(reader.invoke(Self.op("consume"), Request()) == .ok)
            counts.append(reader.lastReadCount)
            total += reader.lastReadCount
        } while !(reader.isCaughtUp && total >= 250) && ContinuousClock.now < deadline
        #expect(total == 250, "\(counts)")
        #expect(counts.allSatisfy { $0 <= 100 })
        #expect(reader.isCaughtUp)
        // Nothing new: an empty poll is still a successful read.
        #expect(reader.invoke(Self.op("consume"), Request()) == .ok)
        #expect(reader.lastReadCount == 0)
    }

    @Test func fetchAtReadsOneMessageAtAnOffsetAndTeardownDeletesTheTopic() throws {
        let client = try KafkaClient(context: F.context(namespace: namespace))
        defer { client.close() }
        try client.setup()
        #expect(client.invoke(Self.op("bulk"), Request(rows: 0..<400)) == .ok)
        // Rows the engine can hand a read (below the rows written) map to offsets inside every partition.
        for (row, random) in [(Int64(0), UInt64(0)), (12, 1), (399, 2), (250, 3)] {
            #expect(client.invoke(Self.op("fetch-at"), Request(row: row, random: random)) == .ok)
        }
        try client.teardown()
        #expect(try readAll(client.topic, partitions: client.partitions).isEmpty)
    }

    @Test func anUnreachableBrokerThrowsAtOpenNamingStoreAndAddress() throws {
        let stack = F.stack(allAt: HostPort(host: "127.0.0.1", port: 3))
        let started = ContinuousClock.now
        let error = #expect(throws: KafkaClient.ConnectError.self) {
            _ = try KafkaClient(context: F.context(namespace: namespace, stack: stack, timeout: .seconds(1)))
        }
        #expect(error?.description.contains("kafka at 127.0.0.1:3") == true)
        #expect(started.duration(to: .now) < .seconds(5))
    }

    @Test func theInPlaceProduceKeepsNullKeysAndEmptyValuesApart() throws {
        let topic = TestStack.uniqueName("kiln-test-kafka-raw")
        let consumer = try KafkaConsumer(bootstrapServers: TestStack.kafkaBootstrap)
        defer { consumer.close() }
        let partitions = try consumer.partitionCount(topic: topic, timeoutMilliseconds: 10_000)
        let producer = try KafkaProducer(bootstrapServers: TestStack.kafkaBootstrap)
        let bytes: [UInt8] = Array("k1|v1".utf8)
        try bytes.withUnsafeBytes { raw in
            try producer.produce(
                topic: topic, key: UnsafeRawBufferPointer(rebasing: raw[0..<2]),
                value: UnsafeRawBufferPointer(rebasing: raw[3..<5]), id: 1)
            try producer.produce(topic: topic, key: nil, value: UnsafeRawBufferPointer(start: nil, count: 0), id: 2)
        }
        let reports = try producer.flush(timeoutMilliseconds: 10_000)
        #expect(reports.map(\.persistence) == [.persisted, .persisted])
        let messages = try readAll(topic, partitions: partitions)
        #expect(messages.count == 2)
        let first = messages.first { $0.key != nil }
        #expect(first?.key == Array("k1".utf8) && first?.value == Array("v1".utf8))
        let second = messages.first { $0.key == nil }
        #expect(second?.value == [])
    }
}
