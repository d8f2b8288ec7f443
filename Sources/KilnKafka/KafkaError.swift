import CRdKafka

/// The one error type of KilnKafka: a librdkafka response code, its symbolic name and the operation that failed.
///
/// `description` is safe to log and to put in reports: it never contains message keys or values, configuration
/// values (a configuration error names the property only, so SASL passwords cannot leak) or librdkafka's free-form
/// error text. `debugDescription` adds librdkafka's text for the code and, except for `configure` errors (whose
/// librdkafka text echoes the rejected value), the error string librdkafka returned.
public struct KafkaError: Error, CustomStringConvertible, CustomDebugStringConvertible {
    /// What KilnKafka was doing when librdkafka reported the error.
    public enum Operation: String, Sendable {
        case configure, createProducer, produce, flush, createConsumer, assign, poll, metadata, watermarks, delivery
        case deleteTopics
    }

    /// The `rd_kafka_resp_err_t` value: negative codes are local to librdkafka, positive ones come from a broker.
    public let code: Int32
    /// The symbolic name of `code` from `rd_kafka_err2name`, e.g. `_MSG_TIMED_OUT` or `NOT_LEADER_OR_FOLLOWER`.
    public let name: String
    public let operation: Operation
    /// The configuration property that was rejected (`configure` errors only). Its value is never kept.
    public let property: String?
    /// How many messages were still queued or in flight when a `flush` timed out.
    public let messagesInFlight: Int?
    /// librdkafka's own error string; only shown by `debugDescription`.
    let detail: String?

    init(code: Int32, operation: Operation, property: String? = nil, messagesInFlight: Int? = nil,
         detail: String? = nil) {
        self.code = code
        self.name = String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(rawValue: code)))
        self.operation = operation
        self.property = property
        self.messagesInFlight = messagesInFlight
        self.detail = operation == .configure ? nil : detail
    }

    init(_ code: rd_kafka_resp_err_t, operation: Operation, messagesInFlight: Int? = nil, detail: String? = nil) {
        self.init(code: code.rawValue, operation: operation, messagesInFlight: messagesInFlight, detail: detail)
    }

    public var description: String {
        var text = "Kafka \(operation.rawValue) failed: \(name) (\(code))"
        if let property {
            text += ", property '\(property)'"
        }
        if let messagesInFlight {
            text += ", \(messagesInFlight) message(s) still in flight"
        }
        return text
    }

    public var debugDescription: String {
        var text = description + ": " + String(cString: rd_kafka_err2str(rd_kafka_resp_err_t(rawValue: code)))
        if let detail, !detail.isEmpty {
            text += " (\(detail))"
        }
        return text
    }

    // Codes a caller commonly has to tell apart (values of rd_kafka_resp_err_t).
    /// A produced message was not acknowledged within `message.timeout.ms`; it may or may not have been written.
    public static let messageTimedOut: Int32 = RD_KAFKA_RESP_ERR__MSG_TIMED_OUT.rawValue
    /// A blocking call (flush, metadata, watermarks) ran out of time.
    public static let timedOut: Int32 = RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue
    /// `produce` found the local queue full for longer than `KafkaProducer.enqueueTimeoutMilliseconds`.
    public static let queueFull: Int32 = RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue
    /// The broker connection failed.
    public static let transport: Int32 = RD_KAFKA_RESP_ERR__TRANSPORT.rawValue
    /// Every known broker is down.
    public static let allBrokersDown: Int32 = RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN.rawValue
    /// The message was purged from the local queue before it was sent (e.g. the producer was destroyed).
    public static let purgedFromQueue: Int32 = RD_KAFKA_RESP_ERR__PURGE_QUEUE.rawValue
    /// The topic or partition does not exist.
    public static let unknownTopicOrPartition: Int32 = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART.rawValue
    /// The producer hit an unrecoverable error (e.g. an idempotence guarantee could not be kept); recreate it.
    public static let fatal: Int32 = RD_KAFKA_RESP_ERR__FATAL.rawValue
}

/// Facts about the librdkafka that the dynamic loader actually bound, which can differ from the headers KilnKafka was
/// compiled against (Debian's 2.0.2 headers; the package rpath prefers `.kiln/lib/librdkafka.so.1`).
public enum KafkaLibrary {
    /// `rd_kafka_version_str()`, e.g. "2.16.0".
    public static var librdkafkaVersion: String {
        String(cString: rd_kafka_version_str())
    }

    /// `rd_kafka_version()`: 0xMMmmrrxx (major, minor, revision, pre-release id; 0xff for a final release).
    public static var librdkafkaVersionNumber: Int {
        Int(rd_kafka_version())
    }
}

/// Builds an `rd_kafka_conf_t`. The caller owns the returned pointer until `rd_kafka_new` succeeds with it; on a
/// thrown error nothing is leaked.
func makeKafkaConfiguration(defaults: [(String, String)], overrides: [String: String]) throws(KafkaError)
    -> OpaquePointer
{
    guard let conf = rd_kafka_conf_new() else {
        throw KafkaError(RD_KAFKA_RESP_ERR__FAIL, operation: .configure)
    }
    // librdkafka logs broker connection failures to stderr on its own threads; Kiln reports them through delivery
    // reports and errors instead, so a run's output stays readable.
    // A SASL or TLS failure is still noted (KafkaSecurityFailures) so that blocking calls can fail with it.
    rd_kafka_conf_set_log_cb(conf) { handle, _, facility, message in
        guard let facility, let message else { return }
        KafkaSecurityFailures.record(handle: handle, facility: String(cString: facility), message: String(cString: message))
    }
    // Defaults first, then the caller's overrides in a stable order so errors are reproducible.
    var merged = defaults.filter { overrides[$0.0] == nil }
    merged += overrides.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    var errstr = [CChar](repeating: 0, count: 512)
    for (name, value) in merged {
        let result = rd_kafka_conf_set(conf, name, value, &errstr, errstr.count)
        if result != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, operation: .configure, property: name)
        }
    }
    return conf
}

/// The text librdkafka wrote into an error buffer.
func kafkaErrorString(_ buffer: [CChar]) -> String {
    buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}
