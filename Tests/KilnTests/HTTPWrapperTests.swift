import Foundation
import KilnHTTP
import Testing

@Suite("HTTP wrapper (libcurl against the embedded ClickHouse)")
struct HTTPWrapperTests {
    static func query(_ sql: String) -> String {
        "\(TestStack.clickhouseHTTP)/?query=" + (sql.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")
    }

    @Test func insertThenSelectThroughOneReusedHandle() throws {
        let client = try HTTPClient(timeoutSeconds: 10)
        let table = "kiln." + TestStack.uniqueName("http_test")
        // `kiln stack up` creates the database; a bare development server may not have it yet.
        try client.post(Self.query("CREATE DATABASE IF NOT EXISTS kiln"), body: []).expectOK()
        // ClickHouse 18.16 classic MergeTree syntax: MergeTree(date column, primary key, index granularity).
        try client.post(
            Self.query(
                "CREATE TABLE \(table) (d Date DEFAULT today(), id UInt32, x Int64) ENGINE = MergeTree(d, id, 8192)"),
            body: []
        ).expectOK()
        defer { _ = try? client.post(Self.query("DROP TABLE IF EXISTS \(table)"), body: []) }
        let rows = (1...1_000).map { "\($0)\t\($0 * 3)\n" }.joined()
        try client.post(Self.query("INSERT INTO \(table) (id, x) FORMAT TabSeparated"), body: Array(rows.utf8))
            .expectOK()
        let answer = try client.get(Self.query("SELECT count(), sum(x) FROM \(table)")).expectOK()
        #expect(answer.text == "1000\t1501500\n")
        // The same handle serves many requests in a row.
        for _ in 0..<50 {
            #expect(try client.get(Self.query("SELECT 1")).expectOK().text == "1\n")
        }
        // ...over one keep-alive connection.
        #expect(client.connectionsOpened == 1)
    }

    @Test func aSlowAnswerIsATimeoutNotAHang() throws {
        let client = try HTTPClient(timeoutSeconds: 0.5, connectTimeoutSeconds: 2)
        let started = ContinuousClock.now
        let error = #expect(throws: HTTPError.self) { _ = try client.get(Self.query("SELECT sleep(2)")) }
        #expect(error?.curlCode == 28)  // CURLE_OPERATION_TIMEDOUT
        #expect(started.duration(to: .now) < .milliseconds(1_500))
        // The handle stays usable after a timeout.
        #expect(try client.get(Self.query("SELECT 2")).expectOK().text == "2\n")
    }

    @Test func aBadQueryIsAStatusErrorThatDoesNotEchoTheQuery() throws {
        let client = try HTTPClient(timeoutSeconds: 10)
        let response = try client.get(Self.query("SELECT secret_column_4711 FROM nowhere_table"))
        #expect(response.status >= 400)
        let error = #expect(throws: HTTPError.self) { try response.expectOK() }
        #expect(error?.status == response.status)
        #expect(error?.description.contains("secret_column_4711") == false)
        #expect(error?.description.contains(TestStack.clickhouseHTTP) == true)
        // The server's explanation is kept for debugging only.
        #expect(error?.debugDescription.contains("Code:") == true)
    }

    @Test func anUnreachablePortIsACurlErrorWithinTheConnectTimeout() throws {
        let client = try HTTPClient(timeoutSeconds: 5, connectTimeoutSeconds: 2, user: "kiln", password: "hunter2")
        let started = ContinuousClock.now
        let error = #expect(throws: HTTPError.self) { _ = try client.get("http://kiln:hunter2@127.0.0.1:5/?query=x") }
        #expect(error?.curlCode == 7)  // CURLE_COULDNT_CONNECT
        #expect(error?.description.contains("hunter2") == false)
        #expect(error?.description.contains("query") == false)
        #expect(started.duration(to: .now) < .seconds(5))
    }
}
