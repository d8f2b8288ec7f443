import Foundation
import KilnRedis
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A private TLS-only redis-server (Debian's, built with TLS) on 127.0.33.240:33940 (and .241, which its certificate
/// does not name), with a CA and certificate made by openssl, plus a second CA that signed nothing the server shows.
/// Each test starts its own and stops it (``stop()``, also on failure through `defer`).
final class RedisTLSServer {
    static let host = "127.0.33.240"
    static let unnamedHost = "127.0.33.241"
    static let port = 33940
    let directory: URL
    var caFile: String { directory.appendingPathComponent("ca.crt").path }
    var otherCAFile: String { directory.appendingPathComponent("other-ca.crt").path }
    private let pidFile: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-redis-tls"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        pidFile = directory.appendingPathComponent("redis.pid")
        let dir = directory.path
        let script = """
            set -e
            # The server outlives this script: it must not inherit Foundation's descriptors (Process would wait for it).
            for fd in /proc/$$/fd/*; do fd=${fd##*/}; if [[ $fd -gt 2 && $fd -ne 255 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi; done
            cd '\(dir)'
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=kiln test CA' -keyout ca.key -out ca.crt 2>/dev/null
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=kiln other CA' -keyout other-ca.key -out other-ca.crt 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -subj '/CN=\(Self.host)' -keyout server.key -out server.csr 2>/dev/null
            printf 'subjectAltName=IP:\(Self.host)\\n' > san.ext
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt 2>/dev/null
            /usr/bin/redis-server --bind '\(Self.host) \(Self.unnamedHost)' --port 0 --tls-port \(Self.port) \\
                --tls-cert-file server.crt --tls-key-file server.key --tls-ca-cert-file ca.crt --tls-auth-clients no \\
                --save '' --appendonly no --dir '\(dir)' --daemonize yes --pidfile '\(pidFile.path)' --logfile '\(dir)/redis.log'
            for _ in $(seq 1 100); do [ -s '\(pidFile.path)' ] && (exec 3<>/dev/tcp/\(Self.host)/\(Self.port)) 2>/dev/null && exit 0; sleep 0.05; done
            echo "redis-server did not listen: $(tail -5 '\(dir)/redis.log')"; exit 1
            """
        let outcome = try AuditTestSupport.run("/bin/bash", ["-c", script])
        guard outcome.status == 0 else { throw TLSServerError(message: outcome.output) }
    }

    func stop() {
        if let text = try? String(contentsOf: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            // SIGKILL: the server holds nothing worth saving, and it inherits the test process's blocked signal mask
            // (SIGTERM blocked), so SIGTERM would never arrive.
            kill(pid, SIGKILL)
            for _ in 0..<100 where kill(pid, 0) == 0 { usleep(50_000) }
        }
        try? FileManager.default.removeItem(at: directory)
    }

    struct TLSServerError: Error, CustomStringConvertible { var message: String; var description: String { message } }
}

/// KilnRedis over TLS (OpenSSL + hiredis's reader) against a real TLS-only redis-server: commands, pipelines across
/// batches, large replies spanning TLS records, the multiplexed start/read path, timeouts, and every way a TLS
/// connection must fail quickly and clearly (wrong CA, wrong address, a plaintext client, a silent listener).
@Suite("Redis over TLS", .serialized)
struct RedisTLSTests {
    private func connect(_ server: RedisTLSServer, timeoutSeconds: Double = 5) throws -> RedisConnection {
        try try RedisConnection(
            host: RedisTLSServer.host, port: RedisTLSServer.port, timeoutSeconds: timeoutSeconds, tls: RedisTLS(caFile: server.caFile))
    }

    @Test func commandsPipelinesAndLargeValuesRoundTrip() throws {
        let server = try RedisTLSServer()
        defer { server.stop() }
        let connection = try connect(server)
        defer { connection.close() }
        #expect(try connection.command("PING") == .status("PONG"))
        let key = TestStack.uniqueName("kiln:tls")
        let binary: [UInt8] = [0, 1, 2, 255, 13, 10, 36, 42]
        try connection.command([Array("SET".utf8), Array(key.utf8), binary])
        #expect(try connection.command("GET", key).bytes == binary)
        // 3 MiB value: many TLS records in one reply.
        let large = String(repeating: "0123456789abcdef", count: 3 << 16)
        try connection.command("SET", key, large)
        #expect(try connection.command("GET", key).string == large)
        // 5,000 commands: five pipeline batches.
        let count = 5_000
        let sets = try connection.pipeline((0..<count).map { ["SET", "\(key):\($0)", "v\($0)"] })
        #expect(sets.count == count && sets.allSatisfy { $0 == .status("OK") })
        let gets = try connection.pipeline((0..<count).map { ["GET", "\(key):\($0)"] } + [["LPUSH", key, "x"]])
        #expect(gets.prefix(count).map(\.string) == (0..<count).map { "v\($0)" })
        if case .error(let message) = gets.last {
            #expect(message.hasPrefix("WRONGTYPE"), "a WRONGTYPE reply is returned in place")
        } else {
            Issue.record("no error reply in place: \(String(describing: gets.last))")
        }
        // Pre-encoded bulk path.
        let encoded = Array("*3\r\n$3\r\nSET\r\n$\(key.utf8.count + 2)\r\n\(key):e\r\n$1\r\n1\r\n*2\r\n$4\r\nINCR\r\n$\(key.utf8.count + 2)\r\n\(key):e\r\n".utf8)
        let errors = try encoded.withUnsafeBytes { try connection.pipelineEncoded($0, commandCount: 2) }
        #expect(errors.count == 0)
        #expect(try connection.command("GET", "\(key):e").string == "2")
        _ = try connection.pipeline(stride(from: 0, to: count, by: 1000).map { ["DEL"] + (($0..<$0 + 1000).map { "\(key):\($0)" }) })
        try connection.command("DEL", key, "\(key):e")
        #expect(connection.tls == RedisTLS(caFile: server.caFile))
    }

    @Test func multiplexedStartAndReadReplyOverTLS() throws {
        let server = try RedisTLSServer()
        defer { server.stop() }
        let connection = try connect(server)
        defer { connection.close() }
        let key = TestStack.uniqueName("kiln:tls:mux")
        try connection.command("HSET", key, "a", "1", "b", "2")
        for _ in 0..<50 {
            try connection.startCommand(["HGETALL", key].map(\.utf8))
            var shape: RedisReplyShape?
            var rounds = 0
            while shape == nil {
                var entry = pollfd(fd: connection.descriptor, events: Int16(POLLIN), revents: 0)
                #expect(poll(&entry, 1, 2000) == 1, "the reply arrived within 2 s")
                shape = try connection.readReply()
                rounds += 1
                try #require(rounds < 100)
            }
            #expect(shape == .array(count: 4))
        }
        try connection.command("DEL", key)
    }

    @Test func readTimeoutIsHonoured() throws {
        let server = try RedisTLSServer()
        defer { server.stop() }
        let connection = try connect(server, timeoutSeconds: 0.5)
        let started = ContinuousClock.now
        let error = #expect(throws: RedisError.self) { try connection.command("BLPOP", TestStack.uniqueName("kiln:tls:none"), "5") }
        #expect(error?.kind == .timeout, "\(String(describing: error))")
        #expect(ContinuousClock.now - started < .seconds(3))
        #expect(!connection.isOpen)
    }

    @Test func wrongCAFailsAtConnectWithTheVerifyReason() throws {
        let server = try RedisTLSServer()
        defer { server.stop() }
        let started = ContinuousClock.now
        let error = #expect(throws: RedisError.self) {
            try RedisConnection(host: RedisTLSServer.host, port: RedisTLSServer.port, timeoutSeconds: 5, tls: RedisTLS(caFile: server.otherCAFile))
        }
        #expect(error?.kind == .connect)
        #expect(error?.description.contains("TLS: certificate verify failed") == true, "\(String(describing: error))")
        #expect(ContinuousClock.now - started < .seconds(2), "a refused certificate fails at once, not at the timeout")
        // The address is checked too: the certificate names .240 only.
        let unnamed = #expect(throws: RedisError.self) {
            try RedisConnection(host: RedisTLSServer.unnamedHost, port: RedisTLSServer.port, timeoutSeconds: 5, tls: RedisTLS(caFile: server.caFile))
        }
        #expect(unnamed?.description.contains("IP address mismatch") == true, "\(String(describing: unnamed))")
        // A missing CA file is named.
        let missing = #expect(throws: RedisError.self) {
            try RedisConnection(host: RedisTLSServer.host, port: RedisTLSServer.port, timeoutSeconds: 5, tls: RedisTLS(caFile: "/nonexistent/ca.crt"))
        }
        #expect(missing?.description.contains("/nonexistent/ca.crt") == true, "\(String(describing: missing))")
    }

    @Test func plaintextAndTLSMismatchesFailWithinTheTimeout() throws {
        let server = try RedisTLSServer()
        defer { server.stop() }
        // A plaintext client on the TLS port: the server drops the garbage handshake; never a hang.
        let started = ContinuousClock.now
        #expect(throws: RedisError.self) {
            let plain = try RedisConnection(host: RedisTLSServer.host, port: RedisTLSServer.port, timeoutSeconds: 1)
            try plain.command("PING")
        }
        #expect(ContinuousClock.now - started < .seconds(3))
        // A TLS client on a listener that never answers: the handshake is bounded by the connect timeout.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(33941).bigEndian)
        inet_pton(AF_INET, RedisTLSServer.host, &address.sin_addr)
        var reuse: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(listener, 4) == 0)
        let silentStart = ContinuousClock.now
        let silent = #expect(throws: RedisError.self) {
            try RedisConnection(host: RedisTLSServer.host, port: 33941, timeoutSeconds: 1, tls: RedisTLS(caFile: server.caFile))
        }
        #expect(silent?.kind == .connect && silent?.description.contains("TLS handshake timed out") == true, "\(String(describing: silent))")
        #expect(ContinuousClock.now - silentStart < .seconds(3))
        // Nothing listening: refused, as in plaintext.
        let refused = #expect(throws: RedisError.self) {
            try RedisConnection(host: RedisTLSServer.host, port: 33942, timeoutSeconds: 1, tls: RedisTLS(caFile: server.caFile))
        }
        #expect(refused?.description.contains("Connection refused") == true, "\(String(describing: refused))")
    }

    @Test func credentialsCarryTLS() throws {
        let server = try RedisTLSServer()
        defer { server.stop() }
        let credentials = RedisCredentials(user: nil, password: nil, tls: RedisTLS(caFile: server.caFile))
        let connection = try credentials.connect(host: RedisTLSServer.host, port: RedisTLSServer.port, timeoutSeconds: 2)
        #expect(try connection.command("PING") == .status("PONG"))
        connection.close()
    }
}
