import KilnCore
import KilnRedis

/// The smoke round trip of a Redis Cluster: `keys` strings under `kiln:smoke:<run>:` written through the router (so
/// they land on every master), read back the same way, compared, then deleted (unless `keep`).
///
/// Passes when every value read back equals the value written and every master of the slot map holds at least one
/// of the keys (the keys' slots cover every master with 64 keys or more in practice; `mastersWritten` says which).
public struct RedisClusterSmoke: Sendable {
    public let settings: RedisClusterSettings
    public let runID: String
    public let keys: Int
    public let keep: Bool

    public init(settings: RedisClusterSettings, runID: String, keys: Int = 64, keep: Bool = false) {
        self.settings = settings
        self.runID = runID
        self.keys = keys
        self.keep = keep
    }

    public struct Result: Sendable, Equatable {
        public var written = 0
        /// Keys read back with the value written.
        public var matched = 0
        public var mastersWritten: Set<HostPort> = []
        public var masters: Set<HostPort> = []

        public var passed: Bool { written > 0 && matched == written && mastersWritten == masters }
        public var summary: String {
            "\(matched)/\(written) keys read back, on \(mastersWritten.count) of \(masters.count) masters"
        }
    }

    /// - Throws: `RedisClusterError` when the cluster cannot be reached or routed.
    public func run(timeoutSeconds: Double = 10) throws(RedisClusterError) -> Result {
        let router = try RedisClusterRouter(seeds: settings.seeds, timeoutSeconds: timeoutSeconds)
        defer { router.close() }
        var result = Result()
        result.masters = Set(router.topology.primaries)
        let names = (0..<keys).map { Array("kiln:smoke:\(runID):\($0)".utf8) }
        let values = (0..<keys).map { Array("v\($0)-\(runID)".utf8) }
        let writes = zip(names, values).map { RedisClusterCommand(key: $0, [Array("SET".utf8), $0, $1]) }
        for (name, reply) in zip(names, try router.execute(writes)) where reply == .status("OK") {
            result.written += 1
            if let master = router.topology.primary(ofSlot: RedisClusterSlot.of(name)) { result.mastersWritten.insert(master) }
        }
        defer {
            if !keep { _ = try? router.execute(names.map { RedisClusterCommand(key: $0, [Array("DEL".utf8), $0]) }) }
        }
        let reads = try router.execute(names.map { RedisClusterCommand(key: $0, [Array("GET".utf8), $0]) })
        result.matched = zip(reads, values).filter { $0.0.bytes == $0.1 }.count
        return result
    }
}
