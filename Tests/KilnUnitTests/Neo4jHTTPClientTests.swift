import Foundation
import KilnCore
import KilnData
import Testing

@testable import KilnBackends
@testable import KilnStores
import KilnTestSupport

/// Encoding and decoding only: no Neo4j server can run on this machine, so no request is sent. The samples are
/// the shapes the Neo4j 5 Query API documents for `POST /db/<graph>/query/v2`.
@Suite("Neo4j HTTP client: request encoding and response decoding only (no Neo4j server runs here)")
struct Neo4jHTTPClientEncodingTests {
    @Test func urlAndHeaders() {
        let url = Neo4jHTTPClient.queryURL(endpoint: HostPort(host: "10.0.0.5", port: 7474), graph: "neo4j")
        #expect(url == "http://10.0.0.5:7474/db/neo4j/query/v2")
        #expect(
            Neo4jHTTPClient.queryURL(endpoint: HostPort(host: "h", port: 1), graph: "a b")
                == "http://h:1/db/a%20b/query/v2")
        let headers = Neo4jHTTPClient.headers(user: "neo4j", password: "secret")
        // base64("neo4j:secret")
        #expect(headers["Authorization"] == "Basic bmVvNGo6c2VjcmV0")
        #expect(headers["Accept"] == "application/json")
        #expect(Neo4jHTTPClient.headers(user: "neo4j", password: nil)["Authorization"] == nil)
    }

    @Test func bulkBodyIsJSONWithTheGeneratorsRows() throws {
        let dataset = try Dataset(spec: Fixtures.spec, seed: 7, rows: 1_000)
        var encoder = RowEncoder(format: .jsonl, dataset: dataset)
        var body: [UInt8] = []
        Neo4jHTTPClient.mergeBody(into: &body, encoder: &encoder, dataset: dataset, rows: 100..<103)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        #expect(object["statement"] as? String == Neo4jHTTPClient.mergeStatement)
        let parameters = try #require(object["parameters"] as? [String: Any])
        let rows = try #require(parameters["rows"] as? [[String: Any]])
        #expect(rows.count == 3)
        for (offset, row) in rows.enumerated() {
            let expected = dataset.transaction(100 + Int64(offset))
            #expect((row["txn_id"] as? NSNumber)?.int64Value == expected.txnID)
            #expect((row["user_id"] as? NSNumber)?.int64Value == expected.userID)
            #expect((row["merchant_id"] as? NSNumber)?.int64Value == expected.merchantID)
            #expect((row["device_id"] as? NSNumber)?.int64Value == expected.deviceID)
            let amount = try #require((row["amount"] as? NSNumber)?.doubleValue)
            // What the statement's toInteger(round(r.amount * 100)) computes.
            #expect(Int64((amount * 100).rounded()) == expected.amountCents)
            #expect(row["ts"] is String)
        }

        // The buffer is reused: one row, then none.
        Neo4jHTTPClient.mergeBody(into: &body, encoder: &encoder, dataset: dataset, rows: 5..<6)
        let one = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        #expect(((one["parameters"] as? [String: Any])?["rows"] as? [Any])?.count == 1)
        Neo4jHTTPClient.mergeBody(into: &body, encoder: &encoder, dataset: dataset, rows: 5..<5)
        #expect(String(decoding: body, as: UTF8.self).hasSuffix("\"parameters\":{\"rows\":[]}}"))
        #expect((try? JSONSerialization.jsonObject(with: Data(body))) != nil)
    }

    @Test func readBodyAndStringEscaping() throws {
        let body = Neo4jHTTPClient.requestBody(
            statement: Neo4jHTTPClient.sharedDeviceStatement, parameters: "{\"user_id\":42}")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        #expect(object["statement"] as? String == Neo4jHTTPClient.sharedDeviceStatement)
        #expect((object["parameters"] as? [String: Any])?["user_id"] as? Int == 42)
        #expect(Neo4jHTTPClient.jsonString("a\"b\\c\nd\u{1}") == "\"a\\\"b\\\\c\\u000ad\\u0001\"")
    }

    @Test func successResponseDecodes() throws {
        let sample = """
            {"data":{"fields":["user_id"],"values":[[17],[4242]]},"bookmarks":["FB:kcwQy6qlLOl5RA2nc2M1BSfHlAmQ"]}
            """
        let body = Array(sample.utf8)
        #expect(Neo4jHTTPClient.outcome(status: 202, body: body, isRead: true) == .ok)
        let records = try #require(Neo4jHTTPClient.records(body))
        #expect(records.fields == ["user_id"])
        #expect(records.values.compactMap { ($0.first as? NSNumber)?.int64Value } == [17, 4242])
        #expect(
            Neo4jHTTPClient.outcome(
                status: 202, body: Array("{\"data\":{\"fields\":[],\"values\":[]}}".utf8), isRead: false) == .ok)
    }

    @Test func errorResponsesDecodeToClasses() {
        let syntax = Array(
            """
            {"errors":[{"code":"Neo.ClientError.Statement.SyntaxError","message":"Invalid input 'MATC': expected ..."}]}
            """.utf8)
        #expect(
            Neo4jHTTPClient.outcome(status: 400, body: syntax, isRead: false)
                == .fail("Neo.ClientError.Statement.SyntaxError"))
        let auth = Array(
            """
            {"errors":[{"code":"Neo.ClientError.Security.Unauthorized","message":"Invalid credential."}]}
            """.utf8)
        #expect(
            Neo4jHTTPClient.outcome(status: 401, body: auth, isRead: true)
                == .fail("Neo.ClientError.Security.Unauthorized"))
        let deadlock = Array(
            """
            {"errors":[{"code":"Neo.TransientError.Transaction.DeadlockDetected","message":"..."}]}
            """.utf8)
        #expect(
            Neo4jHTTPClient.outcome(status: 400, body: deadlock, isRead: false)
                == .fail("Neo.TransientError.Transaction.DeadlockDetected"))
        let database = Array(
            """
            {"errors":[{"code":"Neo.DatabaseError.General.UnknownError","message":"..."}]}
            """.utf8)
        #expect(
            Neo4jHTTPClient.outcome(status: 500, body: database, isRead: false)
                == .info("Neo.DatabaseError.General.UnknownError"))
        #expect(
            Neo4jHTTPClient.outcome(status: 500, body: database, isRead: true)
                == .fail("Neo.DatabaseError.General.UnknownError"))
        // A proxy's HTML error page: classified by status.
        #expect(Neo4jHTTPClient.outcome(status: 502, body: Array("<html>".utf8), isRead: false) == .info("http-502"))
        #expect(Neo4jHTTPClient.outcome(status: 404, body: [], isRead: false) == .fail("http-404"))
        #expect(Neo4jHTTPClient.records(Array("{\"errors\":[]}".utf8)) == nil)
    }
}
