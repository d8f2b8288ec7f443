import KilnCore
import KilnData
import KilnRedis
import KilnStores
import Testing

@Suite("FalkorDB client (against the embedded FalkorDB)")
struct FalkorDBClientTests {
    typealias F = StoreClientFixtures
    static func op(_ name: String) -> FalkorDBOperation { FalkorDBOperation(rawValue: name)! }

    let namespace = TestStack.uniqueName("kiln_graph")
    var falkor: RedisConnection {
        get throws { try RedisConnection(host: TestStack.falkordb.host, port: TestStack.falkordb.port) }
    }

    func withClient(batchRows: Int = 1000, _ body: (FalkorDBClient) throws -> Void) throws {
        let client = try FalkorDBClient(context: F.context(namespace: namespace), batchRows: batchRows)
        defer {
            try? client.teardown()
            client.close()
        }
        try client.setup()
        try body(client)
    }

    func integers(_ cypher: String) throws -> [[Int64]] {
        let reply = try falkor.command(["GRAPH.QUERY", "\(namespace)_graph", cypher])
        let rows = try #require(reply.array?[1].array)
        return rows.map { ($0.array ?? []).compactMap(\.integer) }
    }

    @Test func bulkLoadsEveryRowAsOnePaidEdgeAndMergesTheEntities() throws {
        try withClient(batchRows: 700) { client in
            let rows: Range<Int64> = 0..<3_000
            #expect(client.invoke(Self.op("bulk"), Request(rows: rows)) == .ok)
            let txns = rows.map { F.dataset.transaction($0) }
            let summary = F.dataset.summary(of: rows)
            #expect(try integers("MATCH ()-[p:PAID]->() RETURN count(p), toInteger(sum(p.amount_cents))")
                == [[summary.count, summary.amountCents]])
            #expect(try integers("MATCH (u:User) RETURN count(u)") == [[Int64(Set(txns.map(\.userID)).count)]])
            #expect(try integers("MATCH (m:Merchant) RETURN count(m)") == [[Int64(Set(txns.map(\.merchantID)).count)]])
            #expect(try integers("MATCH (d:Device) RETURN count(d)") == [[Int64(Set(txns.map(\.deviceID)).count)]])
            struct Pair: Hashable { var user: Int64, device: Int64 }
            let pairs = Set(txns.map { Pair(user: $0.userID, device: $0.deviceID) })
            #expect(try integers("MATCH ()-[e:USED]->() RETURN count(e)") == [[Int64(pairs.count)]])
            let sample = txns[1_234]
            #expect(try integers(
                "MATCH (u:User)-[p:PAID {txn_id: \(sample.txnID)}]->(m:Merchant) "
                    + "RETURN u.id, m.id, p.amount_cents, p.ts")
                == [[sample.userID, sample.merchantID, sample.amountCents, sample.timestampMillis]])
            let indexed = try falkor.command([
                "GRAPH.QUERY", "\(namespace)_graph", "CALL db.indexes() YIELD label RETURN label",
            ])
            let labels = Set((indexed.array?[1].array ?? []).compactMap { $0.array?.first?.string })
            #expect(labels == ["User", "Merchant", "Device"])
        }
    }

    @Test func readsAnswerFromWhatWasWritten() throws {
        try withClient { client in
            let rows: Range<Int64> = 0..<2_000
            #expect(client.invoke(Self.op("bulk"), Request(rows: 0..<1_999)) == .ok)
            #expect(client.invoke(Self.op("merge-edge"), Request(row: 1_999)) == .ok)
            let txns = rows.map { F.dataset.transaction($0) }
            // The user with the most rows, to make both reads non-trivial.
            let byUser = Dictionary(grouping: txns, by: \.userID)
            let user = try #require(byUser.max { $0.value.count < $1.value.count }?.key)
            let row = try #require(txns.first { $0.userID == user }?.index)

            #expect(client.invoke(Self.op("user-merchants"), Request(row: row)) == .ok)
            let expected = Dictionary(grouping: byUser[user] ?? [], by: \.merchantID).map { merchant, paid in
                [merchant, Int64(paid.count), paid.reduce(0) { $0 + $1.amountCents }]
            }.sorted { $0[0] < $1[0] }
            #expect(client.lastReadRows == expected)

            #expect(client.invoke(Self.op("shared-device"), Request(row: row)) == .ok)
            let devices = Set((byUser[user] ?? []).map(\.deviceID))
            let sharing = Set(txns.filter { devices.contains($0.deviceID) && $0.userID != user }.map(\.userID))
            let found = client.lastReadRows.compactMap(\.first)
            #expect(found.count == min(100, sharing.count))
            #expect(Set(found).isSubset(of: sharing))

            // A row of a user with no merchants yet: an empty answer is still an answer.
            #expect(client.invoke(Self.op("user-merchants"), Request(row: 50_000)) == .ok)
            let other = F.dataset.transaction(50_000).userID
            if byUser[other] == nil { #expect(client.lastReadRows.isEmpty) }
        }
    }

    @Test func setupAndTeardownAreIdempotent() throws {
        let client = try FalkorDBClient(context: F.context(namespace: namespace))
        defer { client.close() }
        try client.setup()
        try client.setup()
        #expect(client.invoke(Self.op("merge-edge"), Request(row: 3)) == .ok)
        try client.teardown()
        try client.teardown()
        let graphs = try falkor.command(["GRAPH.LIST"]).array?.compactMap(\.string) ?? []
        #expect(!graphs.contains("\(namespace)_graph"))
    }

    @Test func aRejectedQueryIsFail() throws {
        let client = try FalkorDBClient(context: F.context(namespace: namespace))
        defer { client.close() }
        let connection = try falkor
        defer { _ = try? connection.command(["DEL", "\(namespace)_graph"]) }
        try connection.command(["SET", "\(namespace)_graph", "not a graph"])
        let write = client.invoke(Self.op("merge-edge"), Request(row: 3))
        #expect(write == .fail("WRONGTYPE"))
        let read = client.invoke(Self.op("shared-device"), Request(row: 3))
        #expect(read.kind == "fail", "\(read)")
        // The connection stays usable.
        try connection.command(["DEL", "\(namespace)_graph"])
        #expect(client.invoke(Self.op("merge-edge"), Request(row: 3)) == .ok)
        try client.teardown()
    }

    @Test func anUnreachableServerThrowsAtOpenAndADeadOneGivesInfoThenFail() throws {
        let stack = F.stack(allAt: HostPort(host: "127.0.0.1", port: 3))
        let error = #expect(throws: FalkorDBClient.ConnectError.self) {
            _ = try FalkorDBClient(context: F.context(namespace: namespace, stack: stack))
        }
        #expect(error?.description.contains("falkordb at 127.0.0.1:3") == true)

        let server = try SilentServer()
        let client = try FalkorDBClient(
            context: F.context(
                namespace: namespace, stack: F.stack(allAt: server.address), timeout: .milliseconds(500)))
        defer { client.close() }
        #expect(client.invoke(Self.op("merge-edge"), Request(row: 1)) == .info("timeout"))
        server.close()
        #expect(client.invoke(Self.op("bulk"), Request(rows: 0..<10)) == .fail("connection"))
        #expect(client.invoke(Self.op("shared-device"), Request(row: 1)) == .fail("connection"))
    }
}
