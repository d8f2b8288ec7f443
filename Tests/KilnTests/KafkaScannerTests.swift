import KilnCheck
import KilnCore
import KilnData
import KilnKafka
import KilnStores
import Testing

/// Compares scanned rows with the generator (shared by the Kafka, Redis and FalkorDB scanner tests).
enum ScannedRowChecks {
    /// Names of the non-nil fields of `row` that differ from the generator's row `txnID - 1`.
    static func mismatches(_ row: StoredRow, _ dataset: Dataset) -> [String] {
        guard row.txnID >= 1, row.txnID <= dataset.rows else { return ["txnID \(row.txnID)"] }
        return ReconcileChecker.differences(row, dataset.transaction(row.txnID - 1), dataset)
    }

    /// Whether every field of the `jsonl` encoding is present.
    static func hasEveryJSONField(_ row: StoredRow) -> Bool {
        row.userID != nil && row.merchantID != nil && row.deviceID != nil && row.locationID != nil
            && row.amountCents != nil && row.timestampMillis != nil && row.currency != nil && row.channel != nil
            && row.status != nil && row.fraudScoreMillis != nil && row.isFraud != nil && row.ringID != nil
    }

    /// Whether `rows` hold each id of `ids` exactly once and nothing else.
    static func isEachID(_ rows: [StoredRow], _ ids: ClosedRange<Int64>) -> Bool {
        rows.count == ids.count && Set(rows.map(\.txnID)) == Set(ids)
    }

    static func json(_ txn: Transaction, _ dataset: Dataset) -> [UInt8] {
        var encoder = RowEncoder(format: .jsonl, dataset: dataset, capacity: 4096)
        encoder.append(txn)
        return Array(encoder.bytes.dropLast())
    }
}

@Suite("TransactionJSON (the jsonl row parser)")
struct TransactionJSONTests {
    typealias F = StoreClientFixtures

    func parse(_ text: String) -> StoredRow { TransactionJSON.parse(Array(text.utf8)) }

    @Test func everyEncodedRowParsesToTheGeneratorsValues() throws {
        var encoder = RowEncoder(format: .jsonl, dataset: F.dataset, capacity: 1 << 20)
        // Spread over the whole dataset: every day, currency, channel, ring and non-ring rows.
        let indexes = Array(0..<Int64(3_000)) + stride(from: 3_000, to: F.dataset.rows, by: 37).map { $0 }
        var bad = 0
        var incomplete = 0
        var rings = 0
        for index in indexes {
            encoder.removeAll()
            encoder.append(F.dataset.transaction(index))
            let row = encoder.withBytes { TransactionJSON.parse(UnsafeRawBufferPointer(rebasing: $0.dropLast())) }
            if row.txnID != index + 1 || !ScannedRowChecks.mismatches(row, F.dataset).isEmpty { bad += 1 }
            if !ScannedRowChecks.hasEveryJSONField(row) { incomplete += 1 }
            if (row.ringID ?? -1) >= 0 { rings += 1 }
        }
        #expect(bad == 0)
        #expect(incomplete == 0)
        #expect(rings > 0)
    }

    @Test func decimalsAreExactAndKeysMayComeInAnyOrder() {
        let row = parse("""
             { "ring_id" : 7, "fraud_score":0.5, "amount":-12.3,"extra":{"a":[1,"}",{"b":null}]},"txn_id":42,
            "ts":"1970-01-02T00:00:01.002Z","is_fraud":true,"currency":"EUR" }
            """)
        #expect(row.txnID == 42)
        #expect(row.amountCents == -1230)
        #expect(row.fraudScoreMillis == 500)
        #expect(row.ringID == 7)
        #expect(row.isFraud == true)
        #expect(row.currency == "EUR")
        #expect(row.timestampMillis == 86_401_002)
        #expect(row.userID == nil)
        #expect(parse(#"{"amount":12.340}"#).amountCents == 1234)
        #expect(parse(#"{"amount":12}"#).amountCents == 1200)
    }

    @Test func unreadableValuesAreNilAndTheRestIsKept() {
        let row = parse(#"{"txn_id":5,"amount":12.345,"user_id":"7","merchant_id":3x,"currency":"E\"UR","device_id":9}"#)
        #expect(row.txnID == 5)
        #expect(row.amountCents == nil)
        #expect(row.userID == nil)
        #expect(row.merchantID == nil)
        #expect(row.currency == nil)
        #expect(row.deviceID == 9)
        #expect(row.ringID == -1)  // a complete object without ring_id: absent
        let stamps = [#"{"ts":"2026-01-01 00:00:00.000Z"}"#, #"{"ts":1767225600000}"#, #"{"ts":"2026-13-01T00:00:00.000Z"}"#]
        for text in stamps {
            #expect(parse(text).timestampMillis == nil)
        }
        #expect(parse(#"{"txn_id":1.5}"#).txnID == -1)
        #expect(parse(#"{"txn_id":"1"}"#).txnID == -1)
    }

    @Test func brokenObjectsKeepWhatCameBeforeTheBreak() {
        for text in ["", "garbage", "[1,2]", "{", #"{"txn_id""#, "null", #"{"a":"#] {
            let row = parse(text)
            #expect(row.txnID == -1, "\(text)")
            #expect(row.ringID == nil, "\(text)")
        }
        let truncated = parse(#"{"txn_id":5,"user_id":6,"merchant_id":"#)
        #expect(truncated.txnID == 5)
        #expect(truncated.userID == 6)
        #expect(truncated.merchantID == nil)
        #expect(truncated.ringID == nil)
        #expect(parse(#"{"txn_id":12345678901234567890}"#).txnID == -1)  // more digits than an Int64 holds
    }
}

@Suite("Kafka scanner (against the embedded Tansu broker)")
struct KafkaScannerTests {
    typealias F = StoreClientFixtures
    static func op(_ name: String) -> KafkaOperation { KafkaOperation(rawValue: name)! }

    let namespace = TestStack.uniqueName("kiln_kscan")

    func scanAll(_ scanner: KafkaScanner) throws -> [StoredRow] {
        var rows: [StoredRow] = []
        try scanner.scan { rows.append($0) }
        return rows
    }

    @Test func deliversEveryMessageWithItsFieldsPartitionOffsetAndKey() throws {
        let client = try KafkaClient(context: F.context(namespace: namespace))
        defer { client.close() }
        try client.setup()
        #expect(client.invoke(Self.op("bulk"), Request(rows: 0..<3_000)) == .ok)

        let scanner = try KafkaScanner(context: F.context(namespace: namespace))
        defer { scanner.close() }
        #expect(scanner.source == "topic \(namespace).transactions")
        let rows = try scanAll(scanner)
        #expect(rows.count == 3_000)
        #expect(ScannedRowChecks.isEachID(rows, 1...Int64(3_000)))
        #expect(rows.filter { !ScannedRowChecks.mismatches($0, F.dataset).isEmpty }.count == 0)
        #expect(rows.allSatisfy { ScannedRowChecks.hasEveryJSONField($0) })
        #expect(rows.allSatisfy { row in row.key == row.userID.map { String($0) } })
        struct Position: Hashable { var partition: Int32, offset: Int64 }
        let positions = Set(rows.compactMap { row in row.partition.map { Position(partition: $0, offset: row.offset ?? -1) } })
        #expect(positions.count == 3_000)
        #expect(positions.allSatisfy { $0.partition >= 0 && $0.partition < client.partitions && $0.offset >= 0 })

        // The same scanner scans again, from the beginning.
        #expect(try scanAll(scanner).count == 3_000)
    }

    @Test func aSecondProduceAndAMalformedValueAreDeliveredAsStored() throws {
        let client = try KafkaClient(context: F.context(namespace: namespace))
        defer { client.close() }
        try client.setup()
        #expect(client.invoke(Self.op("bulk"), Request(rows: 0..<200)) == .ok)
        #expect(client.invoke(Self.op("produce"), Request(row: 5)) == .ok)
        let producer = try KafkaProducer(bootstrapServers: TestStack.kafkaBootstrap)
        var tampered = ScannedRowChecks.json(F.dataset.transaction(9), F.dataset)
        tampered = Array(String(decoding: tampered, as: UTF8.self)
            .replacingOccurrences(of: "\"user_id\":", with: "\"user_id\":9").utf8)
        try producer.produce(topic: client.topic, key: Array("x".utf8), value: Array("garbage".utf8), id: 1)
        try producer.produce(topic: client.topic, key: nil, value: tampered, id: 2)
        let reports = try producer.flush(timeoutMilliseconds: 10_000)
        #expect(reports.count == 2)
        #expect(reports.allSatisfy { $0.persistence == .persisted })

        let scanner = try KafkaScanner(context: F.context(namespace: namespace))
        defer { scanner.close() }
        let rows = try scanAll(scanner)
        #expect(rows.count == 203)
        #expect(rows.filter { $0.txnID == 6 }.count == 2)
        let garbage = try #require(rows.first { $0.txnID == -1 })
        #expect(garbage.key == "x")
        #expect(garbage.userID == nil && garbage.amountCents == nil && garbage.ringID == nil)
        let copies = rows.filter { $0.txnID == 10 }
        #expect(copies.count == 2)
        let changed = try #require(copies.first { $0.key == nil })
        let differences = ScannedRowChecks.mismatches(changed, F.dataset)
        #expect(differences.count == 1 && differences[0].hasPrefix("user_id:"), "\(differences)")
    }

    @Test func aTopicTheClusterDoesNotHaveYieldsNoRowsAndIsNotCreated() throws {
        let scanner = try KafkaScanner(context: F.context(namespace: namespace))
        defer { scanner.close() }
        #expect(try scanAll(scanner).isEmpty)
        let consumer = try KafkaConsumer(bootstrapServers: TestStack.kafkaBootstrap)
        defer { consumer.close() }
        #expect(try consumer.existingPartitionCount(topic: scanner.topic, timeoutMilliseconds: 5_000) == nil)
    }

    @Test func anEmptyTopicYieldsNoRows() throws {
        let client = try KafkaClient(context: F.context(namespace: namespace))
        defer { client.close() }
        try client.setup()  // creates the topic
        let consumer = try KafkaConsumer(bootstrapServers: TestStack.kafkaBootstrap)
        defer { consumer.close() }
        #expect(try consumer.existingPartitionCount(topic: client.topic, timeoutMilliseconds: 5_000)
            == client.partitions)
        let scanner = try KafkaScanner(context: F.context(namespace: namespace))
        defer { scanner.close() }
        #expect(try scanAll(scanner).isEmpty)
    }

    @Test func anUnreachableBrokerThrowsNamingTheStore() throws {
        let stack = F.stack(allAt: HostPort(host: "127.0.0.1", port: 3))
        let error = #expect(throws: KafkaScanner.ScanError.self) {
            try KafkaScanner(context: F.context(namespace: namespace, stack: stack, timeout: .seconds(1)))
        }
        #expect(error?.description.hasPrefix("kafka at 127.0.0.1:3") == true)
    }
}
