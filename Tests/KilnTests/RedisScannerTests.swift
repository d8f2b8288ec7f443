import KilnCheck
import KilnCore
import KilnData
import KilnRedis
import KilnStores
import Testing

@Suite("Redis scanner (against the embedded Redis)")
struct RedisScannerTests {
    typealias F = StoreClientFixtures
    static func op(_ name: String) -> RedisOperation { RedisOperation(rawValue: name)! }

    let namespace = TestStack.uniqueName("kiln_rscan")
    var redis: RedisConnection {
        get throws { try RedisConnection(host: TestStack.redisPrimary.host, port: TestStack.redisPrimary.port) }
    }

    func withClient(_ body: (RedisClient, RedisScanner) throws -> Void) throws {
        let client = try RedisClient(context: F.context(namespace: namespace), pipelineDepth: 100)
        let scanner = try RedisScanner(context: F.context(namespace: namespace))
        defer {
            try? client.teardown()
            client.close()
            scanner.close()
        }
        try client.setup()
        try body(client, scanner)
    }

    func scanAll(_ scanner: RedisScanner) throws -> [StoredRow] {
        var rows: [StoredRow] = []
        try scanner.scan { rows.append($0) }
        return rows
    }

    @Test func deliversEveryTransactionKeyWithItsFields() throws {
        try withClient { client, scanner in
            #expect(client.invoke(Self.op("bulk-set"), Request(rows: 0..<3_000)) == .ok)
            #expect(client.invoke(Self.op("set"), Request(row: 3_000)) == .ok)
            let rows = try scanAll(scanner)
            #expect(rows.count == 3_001)
            #expect(ScannedRowChecks.isEachID(rows, 1...Int64(3_001)))
            #expect(rows.filter { !ScannedRowChecks.mismatches($0, F.dataset).isEmpty }.count == 0)
            #expect(rows.allSatisfy { ScannedRowChecks.hasEveryJSONField($0) })
            #expect(rows.allSatisfy { $0.key == "\(namespace):txn:\($0.txnID)" })
            #expect(rows.allSatisfy { $0.partition == nil && $0.offset == nil })
        }
    }

    @Test func tamperedCopiedAndUnreadableKeysAreDeliveredAsStored() throws {
        try withClient { client, scanner in
            #expect(client.invoke(Self.op("bulk-set"), Request(rows: 0..<100)) == .ok)
            let connection = try redis
            let copy = ScannedRowChecks.json(F.dataset.transaction(9), F.dataset)
            let amount = F.dataset.transaction(4).amountCents
            let changed = String(decoding: ScannedRowChecks.json(F.dataset.transaction(4), F.dataset), as: UTF8.self)
                .replacingOccurrences(of: "\"amount\":\(amount / 100).", with: "\"amount\":\(amount / 100 + 1).")
            try connection.command([Array("SET".utf8), Array("\(namespace):txn:copy-of-10".utf8), copy])
            try connection.command(["SET", "\(namespace):txn:5", changed])
            try connection.command(["SET", "\(namespace):txn:1000", "garbage"])
            try connection.command(["DEL", "\(namespace):txn:77"])
            try connection.command(["HSET", "\(namespace):txn:77", "a", "b"])

            let rows = try scanAll(scanner)
            #expect(rows.count == 102)
            #expect(rows.filter { $0.txnID == 10 }.compactMap(\.key).sorted()
                == ["\(namespace):txn:10", "\(namespace):txn:copy-of-10"])
            let five = try #require(rows.first { $0.txnID == 5 })
            #expect(five.amountCents == amount + 100)
            #expect(ScannedRowChecks.mismatches(five, F.dataset).map { $0.prefix(13) } == ["amount_cents:"])
            let unreadable = rows.filter { $0.txnID == -1 }.compactMap(\.key).sorted()
            #expect(unreadable == ["\(namespace):txn:1000", "\(namespace):txn:77"])
            #expect(rows.filter { $0.txnID == -1 }.allSatisfy { $0.userID == nil && $0.ringID == nil })
        }
    }

    @Test func userFeaturesComeWithTheirScores() throws {
        try withClient { client, scanner in
            let rows: Range<Int64> = 0..<2_000
            #expect(client.invoke(Self.op("bulk"), Request(rows: rows)) == .ok)
            var features: [Int64: StoredUserFeatures] = [:]
            var repeats = 0
            try scanner.scanUserFeatures { user in
                if features.updateValue(user, forKey: user.userID) != nil { repeats += 1 }
            }
            #expect(repeats == 0)
            let byUser = Dictionary(grouping: rows.map { F.dataset.transaction($0) }, by: \.userID)
            #expect(Set(features.keys) == Set(byUser.keys))
            var wrong: [Int64] = []
            for (user, txns) in byUser {
                let last = txns.max { $0.index < $1.index }!
                let expected = [
                    "last_txn": String(last.txnID), "last_amount_cents": String(last.amountCents),
                    "last_merchant": String(last.merchantID), "last_ts": String(last.timestampMillis),
                    "txn_count": String(txns.count), "amount_cents_total": String(txns.map(\.amountCents).reduce(0, +)),
                ]
                let score = Double(txns.map { Int64($0.fraudScoreMillis) }.reduce(0, +))
                if features[user]?.fields != expected || features[user]?.score != score { wrong.append(user) }
            }
            #expect(wrong.isEmpty, "\(wrong.prefix(5))")

            // A hash without a score, and a score-less user with a non-numeric id, as stored.
            let connection = try redis
            try connection.command(["ZREM", "\(namespace):fraud:scores", String(byUser.keys.first!)])
            try connection.command(["HSET", "\(namespace):user:abc:features", "txn_count", "1"])
            var scoreless: [StoredUserFeatures] = []
            try scanner.scanUserFeatures { if $0.score == nil { scoreless.append($0) } }
            #expect(scoreless.map(\.userID).sorted() == [-1, byUser.keys.first!].sorted())
            #expect(scoreless.first { $0.userID == -1 }?.fields == ["txn_count": "1"])
        }
    }

    @Test func aNamespaceWithoutKeysYieldsNothing() throws {
        try withClient { _, scanner in
            #expect(try scanAll(scanner).isEmpty)
            var users = 0
            try scanner.scanUserFeatures { _ in users += 1 }
            #expect(users == 0)
        }
    }

    @Test func globCharactersInTheNamespaceAreMatchedLiterally() throws {
        let odd = namespace + "[x]*"
        let client = try RedisClient(context: F.context(namespace: odd))
        let other = try RedisClient(context: F.context(namespace: namespace + "x"))
        defer {
            try? client.teardown()
            try? other.teardown()
            client.close()
            other.close()
        }
        #expect(client.invoke(Self.op("bulk-set"), Request(rows: 0..<10)) == .ok)
        #expect(other.invoke(Self.op("bulk-set"), Request(rows: 0..<10)) == .ok)
        let scanner = try RedisScanner(context: F.context(namespace: odd))
        defer { scanner.close() }
        #expect(try scanAll(scanner).count == 10)
    }

    @Test func anUnreachableServerThrowsNamingTheStore() throws {
        let stack = F.stack(allAt: HostPort(host: "127.0.0.1", port: 3))
        let error = #expect(throws: RedisScanner.ScanError.self) {
            try RedisScanner(context: F.context(namespace: namespace, stack: stack))
        }
        #expect(error?.description.hasPrefix("redis at 127.0.0.1:3") == true)
    }
}
