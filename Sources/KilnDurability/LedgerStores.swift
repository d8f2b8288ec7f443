import Foundation
import KilnData
import KilnPostgres
import KilnRedis

/// Where a durability drill writes the ledger and reads it back. `makeWriter` gives one writer per load worker
/// thread (it owns its connection, is used by that thread only); `read` scans everything the store holds.
public protocol LedgerStore: Sendable {
    func setup() throws
    func makeWriter(timeout: Duration) -> any LedgerWriter
    func read() throws -> StoredLedger
}

/// One worker's connection. Not thread-safe: one thread. `write` never throws: it classifies the outcome.
public protocol LedgerWriter: AnyObject {
    func write(_ row: Transaction) -> (WriteOutcome, String?)
    func close()
}

/// PostgreSQL: table `durability_ledger` in database `postgres`, one autocommit INSERT per transaction.
public struct PostgresLedger: LedgerStore {
    public static let table = "durability_ledger"
    public let endpoint: PostgresEndpoint

    public init(endpoint: PostgresEndpoint) { self.endpoint = endpoint }

    public func setup() throws {
        let connection = try PostgresConnection(endpoint, connectTimeoutSeconds: 5)
        defer { connection.close() }
        try connection.execute(LedgerFields.postgresTable(Self.table))
    }

    public func makeWriter(timeout: Duration) -> any LedgerWriter { Writer(endpoint: endpoint, timeout: timeout) }

    public func read() throws -> StoredLedger {
        let connection = try PostgresConnection(endpoint, connectTimeoutSeconds: 5)
        defer { connection.close() }
        let result = try connection.execute(LedgerFields.postgresSelect(Self.table))
        var rows: [Int64: [String]] = [:]
        for row in 0..<result.rowCount {
            guard let id = result.value(row: row, column: 0).flatMap(Int64.init) else { continue }
            rows[id] = (1..<result.columnCount).map { result.value(row: row, column: $0) ?? "NULL" }
        }
        return StoredLedger(rows: rows)
    }

    final class Writer: LedgerWriter {
        let endpoint: PostgresEndpoint
        let timeout: Duration
        private var connection: PostgresConnection?

        init(endpoint: PostgresEndpoint, timeout: Duration) {
            self.endpoint = endpoint
            self.timeout = timeout
        }

        func write(_ row: Transaction) -> (WriteOutcome, String?) {
            let connection: PostgresConnection
            if let open = self.connection, open.isOpen {
                connection = open
            } else {
                do {
                    connection = try PostgresConnection(
                        endpoint, connectTimeoutSeconds: 2,
                        networkTimeoutMilliseconds: Int(timeout.milliseconds))
                    try connection.prepare("ins", LedgerFields.postgresInsert(PostgresLedger.table))
                    self.connection = connection
                } catch {
                    return (.fail, "connect")
                }
            }
            do {
                _ = try connection.executePrepared("ins", [String(row.txnID)] + LedgerFields.values(row).map { Optional($0) })
                return (.ok, nil)
            } catch {
                switch error.kind {
                case .server:
                    // A statement the server rejected did not commit. (An admin shutdown ends it too.)
                    return (.fail, "sqlstate-\(error.sqlState ?? "?")")
                case .notRun:
                    return (.fail, "not-run")
                case .connect, .closed, .invalidArgument:
                    self.connection = nil
                    return (.fail, "\(error.kind)")
                case .connectionLost, .unexpectedResult:
                    connection.close()
                    self.connection = nil
                    return (.info, "connection-lost")
                }
            }
        }

        func close() { connection?.close() }
    }
}

/// Redis: one string per transaction, `durability:txn:<id>` = `LedgerFields.text`.
public struct RedisLedger: LedgerStore {
    public let host: String
    public let port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public func setup() throws {}

    public func makeWriter(timeout: Duration) -> any LedgerWriter {
        Writer(host: host, port: port, timeout: timeout.secondsValue) { connection, row in
            try connection.command("SET", "durability:txn:\(row.txnID)", LedgerFields.text(row))
        }
    }

    public func read() throws -> StoredLedger {
        let connection = try RedisConnection(host: host, port: port, timeoutSeconds: 30)
        defer { connection.close() }
        var texts: [Int64: String] = [:]
        var cursor = "0"
        repeat {
            let reply = try connection.command("SCAN", cursor, "MATCH", "durability:txn:*", "COUNT", "1000")
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array else {
                throw DurabilityError("SCAN: unexpected reply")
            }
            cursor = next
            let names = keys.compactMap(\.string)
            if !names.isEmpty {
                let values = try connection.command(["MGET"] + names).array ?? []
                for (key, value) in zip(names, values) {
                    guard let id = Int64(key.dropFirst("durability:txn:".count)), let text = value.string else { continue }
                    texts[id] = text
                }
            }
        } while cursor != "0"
        return StoredLedger(texts: texts)
    }

    /// A Redis-protocol writer: one connection, reopened after an error.
    final class Writer: LedgerWriter {
        let host: String
        let port: Int
        let timeout: Double
        let send: (RedisConnection, Transaction) throws -> RedisReply
        private var connection: RedisConnection?

        init(host: String, port: Int, timeout: Double, send: @escaping (RedisConnection, Transaction) throws -> RedisReply) {
            self.host = host
            self.port = port
            self.timeout = timeout
            self.send = send
        }

        func write(_ row: Transaction) -> (WriteOutcome, String?) {
            let connection: RedisConnection
            if let open = self.connection, open.isOpen {
                connection = open
            } else {
                do {
                    connection = try RedisConnection(host: host, port: port, timeoutSeconds: timeout)
                    self.connection = connection
                } catch {
                    return (.fail, "connect")
                }
            }
            do {
                _ = try send(connection, row)
                return (.ok, nil)
            } catch let error as RedisError {
                switch error.kind {
                case .server(let prefix): return (.fail, "server-\(prefix)")
                case .connect, .closed:
                    self.connection = nil
                    return (.fail, "\(error.kind)")
                case .io, .timeout, .protocol:
                    connection.close()
                    self.connection = nil
                    return (.info, "\(error.kind)")
                }
            } catch {
                connection.close()
                self.connection = nil
                return (.info, "\(error)")
            }
        }

        func close() { connection?.close() }
    }
}

/// FalkorDB: one `(:Txn {id, v})` node per transaction in graph `durability`, `v` = `LedgerFields.text`.
public struct FalkorDBLedger: LedgerStore {
    public static let graph = "durability"
    public let host: String
    public let port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public func setup() throws {}

    public func makeWriter(timeout: Duration) -> any LedgerWriter {
        RedisLedger.Writer(host: host, port: port, timeout: timeout.secondsValue) { connection, row in
            // Only digits and `|` in the text, so it is safe inside a Cypher string literal.
            try connection.command(
                "GRAPH.QUERY", FalkorDBLedger.graph, "CREATE (:Txn {id: \(row.txnID), v: '\(LedgerFields.text(row))'})")
        }
    }

    public func read() throws -> StoredLedger {
        let connection = try RedisConnection(host: host, port: port, timeoutSeconds: 60)
        defer { connection.close() }
        let exists = try connection.command("EXISTS", Self.graph).integer ?? 0
        guard exists == 1 else { return StoredLedger(rows: [:]) }
        let reply = try connection.command("GRAPH.QUERY", Self.graph, "MATCH (t:Txn) RETURN t.id, t.v")
        guard let parts = reply.array, parts.count >= 2, let rows = parts[1].array else {
            throw DurabilityError("GRAPH.QUERY: unexpected reply")
        }
        var texts: [Int64: String] = [:]
        for row in rows {
            guard let cells = row.array, cells.count == 2 else { continue }
            let id = cells[0].integer ?? cells[0].string.flatMap { Int64($0) }
            guard let id, let text = cells[1].string else { continue }
            if texts[id] != nil { texts[id] = "duplicate" } else { texts[id] = text }
        }
        return StoredLedger(texts: texts)
    }
}

extension Duration {
    /// Whole milliseconds (at least 1).
    var milliseconds: Int64 { max(1, components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000) }
    var secondsValue: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
