/// One reply of a Redis server (RESP2, as spoken by hiredis 0.14).
public enum RedisReply: Sendable, Equatable {
    /// A simple string such as `OK` or `PONG`.
    case status(String)
    /// An error reply. `RedisConnection.command` throws these as ``RedisError``; pipelines return them in place.
    case error(String)
    case integer(Int64)
    /// A bulk string, binary-safe.
    case bulk([UInt8])
    /// A nil bulk string or nil array (e.g. `GET` of a missing key).
    case null
    case array([RedisReply])

    /// The text of a status reply, or of a bulk reply that is valid UTF-8; otherwise `nil`.
    public var string: String? {
        switch self {
        case .status(let text):
            return text
        case .bulk(let bytes):
            return String(validating: bytes, as: UTF8.self)
        default:
            return nil
        }
    }

    /// The bytes of a bulk reply; otherwise `nil`.
    public var bytes: [UInt8]? {
        if case .bulk(let bytes) = self {
            return bytes
        }
        return nil
    }

    public var integer: Int64? {
        if case .integer(let value) = self {
            return value
        }
        return nil
    }

    public var array: [RedisReply]? {
        if case .array(let elements) = self {
            return elements
        }
        return nil
    }

    public var isNull: Bool {
        self == .null
    }
}
