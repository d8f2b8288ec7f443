import KilnCore
import KilnData
import KilnRedis
import KilnScenario
import KilnBackend

/// Reads what `RedisClient` writes under `<ns>:` (`RedisKeys`) on the current primary (`RedisPrimaryResolver`: the
/// Sentinels' answer, else the stack file's primary), so a check after a Sentinel failover reads the new primary.
///
/// `scan`: every `<ns>:txn:*` string (`set` / `bulk-set`), parsed with `TransactionJSON`, `key` = the Redis key.
/// `scanUserFeatures`: every `<ns>:user:<id>:features` hash with the user's score in `<ns>:fraud:scores`.
///
/// Commands: `SCAN <cursor> MATCH <pattern> COUNT 1000`, then one pipeline per SCAN page holding one `MGET` of the
/// page's keys (or `HGETALL` and `ZSCORE` per key) and the next `SCAN`, so a page costs one round trip and at most
/// ~1000 values are held. MGET answers nil both for a key deleted since SCAN and for a key of another type; `TYPE`
/// of those (rare) keys tells them apart.
/// Guarantees: SCAN may return a key twice (when the keyspace is rehashed during the scan); each key is delivered
/// once all the same (seen ids are kept in a bitmap, 1 bit per id, ~12 MB for 100M ids; keys with a non-numeric id
/// in a set). Keys created or deleted during the scan may or may not be delivered; a key deleted between SCAN and
/// GET is not delivered. A key of the wrong type (or whose value is not the encoder's JSON) is delivered with its
/// `key` and the fields nil (`txnID` -1). Connection errors and an unexpected SCAN reply throw `ScanError`.
public final class RedisScanner: StoreScanner, UserFeatureScanner {
    public let namespace: String
    public var source: String { "keys \(namespace):txn:*" }
    public var featureSource: String { "hashes \(namespace):user:*:features, sorted set \(scoresKey)" }

    /// Keys per SCAN page (the COUNT hint).
    public static let pageSize = 1000

    private let connection: RedisConnection
    private let scoresKey: String
    private let txnPrefix: [UInt8]
    private let userPrefix: [UInt8]
    private static let featuresSuffix = Array("\(RedisKeys.featuresSuffix)".utf8)

    /// The server this scanner reads (the current primary when it was opened).
    public let servedBy: HostPort

    /// Connects to the current primary.
    /// - Throws: `ScanError` naming the store and address when the server does not answer.
    public init(context: ClientContext) throws {
        namespace = context.namespace
        let keys = RedisKeys(namespace: context.namespace)
        scoresKey = keys.scores
        txnPrefix = Array(keys.txnPrefix.utf8)
        userPrefix = Array(keys.userPrefix.utf8)
        let primaries = RedisPrimaryResolver(context.stack.redis, timeout: context.timeout, environment: context.environment)
        let primary = primaries.current()
        do {
            (connection, servedBy) = try primaries.connect(ping: true)
        } catch {
            throw StoreError(store: "redis", address: primary.description, detail: error.description)
        }
    }

    public func close() { connection.close() }

    public func scan(_ body: (StoredRow) throws -> Void) throws {
        var seen = SeenIDs()
        let prefix = txnPrefix
        try scanPages(matching: Self.globEscaped(prefix) + Array("*".utf8)) { keys in
            [[Words.mget] + keys]
        } deliver: { keys, replies in
            guard let values = replies[replies.startIndex].array, values.count == keys.count else {
                throw StoreError(store: "redis", address: connection.address, detail: "unexpected MGET reply")
            }
            // MGET answers nil for a missing key and for a key of another type: TYPE tells them apart.
            var missing: [[UInt8]] = []
            for (key, value) in zip(keys, values) {
                guard seen.insert(Self.id(in: key, after: prefix, before: []), key: key) else { continue }
                guard case .bulk(let bytes) = value else {
                    missing.append(key)
                    continue
                }
                var row = bytes.withUnsafeBytes { TransactionJSON.parse($0) }
                row.key = String(decoding: key, as: UTF8.self)
                try body(row)
            }
            guard !missing.isEmpty else { return }
            let types: [RedisReply]
            do throws(RedisError) {
                types = try connection.pipeline(missing.map { [Words.type, $0] })
            } catch {
                throw StoreError(store: "redis", address: connection.address, detail: error.description)
            }
            for (key, type) in zip(missing, types) where type != .status("none") {
                var row = StoredRow(txnID: -1)
                row.key = String(decoding: key, as: UTF8.self)
                try body(row)
            }
        }
    }

    public func scanUserFeatures(_ body: (StoredUserFeatures) throws -> Void) throws {
        var seen = SeenIDs()
        let prefix = userPrefix
        let suffix = Self.featuresSuffix
        let scores = Array(scoresKey.utf8)
        let pattern = Self.globEscaped(prefix) + Array("*".utf8) + Self.globEscaped(suffix)
        func deliverFeatures(_ key: [UInt8], _ replies: ArraySlice<RedisReply>) throws {
            let id = Self.id(in: key, after: prefix, before: suffix)
            guard seen.insert(id, key: key) else { return }
            // Deleted since SCAN, or not a hash.
            guard let pairs = replies[replies.startIndex].array, !pairs.isEmpty else { return }
            var fields: [String: String] = [:]
            fields.reserveCapacity(pairs.count / 2)
            var index = 0
            while index + 1 < pairs.count {
                if let name = pairs[index].bytes, let value = pairs[index + 1].bytes {
                    fields[String(decoding: name, as: UTF8.self)] = String(decoding: value, as: UTF8.self)
                }
                index += 2
            }
            let score = replies[replies.startIndex + 1].bytes.flatMap { Double(String(decoding: $0, as: UTF8.self)) }
            try body(StoredUserFeatures(userID: id.number ?? -1, fields: fields, score: score))
        }

        try scanPages(matching: pattern) { keys in
            keys.flatMap { key in
                [[Words.hgetall, key], [Words.zscore, scores, Self.id(in: key, after: prefix, before: suffix).text]]
            }
        } deliver: { keys, replies in
            for (index, key) in keys.enumerated() {
                try deliverFeatures(key, replies[(replies.startIndex + 2 * index)...])
            }
        }
        // Users with a score but no feature hash (only `score-incr` touched them): ZSCAN the sorted set.
        var cursor = Array("0".utf8)
        repeat {
            let reply: RedisReply
            do {
                reply = try connection.command([Words.zscan, scores, cursor, Array("COUNT".utf8), Array("1000".utf8)])
            } catch {
                throw StoreError(store: "redis", address: connection.address, detail: error.description)
            }
            guard let parts = reply.array, parts.count == 2, let next = parts[0].bytes, let entries = parts[1].array
            else { throw StoreError(store: "redis", address: connection.address, detail: "unexpected ZSCAN reply") }
            var index = 0
            while index + 1 < entries.count {
                defer { index += 2 }
                guard let member = entries[index].bytes else { continue }
                let id = Self.id(in: member, after: [], before: [])
                guard seen.insert(id, key: member) else { continue }
                let score = entries[index + 1].bytes.flatMap { Double(String(decoding: $0, as: UTF8.self)) }
                try body(StoredUserFeatures(userID: id.number ?? -1, fields: [:], score: score))
            }
            cursor = next
        } while cursor != Array("0".utf8)
    }

    // MARK: - SCAN pages

    /// Runs SCAN over `pattern` to its end. For each page, `commands(keys)` gives the commands that read the page's
    /// keys; they are sent in one pipeline with the next SCAN, and `deliver` gets the keys and the replies to those
    /// commands (error replies in place).
    private func scanPages(
        matching pattern: [UInt8], commands: ([[UInt8]]) -> [[[UInt8]]],
        deliver: ([[UInt8]], ArraySlice<RedisReply>) throws -> Void
    ) throws {
        let count = Array(String(Self.pageSize).utf8)
        let scanWords: ([UInt8]) -> [[UInt8]] = { cursor in
            [Words.scan, cursor, Words.match, pattern, Words.count, count]
        }
        var reply: RedisReply
        do {
            reply = try connection.command(scanWords(Array("0".utf8)))
        } catch {
            throw StoreError(store: "redis", address: connection.address, detail: error.description)
        }
        while true {
            guard let parts = reply.array, parts.count == 2, let cursor = parts[0].bytes, let found = parts[1].array
            else { throw StoreError(store: "redis", address: connection.address, detail: "unexpected SCAN reply") }
            let last = cursor == Array("0".utf8)
            let keys = found.compactMap(\.bytes)
            var pipeline = keys.isEmpty ? [] : commands(keys)
            let readCount = pipeline.count
            if !last { pipeline.append(scanWords(cursor)) }
            let replies: [RedisReply]
            do {
                replies = pipeline.isEmpty ? [] : try connection.pipeline(pipeline)
            } catch {
                throw StoreError(store: "redis", address: connection.address, detail: error.description)
            }
            if readCount > 0 { try deliver(keys, replies[0..<readCount]) }
            if last { return }
            guard let next = replies.last else {
                throw StoreError(store: "redis", address: connection.address, detail: "no reply to SCAN")
            }
            if case .error(let message) = next {
                throw StoreError(store: "redis", address: connection.address, detail: "SCAN failed: \(message.prefix(80))")
            }
            reply = next
        }
    }

    // MARK: - Keys

    /// The part of `key` between `prefix` and `suffix` (the whole key when it does not have both), as a number when
    /// it is a canonical non-negative decimal.
    static func id(in key: [UInt8], after prefix: [UInt8], before suffix: [UInt8]) -> KeyID {
        guard key.count >= prefix.count + suffix.count, key.starts(with: prefix),
            key[(key.count - suffix.count)...].elementsEqual(suffix)
        else { return KeyID(number: nil, text: key) }
        let middle = key[prefix.count..<(key.count - suffix.count)]
        var value: Int64 = 0
        var numeric = !middle.isEmpty && middle.count <= 18 && !(middle.count > 1 && middle.first == 0x30)
        if numeric {
            for byte in middle {
                let digit = byte &- 0x30
                guard digit < 10 else {
                    numeric = false
                    break
                }
                value = value * 10 + Int64(digit)
            }
        }
        return KeyID(number: numeric ? value : nil, text: Array(middle))
    }

    /// `bytes` with the glob metacharacters `* ? [ ] \` escaped, for SCAN MATCH.
    static func globEscaped(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for byte in bytes {
            if byte == 0x2A || byte == 0x3F || byte == 0x5B || byte == 0x5D || byte == 0x5C { out.append(0x5C) }
            out.append(byte)
        }
        return out
    }

    /// Connecting failed (init) or the server failed during a scan. Names the store and address.
    public typealias ScanError = StoreError
}

/// Command words, built once (arrays are shared, not copied, when put into a pipeline).
private enum Words {
    static let mget = Array("MGET".utf8)
    static let type = Array("TYPE".utf8)
    static let scan = Array("SCAN".utf8)
    static let match = Array("MATCH".utf8)
    static let count = Array("COUNT".utf8)
    static let hgetall = Array("HGETALL".utf8)
    static let zscore = Array("ZSCORE".utf8)
    static let zscan = Array("ZSCAN".utf8)
}

/// The id part of a key: its bytes, and their value when they are a canonical decimal number (`42`).
struct KeyID {
    var number: Int64?
    var text: [UInt8]
}

/// Ids already delivered by one scan: a growable bitmap for numeric ids below 2^34, a set for the rest.
struct SeenIDs {
    private var words: [UInt64] = []
    private var others: Set<[UInt8]> = []
    static let bitmapLimit: Int64 = 1 << 34

    /// Records `id`; false when it was recorded before.
    mutating func insert(_ id: KeyID, key: [UInt8]) -> Bool {
        guard let number = id.number, number < Self.bitmapLimit else { return others.insert(key).inserted }
        let word = Int(number >> 6)
        let bit = UInt64(1) << UInt64(number & 63)
        if word >= words.count {
            words.append(contentsOf: repeatElement(0, count: max(word + 1, words.count * 2) - words.count))
        }
        if words[word] & bit != 0 { return false }
        words[word] |= bit
        return true
    }
}
