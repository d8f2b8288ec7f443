import Foundation
import KilnRedis
import Testing

/// Integration tests of KilnRedis against the real server of `TestStack.redisPrimary`; they fail when it is down.
@Suite("Redis wrapper")
struct RedisWrapperTests {
    private func connect(timeoutSeconds: Double = 5) throws -> RedisConnection {
        let (host, port) = TestStack.redisPrimary
        return try RedisConnection(host: host, port: port, timeoutSeconds: timeoutSeconds)
    }

    @Test func pipelineOfTenThousandSetsAndGets() throws {
        let connection = try connect()
        let prefix = TestStack.uniqueName("kiln:rw:pipe")
        let count = 10_000
        let keys = (0..<count).map { "\(prefix):\($0)" }
        let values = (0..<count).map { "value-\($0)-" + String(repeating: "x", count: $0 % 97) }
        defer {
            _ = try? connection.pipeline(stride(from: 0, to: count, by: 1000).map { ["DEL"] + keys[$0..<$0 + 1000] })
        }

        let sets = try connection.pipeline((0..<count).map { ["SET", keys[$0], values[$0]] })
        #expect(sets.count == count)
        #expect(sets.allSatisfy { $0 == .status("OK") })

        let gets = try connection.pipeline(keys.map { ["GET", $0] })
        #expect(gets.count == count)
        #expect(gets.map(\.string) == values)
        #expect(try connection.command("EXISTS", keys[0], keys[count - 1], "\(prefix):missing").integer == 2)
    }

    @Test func pipelineReturnsErrorRepliesInPlace() throws {
        let connection = try connect()
        let key = TestStack.uniqueName("kiln:rw:inplace")
        defer { _ = try? connection.command("DEL", key) }

        let replies = try connection.pipeline([["SET", key, "v"], ["LPUSH", key, "x"], ["GET", key], ["INCR", key]])
        #expect(replies.count == 4)
        #expect(replies[0] == .status("OK"))
        #expect(replies[1].string == nil)
        if case .error(let message) = replies[1] {
            #expect(message.hasPrefix("WRONGTYPE"))
        } else {
            Issue.record("expected an error reply, got \(replies[1])")
        }
        #expect(replies[2] == .bulk(Array("v".utf8)))
        #expect(replies[3].integer == nil)
        #expect(connection.isOpen)
    }

    @Test func wrongTypeErrorIsThrownAndRedacted() throws {
        let connection = try connect()
        let key = TestStack.uniqueName("kiln:rw:wrongtype")
        defer { _ = try? connection.command("DEL", key) }
        try connection.command("SET", key, "kiln-secret-value")

        let wrongType = #expect(throws: RedisError.self) {
            try connection.command("LPUSH", key, "kiln-secret-element")
        }
        #expect(wrongType?.kind == .server("WRONGTYPE"))
        let description = wrongType.map { String(describing: $0) } ?? ""
        #expect(description.contains("WRONGTYPE"))
        #expect(description.contains(connection.address))
        #expect(!description.contains("kiln-secret"))
        #expect(!description.contains(key))

        // Some error replies echo the arguments; the description never does, debugDescription may.
        let unknown = #expect(throws: RedisError.self) {
            try connection.command("KILNNOSUCHCOMMAND", "kiln-secret-argument")
        }
        #expect(unknown?.kind == .server("ERR"))
        #expect(unknown.map { !String(describing: $0).contains("kiln-secret") } ?? false)
        #expect(unknown.map { String(reflecting: $0).contains("kiln-secret-argument") } ?? false)

        // A server error leaves the connection usable.
        #expect(try connection.command("GET", key).string == "kiln-secret-value")
    }

    @Test func binarySafeValuesRoundTrip() throws {
        let connection = try connect()
        let key = Array(TestStack.uniqueName("kiln:rw:bin").utf8) + [0, 0xFF, 0x0A]
        let value: [UInt8] = [0x00, 0x41, 0x00, 0xFF, 0xFE, 0x0D, 0x0A, 0x24, 0x2A, 0x00]
        defer { _ = try? connection.command([Array("DEL".utf8), key]) }

        #expect(try connection.command([Array("SET".utf8), key, value]) == .status("OK"))
        let reply = try connection.command([Array("GET".utf8), key])
        #expect(reply == .bulk(value))
        #expect(reply.bytes == value)
        #expect(reply.string == nil, "0xFF 0xFE is not UTF-8")
        #expect(try connection.command([Array("STRLEN".utf8), key]).integer == Int64(value.count))

        let empty: [UInt8] = []
        let replies = try connection.pipeline([
            [Array("SET".utf8), key, empty], [Array("GET".utf8), key], [Array("GET".utf8), key + [1]],
        ])
        #expect(replies == [.status("OK"), .bulk([]), .null])
    }

    @Test func unreachableServerThrowsConnect() {
        let clock = ContinuousClock()
        let start = clock.now
        let error = #expect(throws: RedisError.self) {
            _ = try RedisConnection(host: "127.0.0.1", port: 1, timeoutSeconds: 2)
        }
        #expect(clock.now - start < .seconds(5))
        #expect(error?.kind == .connect)
        #expect(error.map { String(describing: $0).contains("127.0.0.1:1") } ?? false)
    }

    @Test func readTimeoutBreaksTheConnection() throws {
        let connection = try connect(timeoutSeconds: 0.5)
        let key = TestStack.uniqueName("kiln:rw:blocked")
        let clock = ContinuousClock()
        let start = clock.now
        let timeout = #expect(throws: RedisError.self) {
            try connection.command("BLPOP", key, "0")
        }
        #expect(clock.now - start < .seconds(3))
        #expect(timeout?.kind == .timeout)
        #expect(!connection.isOpen)
        let after = #expect(throws: RedisError.self) {
            try connection.command("PING")
        }
        #expect(after?.kind == .closed)
    }

    @Test func killedConnectionThrowsIOInsteadOfRaisingSIGPIPE() throws {
        let (host, port) = TestStack.redisPrimary
        let victim = try connect()
        let id = try #require(victim.command("CLIENT", "ID").integer)
        let killer = try connect()
        #expect(try killer.command("CLIENT", "KILL", "ID", String(id)).integer == 1)

        // Megabytes written to a socket the server has closed: without SIGPIPE handling the process would die.
        let prefix = TestStack.uniqueName("kiln:rw:killed")
        let value = String(repeating: "v", count: 4096)
        let error = #expect(throws: RedisError.self) {
            try victim.pipeline((0..<2000).map { ["SET", "\(prefix):\($0)", value] })
        }
        #expect(error?.kind == .io)
        #expect(error.map { String(describing: $0).contains("\(host):\(port)") } ?? false)
        #expect(!victim.isOpen)
    }

    @Test func closeIsIdempotentAndLaterCallsThrowClosed() throws {
        let connection = try connect()
        #expect(try connection.command("PING") == .status("PONG"))
        connection.close()
        connection.close()
        let error = #expect(throws: RedisError.self) {
            try connection.pipeline([["PING"]])
        }
        #expect(error?.kind == .closed)
    }
}
