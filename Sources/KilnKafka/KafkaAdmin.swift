import CRdKafka

/// Topic administration (librdkafka's admin API on a producer-type handle). Ownership: the handle is destroyed in
/// `deinit`. Threading: not `Sendable`; every call blocks at most its timeout.
public final class KafkaAdmin {
    private let handle: OpaquePointer

    /// - Throws: `KafkaError` (`.configure`, `.createProducer`).
    public init(bootstrapServers: String, properties: [String: String] = [:]) throws(KafkaError) {
        let conf = try makeKafkaConfiguration(
            defaults: [("client.id", "kiln-admin"), ("bootstrap.servers", bootstrapServers)], overrides: properties)
        var errstr = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(RD_KAFKA_RESP_ERR__INVALID_ARG, operation: .createProducer, detail: kafkaErrorString(errstr))
        }
        self.handle = handle
    }

    deinit {
        KafkaSecurityFailures.forget(handle)
        rd_kafka_destroy(handle)
    }

    /// The number of brokers in a metadata reply that came back within `timeoutMilliseconds` (a new request, never
    /// librdkafka's cache). With `sasl_ssl` properties the reply comes only over a connection whose TLS handshake and
    /// SASL login succeeded.
    /// - Throws: `KafkaError` (`.metadata`): `_AUTHENTICATION` or `_SSL` as soon as librdkafka logs a refused login or
    ///   a failed certificate check, `_TIMED_OUT` when no broker answered in time.
    public func brokerCount(timeoutMilliseconds: Int32) throws(KafkaError) -> Int {
        let metadata = try KafkaSecurityFailures.metadata(
            handle, allTopics: false, topic: nil, deadline: ContinuousClockDeadline(milliseconds: timeoutMilliseconds))
        defer { rd_kafka_metadata_destroy(metadata) }
        return Int(metadata.pointee.broker_cnt)
    }

    /// Deletes `topics`; a topic that does not exist is not an error. Returns when the broker answered for all.
    /// - Throws: `KafkaError` (`.deleteTopics`) for a timeout or any other per-topic error.
    public func deleteTopics(_ topics: [String], timeoutMilliseconds: Int32 = 10_000) throws(KafkaError) {
        guard !topics.isEmpty else { return }
        guard let queue = rd_kafka_queue_new(handle) else {
            throw KafkaError(RD_KAFKA_RESP_ERR__FAIL, operation: .deleteTopics)
        }
        defer { rd_kafka_queue_destroy(queue) }
        var requests: [OpaquePointer?] = topics.map { rd_kafka_DeleteTopic_new($0) }
        defer { for request in requests { rd_kafka_DeleteTopic_destroy(request) } }
        let options = rd_kafka_AdminOptions_new(handle, RD_KAFKA_ADMIN_OP_DELETETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        var errstr = [CChar](repeating: 0, count: 256)
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMilliseconds, &errstr, errstr.count)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeoutMilliseconds, &errstr, errstr.count)
        requests.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_DeleteTopics(handle, buffer.baseAddress, buffer.count, options, queue)
        }
        guard let event = rd_kafka_queue_poll(queue, timeoutMilliseconds + 1_000) else {
            throw KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, operation: .deleteTopics)
        }
        defer { rd_kafka_event_destroy(event) }
        let eventError = rd_kafka_event_error(event)
        if eventError != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(eventError, operation: .deleteTopics)
        }
        guard let result = rd_kafka_event_DeleteTopics_result(event) else {
            throw KafkaError(RD_KAFKA_RESP_ERR__FAIL, operation: .deleteTopics)
        }
        var count = 0
        guard let results = rd_kafka_DeleteTopics_result_topics(result, &count) else { return }
        for index in 0..<count {
            let code = rd_kafka_topic_result_error(results[index])
            if code != RD_KAFKA_RESP_ERR_NO_ERROR && code != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART {
                throw KafkaError(code, operation: .deleteTopics)
            }
        }
    }
}
