import KilnBackend
import KilnCore
import KilnRedis
import KilnScenario

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The one answer to "which Redis server is the primary now?", shared by the load client, the pipeline sink, the
/// scanners and the staleness lookups, so after a Sentinel failover all of them follow the new primary.
///
/// `current()` asks the stack's Sentinels in order (each bounded by 1 s or the timeout, whichever is shorter) for
/// `master_name` and returns the first answer that names a server the stack file lists (its primary or a replica):
/// Sentinel moves the primary among the stack's servers, it never redirects Kiln to a foreign one (and a primary
/// replaced by a fault proxy keeps traffic on the proxy, since the Sentinels name the real server behind it). No
/// Sentinels, none answering or a foreign answer: the stack file's primary. Stateless and thread-safe; each call
/// opens and closes its own Sentinel connections (a few ms), so callers ask on (re)connect only.
public struct RedisPrimaryResolver: Sendable {
    /// The stack file's primary (possibly a fault proxy's listen address).
    public let configured: HostPort
    public let sentinels: [HostPort]
    public let masterName: String
    /// The stack file's primary and replicas: the only servers a Sentinel answer may point at.
    public let knownServers: Set<HostPort>
    public let timeoutSeconds: Double
    /// The stack's `redis.user` (nil: `default`) and the password from its `password_env`; nil password: no AUTH.
    public let user: String?
    private let password: String?
    /// TLS to the servers and the Sentinels (the stack's `ca_file_env`); nil: plaintext.
    public let tls: RedisTLS?
    /// What the Sentinels are asked with: the stack's `sentinel_user` and `sentinel_password_env` (none: no AUTH).
    private let sentinelCredentials: RedisCredentials

    /// `environment` supplies the password named by the stack's `password_env` (the process environment by default).
    public init(
        _ redis: StackDefinition.Redis, timeout: Duration,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        user = redis.user
        password = StackDefinition.secret(redis.passwordEnvironmentVariable, in: environment)
        tls = redis.tls(in: environment)
        sentinelCredentials = RedisCredentials(
            user: redis.sentinelUser,
            password: StackDefinition.secret(redis.sentinelPasswordEnvironmentVariable, in: environment), tls: tls)
        configured = redis.primary
        sentinels = redis.sentinels
        masterName = redis.masterName
        knownServers = Set([redis.primary] + redis.replicas)
        let parts = timeout.components
        timeoutSeconds = max(0.001, Double(parts.seconds) + Double(parts.attoseconds) / 1e18)
    }

    /// The current primary (see the type's comment); never throws, at worst the stack file's primary.
    public func current() -> HostPort {
        if let named = Self.askSentinels(
            sentinels, masterName, timeoutSeconds: timeoutSeconds, credentials: sentinelCredentials),
            knownServers.contains(named)
        {
            return named
        }
        return configured
    }

    /// A connection to the current primary, answering PING when `ping` (so a dead server fails here, not at the
    /// first command). The caller owns the connection.
    public func connect(ping: Bool = false) throws(RedisError) -> (RedisConnection, HostPort) {
        let primary = current()
        let connection = try RedisConnection(host: primary.host, port: primary.port, timeoutSeconds: timeoutSeconds, tls: tls)
        do {
            try authenticate(connection)
            if ping {
                try connection.command(["PING"])
            }
        } catch {
            connection.close()
            throw error
        }
        return (connection, primary)
    }

    /// Sends `AUTH` when the stack names a password; does nothing otherwise.
    public func authenticate(_ connection: RedisConnection) throws(RedisError) {
        if let password {
            try connection.authenticate(user: user, password: password)
        }
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME` from the first Sentinel that answers (authenticated with `credentials`);
    /// nil when none does.
    public static func askSentinels(
        _ sentinels: [HostPort], _ masterName: String, timeoutSeconds: Double, credentials: RedisCredentials = .none
    ) -> HostPort? {
        for sentinel in sentinels {
            guard
                let connection = try? credentials.connect(
                    host: sentinel.host, port: sentinel.port, timeoutSeconds: min(timeoutSeconds, 1))
            else { continue }
            defer { connection.close() }
            guard let parts = (try? connection.command(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName]))?.array,
                parts.count == 2, let host = parts[0].string, let port = parts[1].string.flatMap(Int.init)
            else { continue }
            return HostPort(host: host, port: port)
        }
        return nil
    }
}

/// Where Kiln's Redis data lives, under `<namespace>:` — the one layout the load client, the pipeline sink and the
/// scanners share:
/// - `<ns>:user:<user_id>:features` hash (`last_*`, `txn_count`, `amount_cents_total`), TTL one day;
/// - `<ns>:fraud:scores` sorted set: member `<user_id>`, score the sum of the user's fraud score millis;
/// - `<ns>:txn:<txn_id>` string: the row's JSON;
/// - `<ns>:stream:fraud-events` stream, consumer group `<ns>-load`;
/// - `<ns>:pipeline:offsets` hash: partition -> last applied offset (the pipeline's Redis sink).
public struct RedisKeys: Sendable, Hashable {
    public let namespace: String

    public init(namespace: String) { self.namespace = namespace }

    /// The parts after `<ns>:`, as static strings for the allocation-free RESP encoder (`RESPBuffer.bulkKey`).
    public static let txnPart: StaticString = "txn:"
    public static let userPart: StaticString = "user:"
    public static let featuresSuffix: StaticString = ":features"
    public static let scoresPart: StaticString = "fraud:scores"

    /// `<ns>:` — every key Kiln writes starts with it.
    public var prefix: String { "\(namespace):" }
    /// `<ns>:*` — SCAN pattern of every Kiln key (the namespace is not glob-escaped, as before).
    public var everything: String { "\(namespace):*" }
    public var scores: String { "\(prefix)\(Self.scoresPart)" }
    public var stream: String { "\(namespace):stream:fraud-events" }
    public var streamGroup: String { "\(namespace)-load" }
    public var pipelineOffsets: String { "\(namespace):pipeline:offsets" }
    /// `<ns>:txn:` — followed by the txn id.
    public var txnPrefix: String { "\(prefix)\(Self.txnPart)" }
    /// `<ns>:user:` — followed by the user id and `featuresSuffix`.
    public var userPrefix: String { "\(prefix)\(Self.userPart)" }

    public func txn(_ txnID: Int64) -> String { "\(txnPrefix)\(txnID)" }
    public func features(user userID: Int64) -> String { "\(userPrefix)\(userID)\(Self.featuresSuffix)" }
}
