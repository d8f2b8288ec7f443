import KilnRedis
import Testing

/// FalkorDB speaks openCypher over RESP, so the hiredis wrapper is its client.
@Suite("FalkorDB through the Redis wrapper")
struct FalkorDBTests {
    @Test func cypherCreateThenMatchReturnsTheEdge() throws {
        let (host, port) = TestStack.falkordb
        let connection = try RedisConnection(host: host, port: port)
        let graph = TestStack.uniqueName("kiln-test-graph")
        defer { _ = try? connection.command(["GRAPH.DELETE", graph]) }
        _ = try connection.command([
            "GRAPH.QUERY", graph,
            "CREATE (:User {id: 1})-[:PAID {txn_id: 10, amount_cents: 1250}]->(:Merchant {id: 7})",
        ])
        let reply = try connection.command([
            "GRAPH.QUERY", graph, "MATCH (u:User)-[p:PAID]->(m:Merchant) RETURN u.id, m.id, p.txn_id, p.amount_cents",
        ])
        let parts = try #require(reply.array)
        #expect(parts.count == 3)  // header, rows, statistics
        let rows = try #require(parts[1].array)
        #expect(rows.count == 1)
        #expect(rows.first?.array?.map(\.integer) == [1, 7, 10, 1250])
    }

    @Test func aCypherSyntaxErrorIsAServerErrorThatDoesNotEchoTheQuery() throws {
        let (host, port) = TestStack.falkordb
        let connection = try RedisConnection(host: host, port: port)
        let error = #expect(throws: RedisError.self) {
            _ = try connection.command(["GRAPH.QUERY", "kiln-test-bad", "MATCH (n:Secret4711 RETURN n"])
        }
        #expect(error?.description.contains("Secret4711") == false)
    }
}
