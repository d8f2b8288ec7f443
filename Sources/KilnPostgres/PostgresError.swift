/// The one error type of KilnPostgres.
///
/// `description` is safe to log and to put in reports: it names the kind, the operation, the SQLSTATE, the
/// endpoint's `host:port` and, for `connect`, a fixed reason phrase; it never contains server message text, SQL,
/// parameters, row values or the password (server messages can echo values, e.g. `Key (id)=(42) already
/// exists`). `debugDescription` adds the message from the server or libpq, for local debugging only.
///
/// How to map it to an operation outcome: `connect`, `closed` and `invalidArgument` mean nothing reached the
/// server; `server` means the server rejected the statement (the connection remains usable); `connectionLost`
/// and `unexpectedResult` mean the outcome is unknown.
public struct PostgresError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong.
    public enum Kind: Sendable, Hashable {
        /// The connection could not be established (refused, timed out, authentication failed…).
        case connect
        /// The server reported an error for the statement; ``PostgresError/sqlState`` holds its SQLSTATE.
        case server
        /// The connection broke while the operation was in flight; whether it took effect is unknown.
        case connectionLost
        /// The connection was used after ``PostgresConnection/close()``.
        case closed
        /// The server answered with a result this operation does not handle (e.g. `copyIn` with a statement
        /// that is not `COPY … FROM STDIN`).
        case unexpectedResult
        /// An argument cannot be sent (SQL text or a parameter contains a NUL byte); nothing was sent.
        case invalidArgument
        /// Pipeline mode: the server skipped the statement because an earlier one of the same Sync failed; it did
        /// not run.
        case notRun
    }

    /// Which call failed.
    public enum Operation: String, Sendable, Hashable {
        case connect, execute, prepare, executePrepared, copyIn, copyOut, send, awaitReply
    }

    public let kind: Kind
    public let operation: Operation
    /// The five-character SQLSTATE reported by the server (e.g. `42P01`), when there is one.
    public let sqlState: String?
    /// `host:port` of the endpoint.
    public let address: String
    /// For `connect`: a fixed phrase such as "connection refused", never text taken from the server.
    public let reason: String?
    /// Server or libpq message; only ever shown by `debugDescription`.
    private let message: String?

    init(
        _ kind: Kind, _ operation: Operation, address: String, sqlState: String? = nil, reason: String? = nil,
        message: String? = nil
    ) {
        self.kind = kind
        self.operation = operation
        self.address = address
        self.sqlState = sqlState
        self.reason = reason
        self.message = message
    }

    public var description: String {
        var text = "PostgresError(\(kind), operation: \(operation.rawValue)"
        if let sqlState {
            text += ", sqlState: \(sqlState)"
        }
        text += ", endpoint: \(address)"
        if let reason {
            text += ", reason: \(reason)"
        }
        return text + ")"
    }

    public var debugDescription: String {
        guard let message, !message.isEmpty else {
            return description
        }
        return String(description.dropLast()) + ", message: \(String(reflecting: message)))"
    }
}
