import CHiredis
import CRedisTLS

/// How a RESP connection is encrypted: TLS, the server's certificate verified against `caFile` (PEM) and against the
/// address connected to (an IP address must be one of the certificate's IP SANs, a host name one of its DNS names).
/// Kiln sends no client certificate: it authenticates with an ACL user and password (``RedisCredentials``).
public struct RedisTLS: Sendable, Hashable, CustomStringConvertible {
    /// Path of the CA certificate (PEM) that must sign the server's certificate; nil: the system's CA certificates.
    public var caFile: String?

    public init(caFile: String?) {
        self.caFile = caFile
    }

    public var description: String { "TLS (CA \(caFile ?? "of the system"))" }
}

/// One TLS connection to a RESP server: the owning wrapper of the C stream `kiln_redis_tls` (OpenSSL does the socket
/// I/O, hiredis 0.14's `redisReader` parses the replies into `redisReply` objects, freed with `freeReplyObject`).
///
/// Ownership: frees the stream (and closes its socket) in `deinit`. Threading: not `Sendable`; one thread at a time,
/// as ``RedisConnection``. Timeouts: connecting (TCP and handshake together) within `timeoutSeconds`, then every wait
/// for the socket within `timeoutSeconds`; a failed call leaves the stream out of step (the owner drops it).
final class RedisTLSStream {
    private let stream: OpaquePointer

    /// Connects and verifies the server's certificate.
    /// - Throws: ``RedisError`` `connect` (refused, timed out, handshake failed, certificate not trusted or not for
    ///   `host`); the reason says which.
    init(host: String, port: Int, tls: RedisTLS, timeoutSeconds: Double, address: String) throws(RedisError) {
        var status = KILN_REDIS_TLS_OK
        var message = [CChar](repeating: 0, count: 512)
        let opened = message.withUnsafeMutableBufferPointer { buffer in
            kiln_redis_tls_connect(host, Int32(port), tls.caFile, timeoutSeconds, &status, buffer.baseAddress, buffer.count)
        }
        guard let opened else {
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw RedisError(.connect, address: address, reason: Self.reasonPrefix(status) + text)
        }
        stream = opened
    }

    deinit {
        kiln_redis_tls_free(stream)
    }

    var descriptor: Int32 { kiln_redis_tls_fd(stream) }

    /// Queues one command (not sent until ``flush()`` or ``reply()``).
    func append(count: Int32, arguments: UnsafeMutablePointer<UnsafePointer<CChar>?>, lengths: UnsafePointer<Int>) -> Bool {
        kiln_redis_tls_append_argv(stream, count, arguments, lengths) == KILN_REDIS_TLS_OK
    }

    /// Queues bytes already encoded as RESP commands.
    func append(encoded: UnsafePointer<CChar>, count: Int) -> Bool {
        kiln_redis_tls_append_formatted(stream, encoded, count) == KILN_REDIS_TLS_OK
    }

    func flush() -> Bool {
        kiln_redis_tls_flush(stream) == KILN_REDIS_TLS_OK
    }

    /// Sends what is queued and waits for the next reply (a `redisReply` the caller frees); nil after an error.
    func reply() -> UnsafeMutableRawPointer? {
        var raw: UnsafeMutableRawPointer?
        guard kiln_redis_tls_get_reply(stream, &raw) == KILN_REDIS_TLS_OK else { return nil }
        return raw
    }

    /// Reads what the socket holds without waiting; `raw` is the next complete reply (nil while none is). False after
    /// an error.
    func readAvailable(_ raw: inout UnsafeMutableRawPointer?) -> Bool {
        kiln_redis_tls_read_available(stream, &raw) == KILN_REDIS_TLS_OK
    }

    /// The last failure as a ``RedisError``.
    func error(address: String) -> RedisError {
        let text = String(cString: kiln_redis_tls_error(stream))
        switch kiln_redis_tls_status_of(stream) {
        case KILN_REDIS_TLS_ERR_TIMEOUT: return RedisError(.timeout, address: address, reason: text)
        case KILN_REDIS_TLS_ERR_PROTOCOL: return RedisError(.protocol, address: address, message: text)
        default: return RedisError(.io, address: address, reason: text)
        }
    }

    private static func reasonPrefix(_ status: kiln_redis_tls_status) -> String {
        switch status {
        case KILN_REDIS_TLS_ERR_HANDSHAKE, KILN_REDIS_TLS_ERR_VERIFY, KILN_REDIS_TLS_ERR_SETUP: "TLS: "
        default: ""
        }
    }
}
