/// The one error type of KilnRedis.
///
/// `description` is safe to log and to put in reports: it names the kind and the endpoint `host:port` (plus, for
/// `connect`, `io` and `timeout`, the system's reason such as "Connection refused"), and never contains command
/// arguments, values or the text of a server error reply (which can echo values). For a server error it holds
/// only the reply's first word (`WRONGTYPE`, `ERR`, `READONLY`…). `debugDescription` adds the full message, for
/// local debugging only.
///
/// How to map it to an operation outcome: `connect` and `closed` mean nothing was sent; `server` means the server
/// rejected the command; `io`, `timeout` and `protocol` mean the outcome is unknown and the connection is no
/// longer usable.
public struct RedisError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Kind: Sendable, Hashable, CustomStringConvertible {
        /// The connection could not be established (refused, unreachable, connect timeout).
        case connect
        /// Reading or writing failed (reset, closed by the server…).
        case io
        /// No reply arrived within the connection's I/O timeout.
        case timeout
        /// The bytes received are not valid RESP.
        case `protocol`
        /// The server answered with an error reply; the associated value is its first word, e.g. `WRONGTYPE`
        /// (`UNKNOWN` when that word is not an upper-case token).
        case server(String)
        /// The connection was closed with ``RedisConnection/close()`` or broken by an earlier `io`, `timeout`
        /// or `protocol` error.
        case closed

        public var description: String {
            switch self {
            case .connect: "connect"
            case .io: "io"
            case .timeout: "timeout"
            case .protocol: "protocol"
            case .server(let prefix): "server \(prefix)"
            case .closed: "closed"
            }
        }
    }

    public let kind: Kind
    /// `host:port` of the server.
    public let address: String
    /// System reason for `connect`/`io`/`timeout` (strerror-like text; carries no data).
    private let reason: String?
    /// Server error message or hiredis error text; only ever shown by `debugDescription`.
    private let message: String?

    init(_ kind: Kind, address: String, reason: String? = nil, message: String? = nil) {
        self.kind = kind
        self.address = address
        self.reason = reason
        self.message = message
    }

    /// The error for a server error reply: only an upper-case first word is kept as the kind's prefix.
    static func server(_ message: String, address: String) -> RedisError {
        let word = message.prefix { $0 != " " }
        let isToken = !word.isEmpty && word.count <= 32
            && word.utf8.allSatisfy { (65...90).contains($0) || (48...57).contains($0) || $0 == 95 || $0 == 45 }
        return RedisError(.server(isToken ? String(word) : "UNKNOWN"), address: address, message: message)
    }

    public var description: String {
        var text = "RedisError(\(kind), endpoint: \(address)"
        if let reason, !reason.isEmpty {
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
