import KilnBackend
import KilnCore
import KilnRedis

/// Reads what `RedisClusterClient` writes under `<ns>:` (`RedisKeys`) from EVERY master of the cluster (never a
/// replica): a SCAN per master, each SCAN page's values read with one pipeline (GET or HGETALL per key — MGET would
/// be refused across slots) that also carries the next SCAN.
///
/// Guarantees: each key a master holds is delivered once (SCAN may return a key twice; seen keys are kept per master);
/// a key of another type is delivered with a nil value. The slot map is read before and after the scan: when it
/// changed (a failover during the scan), the scan throws rather than deliver a mix of two maps. Connection errors and
/// unexpected replies throw `RedisClusterError`. Not Sendable: one scanner per thread.
public final class RedisClusterScanner: StoreScanner {
    public let keys: RedisKeys
    public let router: RedisClusterRouter
    /// Keys per SCAN page (the COUNT hint).
    public static let pageSize = 1000

    public init(settings: RedisClusterSettings, namespace: String, timeoutSeconds: Double = 10) throws(RedisClusterError) {
        keys = RedisKeys(namespace: namespace)
        router = try RedisClusterRouter(seeds: settings.seeds, timeoutSeconds: timeoutSeconds)
    }

    /// The scanner of `context`'s namespace on the cluster the context names (`RedisClusterSettings.of`).
    public convenience init(context: ClientContext) throws {
        try self.init(
            settings: try RedisClusterSettings.of(context), namespace: context.namespace,
            timeoutSeconds: RedisClusterClient.seconds(context.timeout))
    }

    public func close() { router.close() }

    public var source: String { "keys \(keys.txnPrefix)* on every master" }

    /// Every txn key as a `StoredRow` (its value parsed with `TransactionJSON`; `txnID` -1 for a key that is not a
    /// string), `key` = the Redis key.
    public func scan(_ body: (StoredRow) throws -> Void) throws {
        try scanTxnKeys { key, value, _ in
            var row = value.map { bytes in bytes.withUnsafeBytes { TransactionJSON.parse($0) } } ?? StoredRow(txnID: -1)
            row.key = String(decoding: key, as: UTF8.self)
            try body(row)
        }
    }

    /// The masters the last scan read.
    public private(set) var masters: [HostPort] = []

    /// Every `<ns>:txn:<id>` key with its value (nil: not a string) and the master holding it.
    public func scanTxnKeys(_ body: (_ key: [UInt8], _ value: [UInt8]?, _ master: HostPort) throws -> Void) throws {
        let pattern = Self.globEscaped(Array(keys.txnPrefix.utf8)) + Array("*".utf8)
        try forEachMaster { master, connection in
            try scanPages(connection, master, pattern, read: { [[Words.get, $0]] }) { key, replies in
                try body(key, replies[replies.startIndex].bytes, master)
            }
        }
    }

    /// Every user with a feature hash and/or a score: `fields` as stored (empty when the user has only a score),
    /// `score` from `<ns>:fraud:scores` (nil when absent); `userID` nil when the key's id is not a number.
    public func scanUserFeatures(
        _ body: (_ userID: Int64?, _ fields: [String: String], _ score: Double?) throws -> Void
    ) throws {
        var scores: [Int64: Double] = [:]
        var oddMembers: [[UInt8]] = []
        let scoresKey = Array(keys.scores.utf8)
        try router.refreshTopology()
        guard let scoresMaster = router.topology.primary(ofSlot: RedisClusterSlot.of(scoresKey)) else {
            throw RedisClusterError.unroutable(slot: RedisClusterSlot.of(scoresKey))
        }
        let scoresConnection = try router.connection(to: scoresMaster)
        var cursor = Array("0".utf8)
        repeat {
            let reply = try scoresConnection.command([Words.zscan, scoresKey, cursor, Words.count, Words.pageSize])
            guard let parts = reply.array, parts.count == 2, let next = parts[0].bytes, let entries = parts[1].array
            else { throw RedisClusterError.topology("unexpected ZSCAN reply from \(scoresMaster)") }
            var index = 0
            while index + 1 < entries.count {
                if let member = entries[index].bytes {
                    let score = entries[index + 1].string.flatMap(Double.init)
                    if let id = Self.number(member[...]) { scores[id] = score ?? .nan } else { oddMembers.append(member) }
                }
                index += 2
            }
            cursor = next
        } while cursor != Array("0".utf8)

        let prefix = Array(keys.userPrefix.utf8)
        let suffix = Array("\(RedisKeys.featuresSuffix)".utf8)
        let pattern = Self.globEscaped(prefix) + Array("*".utf8) + Self.globEscaped(suffix)
        try forEachMaster { master, connection in
            try scanPages(connection, master, pattern, read: { [[Words.hgetall, $0]] }) { key, replies in
                var fields: [String: String] = [:]
                let pairs = replies[replies.startIndex].array ?? []
                var index = 0
                while index + 1 < pairs.count {
                    if let name = pairs[index].bytes, let value = pairs[index + 1].bytes {
                        fields[String(decoding: name, as: UTF8.self)] = String(decoding: value, as: UTF8.self)
                    }
                    index += 2
                }
                guard !fields.isEmpty else { return }
                let id = key.count > prefix.count + suffix.count
                    ? Self.number(key[prefix.count..<(key.count - suffix.count)]) : nil
                let score = id.flatMap { scores.removeValue(forKey: $0) }
                try body(id, fields, score)
            }
        }
        for (id, score) in scores { try body(id, [:], score) }
        for _ in oddMembers { try body(nil, [:], nil) }
    }

    // MARK: - Pages

    /// Calls `body` with each master and its connection, after reading the slot map; throws when the map read after
    /// the last master differs (the scan read a map that changed under it).
    private func forEachMaster(_ body: (HostPort, RedisConnection) throws -> Void) throws {
        try router.refreshTopology()
        let before = router.topology
        guard before.coveredSlots == RedisClusterSlot.count else {
            throw RedisClusterError.topology("only \(before.coveredSlots) of \(RedisClusterSlot.count) slots served")
        }
        masters = before.primaries
        for master in masters {
            do {
                try body(master, try router.connection(to: master))
            } catch let error as RedisError {
                router.drop(master)
                throw RedisClusterError.redis(error)
            }
        }
        try router.refreshTopology()
        guard router.topology == before else {
            throw RedisClusterError.topology("the slot map changed during the scan (failover?): scan again")
        }
    }

    /// SCAN of one master to its end; each page's keys are read with `read(key)` commands in one pipeline with the
    /// next SCAN, and `deliver` gets each key (once per master) with the replies to its commands.
    private func scanPages(
        _ connection: RedisConnection, _ master: HostPort, _ pattern: [UInt8], read: ([UInt8]) -> [[[UInt8]]],
        deliver: ([UInt8], ArraySlice<RedisReply>) throws -> Void
    ) throws {
        var seen = Set<[UInt8]>()
        let scanWords: ([UInt8]) -> [[UInt8]] = { [Words.scan, $0, Words.match, pattern, Words.count, Words.pageSize] }
        var reply = try connection.command(scanWords(Array("0".utf8)))
        while true {
            guard let parts = reply.array, parts.count == 2, let cursor = parts[0].bytes, let found = parts[1].array
            else { throw RedisClusterError.topology("unexpected SCAN reply from \(master)") }
            let last = cursor == Array("0".utf8)
            let pageKeys = found.compactMap(\.bytes).filter { seen.insert($0).inserted }
            var pipeline: [[[UInt8]]] = []
            var perKey = 0
            for key in pageKeys {
                let commands = read(key)
                perKey = commands.count
                pipeline += commands
            }
            if !last { pipeline.append(scanWords(cursor)) }
            let replies = pipeline.isEmpty ? [] : try connection.pipeline(pipeline)
            for (index, key) in pageKeys.enumerated() {
                try deliver(key, replies[(index * perKey)..<((index + 1) * perKey)])
            }
            if last { return }
            guard let next = replies.last else { throw RedisClusterError.topology("no reply to SCAN from \(master)") }
            if case .error(let text) = next {
                throw RedisClusterError.server(word: RedisClusterRouter.firstWord(text), node: master)
            }
            reply = next
        }
    }

    /// The value of a canonical non-negative decimal (no sign, no leading zero), else nil.
    static func number(_ bytes: ArraySlice<UInt8>) -> Int64? {
        guard !bytes.isEmpty, bytes.count <= 18, !(bytes.count > 1 && bytes.first == 0x30) else { return nil }
        var value: Int64 = 0
        for byte in bytes {
            let digit = byte &- 0x30
            guard digit < 10 else { return nil }
            value = value * 10 + Int64(digit)
        }
        return value
    }

    /// `bytes` with the glob metacharacters `* ? [ ] \` escaped, for SCAN MATCH.
    static func globEscaped(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for byte in bytes {
            if byte == 0x2A || byte == 0x3F || byte == 0x5B || byte == 0x5D || byte == 0x5C { out.append(0x5C) }
            out.append(byte)
        }
        return out
    }
}

private enum Words {
    static let get = Array("GET".utf8)
    static let hgetall = Array("HGETALL".utf8)
    static let scan = Array("SCAN".utf8)
    static let zscan = Array("ZSCAN".utf8)
    static let match = Array("MATCH".utf8)
    static let count = Array("COUNT".utf8)
    static let pageSize = Array(String(RedisClusterScanner.pageSize).utf8)
}
