import Foundation
import KilnCore
import KilnData
import KilnRedis
import KilnScenario
import KilnStores
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Shared by the RESP-store client tests (Redis, FalkorDB, Kafka).
enum StoreClientFixtures {
    static let dataset: Dataset = try! Dataset(spec: Fixtures.spec, seed: 7, rows: 100_000)

    static func context(
        namespace: String, stack: StackDefinition = TestStack.definition, timeout: Duration = .seconds(10)
    ) -> ClientContext {
        ClientContext(
            stack: stack, dataset: dataset, namespace: namespace, timeout: timeout, environment: [:],
            logger: Logger(label: "kiln.test"))
    }

    /// The test stack with every endpoint replaced by `address` (nothing listens on port 3 of loopback).
    static func stack(allAt address: HostPort) -> StackDefinition {
        var stack = TestStack.definition
        stack.redis.primary = address
        stack.graph.endpoint = address
        stack.kafka.bootstrap = [address]
        return stack
    }

}

/// A TCP listener that never answers: connections complete (the kernel accepts them into the backlog), and when
/// `close()` is called they are reset, which is how a server crash looks to a client that already connected.
final class SilentServer {
    private var fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            _ = Glibc.close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    var address: HostPort { HostPort(host: "127.0.0.1", port: port) }

    func close() {
        if fd >= 0 {
            _ = Glibc.close(fd)
            fd = -1
        }
    }

    deinit { close() }
}

@Suite("Redis client (against the embedded Redis)")
struct RedisClientTests {
    typealias F = StoreClientFixtures
    static func op(_ name: String) -> RedisOperation { RedisOperation(rawValue: name)! }

    let namespace = TestStack.uniqueName("kiln_redis")
    var redis: RedisConnection {
        get throws { try RedisConnection(host: TestStack.redisPrimary.host, port: TestStack.redisPrimary.port) }
    }

    func withClient(_ body: (RedisClient) throws -> Void) throws {
        let client = try RedisClient(context: F.context(namespace: namespace))
        defer {
            try? client.teardown()
            client.close()
        }
        try client.setup()
        try body(client)
    }

    @Test func bulkWritesEachUsersFeaturesAndScoresExactly() throws {
        try withClient { client in
            let rows: Range<Int64> = 0..<3_000
            #expect(client.invoke(Self.op("bulk"), Request(rows: rows)) == .ok)
            var expected: [Int64: (count: Int64, cents: Int64, score: Int64, last: Transaction)] = [:]
            for index in rows {
                let txn = F.dataset.transaction(index)
                let old = expected[txn.userID]
                expected[txn.userID] = (
                    (old?.count ?? 0) + 1, (old?.cents ?? 0) + txn.amountCents,
                    (old?.score ?? 0) + Int64(txn.fraudScoreMillis), txn
                )
            }
            let connection = try redis
            let members = try connection.command(["ZCARD", "\(namespace):fraud:scores"]).integer
            #expect(members == Int64(expected.count))
            let totals = try connection.command([
                "EVAL", "local t = 0 local r = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES') "
                    + "for i = 2, #r, 2 do t = t + tonumber(r[i]) end return t",
                "1", "\(namespace):fraud:scores",
            ]).integer
            #expect(totals == expected.values.reduce(0) { $0 + $1.score })
            for user in expected.keys.sorted().prefix(25) {
                let want = try #require(expected[user])
                let key = "\(namespace):user:\(user):features"
                let hash = try #require(try connection.command(["HGETALL", key]).array)
                var fields: [String: String] = [:]
                for pair in stride(from: 0, to: hash.count - 1, by: 2) {
                    fields[hash[pair].string ?? ""] = hash[pair + 1].string
                }
                #expect(fields["txn_count"] == String(want.count))
                #expect(fields["amount_cents_total"] == String(want.cents))
                #expect(fields["last_txn"] == String(want.last.txnID))
                #expect(fields["last_amount_cents"] == String(want.last.amountCents))
                #expect(fields["last_merchant"] == String(want.last.merchantID))
                #expect(fields["last_ts"] == String(want.last.timestampMillis))
                let ttl = try #require(try connection.command(["TTL", key]).integer)
                #expect(ttl > 86_000 && ttl <= 86_400)
                let score = try connection.command(["ZSCORE", "\(namespace):fraud:scores", String(user)]).string
                #expect(score == String(want.score))
            }
        }
    }

    @Test func bulkHonoursAnyPipelineDepth() throws {
        for depth in [1, 7, 256] {
            let namespace = TestStack.uniqueName("kiln_redis_depth")
            let client = try RedisClient(context: F.context(namespace: namespace), pipelineDepth: depth)
            defer {
                try? client.teardown()
                client.close()
            }
            #expect(client.invoke(Self.op("bulk"), Request(rows: 10..<263)) == .ok)
            #expect(client.invoke(Self.op("bulk-set"), Request(rows: 10..<263)) == .ok)
            let connection = try redis
            let count = try connection.command([
                "EVAL", "return #redis.call('KEYS', ARGV[1])", "0", "\(namespace):txn:*",
            ]).integer
            #expect(count == 253, "depth \(depth)")
            let users = Set((10..<263).map { F.dataset.transaction(Int64($0)).userID })
            #expect(try connection.command(["ZCARD", "\(namespace):fraud:scores"]).integer == Int64(users.count))
        }
    }

    @Test func setStoresTheRowsJSONAndBulkSetMatchesIt() throws {
        try withClient { client in
            #expect(client.invoke(Self.op("set"), Request(row: 41)) == .ok)
            #expect(client.invoke(Self.op("bulk-set"), Request(rows: 100..<400)) == .ok)
            var encoder = RowEncoder(format: .jsonl, dataset: F.dataset, capacity: 4096)
            let connection = try redis
            for row: Int64 in [41, 100, 257, 399] {
                encoder.removeAll()
                encoder.append(F.dataset.transaction(row))
                let stored = try connection.command(["GET", "\(namespace):txn:\(row + 1)"]).bytes
                #expect(stored == Array(encoder.bytes.dropLast()), "row \(row)")
            }
            #expect(try connection.command(["EXISTS", "\(namespace):txn:401"]).integer == 0)
        }
    }

    @Test func featureUpdateReadScoreAndTopK() throws {
        try withClient { client in
            let row: Int64 = 1234
            let txn = F.dataset.transaction(row)
            #expect(client.invoke(Self.op("feature-read"), Request(row: row)) == .ok)
            #expect(client.lastReadCount == 0)
            #expect(client.invoke(Self.op("feature-update"), Request(row: row)) == .ok)
            #expect(client.invoke(Self.op("feature-read"), Request(row: row)) == .ok)
            #expect(client.lastReadCount == 6)
            let connection = try redis
            let key = "\(namespace):user:\(txn.userID):features"
            #expect(try connection.command(["HGET", key, "last_txn"]).string == String(txn.txnID))
            #expect(try connection.command(["HGET", key, "txn_count"]).string == "1")
            for other: Int64 in [1, 2, 3] {
                #expect(client.invoke(Self.op("score-incr"), Request(row: other)) == .ok)
            }
            #expect(client.invoke(Self.op("score-incr"), Request(row: row)) == .ok)
            #expect(client.invoke(Self.op("top-k"), Request()) == .ok)
            let users = Set([1, 2, 3, row].map { F.dataset.transaction($0).userID })
            #expect(client.lastReadCount == users.count)
            let score = try connection.command(["ZSCORE", "\(namespace):fraud:scores", String(txn.userID)]).string
            #expect(score == String(txn.fraudScoreMillis))
        }
    }

    @Test func streamAddThenConsumeReadsEachEventOnceAndAcksIt() throws {
        try withClient { client in
            try client.setup()  // idempotent: BUSYGROUP is ignored
            for row: Int64 in 0..<15 {
                #expect(client.invoke(Self.op("stream-add"), Request(row: row)) == .ok)
            }
            var counts: [Int] = []
            for _ in 0..<3 {
                #expect(client.invoke(Self.op("stream-consume"), Request()) == .ok)
                counts.append(client.lastReadCount)
            }
            #expect(counts == [10, 5, 0])
            let connection = try redis
            let stream = "\(namespace):stream:fraud-events"
            #expect(try connection.command(["XLEN", stream]).integer == 15)
            let pending = try #require(try connection.command(["XPENDING", stream, "\(namespace)-load"]).array)
            #expect(pending.first?.integer == 0)
            let first = try #require(try connection.command(["XRANGE", stream, "-", "+", "COUNT", "1"]).array)
            let fields = try #require(first.first?.array?.last?.array).compactMap(\.string)
            let txn = F.dataset.transaction(0)
            #expect(fields == ["txn_id", "1", "user_id", String(txn.userID), "score", String(txn.fraudScoreMillis)])
        }
    }

    @Test func errorRepliesAreFailWithTheErrorWordOrInfoWhenPartlyApplied() throws {
        try withClient { client in
            let row: Int64 = 9
            let txn = F.dataset.transaction(row)
            let connection = try redis
            try connection.command(["SET", "\(namespace):user:\(txn.userID):features", "not-a-hash"])
            try connection.command(["SET", "\(namespace):fraud:scores", "not-a-zset"])
            #expect(client.invoke(Self.op("feature-read"), Request(row: row)) == .fail("WRONGTYPE"))
            #expect(client.invoke(Self.op("score-incr"), Request(row: row)) == .fail("WRONGTYPE"))
            #expect(client.invoke(Self.op("top-k"), Request()) == .fail("WRONGTYPE"))
            // HSET and both HINCRBY are rejected but EXPIRE applies: the op is partly applied.
            #expect(client.invoke(Self.op("feature-update"), Request(row: row)) == .info("WRONGTYPE"))
            // The connection stays usable after error replies.
            #expect(client.invoke(Self.op("set"), Request(row: row)) == .ok)
        }
    }

    @Test func pipelineEncodedCountsErrorRepliesAndKeepsTheConnection() throws {
        let connection = try redis
        let key = TestStack.uniqueName("kiln_redis_enc")
        defer { _ = try? connection.command(["DEL", key]) }
        let commands = "*3\r\n$3\r\nSET\r\n$\(key.utf8.count)\r\n\(key)\r\n$1\r\nv\r\n"
            + "*3\r\n$5\r\nLPUSH\r\n$\(key.utf8.count)\r\n\(key)\r\n$1\r\nx\r\n"
            + "*2\r\n$3\r\nGET\r\n$\(key.utf8.count)\r\n\(key)\r\n"
        let result = try Array(commands.utf8).withUnsafeBytes { try connection.pipelineEncoded($0, commandCount: 3) }
        #expect(result.count == 1)
        #expect(result.first?.kind == .server("WRONGTYPE"))
        #expect(try connection.command(["GET", key]).string == "v")
    }

    @Test func anUnreachableServerThrowsAtOpenNamingStoreAndAddress() throws {
        let stack = F.stack(allAt: HostPort(host: "127.0.0.1", port: 3))
        let error = #expect(throws: RedisClient.ConnectError.self) {
            _ = try RedisClient(context: F.context(namespace: namespace, stack: stack))
        }
        #expect(error?.description.contains("redis at 127.0.0.1:3") == true)
    }

    @Test func aServerThatDiesGivesInfoForWritesThenFailOnReconnect() throws {
        let server = try SilentServer()
        let stack = F.stack(allAt: server.address)
        let client = try RedisClient(context: F.context(namespace: namespace, stack: stack, timeout: .seconds(1)))
        defer { client.close() }
        // Connected, but the server never answers: the write's fate is unknown.
        #expect(client.invoke(Self.op("set"), Request(row: 1)) == .info("timeout"))
        server.close()
        // The next op reconnects, which is refused: nothing was sent.
        #expect(client.invoke(Self.op("set"), Request(row: 2)) == .fail("connection"))
        #expect(client.invoke(Self.op("feature-read"), Request(row: 2)) == .fail("connection"))
        client.close()
        client.close()  // twice is fine
    }

    @Test func aReadThatTimesOutIsFail() throws {
        let server = try SilentServer()
        let stack = F.stack(allAt: server.address)
        let client = try RedisClient(
            context: F.context(namespace: namespace, stack: stack, timeout: .milliseconds(300)))
        defer { client.close() }
        #expect(client.invoke(Self.op("top-k"), Request()) == .fail("timeout"))
    }

    @Test func teardownRemovesEveryKeyOfTheNamespace() throws {
        let client = try RedisClient(context: F.context(namespace: namespace))
        defer { client.close() }
        try client.setup()
        #expect(client.invoke(Self.op("bulk"), Request(rows: 0..<50)) == .ok)
        #expect(client.invoke(Self.op("stream-add"), Request(row: 1)) == .ok)
        try client.teardown()
        try client.teardown()
        let left = try redis.command(["EVAL", "return #redis.call('KEYS', ARGV[1])", "0", "\(namespace):*"]).integer
        #expect(left == 0)
    }
}
