import CRdKafka

/// Whether a message reached the broker's log, as librdkafka knows it when the delivery report is served.
public enum KafkaPersistence: Sendable, Equatable {
    /// Never sent, or the broker definitely did not write it: the produce is a definite failure.
    case notPersisted
    /// Sent but not acknowledged (e.g. a timeout after transmission): the outcome is unknown.
    case possiblyPersisted
    /// Acknowledged by the broker with the configured `acks`.
    case persisted
}

/// The outcome of one `KafkaProducer.produce` call, matched to it by `id`.
public struct KafkaDeliveryReport: Sendable {
    /// The caller's id passed to `produce`.
    public let id: UInt64
    public let topic: String
    public let partition: Int32
    /// The offset the broker assigned; -1001 (`RD_KAFKA_OFFSET_INVALID`) when unknown, e.g. on error or for some
    /// retried messages of an idempotent producer.
    public let offset: Int64
    /// `nil` when the message was persisted; otherwise the delivery error (operation `.delivery`).
    public let error: KafkaError?
    /// Lets a caller classify a failed produce as a definite failure or an unknown outcome.
    public let persistence: KafkaPersistence
}

/// A Kafka producer that owns one `rd_kafka_t` handle.
///
/// Ownership: the handle and its cached topic handles are destroyed in `deinit`, after a flush bounded by
/// `closeFlushTimeoutMilliseconds`; messages still unacknowledged after that are purged without delivery reports.
///
/// Threading: not `Sendable`. Use one producer per worker thread. Delivery reports are produced only on the thread
/// that calls `produce`, `poll` or `flush` (librdkafka serves the report callback from those calls), so the report
/// buffer is never shared.
///
/// Reports accumulate in an in-memory buffer until `poll` or `flush` returns them; callers that produce in a loop must
/// call `poll` regularly.
public final class KafkaProducer {
    private let handle: OpaquePointer
    private let reports: DeliveryReportBuffer
    private var topics: [String: OpaquePointer] = [:]

    /// Upper bound for the flush that `deinit` performs before destroying the handle.
    public var closeFlushTimeoutMilliseconds: Int32 = 5_000

    /// How long `produce` waits for room in a full local queue (`queue.buffering.max.messages` / `.kbytes`) before
    /// it throws `_QUEUE_FULL`.
    public var enqueueTimeoutMilliseconds: Int32 = 10_000

    /// Defaults tuned for bulk throughput; every one can be overridden through `properties`.
    static let defaultProperties: [(String, String)] = [
        ("client.id", "kiln"),
        ("linger.ms", "5"),
        ("batch.num.messages", "10000"),
        ("batch.size", "1000000"),
        ("queue.buffering.max.messages", "200000"),
        ("queue.buffering.max.kbytes", "1048576"),
        ("socket.nagle.disable", "true"),
    ]

    /// Creates the producer. No connection is made before the first message is sent.
    ///
    /// - Parameters:
    ///   - idempotent: sets `enable.idempotence=true`, which implies `acks=all` and keeps per-partition order and
    ///     exactly-once writes across librdkafka's internal retries.
    ///   - properties: librdkafka configuration properties; they override the defaults and `idempotent`.
    /// - Throws: `KafkaError` with operation `.configure` (naming the rejected property, not its value) or
    ///   `.createProducer`.
    public init(bootstrapServers: String, idempotent: Bool = true, properties: [String: String] = [:])
        throws(KafkaError)
    {
        var defaults = Self.defaultProperties
        defaults.append(("bootstrap.servers", bootstrapServers))
        defaults.append(("enable.idempotence", idempotent ? "true" : "false"))
        let conf = try makeKafkaConfiguration(defaults: defaults, overrides: properties)

        let reports = DeliveryReportBuffer()
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(reports).toOpaque())
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
            guard let message, let opaque else { return }
            Unmanaged<DeliveryReportBuffer>.fromOpaque(opaque).takeUnretainedValue().append(message)
        }

        var errstr = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(RD_KAFKA_RESP_ERR__INVALID_ARG, operation: .createProducer,
                             detail: kafkaErrorString(errstr))
        }
        // rd_kafka_new owns `conf` from here on.
        self.handle = handle
        self.reports = reports
    }

    deinit {
        _ = rd_kafka_flush(handle, closeFlushTimeoutMilliseconds)
        for topic in topics.values {
            rd_kafka_topic_destroy(topic)
        }
        KafkaSecurityFailures.forget(handle)
        rd_kafka_destroy(handle)
    }

    /// Messages enqueued locally or in flight to a broker and not yet reported (`rd_kafka_outq_len`; it also counts
    /// pending delivery reports and internal requests).
    public var outstanding: Int {
        Int(rd_kafka_outq_len(handle))
    }

    /// Enqueues one message; its outcome arrives later as a `KafkaDeliveryReport` carrying `id`.
    ///
    /// Key and value are copied, so the arrays need not outlive the call. When librdkafka's local queue is full this
    /// serves delivery reports (buffering them for the next `poll`) and enqueues again until there is room: that is
    /// backpressure, not a retry of the operation. It waits at most `enqueueTimeoutMilliseconds` for room.
    ///
    /// - Parameter partition: `nil` lets the configured partitioner choose (by key hash when there is a key).
    /// - Throws: `KafkaError` with operation `.produce` when the message could not be enqueued at all (code
    ///   `_QUEUE_FULL` after `enqueueTimeoutMilliseconds`, unknown partition, message too large, fatal producer
    ///   error). Such a message was definitely not produced, and no delivery report follows it.
    public func produce(topic: String, key: [UInt8]?, value: [UInt8], partition: Int32? = nil, id: UInt64)
        throws(KafkaError)
    {
        let result: Result<Void, KafkaError> = value.withUnsafeBytes { valueBytes in
            guard let key else {
                return Result { () throws(KafkaError) in
                    try produce(topic: topic, key: nil, value: valueBytes, partition: partition, id: id)
                }
            }
            return key.withUnsafeBytes { keyBytes in
                Result { () throws(KafkaError) in
                    try produce(topic: topic, key: keyBytes, value: valueBytes, partition: partition, id: id)
                }
            }
        }
        try result.get()
    }

    /// Like the `[UInt8]` variant, but takes the bytes in place (a bulk producer can slice one encoded buffer without
    /// allocating per message). Both are copied by librdkafka before the call returns. A `nil` key is a Kafka null key;
    /// a value without a base address is sent as an empty (not null) value.
    public func produce(
        topic: String, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer, partition: Int32? = nil, id: UInt64
    ) throws(KafkaError) {
        let topicHandle = try self.topic(named: topic)
        let opaque = UnsafeMutableRawPointer(bitPattern: UInt(id))
        let partition = partition ?? -1  // RD_KAFKA_PARTITION_UA
        var empty: UInt8 = 0
        var deadline: ContinuousClock.Instant?
        while true {
            let status = withUnsafeMutableBytes(of: &empty) { emptyBytes in
                rd_kafka_produce(
                    topicHandle, partition, RD_KAFKA_MSG_F_COPY,
                    UnsafeMutableRawPointer(mutating: value.baseAddress) ?? emptyBytes.baseAddress, value.count,
                    key.flatMap { UnsafeMutableRawPointer(mutating: $0.baseAddress) ?? emptyBytes.baseAddress },
                    key?.count ?? 0, opaque)
            }
            if status == 0 {
                return
            }
            let error = rd_kafka_last_error()
            guard error == RD_KAFKA_RESP_ERR__QUEUE_FULL else {
                throw producerError(error, operation: .produce)
            }
            // Without a bound, a full queue towards an unreachable broker would block for message.timeout.ms
            // (5 minutes by default) per queue-full of messages.
            let end = deadline ?? .now + .milliseconds(Int(enqueueTimeoutMilliseconds))
            deadline = end
            guard ContinuousClock.now < end else {
                throw KafkaError(error, operation: .produce, messagesInFlight: outstanding)
            }
            _ = rd_kafka_poll(handle, 10)
        }
    }

    /// Fetches `topic`'s metadata through this producer and waits (at most `timeoutMilliseconds`) for the broker
    /// connection, so the first `produce` does not pay for either. Idempotent producers also get their producer id
    /// on that connection. Best effort: a failure here surfaces again at the first `produce`.
    public func prepare(topic name: String, timeoutMilliseconds: Int32) {
        guard let topicHandle = try? topic(named: name) else { return }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        if rd_kafka_metadata(handle, 0, topicHandle, &metadata, timeoutMilliseconds) == RD_KAFKA_RESP_ERR_NO_ERROR,
            let metadata
        {
            rd_kafka_metadata_destroy(metadata)
        }
    }

    /// Serves pending delivery callbacks, waiting up to `timeoutMilliseconds` for the first one (0 never blocks), and
    /// returns every report buffered so far, oldest first.
    public func poll(timeoutMilliseconds: Int32 = 0) -> [KafkaDeliveryReport] {
        _ = rd_kafka_poll(handle, timeoutMilliseconds)
        return reports.drain()
    }

    /// Waits until every outstanding message has a delivery report, then returns all buffered reports.
    ///
    /// - Throws: `KafkaError` with operation `.flush`, code `_TIMED_OUT` and `messagesInFlight` when messages are still
    ///   outstanding after `timeoutMilliseconds`. Reports served before the timeout stay buffered and are returned
    ///   by the next `poll` or `flush`, so nothing is lost by the throw.
    public func flush(timeoutMilliseconds: Int32) throws(KafkaError) -> [KafkaDeliveryReport] {
        let result = rd_kafka_flush(handle, timeoutMilliseconds)
        if result != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(result, operation: .flush, messagesInFlight: outstanding)
        }
        // Serve reports that arrived between the flush's last poll and now.
        _ = rd_kafka_poll(handle, 0)
        return reports.drain()
    }

    private func topic(named name: String) throws(KafkaError) -> OpaquePointer {
        if let topic = topics[name] {
            return topic
        }
        guard let topic = rd_kafka_topic_new(handle, name, nil) else {
            throw KafkaError(rd_kafka_last_error(), operation: .produce)
        }
        topics[name] = topic
        return topic
    }

    /// Resolves `_FATAL` to the underlying cause so the caller sees why the producer became unusable.
    private func producerError(_ error: rd_kafka_resp_err_t, operation: KafkaError.Operation) -> KafkaError {
        guard error == RD_KAFKA_RESP_ERR__FATAL else {
            return KafkaError(error, operation: operation)
        }
        var errstr = [CChar](repeating: 0, count: 512)
        let cause = rd_kafka_fatal_error(handle, &errstr, errstr.count)
        let causeName = String(cString: rd_kafka_err2name(cause))
        return KafkaError(error, operation: operation, detail: "\(causeName): \(kafkaErrorString(errstr))")
    }
}

@available(*, unavailable, message: "KafkaProducer is owned by one worker thread")
extension KafkaProducer: Sendable {}

/// Collects delivery reports from librdkafka's callback. Only touched from the producer's owning thread, inside
/// `rd_kafka_produce`/`rd_kafka_poll`/`rd_kafka_flush`/`rd_kafka_destroy` or from the producer's own methods.
final class DeliveryReportBuffer {
    private var reports: [KafkaDeliveryReport] = []
    private var lastTopicPointer: OpaquePointer?
    private var lastTopicName = ""

    func append(_ pointer: UnsafePointer<rd_kafka_message_t>) {
        // The status lives in librdkafka's private message envelope: ask with the original pointer, never a copy.
        let status = rd_kafka_message_status(pointer)
        let message = pointer.pointee
        if message.rkt != lastTopicPointer {
            lastTopicPointer = message.rkt
            lastTopicName = message.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        }
        let error: KafkaError? =
            message.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(message.err, operation: .delivery)
        let persistence: KafkaPersistence
        switch status {
        case RD_KAFKA_MSG_STATUS_PERSISTED: persistence = .persisted
        case RD_KAFKA_MSG_STATUS_NOT_PERSISTED: persistence = .notPersisted
        default: persistence = .possiblyPersisted
        }
        reports.append(
            KafkaDeliveryReport(
                id: UInt64(UInt(bitPattern: message._private)),
                topic: lastTopicName,
                partition: message.partition,
                offset: message.offset,
                error: error,
                persistence: persistence
            )
        )
    }

    func drain() -> [KafkaDeliveryReport] {
        defer { reports = [] }
        return reports
    }
}

/// Calls `body` with a non-null pointer to `bytes` (librdkafka treats a null payload as a Kafka null, which differs
/// from an empty one).
func withPayloadPointer<R>(_ bytes: [UInt8], _ body: (UnsafeMutableRawPointer, Int) -> R) -> R {
    bytes.withUnsafeBytes { buffer in
        if let base = buffer.baseAddress {
            return body(UnsafeMutableRawPointer(mutating: base), buffer.count)
        }
        var empty: UInt8 = 0
        return withUnsafeMutableBytes(of: &empty) { body($0.baseAddress!, 0) }
    }
}

/// Like `withPayloadPointer`, but passes a null pointer for `nil` (a Kafka null key).
func withOptionalPayloadPointer<R>(_ bytes: [UInt8]?, _ body: (UnsafeMutableRawPointer?, Int) -> R) -> R {
    guard let bytes else {
        return body(nil, 0)
    }
    return withPayloadPointer(bytes) { body($0, $1) }
}
