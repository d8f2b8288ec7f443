import KilnCore
import KilnData
import KilnKafka
import KilnBackend

/// Reads topic `<ns>.transactions` (what `KafkaClient` produces) from the beginning of every partition to its end.
///
/// One `StoredRow` per message: `partition`, `offset`, `key` (the message key as text, the user id) and every field
/// of the JSON value (`TransactionJSON`). A value that is not the encoder's JSON becomes a row with the unreadable
/// fields nil (`txnID` -1 when even that is unreadable); no message is dropped. An empty topic, or one the cluster
/// does not have, yields no rows and is not created.
///
/// The end: every partition is assigned from the beginning (no group join, no commit) and read until librdkafka has
/// reported end-of-partition for each (Tansu 0.6 answers 1 for every high watermark, so watermarks cannot tell the
/// end). Messages produced while the scan runs may or may not be delivered. A scan with no message and no new
/// end-of-partition for the context's timeout throws `ScanError` (the broker stopped answering); so does any consumer
/// error. Each `scan` uses a new consumer, so a scanner can scan again.
public final class KafkaScanner: StoreScanner {
    public let topic: String
    public var source: String { "topic \(topic)" }

    private let bootstrap: String
    /// TLS and SASL properties (`KafkaStackConfig.clientProperties`; empty for a plaintext stack).
    private let security: [String: String]
    private let groupID: String
    private let decode: (UnsafeRawBufferPointer) -> StoredRow
    private let timeoutMilliseconds: Int32
    /// Opened by init (the reachability check) and used by the first scan; later scans open their own.
    private var unused: KafkaConsumer?

    /// Properties of the scanning consumer: large fetches, and a short broker-side wait so that reaching a
    /// partition's end is reported promptly.
    static let consumerProperties = [
        "fetch.wait.max.ms": "100",
        "fetch.max.bytes": "52428800",
        "max.partition.fetch.bytes": "8388608",
        "queued.max.messages.kbytes": "262144",
        "allow.auto.create.topics": "false",
    ]

    /// Creates a consumer and asks the cluster for its topics (which creates nothing).
    /// - Throws: `ScanError` naming the store and bootstrap servers when no broker answers within the context's
    ///   timeout.
    public convenience init(context: ClientContext) throws {
        try self.init(context: context, topic: "\(context.namespace).transactions")
    }

    /// Reads `topic`, each value decoded by `decode` (default: Kiln's own JSON; a black-box place passes its
    /// `FieldMapping`'s decoder). `decode` must not throw or drop: an unreadable value is a row with nil fields.
    public init(
        context: ClientContext, topic: String,
        decode: @escaping (UnsafeRawBufferPointer) -> StoredRow = { TransactionJSON.parse($0) }
    ) throws {
        self.topic = topic
        self.decode = decode
        bootstrap = context.stack.kafka.bootstrapServers
        groupID = "\(context.namespace)-check"
        let millis = context.timeout.wholeMilliseconds
        timeoutMilliseconds = Int32(clamping: max(1, millis))
        do {
            security = try context.stack.kafka.clientProperties(in: context.environment)
        } catch {
            throw StoreError(store: "kafka", address: bootstrap, detail: error.description)
        }
        do {
            let consumer = try makeConsumer()
            _ = try consumer.existingPartitionCount(topic: topic, timeoutMilliseconds: timeoutMilliseconds)
            unused = consumer
        } catch {
            throw StoreError(store: "kafka", address: bootstrap, detail: error.description)
        }
    }

    public func close() {
        unused?.close()
        unused = nil
    }

    public func scan(_ body: (StoredRow) throws -> Void) throws {
        let consumer: KafkaConsumer
        do throws(KafkaError) {
            if let unused {
                consumer = unused
            } else {
                consumer = try makeConsumer()
            }
        } catch {
            throw StoreError(store: "kafka", address: bootstrap, detail: error.description)
        }
        unused = nil
        defer { consumer.close() }
        let partitions: [Int32]
        do {
            guard let count = try consumer.existingPartitionCount(topic: topic, timeoutMilliseconds: timeoutMilliseconds)
            else { return }
            partitions = (0..<Int32(count)).map { $0 }
            try consumer.assign(topic: topic, partitions: partitions, from: .beginning)
        } catch {
            throw StoreError(store: "kafka", address: bootstrap, detail: error.description)
        }
        let stallLimit = Duration.milliseconds(Int64(timeoutMilliseconds))
        var lastProgress = ContinuousClock.now
        var endsSeen = 0
        var delivered = 0
        var deliveredSeen = 0
        while true {
            let message: KafkaMessage?
            do {
                message = try consumer.poll(timeoutMilliseconds: 100)
            } catch {
                throw StoreError(store: "kafka", address: bootstrap, detail: error.description)
            }
            if let message {
                var row = message.value.withUnsafeBytes { decode($0) }
                row.partition = message.partition
                row.offset = message.offset
                row.key = message.key.map { String(decoding: $0, as: UTF8.self) }
                try body(row)
                delivered += 1
                continue
            }
            // nil: no message within the poll timeout, or an end-of-partition event.
            let ends = consumer.partitionsAtEnd
            if partitions.allSatisfy({ ends[$0] != nil }) { return }
            let now = ContinuousClock.now
            if ends.count != endsSeen || delivered != deliveredSeen {
                endsSeen = ends.count
                deliveredSeen = delivered
                lastProgress = now
            } else if now - lastProgress > stallLimit {
                throw StoreError(
                    store: "kafka", address: bootstrap,
                    detail: "no message and no end of partition for \(stallLimit) (\(ends.count) of "
                        + "\(partitions.count) partitions at their end)")
            }
        }
    }

    private func makeConsumer() throws(KafkaError) -> KafkaConsumer {
        try KafkaConsumer(
            bootstrapServers: bootstrap, groupID: groupID, properties: Self.consumerProperties.merging(security) { $1 })
    }

    /// The broker could not be reached or failed during a scan. Names the store and bootstrap servers.
    public typealias ScanError = StoreError
}
