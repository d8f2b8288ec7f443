import KilnBackend
import KilnCore
import KilnRedis

extension RedisError {
    /// Whether the connection is unusable after this error (every kind but a server's error reply).
    public var breaksConnection: Bool {
        if case .server = kind { return false }
        return true
    }

    /// The outcome of an op of `kind` that failed with this error, shared by the RESP clients (Redis, FalkorDB):
    /// an error reply is `fail(serverClass)`; a failed connect sent nothing (`fail`); a timeout or broken
    /// connection after sending is `info` for writes (they may have been applied) and `fail` for reads.
    public func outcome(_ kind: OperationDescriptor.Kind, serverClass: String) -> Outcome {
        switch self.kind {
        case .server: .fail(serverClass)
        case .connect, .closed: .fail("connection")
        case .timeout: kind == .read ? .fail("timeout") : .info("timeout")
        case .io, .protocol: kind == .read ? .fail("connection") : .info("connection")
        }
    }
}
