import KilnCore
import KilnData
import KilnRedis
import KilnBackend

/// Reads a black-box Redis place: every key matching a pattern such as `txn:{txn_id}` on
/// `context.stack.redis.primary`, each a hash (fields named by the mapping) or a string holding a JSON object.
/// `txnID` comes from the record's mapped `txn_id` field, else from the key's `{txn_id}` part; `key` = the key.
///
/// Commands: `SCAN <cursor> MATCH <prefix>*<suffix> COUNT 1000`, then per page one pipeline of `TYPE`s and one of
/// `GET` / `HGETALL`s. Guarantees as `RedisScanner`: each key delivered once even when SCAN repeats it; keys created
/// or deleted during the scan may or may not be delivered; a key of another type is delivered with nil fields.
/// Connection errors and unexpected replies throw `RedisScanner.ScanError`. Not Sendable; blocking.
public final class RedisKeyScanner: StoreScanner {
    public let pattern: String
    public var source: String { "keys \(pattern)" }

    private let connection: RedisConnection
    private let prefix: [UInt8]
    private let suffix: [UInt8]
    private let mapping: FieldMapping

    /// - Throws: `RedisScanner.ScanError` naming the address when the server does not answer.
    public init(context: ClientContext, pattern: String, mapping: FieldMapping) throws {
        self.pattern = pattern
        self.mapping = mapping
        let parts = pattern.components(separatedBy: "{txn_id}")
        prefix = Array(parts[0].utf8)
        suffix = Array((parts.count > 1 ? parts[1] : "").utf8)
        let primaries = RedisPrimaryResolver(context.stack.redis, timeout: context.timeout, environment: context.environment)
        let primary = primaries.current()
        do {
            (connection, _) = try primaries.connect(ping: true)
        } catch {
            throw StoreError(store: "redis", address: primary.description, detail: error.description)
        }
    }

    public func close() { connection.close() }

    public func scan(_ body: (StoredRow) throws -> Void) throws {
        var seen = SeenIDs()
        let match = RedisScanner.globEscaped(prefix) + Array("*".utf8) + RedisScanner.globEscaped(suffix)
        var cursor = Array("0".utf8)
        repeat {
            let reply = try run {
                try connection.command([
                    Array("SCAN".utf8), cursor, Array("MATCH".utf8), match,
                    Array("COUNT".utf8), Array("1000".utf8),
                ])
            }
            guard let parts = reply.array, parts.count == 2, let next = parts[0].bytes, let found = parts[1].array
            else {
                throw StoreError(store: "redis", address: connection.address, detail: "unexpected SCAN reply")
            }
            var keys: [[UInt8]] = []
            for key in found.compactMap({ $0.bytes }) {
                let id = RedisScanner.id(in: key, after: prefix, before: suffix)
                if seen.insert(id, key: key) { keys.append(key) }
            }
            if !keys.isEmpty { try page(keys, body) }
            cursor = next
        } while cursor != Array("0".utf8)
    }

    private func page(_ keys: [[UInt8]], _ body: (StoredRow) throws -> Void) throws {
        let types = try run { try connection.pipeline(keys.map { [Array("TYPE".utf8), $0] }) }
        let reads: [[[UInt8]]] = zip(keys, types).map { key, type in
            type == .status("hash") ? [Array("HGETALL".utf8), key] : [Array("GET".utf8), key]
        }
        let values = try run { try connection.pipeline(reads) }
        for ((key, type), value) in zip(zip(keys, types), values) where type != .status("none") {
            var row: StoredRow
            switch value {
            case .bulk(let bytes) where type == .status("string"):
                row = bytes.withUnsafeBytes { mapping.row(json: $0) }
            case .array(let pairs) where type == .status("hash"):
                var fields: [String: LooseValue] = [:]
                var index = 0
                while index + 1 < pairs.count {
                    if let name = pairs[index].string, let text = pairs[index + 1].string { fields[name] = .text(text) }
                    index += 2
                }
                row = mapping.row { fields[$0] }
            default:
                row = StoredRow(txnID: -1)
            }
            if row.txnID == -1 {
                row.txnID = RedisScanner.id(in: key, after: prefix, before: suffix).number ?? -1
            }
            row.key = String(decoding: key, as: UTF8.self)
            try body(row)
        }
    }

    private func run<T>(_ command: () throws -> T) throws -> T {
        do {
            return try command()
        } catch {
            throw StoreError(store: "redis", address: connection.address, detail: "\(error)")
        }
    }
}
