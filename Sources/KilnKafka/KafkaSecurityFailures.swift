import CRdKafka
import Synchronization

/// The last TLS or SASL failure librdkafka logged for each client handle, so that a call that would otherwise end in a
/// bare `_TIMED_OUT` (librdkafka retries a refused login or a failed certificate check forever, in the background)
/// fails promptly with `_AUTHENTICATION` or `_SSL` instead.
///
/// Filled by the log callback every KilnKafka configuration installs (librdkafka's own threads); read by the blocking
/// calls of the handle's owner. Keyed by `rd_kafka_name`, unique per handle in the process; an entry is removed when
/// read (`take`) or when its handle is destroyed (`forget`). Only the code is kept, never librdkafka's text (it could
/// echo a user name).
enum KafkaSecurityFailures {
    private static let failures = Mutex<[String: Int32]>([:])

    /// Called from the log callback: records `FAIL` lines about a SASL login or a TLS handshake.
    static func record(handle: OpaquePointer?, facility: String, message: String) {
        guard facility == "FAIL", let handle else { return }
        let code: rd_kafka_resp_err_t
        if message.contains("SASL authentication error") || message.contains("SASL SCRAM") {
            code = RD_KAFKA_RESP_ERR__AUTHENTICATION
        } else if message.contains("SSL handshake failed") || message.contains("certificate verify failed") {
            code = RD_KAFKA_RESP_ERR__SSL
        } else {
            return
        }
        let name = String(cString: rd_kafka_name(handle))
        failures.withLock { $0[name] = code.rawValue }
    }

    /// The failure recorded for `handle` since the last call, if any.
    static func take(_ handle: OpaquePointer) -> Int32? {
        let name = String(cString: rd_kafka_name(handle))
        return failures.withLock { $0.removeValue(forKey: name) }
    }

    static func forget(_ handle: OpaquePointer) {
        _ = take(handle)
    }

    /// `rd_kafka_metadata` in slices of at most 250 ms until `deadline`, so that a recorded login or TLS failure ends
    /// the wait at once. A connection that drops under the request (`_TRANSPORT`: librdkafka replaces its bootstrap
    /// connection by the advertised broker's, which can close a request in flight) is retried up to 4 times, 100 ms
    /// apart, within the deadline. Returns the metadata (the caller destroys it) or throws the failure, the last
    /// error, or `_TIMED_OUT` at the deadline.
    static func metadata(
        _ handle: OpaquePointer, allTopics: Bool, topic: OpaquePointer?, deadline: ContinuousClockDeadline
    ) throws(KafkaError) -> UnsafePointer<rd_kafka_metadata> {
        var transportRetries = 4
        while true {
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let result = rd_kafka_metadata(handle, allTopics ? 1 : 0, topic, &metadata, max(1, min(250, deadline.remaining)))
            if result == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata { return metadata }
            if let failure = take(handle) { throw KafkaError(code: failure, operation: .metadata) }
            if result == RD_KAFKA_RESP_ERR__TRANSPORT, transportRetries > 0, !deadline.expired {
                transportRetries -= 1
                rd_kafka_poll(handle, Int32(min(100, deadline.remaining)))
                continue
            }
            if result != RD_KAFKA_RESP_ERR__TIMED_OUT || deadline.expired { throw KafkaError(result, operation: .metadata) }
        }
    }
}
