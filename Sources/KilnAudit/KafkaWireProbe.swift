import CRedisTLS
import Foundation
import KilnCore

#if canImport(Glibc)
    import Glibc
#endif

/// Kafka wire-protocol requests over one connection each (no client library: librdkafka would negotiate SASL itself
/// and hide what an unauthenticated client gets): raw TCP, or TLS verified against a CA and the endpoint's address
/// (`transport`, for a TLS-only broker). Requests use version 0 of each API, which every broker must answer. Blocking,
/// with `timeoutSeconds` for connect (and the TLS handshake), send and receive.
struct KafkaWireProbe {
    static let saslHandshakeKey: Int16 = 17
    let endpoint: HostPort
    let timeoutSeconds: Int
    var transport: Transport = .plain

    /// How the probe reaches the broker.
    enum Transport: Equatable {
        case plain
        /// TLS, the certificate verified against the PEM CA file (nil: the system's CAs) and the endpoint's address.
        case tls(caFile: String?)
    }

    struct ProbeError: Error, CustomStringConvertible {
        var description: String
    }

    /// ApiVersions v0: the API keys the broker lists.
    func apiVersions() throws -> [Int16] {
        var reader = try exchange(apiKey: 18, version: 0, body: [])
        let error = try reader.int16()
        guard error == 0 else { throw ProbeError(description: "ApiVersions error code \(error)") }
        let count = try reader.int32()
        guard (0...10_000).contains(count) else { throw ProbeError(description: "ApiVersions: bad array length \(count)") }
        return try (0..<count).map { _ in
            let key = try reader.int16()
            _ = try reader.int16()
            _ = try reader.int16()
            return key
        }
    }

    /// ApiVersions v0: each API key the broker lists with its lowest and highest version.
    func apiVersionRanges() throws -> [(key: Int16, min: Int16, max: Int16)] {
        var reader = try exchange(apiKey: 18, version: 0, body: [])
        let error = try reader.int16()
        guard error == 0 else { throw ProbeError(description: "ApiVersions error code \(error)") }
        let count = try reader.int32()
        guard (0...10_000).contains(count) else { throw ProbeError(description: "ApiVersions: bad array length \(count)") }
        return try (0..<count).map { _ in (key: try reader.int16(), min: try reader.int16(), max: try reader.int16()) }
    }

    /// SaslHandshake v0 asking for PLAIN: the mechanisms the broker enables.
    func saslMechanisms() throws -> [String] {
        var reader = try exchange(apiKey: Self.saslHandshakeKey, version: 0, body: Self.string("PLAIN"))
        _ = try reader.int16()
        let count = try reader.int32()
        guard (0...100).contains(count) else { throw ProbeError(description: "SaslHandshake: bad array length") }
        return try (0..<count).map { _ in try reader.string() }
    }

    /// Metadata v0 for all topics without authenticating: the number of brokers in the answer.
    func metadataBrokerCount() throws -> Int {
        var reader = try exchange(apiKey: 3, version: 0, body: [0, 0, 0, 0])
        let count = try reader.int32()
        guard (0...10_000).contains(count) else { throw ProbeError(description: "Metadata: bad broker count") }
        return Int(count)
    }

    static func string(_ text: String) -> [UInt8] {
        let bytes = Array(text.utf8)
        return [UInt8(bytes.count >> 8 & 0xff), UInt8(bytes.count & 0xff)] + bytes
    }

    struct Reader {
        var bytes: [UInt8]
        var offset = 0
        mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
            guard count >= 0, offset + count <= bytes.count else { throw ProbeError(description: "short response") }
            defer { offset += count }
            return bytes[offset..<offset + count]
        }
        mutating func int16() throws -> Int16 {
            let b = try take(2)
            return Int16(bitPattern: UInt16(b[b.startIndex]) << 8 | UInt16(b[b.startIndex + 1]))
        }
        mutating func int32() throws -> Int32 {
            try take(4).reduce(0) { Int32(bitPattern: UInt32(bitPattern: $0) << 8 | UInt32($1)) }
        }
        mutating func string() throws -> String {
            let length = Int(try int16())
            return String(decoding: try take(max(0, length)), as: UTF8.self)
        }
    }

    /// Sends one request and returns a reader positioned after the response's correlation id.
    private func exchange(apiKey: Int16, version: Int16, body: [UInt8]) throws -> Reader {
        let correlation: Int32 = 0x4B_494C
        var request: [UInt8] = []
        func append16(_ value: Int16) { request += [UInt8(UInt16(bitPattern: value) >> 8), UInt8(UInt16(bitPattern: value) & 0xff)] }
        func append32(_ value: Int32) {
            let bits = UInt32(bitPattern: value)
            request += [UInt8(bits >> 24), UInt8(bits >> 16 & 0xff), UInt8(bits >> 8 & 0xff), UInt8(bits & 0xff)]
        }
        append16(apiKey)
        append16(version)
        append32(correlation)
        request += Self.string("kiln-audit")
        request += body
        let framed = withUnsafeBytes(of: UInt32(request.count).bigEndian) { Array($0) } + request

        let connection: any Connection
        switch transport {
        case .plain: connection = PlainConnection(socket: try connect(), endpoint: endpoint, timeoutSeconds: timeoutSeconds)
        case .tls(let caFile): connection = try TLSConnection(endpoint: endpoint, caFile: caFile, timeoutSeconds: timeoutSeconds)
        }
        defer { connection.close() }
        try connection.send(framed)
        let header = try connection.receive(4)
        let length = Int(header.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        guard (4...16 << 20).contains(length) else { throw ProbeError(description: "bad response length \(length) from \(endpoint)") }
        var reader = Reader(bytes: try connection.receive(length))
        guard try reader.int32() == correlation else { throw ProbeError(description: "wrong correlation id from \(endpoint)") }
        return reader
    }

    private func connect() throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list) == 0, let info = list else {
            throw ProbeError(description: "cannot resolve \(endpoint.host)")
        }
        defer { freeaddrinfo(list) }
        let socket = Glibc.socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard socket >= 0 else { throw ProbeError(description: "socket() failed") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard Glibc.connect(socket, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let reason = String(cString: strerror(errno))
            close(socket)
            throw ProbeError(description: "connect to \(endpoint): \(reason)")
        }
        return socket
    }

}

/// One request's connection. Owned by `exchange`, closed by it.
private protocol Connection {
    func send(_ bytes: [UInt8]) throws
    func receive(_ count: Int) throws -> [UInt8]
    func close()
}

private struct PlainConnection: Connection {
    let socket: Int32
    let endpoint: HostPort
    let timeoutSeconds: Int

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let written = bytes[sent...].withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw KafkaWireProbe.ProbeError(description: "send to \(endpoint) failed") }
            sent += written
        }
    }

    func receive(_ count: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var received = 0
        while received < count {
            let n = buffer[received...].withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            guard n > 0 else {
                throw KafkaWireProbe.ProbeError(description: n == 0 ? "\(endpoint) closed the connection without answering" : "no answer from \(endpoint) within \(timeoutSeconds) s")
            }
            received += n
        }
        return buffer
    }

    func close() { Glibc.close(socket) }
}

/// TLS through CRedisTLS's OpenSSL stream (its raw-bytes calls), the certificate verified.
private final class TLSConnection: Connection {
    private let stream: OpaquePointer
    private let endpoint: HostPort

    init(endpoint: HostPort, caFile: String?, timeoutSeconds: Int) throws {
        self.endpoint = endpoint
        var status = KILN_REDIS_TLS_OK
        var error = [CChar](repeating: 0, count: 256)
        guard let stream = kiln_redis_tls_connect(endpoint.host, Int32(endpoint.port), caFile, Double(timeoutSeconds), &status, &error, error.count)
        else {
            let reason = error.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw KafkaWireProbe.ProbeError(description: "TLS to \(endpoint): \(reason)")
        }
        self.stream = stream
    }

    func send(_ bytes: [UInt8]) throws {
        let status = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { kiln_redis_tls_append_formatted(stream, $0.baseAddress, $0.count) }
        }
        guard status == KILN_REDIS_TLS_OK, kiln_redis_tls_flush(stream) == KILN_REDIS_TLS_OK else {
            throw KafkaWireProbe.ProbeError(description: "send to \(endpoint) over TLS failed: \(String(cString: kiln_redis_tls_error(stream)))")
        }
    }

    func receive(_ count: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var received = 0
        while received < count {
            var n = 0
            let status = buffer[received...].withUnsafeMutableBytes {
                kiln_redis_tls_read_raw(stream, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count, &n)
            }
            guard status == KILN_REDIS_TLS_OK, n > 0 else {
                throw KafkaWireProbe.ProbeError(description: status == KILN_REDIS_TLS_ERR_EOF
                    ? "\(endpoint) closed the connection without answering"
                    : "TLS read from \(endpoint): \(String(cString: kiln_redis_tls_error(stream)))")
            }
            received += n
        }
        return buffer
    }

    func close() { kiln_redis_tls_free(stream) }
}
