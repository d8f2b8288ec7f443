import Foundation
import KilnCheck
import KilnCore
import KilnData
import KilnRedis
import KilnStores
import Testing

@Suite("FalkorDB GRAPH.BULK path (against the embedded FalkorDB)", .serialized)
struct FalkorDBBulkInsertTests {
    typealias F = StoreClientFixtures
    static let bulk = FalkorDBOperation.bulk

    var falkor: RedisConnection {
        get throws { try RedisConnection(host: TestStack.falkordb.host, port: TestStack.falkordb.port) }
    }

    func client(_ namespace: String, graphBulk: Bool) throws -> FalkorDBClient {
        let client = try FalkorDBClient(context: F.context(namespace: namespace), batchRows: 500, graphBulk: graphBulk)
        try client.setup()
        return client
    }

    func integers(_ graph: String, _ cypher: String) throws -> [[Int64]] {
        let reply = try falkor.command(["GRAPH.RO_QUERY", graph, cypher])
        let rows = try #require(reply.array?[1].array)
        return rows.map { ($0.array ?? []).compactMap(\.integer) }
    }

    /// What the two paths must agree on: node and edge counts, sums, and the properties of sampled rows.
    func fingerprint(_ graph: String, samples: [Transaction]) throws -> [[[Int64]]] {
        var result = [
            try integers(graph, "MATCH (u:User) RETURN count(u), sum(u.id)"),
            try integers(graph, "MATCH (m:Merchant) RETURN count(m), sum(m.id)"),
            try integers(graph, "MATCH (d:Device) RETURN count(d), sum(d.id)"),
            try integers(graph, "MATCH (n) RETURN count(n)"),
            try integers(graph, "MATCH (:User)-[e:USED]->(:Device) RETURN count(e)"),
            try integers(
                graph,
                "MATCH (:User)-[p:PAID]->(:Merchant) RETURN count(p), sum(p.amount_cents), sum(p.ts), sum(p.txn_id)"),
            try integers(graph, "MATCH ()-[e]->() RETURN count(e)"),
        ]
        for row in samples {
            result.append(try integers(
                graph,
                "MATCH (u:User {id: \(row.userID)})-[p:PAID {txn_id: \(row.txnID)}]->"
                    + "(m:Merchant {id: \(row.merchantID)}) MATCH (u)-[:USED]->(d:Device {id: \(row.deviceID)}) "
                    + "RETURN u.id, m.id, d.id, p.amount_cents, p.ts"))
            result.append(try integers(
                graph, "MATCH (u:User {id: \(row.userID)})-[:USED]->(d:Device) RETURN d.id ORDER BY d.id"))
        }
        return result
    }

    @Test func aBulkLoadedGraphEqualsTheMergedOneForTheSameRows() throws {
        let bulkNamespace = TestStack.uniqueName("gb_bulk")
        let mergeNamespace = TestStack.uniqueName("gb_merge")
        // Two clients of the bulk graph share its writer, as the workers of a bulk phase do.
        let first = try client(bulkNamespace, graphBulk: true)
        let second = try client(bulkNamespace, graphBulk: true)
        let merged = try client(mergeNamespace, graphBulk: false)
        defer {
            try? first.teardown()
            try? merged.teardown()
            for client in [first, second, merged] { client.close() }
        }
        for (index, start) in stride(from: Int64(0), to: 6_000, by: 1_500).enumerated() {
            let rows = start..<(start + 1_500)
            #expect((index % 2 == 0 ? first : second).invoke(Self.bulk, Request(rows: rows)) == .ok)
            #expect(merged.invoke(Self.bulk, Request(rows: rows)) == .ok)
        }
        let samples = [0, 1, 777, 1_499, 1_500, 3_333, 5_999].map { F.dataset.transaction(Int64($0)) }
        let bulkPrint = try fingerprint(first.graph, samples: samples)
        #expect(bulkPrint == (try fingerprint(merged.graph, samples: samples)))
        #expect(bulkPrint[5].first?.first == 6_000)
        #expect(bulkPrint[7].count == 1)
        // The id indexes exist after GRAPH.BULK BEGIN replaced the graph setup had made.
        let indexed = try falkor.command(["GRAPH.QUERY", first.graph, "CALL db.indexes() YIELD label RETURN label"])
        let labels = Set((indexed.array?[1].array ?? []).compactMap { $0.array?.first?.string })
        #expect(labels == ["User", "Merchant", "Device"])
    }

    @Test func aGraphHoldingDataFallsBackToMerge() throws {
        let namespace = TestStack.uniqueName("gb_full")
        let client = try client(namespace, graphBulk: true)
        defer {
            try? client.teardown()
            client.close()
        }
        let row = F.dataset.transaction(0)
        try falkor.command(["GRAPH.QUERY", client.graph, "CREATE (:User {id: \(row.userID), note: 'before'})"])
        #expect(client.invoke(Self.bulk, Request(rows: 0..<2_000)) == .ok)
        #expect(client.invoke(Self.bulk, Request(rows: 2_000..<3_000)) == .ok)
        let txns = (Int64(0)..<3_000).map { F.dataset.transaction($0) }
        // MERGE matched the node that was there (GRAPH.BULK would have made a second User with that id).
        #expect(try integers(client.graph, "MATCH (u:User {id: \(row.userID)}) RETURN count(u)") == [[1]])
        let users = Int64(Set(txns.map(\.userID)).count)
        #expect(try integers(client.graph, "MATCH (u:User) RETURN count(u)") == [[users]])
        #expect(try integers(client.graph, "MATCH ()-[p:PAID]->() RETURN count(p)") == [[3_000]])
    }

    @Test func kilnCheckFindsTheBulkLoadedGraphValid() throws {
        let namespace = TestStack.uniqueName("gb_check")
        let scenario = try CommandLineTests.temporaryFile(
            "\(namespace).yaml",
            """
            name: \(namespace)
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 5, rows: 10K}
            namespace: \(namespace)
            phases:
              - {name: load, executor: bulk, rows: 5K, batch: 1K, workers: 2, stores: [postgres, falkordb]}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        defer { _ = try? falkor.pipeline([["GRAPH.DELETE", "\(namespace)_graph"]]) }
        let run = try CommandLineTests.kiln(["run", scenario.path, "--runs-directory", runs.path, "--id", "r"])
        try #require(run.status == 0, "\(run.output)")
        let (check, report) = try CheckCommandTests.check(runs.appendingPathComponent("r"))
        #expect(check.status == 0, "\(check.output)")
        let graphPlaces = report.places.filter { $0.place.hasPrefix("falkordb.") }
        #expect(graphPlaces.contains { $0.place == "falkordb.paid-edges" })
        for place in graphPlaces {
            #expect(place.validity == .valid, "\(place.place): \(place.counts)")
        }
        #expect(graphPlaces.first { $0.place == "falkordb.paid-edges" }?.scanned == 5_000)
        #expect(try integers("\(namespace)_graph", "MATCH ()-[p:PAID]->() RETURN count(p)") == [[5_000]])
    }
}
