import KilnBackend
import KilnCore
import KilnRedis

/// A RESP load client's (`RedisClient`, `FalkorDBClient`) one connection, opened on use, and how its ops end.
///
/// `connected()` returns the open connection or asks `locate` where to connect (Redis: the Sentinels' current
/// primary; FalkorDB: the stack file's server) and opens a new one with `open`. `run` is the skeleton of `invoke`:
/// a failed (re)connect sent nothing (`fail("connection")`); an error after sending ends the op as
/// `RedisError.outcome(_:serverClass:)` says, and the connection is forgotten when the error broke it, or closed when
/// the server refused a write as `READONLY` (a demoted primary), so the next op reconnects to where `locate` points.
/// Never retried.
///
/// Threading: one per client (not Sendable); every call blocks the calling thread (hiredis). Ownership: owns the
/// connection; `close()` closes it. Timeouts: those `open` gives the connection.
final class RESPClientConnection {
    private let locate: () -> HostPort
    private let open: (HostPort) throws(RedisError) -> RedisConnection
    /// Where the current (or last) connection was opened: what `locate` said at the last (re)connect; nil before
    /// the first.
    private(set) var server: HostPort?
    /// The open connection, if any.
    private(set) var connection: RedisConnection?

    /// Not connected yet: the first `connected()` connects.
    init(locate: @escaping () -> HostPort, open: @escaping (HostPort) throws(RedisError) -> RedisConnection) {
        self.locate = locate
        self.open = open
    }

    /// The open connection, reconnecting after a connection-level error or `close()`.
    func connected() throws(RedisError) -> RedisConnection {
        if let connection, connection.isOpen { return connection }
        connection?.close()
        connection = nil
        let target = locate()
        server = target
        let fresh = try open(target)
        connection = fresh
        return fresh
    }

    /// Closes the connection; the next op reconnects.
    func close() {
        connection?.close()
        connection = nil
    }

    /// One op: `fail("connection")` when no connection opens, else `body`'s outcome on the connection, or the
    /// outcome of the error it threw (`outcome(of:kind:serverClass:)` with `serverClass(error)`).
    @inline(__always)
    func run(
        _ kind: OperationDescriptor.Kind, serverClass: (RedisError) -> String,
        _ body: (RedisConnection) throws(RedisError) -> Outcome
    ) -> Outcome {
        let connection: RedisConnection
        do {
            connection = try connected()
        } catch {
            return .fail("connection")
        }
        do {
            return try body(connection)
        } catch {
            return outcome(of: error, kind: kind, serverClass: serverClass(error))
        }
    }

    /// How `error` ends an op of `kind` (`RedisError.outcome`), after forgetting a connection it broke and closing
    /// one whose server refused a write as `READONLY`.
    func outcome(of error: RedisError, kind: OperationDescriptor.Kind, serverClass: String) -> Outcome {
        if error.breaksConnection { connection = nil }
        if error.kind == .server("READONLY") { close() }
        return error.outcome(kind, serverClass: serverClass)
    }
}
