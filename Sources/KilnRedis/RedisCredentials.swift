/// Who Kiln is on a Redis-protocol server (Redis, a Sentinel, FalkorDB): an ACL user and its password, or the
/// `default` user's password (`user` nil), or nothing (`password` nil: no AUTH is sent) — and how it knows the server
/// is who it claims (`tls`: the CA its certificate must chain to; nil: plaintext, no check). The password is never
/// part of a description or an error.
public struct RedisCredentials: Sendable, Equatable {
    public var user: String?
    public var password: String?
    /// TLS with the server's certificate verified; nil: plaintext.
    public var tls: RedisTLS?

    /// No AUTH, plaintext.
    public static let none = RedisCredentials(user: nil, password: nil)

    public init(user: String?, password: String?, tls: RedisTLS? = nil) {
        self.user = user
        self.password = password
        self.tls = tls
    }

    /// A connection to `host:port`, authenticated when a password is set. The caller owns (and closes) it.
    /// - Throws: ``RedisError`` `connect` when the server does not answer (with `tls`, also a failed handshake or an
    ///   untrusted certificate), `server("WRONGPASS")` or `server("NOAUTH")`-like errors when AUTH is refused; the
    ///   connection is closed then.
    public func connect(host: String, port: Int, timeoutSeconds: Double) throws(RedisError) -> RedisConnection {
        let connection = try RedisConnection(host: host, port: port, timeoutSeconds: timeoutSeconds, tls: tls)
        guard let password else { return connection }
        do {
            try connection.authenticate(user: user, password: password)
        } catch {
            connection.close()
            throw error
        }
        return connection
    }
}
