import CRdKafka

/// One consumed record.
public struct KafkaMessage: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]
    /// The record's timestamp (producer create time, or the broker's log-append time), Unix ms; nil if absent.
    public var timestampMillis: Int64? = nil
}

/// Where an assigned partition starts reading.
public enum KafkaOffset: Sendable {
    case beginning
    case end
    case offset(Int64)

    var raw: Int64 {
        switch self {
        case .beginning: -2  // RD_KAFKA_OFFSET_BEGINNING
        case .end: -1  // RD_KAFKA_OFFSET_END
        case .offset(let offset): offset
        }
    }
}

/// A Kafka consumer that owns one `rd_kafka_t` handle.
///
/// Without a `groupID` it reads only partitions given to `assign` (no group join: a join takes ~20 s against
/// Tansu) and never commits offsets. Ownership: the handle is closed and destroyed by `close()` (idempotent) or in
/// `deinit`. Threading: not `Sendable`; one consumer per worker thread; every call blocks at most its timeout.
public final class KafkaConsumer {
    private var handle: OpaquePointer?
    private var topicNames: [OpaquePointer: String] = [:]
    /// Partitions whose last poll event was end-of-partition, with the offset the end was seen at.
    public private(set) var partitionsAtEnd: [Int32: Int64] = [:]

    static let defaultProperties: [(String, String)] = [
        ("client.id", "kiln"),
        ("enable.partition.eof", "true"),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
        ("socket.nagle.disable", "true"),
        // librdkafka consumers default to false, which makes metadata for a new topic wait forever on the brokers
        // that auto-create (Tansu, Kafka with auto.create.topics.enable).
        ("allow.auto.create.topics", "true"),
    ]

    /// - Throws: `KafkaError` with operation `.configure` (naming the rejected property) or `.createConsumer`.
    public init(bootstrapServers: String, groupID: String? = nil, properties: [String: String] = [:])
        throws(KafkaError)
    {
        var defaults = Self.defaultProperties
        defaults.append(("bootstrap.servers", bootstrapServers))
        // librdkafka requires a group.id for a consumer handle even when only assign() is used.
        defaults.append(("group.id", groupID ?? "kiln-assign-only"))
        let conf = try makeKafkaConfiguration(defaults: defaults, overrides: properties)
        var errstr = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(
                RD_KAFKA_RESP_ERR__INVALID_ARG, operation: .createConsumer, detail: kafkaErrorString(errstr))
        }
        // rd_kafka_new owns `conf` from here on; route the main queue to the consumer queue so poll() serves all.
        rd_kafka_poll_set_consumer(handle)
        self.handle = handle
    }

    deinit {
        close()
    }

    /// Leaves any group and destroys the handle. Idempotent.
    public func close() {
        guard let handle else { return }
        _ = rd_kafka_consumer_close(handle)
        KafkaSecurityFailures.forget(handle)
        rd_kafka_destroy(handle)
        self.handle = nil
    }

    private func open(_ operation: KafkaError.Operation) throws(KafkaError) -> OpaquePointer {
        guard let handle else { throw KafkaError(RD_KAFKA_RESP_ERR__STATE, operation: operation) }
        return handle
    }

    /// The topic's partition count from broker metadata (a broker that auto-creates topics creates it).
    /// - Throws: `KafkaError` (`.metadata`) when no broker answers within `timeoutMilliseconds`.
    public func partitionCount(topic: String, timeoutMilliseconds: Int32) throws(KafkaError) -> Int {
        let handle = try open(.metadata)
        guard let topicHandle = rd_kafka_topic_new(handle, topic, nil) else {
            throw KafkaError(rd_kafka_last_error(), operation: .metadata)
        }
        defer { rd_kafka_topic_destroy(topicHandle) }
        let deadline = ContinuousClockDeadline(milliseconds: timeoutMilliseconds)
        while true {
            let metadata = try KafkaSecurityFailures.metadata(
                handle, allTopics: false, topic: topicHandle, deadline: deadline)
            defer { rd_kafka_metadata_destroy(metadata) }
            if metadata.pointee.topic_cnt > 0 {
                let entry = metadata.pointee.topics[0]
                if entry.err == RD_KAFKA_RESP_ERR_NO_ERROR && entry.partition_cnt > 0 {
                    return Int(entry.partition_cnt)
                }
                // A topic being auto-created reports LEADER_NOT_AVAILABLE / UNKNOWN_TOPIC for a moment.
                if deadline.expired { throw KafkaError(entry.err, operation: .metadata) }
            } else if deadline.expired {
                throw KafkaError(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, operation: .metadata)
            }
            rd_kafka_poll(handle, 50)
        }
    }

    /// The topic's partition count if the cluster already has the topic, else nil. One metadata request for all
    /// topics, so (unlike ``partitionCount(topic:timeoutMilliseconds:)``) nothing is auto-created and an absent topic
    /// costs no wait.
    /// - Throws: `KafkaError` (`.metadata`) when no broker answers within `timeoutMilliseconds`.
    public func existingPartitionCount(topic: String, timeoutMilliseconds: Int32) throws(KafkaError) -> Int? {
        let handle = try open(.metadata)
        let metadata = try KafkaSecurityFailures.metadata(
            handle, allTopics: true, topic: nil, deadline: ContinuousClockDeadline(milliseconds: timeoutMilliseconds))
        defer { rd_kafka_metadata_destroy(metadata) }
        for index in 0..<Int(metadata.pointee.topic_cnt) {
            let entry = metadata.pointee.topics[index]
            guard let name = entry.topic, String(cString: name) == topic else { continue }
            return entry.err == RD_KAFKA_RESP_ERR_NO_ERROR && entry.partition_cnt > 0 ? Int(entry.partition_cnt) : nil
        }
        return nil
    }

    /// Reads `partitions` of `topic` from `from`, replacing any earlier assignment.
    public func assign(topic: String, partitions: [Int32], from: KafkaOffset = .beginning) throws(KafkaError) {
        try assign(topic: topic, offsets: Dictionary(uniqueKeysWithValues: partitions.map { ($0, from) }))
    }

    /// Reads each partition of `offsets` from its own start, replacing any earlier assignment.
    public func assign(topic: String, offsets: [Int32: KafkaOffset]) throws(KafkaError) {
        let handle = try open(.assign)
        let partitions = offsets.keys.sorted()
        guard let list = rd_kafka_topic_partition_list_new(Int32(partitions.count)) else {
            throw KafkaError(RD_KAFKA_RESP_ERR__FAIL, operation: .assign)
        }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for partition in partitions {
            rd_kafka_topic_partition_list_add(list, topic, partition).pointee.offset = offsets[partition]!.raw
        }
        let result = rd_kafka_assign(handle, list)
        guard result == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(result, operation: .assign) }
        // A new assignment starts a new read: an end seen before it says nothing about the new position.
        for partition in partitions { partitionsAtEnd[partition] = nil }
    }

    /// The next message, or nil when none arrived within `timeoutMilliseconds` or a partition reached its end
    /// (`enable.partition.eof`, recorded in `partitionsAtEnd` until that partition yields another message).
    /// "Every assigned partition is in `partitionsAtEnd`" is how a reader knows it has read everything written
    /// before it started.
    /// - Throws: `KafkaError` (`.poll`) for a consumer error other than partition EOF.
    public func poll(timeoutMilliseconds: Int32) throws(KafkaError) -> KafkaMessage? {
        let handle = try open(.poll)
        guard let message = rd_kafka_consumer_poll(handle, timeoutMilliseconds) else { return nil }
        defer { rd_kafka_message_destroy(message) }
        let record = message.pointee
        if record.err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
            partitionsAtEnd[record.partition] = record.offset
            return nil
        }
        guard record.err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(record.err, operation: .poll) }
        partitionsAtEnd[record.partition] = nil
        let topic = record.rkt.map { topicName($0) } ?? ""
        let value = record.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: record.len)) } ?? []
        let key = record.key.map { Array(UnsafeRawBufferPointer(start: $0, count: record.key_len)) }
        let timestamp = rd_kafka_message_timestamp(message, nil)
        return KafkaMessage(
            topic: topic, partition: record.partition, offset: record.offset, key: key, value: value,
            timestampMillis: timestamp >= 0 ? timestamp : nil)
    }

    private func topicName(_ topic: OpaquePointer) -> String {
        if let name = topicNames[topic] { return name }
        let name = String(cString: rd_kafka_topic_name(topic))
        topicNames[topic] = name
        return name
    }

    /// The high watermark (the offset after the last message) of each partition, from the brokers.
    /// Tansu 0.6 answers 1 for every non-empty partition, so readers of the embedded stack use `partitionsAtEnd`.
    public func highWatermarks(topic: String, partitions: [Int32], timeoutMilliseconds: Int32 = 5_000)
        throws(KafkaError) -> [Int32: Int64]
    {
        let handle = try open(.watermarks)
        var ends: [Int32: Int64] = [:]
        for partition in partitions {
            var low: Int64 = 0
            var high: Int64 = 0
            let result = rd_kafka_query_watermark_offsets(handle, topic, partition, &low, &high, timeoutMilliseconds)
            guard result == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(result, operation: .watermarks) }
            ends[partition] = high
        }
        return ends
    }
}

@available(*, unavailable, message: "KafkaConsumer is owned by one worker thread")
extension KafkaConsumer: Sendable {}

/// A millisecond deadline for librdkafka's Int32 timeouts.
struct ContinuousClockDeadline {
    let end: ContinuousClock.Instant

    init(milliseconds: Int32) { end = .now + .milliseconds(Int(milliseconds)) }

    var expired: Bool { ContinuousClock.now >= end }

    var remaining: Int32 {
        let left = ContinuousClock.now.duration(to: end)
        return max(0, Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
    }
}
