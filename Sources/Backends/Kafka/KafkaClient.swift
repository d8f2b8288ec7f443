import KilnBackend
import KilnCore
import KilnData
import KilnKafka

/// The operations of store `kafka`: the raw value is the name in scenarios after `kafka.`.
public enum KafkaOperation: String, StoreOperation {
    case bulk
    case produce
    case consume
    case fetchAt = "fetch-at"

    public static let store = "kafka"

    public var kind: OperationDescriptor.Kind {
        switch self {
        case .bulk: .bulk
        case .produce: .write
        case .consume, .fetchAt: .read
        }
    }

    public var summary: String {
        switch self {
        case .bulk:
            "produce every row, then wait for all delivery reports"
        case .produce:
            "produce one row and wait for its delivery report"
        case .consume:
            "poll up to 100 messages (all partitions assigned from the beginning)"
        case .fetchAt:
            "replay: read the message at a random partition and offset (row / partitions / 2)"
        }
    }
}

/// Kafka as the platform's event log: topic `<ns>.transactions`, key = the row's user id as decimal text (one
/// partition per user, as the platform partitions), value = the row's JSON (the `jsonl` encoding without its newline).
///
/// The producer is idempotent with `acks=all`; `message.timeout.ms` is the context's timeout, so every message gets
/// a delivery report within it. An op is `ok` only when the broker acknowledged every message of it; `fail` when
/// none may have been written (all definitely not persisted, or nothing could be enqueued); otherwise `info`
/// (a timeout, "possibly persisted", or a bulk of which only part was persisted). Classes are librdkafka error names
/// (`_MSG_TIMED_OUT`, `_QUEUE_FULL`, `NOT_LEADER_OR_FOLLOWER`…). librdkafka reconnects by itself; a producer that
/// hit a fatal error is replaced on the next invoke.
///
/// The consumer reads by `assign()` of every partition from the beginning, without joining a group (a join takes
/// ~20 s against Tansu) and without committing; its `group.id` is `<ns>-load`. Teardown deletes the topic. Lag is not exposed: Tansu 0.6
/// answers 1 for every high watermark, so only "every partition reached its end" (`isCaughtUp`) can be known.
public final class KafkaClient: Client {
    public typealias Operation = KafkaOperation

    public let context: ClientContext
    public let topic: String
    /// Partitions of the topic, from broker metadata (the broker's default when setup auto-creates the topic).
    public private(set) var partitions: Int
    /// Messages the last `consume` returned.
    public private(set) var lastReadCount = 0
    /// Whether, at the last `consume`, every partition had reached its end (all messages written before were read).
    public private(set) var isCaughtUp = false

    private let bootstrap: String
    /// TLS and SASL properties of every client (empty for a plaintext stack): `KafkaStackConfig.clientProperties`.
    private let security: [String: String]
    private let timeoutMilliseconds: Int32
    private var producer: KafkaProducer?
    private var consumer: KafkaConsumer?
    /// `fetch-at`'s own consumer, re-assigned per op.
    private var fetchConsumer: KafkaConsumer?
    private var assigned = false
    /// Delivery-report ids: increasing across ops, so a late report of an earlier op is never counted for a later
    /// one.
    private var nextID: UInt64 = 0
    /// Reused: the `kafka` encoding (`user_id<TAB>json<LF>`) of one batch of rows.
    private var lines: RowEncoder

    /// Creates the producer and consumer and checks that a broker answers (fetching the topic's metadata, which
    /// auto-creates the topic on brokers that allow it).
    /// - Throws: `ConnectError` naming the store and bootstrap servers.
    public init(context: ClientContext) throws {
        self.context = context
        topic = "\(context.namespace).transactions"
        bootstrap = context.stack.kafka.bootstrapServers
        let millis = context.timeout.wholeMilliseconds
        timeoutMilliseconds = Int32(clamping: max(1, millis))
        lines = RowEncoder(format: .kafka, dataset: context.dataset, capacity: 1 << 18)
        do {
            security = try context.stack.kafka.clientProperties(in: context.environment)
        } catch {
            throw StoreError(store: "kafka", address: bootstrap, detail: error.description)
        }
        do {
            let consumer = try KafkaConsumer(
                bootstrapServers: bootstrap, groupID: "\(context.namespace)-load",
                properties: Self.consumerProperties.merging(security) { $1 })
            partitions = try consumer.partitionCount(topic: topic, timeoutMilliseconds: timeoutMilliseconds)
            self.consumer = consumer
            let producer = try Self.makeProducer(bootstrap, security, timeoutMilliseconds)
            producer.prepare(topic: topic, timeoutMilliseconds: timeoutMilliseconds)
            self.producer = producer
        } catch {
            throw StoreError(store: "kafka", address: bootstrap, detail: error.description)
        }
    }

    /// Load consumers read a few messages per op, so they must not prefetch: librdkafka's defaults (up to 64 MB
    /// queued per consumer, 50 MB fetches) made 96 consumers pull gigabytes from a 10M-message topic, which took
    /// 7 GB of Kiln's memory and slowed the broker's produce path to ~1 s. A fetch that finds nothing new returns
    /// after 10 ms instead of a 500 ms long poll.
    static let consumerProperties = [
        "fetch.wait.max.ms": "10",
        "queued.min.messages": "100",
        "queued.max.messages.kbytes": "1024",
        "fetch.max.bytes": "1048576",
        "max.partition.fetch.bytes": "65536",
    ]

    private static func makeProducer(_ bootstrap: String, _ security: [String: String], _ timeout: Int32)
        throws(KafkaError) -> KafkaProducer
    {
        let producer = try KafkaProducer(
            bootstrapServers: bootstrap, idempotent: true,
            properties: ["acks": "all", "message.timeout.ms": String(timeout)].merging(security) { $1 })
        producer.enqueueTimeoutMilliseconds = timeout
        producer.closeFlushTimeoutMilliseconds = timeout
        return producer
    }

    /// Creates the topic if needed (auto-creation through a metadata request) and records its partition count.
    public func setup() throws {
        let consumer = try openConsumer()
        partitions = try consumer.partitionCount(topic: topic, timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Deletes the topic (DeleteTopics; a missing topic is fine), so a `fresh` run starts from an empty log. This
    /// client's own producer and consumers are closed first (and reopened by the next op): librdkafka 2.x crashed in
    /// its metadata cache when a topic it held was deleted under a live handle.
    public func teardown() throws {
        close()
        try KafkaAdmin(bootstrapServers: bootstrap, properties: security).deleteTopics([topic], timeoutMilliseconds: timeoutMilliseconds)
    }

    public func close() {
        fetchConsumer?.close()
        fetchConsumer = nil
        consumer?.close()
        consumer = nil
        producer = nil  // deinit flushes for at most the context's timeout
    }

    public func invoke(_ operation: KafkaOperation, _ request: Request) -> Outcome {
        switch operation {
        case .bulk: return produce(request.rows)
        case .produce: return produce(request.row..<(request.row + 1))
        case .consume: return consume()
        // Half the mean partition length: inside every partition of a keyed topic (Tansu 0.6 reports no usable
        // high watermark, so an offset past a partition's end would wait for data instead of ending).
        case .fetchAt: return fetch(partition: Int32(truncatingIfNeeded: request.random % UInt64(max(1, partitions))),
            offset: request.row / Int64(max(1, partitions)) / 2)
        }
    }

    // MARK: - Operations

    private func produce(_ rows: Range<Int64>) -> Outcome {
        let producer: KafkaProducer
        do {
            producer = try openProducer()
        } catch {
            return .fail(error.name)
        }
        let firstID = nextID
        var tally = DeliveryTally(firstID: firstID)
        var enqueued = 0
        var enqueueError: KafkaError?
        // Rows are encoded 1024 at a time in the `kafka` format (`user_id<TAB>json<LF>`) and produced from that
        // buffer in place: nothing is allocated per message.
        var start = rows.lowerBound
        batches: while start < rows.upperBound {
            let end = min(rows.upperBound, start + 1024)
            lines.removeAll()
            lines.append(context.dataset, rows: start..<end)
            enqueueError = lines.withBytes { bytes -> KafkaError? in
                var lineStart = 0
                var tab = 0
                for position in bytes.indices {
                    let byte = bytes[position]
                    if byte == 0x09 {
                        tab = position
                    } else if byte == 0x0A {
                        do throws(KafkaError) {
                            try producer.produce(
                                topic: topic, key: UnsafeRawBufferPointer(rebasing: bytes[lineStart..<tab]),
                                value: UnsafeRawBufferPointer(rebasing: bytes[(tab + 1)..<position]), id: nextID)
                        } catch {
                            return error
                        }
                        nextID += 1
                        enqueued += 1
                        lineStart = position + 1
                    }
                }
                return nil
            }
            if enqueueError != nil { break batches }
            tally.add(producer.poll())
            start = end
        }
        // Every enqueued message is reported within message.timeout.ms; the slack covers the report's way back.
        do {
            tally.add(try producer.flush(timeoutMilliseconds: timeoutMilliseconds + 5_000))
        } catch {
            tally.add(producer.poll())
            tally.flushError = error
        }
        if enqueueError?.code == KafkaError.fatal {
            self.producer = nil  // unusable after a fatal error; the next op creates a new one
        }
        return tally.outcome(enqueued: enqueued, enqueueError: enqueueError)
    }

    private func consume() -> Outcome {
        do {
            let consumer = try openConsumer()
            if !assigned {
                try consumer.assign(topic: topic, partitions: (0..<Int32(partitions)).map { $0 }, from: .beginning)
                assigned = true
            }
            var count = 0
            var wait = Int32(min(100, timeoutMilliseconds))
            while count < 100, try consumer.poll(timeoutMilliseconds: wait) != nil {
                count += 1
                wait = 0
            }
            lastReadCount = count
            isCaughtUp = (0..<Int32(partitions)).allSatisfy { consumer.partitionsAtEnd[$0] != nil }
            return .ok
        } catch {
            return .fail(error.name)
        }
    }

    /// Reads one message at `offset` of `partition` with a consumer of its own (so `consume`'s position is not
    /// disturbed). `ok` when the message arrives or the partition turns out to end before it; `fail("timeout")`
    /// when neither happens within the context's timeout.
    private func fetch(partition: Int32, offset: Int64) -> Outcome {
        do {
            let consumer: KafkaConsumer
            if let existing = fetchConsumer {
                consumer = existing
            } else {
                consumer = try KafkaConsumer(
                    bootstrapServers: bootstrap, groupID: "\(context.namespace)-fetch",
                    properties: Self.consumerProperties.merging(security) { $1 })
                fetchConsumer = consumer
            }
            try consumer.assign(topic: topic, partitions: [partition], from: .offset(offset))
            let deadline = ContinuousClock.now + .milliseconds(Int(timeoutMilliseconds))
            while ContinuousClock.now < deadline {
                if try consumer.poll(timeoutMilliseconds: 50) != nil { return .ok }
                if consumer.partitionsAtEnd[partition] != nil { return .ok }
            }
            return .fail("timeout")
        } catch {
            fetchConsumer = nil
            return .fail(error.name)
        }
    }

    // MARK: - Plumbing

    /// The client could not reach a broker at init. Names the store and bootstrap servers.
    public typealias ConnectError = StoreError

    private func openProducer() throws(KafkaError) -> KafkaProducer {
        if let producer { return producer }
        let fresh = try Self.makeProducer(bootstrap, security, timeoutMilliseconds)
        producer = fresh
        return fresh
    }

    private func openConsumer() throws(KafkaError) -> KafkaConsumer {
        if let consumer { return consumer }
        let fresh = try KafkaConsumer(
            bootstrapServers: bootstrap, groupID: "\(context.namespace)-load",
            properties: Self.consumerProperties.merging(security) { $1 })
        consumer = fresh
        assigned = false
        return fresh
    }
}

/// Delivery reports of one produce op, counted by persistence.
private struct DeliveryTally {
    let firstID: UInt64
    var persisted = 0
    var possiblyPersisted = 0
    var notPersisted = 0
    var firstProblem: String?
    var flushError: KafkaError?

    init(firstID: UInt64) { self.firstID = firstID }

    mutating func add(_ reports: [KafkaDeliveryReport]) {
        for report in reports where report.id >= firstID {
            switch report.persistence {
            case .persisted: persisted += 1
            case .possiblyPersisted: possiblyPersisted += 1
            case .notPersisted: notPersisted += 1
            }
            if report.persistence != .persisted, firstProblem == nil {
                firstProblem = report.error?.name ?? "not-persisted"
            }
        }
    }

    func outcome(enqueued: Int, enqueueError: KafkaError?) -> Outcome {
        let unreported = enqueued - persisted - possiblyPersisted - notPersisted
        let problem = firstProblem ?? enqueueError?.name ?? flushError?.name ?? "unknown"
        if enqueueError == nil, unreported == 0, persisted == enqueued {
            return .ok
        }
        if persisted == 0, possiblyPersisted == 0, unreported == 0 {
            return .fail(problem)  // nothing of the op can be in the log
        }
        return .info(unreported > 0 ? (flushError?.name ?? problem) : problem)
    }
}
