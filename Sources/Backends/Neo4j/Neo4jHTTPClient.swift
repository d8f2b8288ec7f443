import KilnBackend
import Foundation
import KilnCore
import KilnData
import KilnHTTP
import KilnScenario

/// The operations of store `neo4j`: the raw value is the name in scenarios after `neo4j.`.
public enum Neo4jOperation: String, StoreOperation {
    case bulk
    case mergeEdge = "merge-edge"
    case sharedDevice = "shared-device"

    public static let store = "neo4j"

    public var kind: OperationDescriptor.Kind {
        switch self {
        case .bulk: .bulk
        case .mergeEdge: .write
        case .sharedDevice: .read
        }
    }

    public var summary: String {
        switch self {
        case .bulk:
            "UNWIND $rows MERGE users, merchants, PAID edges, devices, USED edges"
        case .mergeEdge:
            "the bulk statement for one row"
        case .sharedDevice:
            "users sharing a device with the row's user (2 hops, LIMIT 100)"
        }
    }
}

/// The transaction graph in Neo4j 5 (store `neo4j`) over the HTTP Query API: `POST /db/<graph>/query/v2` with
/// `{"statement": …, "parameters": {…}}` and HTTP basic auth (`context.stack.graph`: endpoint, graph, user —
/// default `neo4j` — and `password_env`). Same operations and Cypher as the FalkorDB client.
///
/// Neo4j cannot run on this machine (no JVM server in the embedded stack): only the request encoding and the
/// response decoding are tested (`Neo4jHTTPClientEncodingTests`), as pure functions on captured samples; the
/// round trip against a server is unverified.
///
/// Threading: one instance per worker thread; every call blocks it (libcurl easy). Ownership: owns one
/// `HTTPClient` (keep-alive connection), one JSONL encoder and one request body buffer, both reused. Outcomes:
/// `Neo.ClientError.*` and `Neo.TransientError.*` (the transaction was rolled back) are `fail(<code>)`;
/// `Neo.DatabaseError.*`, a 5xx, a timeout or a broken connection after sending a write are `info`; a refused
/// connection is `fail("connection")`; any read error is `fail`.
public final class Neo4jHTTPClient: Client {
    public typealias Operation = Neo4jOperation

    /// Writes rows given as JSON objects of `RowFormat.jsonl` (amount in currency units, ts as ISO-8601 UTC).
    public static let mergeStatement = """
        UNWIND $rows AS r
        MERGE (u:User {id: r.user_id})
        MERGE (m:Merchant {id: r.merchant_id})
        MERGE (u)-[p:PAID {txn_id: r.txn_id}]->(m)
        SET p.amount_cents = toInteger(round(r.amount * 100)), p.ts = datetime(r.ts).epochMillis
        MERGE (d:Device {id: r.device_id})
        MERGE (u)-[:USED]->(d)
        """

    public static let sharedDeviceStatement = """
        MATCH (u:User {id: $user_id})-[:USED]->(:Device)<-[:USED]-(other:User)
        WHERE other <> u
        RETURN DISTINCT other.id AS user_id LIMIT 100
        """

    private let context: ClientContext
    private let url: String
    private let headers: [String: String]
    private let address: String
    private let http: HTTPClient
    private var encoder: RowEncoder
    private var body: [UInt8] = []

    public init(context: ClientContext) throws {
        let graph = context.stack.graph
        self.context = context
        address = graph.endpoint.description
        url = Self.queryURL(endpoint: graph.endpoint, graph: graph.graph)
        headers = Self.headers(
            user: graph.user ?? "neo4j",
            password: StackDefinition.secret(graph.passwordEnvironmentVariable, in: context.environment))
        let seconds =
            context.timeout.seconds
        http = try HTTPClient(timeoutSeconds: seconds, connectTimeoutSeconds: min(5, max(1, seconds)))
        encoder = RowEncoder(format: .jsonl, dataset: context.dataset, capacity: 1 << 16)
        do {
            // The discovery document at `/`: proves the server answers HTTP before any op.
            try http.get("http://\(graph.endpoint)/", headers: headers).expectOK()
        } catch {
            throw StoreError(store: "neo4j", address: address, underlying: error)
        }
    }

    /// Indexes the MERGE keys (idempotent).
    public func setup() throws {
        for label in ["User", "Merchant", "Device"] {
            try run("CREATE INDEX kiln_\(label.lowercased())_id IF NOT EXISTS FOR (n:\(label)) ON (n.id)")
        }
        try run("CREATE INDEX kiln_paid_txn_id IF NOT EXISTS FOR ()-[p:PAID]-() ON (p.txn_id)")
    }

    /// Deletes the nodes and edges the operations create, in batches.
    public func teardown() throws {
        try run(
            """
            MATCH (n) WHERE n:User OR n:Merchant OR n:Device
            CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS
            """)
    }

    public func close() {}

    public func invoke(_ operation: Neo4jOperation, _ request: Request) -> Outcome {
        let isRead = operation.kind == .read
        switch operation {
        case .bulk: Self.mergeBody(into: &body, encoder: &encoder, dataset: context.dataset, rows: request.rows)
        case .mergeEdge:
            Self.mergeBody(
                into: &body, encoder: &encoder, dataset: context.dataset, rows: request.row..<request.row + 1)
        case .sharedDevice:
            body = Self.requestBody(
                statement: Self.sharedDeviceStatement,
                parameters: "{\"user_id\":\(context.dataset.transaction(request.row).userID)}")
        }
        do {
            let response = try http.post(url, body: body, contentType: "application/json", headers: headers)
            return Self.outcome(status: response.status, body: response.body, isRead: isRead)
        } catch {
            return ClickHouseClient.outcome(error, isRead: isRead)
        }
    }

    private func run(_ statement: String) throws {
        let response = try http.post(
            url, body: Self.requestBody(statement: statement, parameters: "{}"), contentType: "application/json",
            headers: headers)
        if case .fail(let name) = Self.outcome(status: response.status, body: response.body, isRead: true) {
            throw StoreError(store: "neo4j", address: address, detail: name)
        }
    }

    // MARK: encoding (pure)

    /// `http://host:port/db/<graph>/query/v2`, the graph name percent-encoded.
    static func queryURL(endpoint: HostPort, graph: String) -> String {
        "http://\(endpoint)/db/\(ClickHouseClient.percentEncoded(graph))/query/v2"
    }

    /// Accept/Content-Type JSON, plus `Authorization: Basic base64(user:password)` when there is a password.
    static func headers(user: String, password: String?) -> [String: String] {
        var headers = ["Accept": "application/json"]
        if let password {
            headers["Authorization"] = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        }
        return headers
    }

    /// `{"statement":"…","parameters":<parameters>}`; `parameters` must be a JSON object.
    static func requestBody(statement: String, parameters: String) -> [UInt8] {
        Array("{\"statement\":\(jsonString(statement)),\"parameters\":\(parameters)}".utf8)
    }

    private static let mergePrefix = Array(
        "{\"statement\":\(jsonString(mergeStatement)),\"parameters\":{\"rows\":[".utf8)

    /// The request of `mergeStatement` for `rows`, built in `body` (reused) from `encoder`'s JSONL: the newline
    /// after each object becomes the array's comma, so no row is allocated or parsed.
    static func mergeBody(
        into body: inout [UInt8], encoder: inout RowEncoder, dataset: Dataset, rows: Range<Int64>
    ) {
        encoder.removeAll()
        encoder.append(dataset, rows: rows)
        body.removeAll(keepingCapacity: true)
        body.append(contentsOf: mergePrefix)
        let start = body.count
        encoder.withBytes { body.append(contentsOf: $0) }
        body.withUnsafeMutableBufferPointer { bytes in
            for index in start..<bytes.count where bytes[index] == 0x0A {
                bytes[index] = 0x2C
            }
        }
        if body.count > start {
            body.removeLast()  // the comma after the last object
        }
        body.append(contentsOf: "]}}".utf8)
    }

    /// `text` as a JSON string literal.
    static func jsonString(_ text: String) -> String { JSONText.quoted(text) }

    // MARK: decoding (pure)

    /// The outcome of a Query API response (see the type's comment for the classes).
    static func outcome(status: Int, body: [UInt8], isRead: Bool) -> Outcome {
        if let code = errorCode(body) {
            if code.hasPrefix("Neo.ClientError.") || code.hasPrefix("Neo.TransientError.") || isRead {
                return .fail(code)
            }
            return .info(code)
        }
        return ClickHouseClient.outcome(status: status, isRead: isRead)
    }

    /// The `code` of the first entry of `errors`, when the body is a Query API error.
    static func errorCode(_ body: [UInt8]) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let errors = object["errors"] as? [[String: Any]], let first = errors.first
        else { return nil }
        return first["code"] as? String ?? "Neo.Unknown"
    }

    /// `data.fields` and `data.values` of a successful response; nil when the body is not one.
    static func records(_ body: [UInt8]) -> (fields: [String], values: [[Any]])? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let data = object["data"] as? [String: Any], let fields = data["fields"] as? [String],
            let values = data["values"] as? [[Any]]
        else { return nil }
        return (fields, values)
    }
}
