import KilnCheck
import KilnCore
import KilnData
import KilnRedis
import KilnStores
import Testing

@Suite("FalkorDB scanner (against the embedded FalkorDB)")
struct FalkorDBScannerTests {
    typealias F = StoreClientFixtures
    static func op(_ name: String) -> FalkorDBOperation { FalkorDBOperation(rawValue: name)! }

    let namespace = TestStack.uniqueName("kiln_gscan")

    func withClient(_ body: (FalkorDBClient) throws -> Void) throws {
        let client = try FalkorDBClient(context: F.context(namespace: namespace))
        defer {
            try? client.teardown()
            client.close()
        }
        try client.setup()
        try body(client)
    }

    func scanAll(_ scanner: FalkorDBScanner) throws -> [StoredRow] {
        var rows: [StoredRow] = []
        try scanner.scan { rows.append($0) }
        return rows
    }

    func query(_ cypher: String) throws {
        let falkor = try RedisConnection(host: TestStack.falkordb.host, port: TestStack.falkordb.port)
        try falkor.command(["GRAPH.QUERY", "\(namespace)_graph", cypher])
    }

    @Test func deliversEveryPaidEdgeWithTheFieldsTheGraphKeeps() throws {
        try withClient { client in
            #expect(client.invoke(Self.op("bulk"), Request(rows: 0..<3_000)) == .ok)
            // A small target makes many pages of adaptive width.
            for target in [50_000, 300] {
                let scanner = try FalkorDBScanner(context: F.context(namespace: namespace), targetEdgesPerPage: target)
                defer { scanner.close() }
                #expect(scanner.source == "graph \(namespace)_graph PAID edges")
                let rows = try scanAll(scanner)
                #expect(rows.count == 3_000)
                #expect(ScannedRowChecks.isEachID(rows, 1...Int64(3_000)))
                #expect(rows.filter { !ScannedRowChecks.mismatches($0, F.dataset).isEmpty }.count == 0)
                let complete = rows.allSatisfy {
                    $0.userID != nil && $0.merchantID != nil && $0.amountCents != nil && $0.timestampMillis != nil
                }
                #expect(complete)
                let absent = rows.allSatisfy {
                    $0.deviceID == nil && $0.currency == nil && $0.ringID == nil && $0.key == nil && $0.status == nil
                }
                #expect(absent)
            }
        }
    }

    @Test func duplicatedAndTamperedEdgesAreDeliveredAsStored() throws {
        try withClient { client in
            #expect(client.invoke(Self.op("bulk"), Request(rows: 0..<500)) == .ok)
            #expect(client.invoke(Self.op("merge-edge"), Request(row: 5)) == .ok)
            try query("MATCH ()-[p:PAID {txn_id: 10}]->() SET p.amount_cents = 1")
            try query("MATCH ()-[p:PAID {txn_id: 11}]->() SET p.amount_cents = 'x', p.txn_id = 'y'")
            let scanner = try FalkorDBScanner(context: F.context(namespace: namespace), targetEdgesPerPage: 100)
            defer { scanner.close() }
            let rows = try scanAll(scanner)
            #expect(rows.count == 501)
            #expect(rows.filter { $0.txnID == 6 }.count == 2)
            let ten = try #require(rows.first { $0.txnID == 10 })
            #expect(ten.amountCents == 1)
            #expect(ScannedRowChecks.mismatches(ten, F.dataset).map { $0.prefix(13) } == ["amount_cents:"])
            let unreadable = try #require(rows.first { $0.txnID == -1 })
            #expect(unreadable.amountCents == nil)
            #expect(unreadable.userID == F.dataset.transaction(10).userID)
        }
    }

    @Test func aMissingOrEmptyGraphYieldsNoRows() throws {
        let scanner = try FalkorDBScanner(context: F.context(namespace: namespace))
        defer { scanner.close() }
        #expect(try scanAll(scanner).isEmpty)
        try withClient { _ in
            try query("CREATE (:User {id: 1})")
            #expect(try scanAll(scanner).isEmpty)
        }
    }

    @Test func anUnreachableServerThrowsNamingTheStore() throws {
        let stack = F.stack(allAt: HostPort(host: "127.0.0.1", port: 3))
        let error = #expect(throws: FalkorDBScanner.ScanError.self) {
            try FalkorDBScanner(context: F.context(namespace: namespace, stack: stack))
        }
        #expect(error?.description.hasPrefix("falkordb at 127.0.0.1:3") == true)
    }
}
