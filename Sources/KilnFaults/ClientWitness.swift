import Foundation
import KilnCore
import KilnHTTP
import KilnKafka
import KilnPostgres
import KilnRedis
import KilnStack
import KilnStores

#if canImport(Glibc)
    import Glibc
#endif

/// The protocol a server speaks, as a fault's client-side evidence uses it: the operation of a witness connection
/// (opened before the fault) and the request a new connection makes. A case with a password logs in with it (the
/// hardened stack): its evidence is then what an authenticated client sees. `description` never shows a password.
public enum ServerProtocol: Sendable, Equatable, CustomStringConvertible {
    /// `SELECT 1` on a libpq connection as `user` (with `password` when given; TLS as libpq's `PGSSLMODE` and
    /// `PGSSLROOTCERT` say, and the witness reports whether the session is encrypted).
    case postgres(user: String, database: String, password: String? = nil)
    /// `PING` over RESP: Redis, Sentinel, FalkorDB, without AUTH.
    case redis
    /// `AUTH [user] password` and then `PING` over RESP: an ACL user (`user` nil: the `default` user or a Sentinel's
    /// `requirepass`). A refused AUTH fails the witness, and only `+PONG` counts as an answer (never `-NOAUTH`).
    /// With `tls`, the connection is TLS (the server's certificate checked against the CA) through Kiln's Redis
    /// client, as a TLS-only server's clients connect.
    case redisLogin(user: String?, password: String, tls: RedisTLS? = nil)
    /// `GET /ping` over HTTP/1.1 keep-alive (ClickHouse's HTTP interface).
    case clickhouseHTTP
    /// `SELECT 1` over HTTPS as `user` with `password` (HTTP basic), on one keep-alive TLS connection (the server's
    /// certificate and address verified against `caFile`; nil: the system's CAs): what a client of ClickHouse's
    /// `https_port` sees. Only a 200 whose body is `1` counts as an answer: a 401/403, another status or a TLS
    /// failure fails the witness, never "up".
    case clickhouseHTTPS(user: String, password: String, caFile: String?)
    /// Kafka ApiVersions v0 (any Kafka-API broker).
    case kafka
    /// A metadata request through librdkafka configured with `properties` (the stack's `clientProperties`: TLS with
    /// its CA, a SASL/SCRAM login): what a client of a hardened Kafka sees. Only a metadata reply naming at least one
    /// broker counts as an answer; a refused login (`_AUTHENTICATION`), a failed TLS check (`_SSL`) or a timeout never
    /// does. The properties hold the password: `description` and `operation` show only the user and the protocol.
    case kafkaLogin(properties: [String: String])

    /// What the witness does, for evidence text: "SELECT 1", "PING", "AUTH as kiln_app + PING", …
    public var operation: String {
        switch self {
        case .postgres(let user, _, let password): password == nil ? "SELECT 1" : "SELECT 1 (logged in as \(user))"
        case .redis: "PING"
        case .redisLogin(let user, _, let tls): "PING (after AUTH as \(user ?? "default")\(tls == nil ? "" : ", over TLS"))"
        case .clickhouseHTTP: "GET /ping"
        case .clickhouseHTTPS(let user, _, _): "SELECT 1 (as \(user), over HTTPS)"
        case .kafka: "ApiVersions"
        case .kafkaLogin(let properties): "Metadata (\(Self.kafkaLoginText(properties)))"
        }
    }

    /// "SCRAM-SHA-512 login as kiln_app, over TLS": the login and transport `properties` configure, never a secret.
    static func kafkaLoginText(_ properties: [String: String]) -> String {
        let tls = properties["security.protocol"].map { $0.lowercased().hasSuffix("ssl") } ?? false
        let login = properties["sasl.mechanisms"].map { "\($0) login as \(properties["sasl.username"] ?? "?")" } ?? "no login"
        return "\(login), \(tls ? "over TLS" : "without TLS")"
    }

    public var description: String {
        switch self {
        case .postgres(let user, let database, let password):
            "postgres \(user)@\(database)\(password == nil ? "" : " (password)")"
        case .redis: "redis"
        case .redisLogin(let user, _, let tls): "redis \(user ?? "default") (password\(tls == nil ? "" : ", TLS"))"
        case .clickhouseHTTP: "clickhouse-http"
        case .clickhouseHTTPS(let user, _, _): "clickhouse-https \(user) (password)"
        case .kafka: "kafka"
        case .kafkaLogin(let properties): "kafka (\(Self.kafkaLoginText(properties)))"
        }
    }

    /// A request a new connection sends, answered only by a running server that is not paused.
    public var newConnectionProbe: ServiceProbe {
        switch self {
        case .postgres: .request(Self.sslRequest)
        case .redis: .redisPing
        // A plaintext PING to a TLS-only port is reset whatever the server's state: the probe logs in as a client does.
        case .redisLogin(_, _, .some): .login(self)
        case .redisLogin: .redisPing
        case .clickhouseHTTP: .request(Array("GET /ping HTTP/1.0\r\n\r\n".utf8))
        // Plaintext to an https_port is answered by any running server: the probe logs in as a client does.
        case .clickhouseHTTPS: .login(self)
        case .kafka: .request(KafkaBrokerFault.apiVersionsRequest)
        // A TLS front (stunnel) answers a handshake whatever the broker's state: the probe logs in as a client does.
        case .kafkaLogin: .login(self)
        }
    }

    /// PostgreSQL's SSLRequest: the postmaster answers it with one byte (`N` or `S`) before any login.
    public static let sslRequest: [UInt8] = [0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F]

    /// Opens a witness connection and completes one operation on it within `timeout`.
    /// - Throws: ``ProcessFaultError`` when it cannot connect or the server does not answer the first operation.
    public func openWitness(to endpoint: HostPort, timeout: Duration) throws -> any ClientWitness {
        let witness: any ClientWitness
        switch self {
        case .postgres(let user, let database, let password):
            witness = try PostgresWitness(
                PostgresEndpoint(
                    host: endpoint.host, port: endpoint.port, database: database, user: user, password: password),
                connectTimeoutSeconds: max(2, Int(timeout.seconds)), reportsEncryption: password != nil)
        case .redis:
            witness = try TCPRequestWitness(
                endpoint, operation: operation, request: Array("PING\r\n".utf8), timeout: timeout,
                frame: TCPRequestWitness.respLine)
        case .redisLogin(let user, let password, .some(let tls)):
            witness = try RedisConnectionWitness(
                endpoint, user: user, password: password, tls: tls, timeout: timeout, operation: operation)
        case .redisLogin(let user, let password, nil):
            witness = try TCPRequestWitness(
                endpoint, operation: operation, request: Array("PING\r\n".utf8), timeout: timeout,
                frame: TCPRequestWitness.respLine, accept: TCPRequestWitness.respSimpleString("PONG"),
                login: (TCPRequestWitness.respCommand(["AUTH"] + (user.map { [$0] } ?? []) + [password]),
                    TCPRequestWitness.respSimpleString("OK")))
        case .clickhouseHTTP:
            let request = "GET /ping HTTP/1.1\r\nHost: \(endpoint)\r\nConnection: keep-alive\r\n\r\n"
            witness = try TCPRequestWitness(
                endpoint, operation: operation, request: Array(request.utf8), timeout: timeout,
                frame: TCPRequestWitness.httpResponse)
        case .clickhouseHTTPS(let user, let password, let caFile):
            witness = try ClickHouseHTTPSWitness(
                endpoint, user: user, password: password, caFile: caFile, timeout: timeout, operation: operation)
        case .kafka:
            witness = try TCPRequestWitness(
                endpoint, operation: operation, request: KafkaBrokerFault.apiVersionsRequest, timeout: timeout,
                frame: TCPRequestWitness.lengthPrefixed)
        case .kafkaLogin(let properties):
            witness = try KafkaLoginWitness(endpoint, properties: properties, operation: operation)
        }
        // A witness held through a fault (ProcessFault.setup: 5 s) to Kafka settles on the broker's own connection:
        // its exchanges replace the single one.
        let first: WitnessReply
        if let kafka = witness as? KafkaLoginWitness, timeout >= KafkaLoginWitness.settlingTimeout {
            first = kafka.settle(within: timeout)
        } else {
            first = witness.exchange(within: timeout)
        }
        switch first {
        case .answered: return witness
        case .noReply(let waited):
            witness.close()
            throw ProcessFaultError(
                "\(operation) to \(endpoint) got no reply in \(waited.wholeMilliseconds) ms before the fault")
        case .failed(let reason):
            witness.close()
            throw ProcessFaultError("\(operation) to \(endpoint) failed before the fault: \(reason)")
        }
    }
}

/// What one operation on a witness connection saw.
public enum WitnessReply: Sendable, Equatable {
    /// The whole reply came, after this long.
    case answered(after: Duration)
    /// No complete reply within this long; the request stays in flight (a later exchange waits for its reply).
    case noReply(within: Duration)
    /// The connection failed (reset, closed by the server, …).
    case failed(String)

    public var answered: Bool {
        if case .answered = self { return true }
        return false
    }

    /// "no reply in 300 ms", "answered in 2 ms", "failed (connection reset by peer)".
    public var text: String {
        switch self {
        case .answered(let after): "answered in \(after.wholeMilliseconds) ms"
        case .noReply(let within): "no reply in \(within.wholeMilliseconds) ms"
        case .failed(let reason): "failed (\(reason))"
        }
    }
}

/// A client connection a fault opens before it starts, to show what an already connected client sees.
/// Ownership: owns its connection until `close()` (idempotent). Threading: one caller at a time; calls block for at
/// most their timeout.
public protocol ClientWitness: AnyObject {
    /// The operation it runs, e.g. `SELECT 1`.
    var operation: String { get }
    /// Runs the operation (or keeps waiting for the reply to one still in flight) for at most `timeout`.
    func exchange(within timeout: Duration) -> WitnessReply
    func close()
}

/// `SELECT 1` on one libpq connection, sent without blocking so a paused server cannot hold the caller.
final class PostgresWitness: ClientWitness {
    let operation: String
    private let connection: PostgresConnection
    private var inFlight = false

    /// `reportsEncryption`: the session's `pg_stat_ssl.ssl` goes into `operation` ("… over TLS").
    init(_ endpoint: PostgresEndpoint, connectTimeoutSeconds: Int, reportsEncryption: Bool = false) throws {
        do {
            connection = try PostgresConnection(endpoint, connectTimeoutSeconds: connectTimeoutSeconds)
        } catch {
            throw ProcessFaultError("cannot open a witness connection to \(endpoint.host):\(endpoint.port): \(error)")
        }
        guard reportsEncryption else {
            operation = "SELECT 1"
            return
        }
        let ssl = try? connection.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").value(row: 0, column: 0)
        let transport = ssl == "t" ? "over TLS" : ssl == "f" ? "without TLS" : "TLS unknown"
        operation = "SELECT 1 (logged in as \(endpoint.user), \(transport))"
    }

    func exchange(within timeout: Duration) -> WitnessReply {
        let start = ContinuousClock.now
        do {
            if !inFlight {
                try connection.send("SELECT 1")
                inFlight = true
            }
            guard try connection.awaitReply(within: timeout) else { return .noReply(within: start.duration(to: .now)) }
            inFlight = false
            return .answered(after: start.duration(to: .now))
        } catch {
            return .failed(error.kind == .connectionLost ? "connection lost" : "\(error)")
        }
    }

    func close() { connection.close() }
}

/// One request/reply exchange at a time on one TCP connection. `frame` returns the length of the first complete
/// reply at the start of the received bytes (nil while incomplete), so a late reply to a request that timed out is
/// consumed as that request's reply, never mistaken for a newer one.
final class TCPRequestWitness: ClientWitness {
    let operation: String
    private let endpoint: HostPort
    private var request: [UInt8]
    private let frame: ([UInt8]) -> Int?
    /// nil when a complete reply is an answer; else why it is not (a server error instead of the expected reply).
    private var accept: ([UInt8]) -> String?
    private var fd: Int32
    private var received: [UInt8] = []
    private var inFlight = false

    /// `login`: a request sent once right after connecting and the check of its reply (e.g. `AUTH` and `+OK`); a
    /// login that is refused or not answered within `timeout` fails the init (the password is never in the error).
    init(
        _ endpoint: HostPort, operation: String, request: [UInt8], timeout: Duration, frame: @escaping ([UInt8]) -> Int?,
        accept: @escaping ([UInt8]) -> String? = { _ in nil },
        login: (request: [UInt8], accept: ([UInt8]) -> String?)? = nil
    ) throws {
        self.endpoint = endpoint
        self.operation = operation
        self.frame = frame
        let (fd, failure) = TCPProbe.openSocket(to: endpoint, from: nil, until: ContinuousClock.now + timeout)
        guard let fd else {
            throw ProcessFaultError("cannot open a witness connection to \(endpoint): \(failure)")
        }
        self.fd = fd
        if let login {
            self.request = login.request
            self.accept = login.accept
            let reply = exchange(within: timeout)
            guard reply.answered else {
                Glibc.close(fd)
                self.fd = -1
                throw ProcessFaultError("login to \(endpoint) \(reply.text)")
            }
        }
        self.request = request
        self.accept = accept
    }

    deinit { close() }

    func exchange(within timeout: Duration) -> WitnessReply {
        let start = ContinuousClock.now
        let deadline = start + timeout
        guard fd >= 0 else { return .failed("closed") }
        if !inFlight {
            let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent == request.count else { return .failed(String(cString: strerror(errno))) }
            inFlight = true
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if let length = frame(received) {
                let reply = Array(received[0..<length])
                received.removeFirst(length)
                inFlight = false
                if let refusal = accept(reply) { return .failed(refusal) }
                return .answered(after: start.duration(to: .now))
            }
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { return .noReply(within: start.duration(to: .now)) }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(max(1, remaining.wholeMilliseconds)))
            if ready < 0 && errno != EINTR { return .failed(String(cString: strerror(errno))) }
            guard ready > 0 else { continue }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count == 0 { return .failed("closed by the server") }
            if count < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return .failed(String(cString: strerror(errno)))
            }
            received += buffer[0..<count]
        }
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// A one-line RESP reply (`+PONG\r\n`, `-ERR …\r\n`).
    static func respLine(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        for index in 1..<bytes.count where bytes[index] == 10 && bytes[index - 1] == 13 { return index + 1 }
        return nil
    }

    /// A RESP request (an array of bulk strings).
    static func respCommand(_ arguments: [String]) -> [UInt8] {
        var bytes = Array("*\(arguments.count)\r\n".utf8)
        for argument in arguments {
            let utf8 = Array(argument.utf8)
            bytes += Array("$\(utf8.count)\r\n".utf8) + utf8 + [13, 10]
        }
        return bytes
    }

    /// Accepts only the simple string `+<expected>`; any other reply is named (its first line, e.g. `-NOAUTH …`).
    static func respSimpleString(_ expected: String) -> ([UInt8]) -> String? {
        { reply in
            let line = String(decoding: reply, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return line == "+" + expected ? nil : "the server replied \(line.prefix(80)) instead of +\(expected)"
        }
    }

    /// A Kafka response: a 4-byte big-endian length, then that many bytes.
    static func lengthPrefixed(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        let length = bytes[0..<4].reduce(0) { $0 << 8 | Int($1) }
        return bytes.count >= 4 + length ? 4 + length : nil
    }

    /// An HTTP/1.1 response with `Content-Length` or chunked transfer coding.
    static func httpResponse(_ bytes: [UInt8]) -> Int? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 4,
            let headerEnd = (0...(bytes.count - 4)).first(where: { Array(bytes[$0..<$0 + 4]) == separator })
        else { return nil }
        let bodyStart = headerEnd + 4
        let headers = String(decoding: bytes[0..<headerEnd], as: UTF8.self).lowercased()
        for line in headers.split(separator: "\r\n") where line.hasPrefix("content-length:") {
            guard let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
            else { return nil }
            return bytes.count >= bodyStart + length ? bodyStart + length : nil
        }
        guard headers.contains("transfer-encoding: chunked") else { return bodyStart }
        let last: [UInt8] = Array("0\r\n\r\n".utf8)
        guard bytes.count >= bodyStart + last.count else { return nil }
        for start in bodyStart...(bytes.count - last.count) where Array(bytes[start..<start + last.count]) == last {
            return start + last.count
        }
        return nil
    }
}

extension ServerProtocol {
    /// The protocol a client of a server speaking `wire` uses (`user`/`database`: the stack's PostgreSQL login, for
    /// a libpq server).
    public static func of(_ wire: WireProtocol, postgresUser user: String, database: String) -> ServerProtocol {
        switch wire {
        case .postgres: .postgres(user: user, database: database, password: nil)
        case .resp: .redis
        case .kafka: .kafka
        case .http: .clickhouseHTTP
        }
    }
}

/// `PING` on one connection of Kiln's Redis client (TLS, AUTH as an ACL user), sent without waiting
/// (`startCommand`) and collected once its socket is readable, so a paused server cannot hold the caller longer
/// than `exchange`'s timeout. Ownership: owns its connection until `close()` (idempotent); one caller at a time.
final class RedisConnectionWitness: ClientWitness {
    let operation: String
    private var connection: RedisConnection?
    private var inFlight = false

    /// Connects, completes the TLS handshake and logs in within `timeout`.
    /// - Throws: ``ProcessFaultError`` naming the endpoint (never the password) when any of it fails.
    init(_ endpoint: HostPort, user: String?, password: String, tls: RedisTLS, timeout: Duration, operation: String) throws {
        self.operation = operation
        do throws(RedisError) {
            let connection = try RedisConnection(
                host: endpoint.host, port: endpoint.port, timeoutSeconds: max(0.5, Double(timeout.wholeMilliseconds) / 1000),
                tls: tls)
            try connection.authenticate(user: user, password: password)
            self.connection = connection
        } catch {
            throw ProcessFaultError("login to \(endpoint) over \(tls) failed: \(error)")
        }
    }

    func exchange(within timeout: Duration) -> WitnessReply {
        let start = ContinuousClock.now
        let deadline = start + timeout
        guard let connection else { return .failed("closed") }
        do throws(RedisError) {
            if !inFlight {
                try connection.startCommand([Array("PING".utf8)])
                inFlight = true
            }
            while true {
                let remaining = ContinuousClock.now.duration(to: deadline)
                guard remaining > .zero else { return .noReply(within: start.duration(to: .now)) }
                var poller = pollfd(fd: connection.descriptor, events: Int16(POLLIN), revents: 0)
                let ready = poll(&poller, 1, Int32(max(1, remaining.wholeMilliseconds)))
                if ready < 0 && errno != EINTR { return .failed(String(cString: strerror(errno))) }
                guard ready > 0 else { continue }
                if try connection.readReply() != nil {
                    inFlight = false
                    return .answered(after: start.duration(to: .now))
                }
            }
        } catch {
            inFlight = false
            return .failed("\(error)")
        }
    }

    func close() {
        connection?.close()
        connection = nil
    }
}

/// `SELECT 1` over HTTPS on one keep-alive connection of Kiln's HTTP client (libcurl: the server's certificate and
/// address verified against the CA, HTTP basic credentials), as a client of ClickHouse's `https_port` sends it.
/// Only a 200 whose body is `1` is an answer: a 401/403 (a login refused), any other status or a TLS failure is
/// `failed`.
///
/// libcurl's easy interface blocks, so each request runs on a thread of its own and `exchange` waits for its outcome
/// at most its timeout; a request that timed out stays in flight, and a later exchange collects its reply (a paused
/// server answers it once resumed). Ownership: owns the client; `close()` abandons a request still in flight, whose
/// thread ends — and frees the client — when the reply comes, the connection fails, or the request's own
/// `requestTimeout` passes. Threading: one caller at a time; at most one request runs on the client at once.
final class ClickHouseHTTPSWitness: ClientWitness {
    /// A request's outcome, set once by its thread: nil while in flight, "" when answered, else why it failed.
    private final class Request: @unchecked Sendable {
        let condition = NSCondition()
        var failure: String?
        var done = false
    }

    /// The client handed to the request thread; used by one request at a time (`exchange` starts a request only
    /// after the previous one is done).
    private final class Client: @unchecked Sendable {
        let http: HTTPClient
        init(_ http: HTTPClient) { self.http = http }
    }

    /// How long one request may stay in flight before libcurl gives it up (a pause longer than this fails the witness).
    static let requestTimeout: Duration = .seconds(300)

    let operation: String
    private let url: String
    private var client: Client?
    private var current: Request?

    /// Makes the client; connects at the first exchange (`ServerProtocol.openWitness` runs it before the fault).
    /// - Throws: ``ProcessFaultError`` when libcurl cannot be initialised.
    init(_ endpoint: HostPort, user: String, password: String, caFile: String?, timeout: Duration, operation: String) throws {
        self.operation = operation
        url = "https://\(endpoint)/"
        do {
            client = Client(
                try HTTPClient(
                    timeoutSeconds: Double(Self.requestTimeout.wholeMilliseconds) / 1000,
                    connectTimeoutSeconds: max(0.5, Double(timeout.wholeMilliseconds) / 1000), user: user,
                    password: password, caFile: caFile))
        } catch {
            throw ProcessFaultError("cannot make an HTTPS client for \(endpoint): \(error)")
        }
    }

    func exchange(within timeout: Duration) -> WitnessReply {
        let start = ContinuousClock.now
        guard let client else { return .failed("closed") }
        let request: Request
        if let current {
            request = current
        } else {
            request = Request()
            current = request
            let url = self.url
            Thread.detachNewThread {
                let failure: String
                do {
                    let response = try client.http.post(url, body: Array("SELECT 1".utf8), contentType: "text/plain")
                    let body = response.text.trimmingCharacters(in: .whitespacesAndNewlines)
                    if response.status != 200 {
                        failure = "HTTP \(response.status): \(body.prefix(120))"
                    } else if body != "1" {
                        failure = "HTTP 200 with \(body.prefix(80)) instead of 1"
                    } else {
                        failure = ""
                    }
                } catch {
                    failure = "\(error)"  // HTTPError never shows the credentials
                }
                request.condition.lock()
                request.failure = failure
                request.done = true
                request.condition.broadcast()
                request.condition.unlock()
            }
        }
        let deadline = Date().addingTimeInterval(Double(timeout.wholeMilliseconds) / 1000)
        request.condition.lock()
        while !request.done && request.condition.wait(until: deadline) {}
        let done = request.done
        let failure = request.failure
        request.condition.unlock()
        guard done else { return .noReply(within: start.duration(to: .now)) }
        current = nil
        if let failure, !failure.isEmpty { return .failed(failure) }
        return .answered(after: start.duration(to: .now))
    }

    func close() {
        client = nil
        current = nil
    }
}

/// A metadata request on one librdkafka client configured as the stack's clients are (TLS with the stack's CA, a SASL
/// login), as a client of a hardened Kafka sends it. Only a reply naming at least one broker is an answer; a refused
/// login or a failed certificate check is `failed`, a timeout `noReply`.
///
/// librdkafka keeps its broker connection (TLS and login done once) across exchanges, so after the first exchange
/// the witness is a client that logged in before the fault. Each exchange is a new metadata request that blocks at
/// most its timeout (librdkafka abandons a request whose caller gave up; nothing stays in flight for a later call).
/// Ownership: owns the client until `close()` (idempotent). Threading: one caller at a time.
final class KafkaLoginWitness: ClientWitness {
    let operation: String
    private let endpoint: HostPort
    private var admin: KafkaAdmin?

    /// Makes the client; connects at the first exchange (`ServerProtocol.openWitness` runs it before the fault).
    /// - Throws: ``ProcessFaultError`` when librdkafka rejects the configuration (the error names the property, never
    ///   its value).
    init(_ endpoint: HostPort, properties: [String: String], operation: String) throws {
        self.operation = operation
        self.endpoint = endpoint
        var settings = properties
        settings["client.id"] = "kiln-fault-witness"
        // Reconnect soon after the connection dropped (a killed broker started again), within one exchange's time.
        settings["reconnect.backoff.ms"] = settings["reconnect.backoff.ms"] ?? "100"
        settings["reconnect.backoff.max.ms"] = settings["reconnect.backoff.max.ms"] ?? "500"
        do {
            admin = try KafkaAdmin(bootstrapServers: endpoint.description, properties: settings)
        } catch {
            throw ProcessFaultError("cannot make a Kafka client for \(endpoint): \(error)")
        }
    }

    func exchange(within timeout: Duration) -> WitnessReply {
        let start = ContinuousClock.now
        guard let admin else { return .failed("closed") }
        do {
            let brokers = try admin.brokerCount(timeoutMilliseconds: Int32(max(1, timeout.wholeMilliseconds)))
            guard brokers > 0 else { return .failed("a metadata reply naming no broker") }
            return .answered(after: start.duration(to: .now))
        } catch {
            if error.name == "_TIMED_OUT" { return .noReply(within: start.duration(to: .now)) }
            return .failed("\(error)")  // KafkaError's description never shows configuration values
        }
    }

    /// The shortest `openWitness` timeout for which the witness settles (`settle`): a fault's witness (5 s), not a
    /// new-login probe (at most 2 s), which makes one exchange and closes.
    static let settlingTimeout: Duration = .seconds(3)

    /// librdkafka answers the first request on its bootstrap connection and then moves to a connection to the broker
    /// the metadata named (the same address here), closing the bootstrap one — a request in flight on it fails with
    /// `_TRANSPORT`, which during a fault would be librdkafka's doing, not the fault's. `settle` lets that happen
    /// before the fault: three exchanges, 300 and 200 ms apart, each of which must answer.
    func settle(within timeout: Duration) -> WitnessReply {
        let start = ContinuousClock.now
        for pause in [0, 300, 200] {
            if pause > 0 { usleep(useconds_t(pause * 1000)) }
            let remaining = timeout - start.duration(to: .now)
            guard remaining > .zero else { return .noReply(within: start.duration(to: .now)) }
            let reply = exchange(within: remaining)
            guard reply.answered else { return reply }
        }
        return .answered(after: start.duration(to: .now))
    }

    func close() { admin = nil }
}
