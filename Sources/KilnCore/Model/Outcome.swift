/// How one operation ended (ARCHITECTURE.md, Outcomes). Never lie: when the client cannot know whether a write
/// took effect (timeout, connection lost after the request was sent), the outcome is `info`, not `fail`.
public enum Outcome: Sendable, Hashable {
    /// Definitely applied (a write) or answered (a read).
    case ok
    /// Definitely not applied. The class is a short, low-cardinality name, e.g. `sqlstate-23505`, `refused`, `WRONGTYPE`.
    case fail(String)
    /// Unknown: may or may not have been applied. Same class vocabulary as `fail`, e.g. `timeout`, `connection-lost`.
    case info(String)

    public var isOK: Bool { if case .ok = self { true } else { false } }

    /// `ok`, `fail` or `info`.
    public var kind: String {
        switch self {
        case .ok: "ok"
        case .fail: "fail"
        case .info: "info"
        }
    }

    /// The error class of a `fail` or `info`, nil for `ok`.
    public var errorClass: String? {
        switch self {
        case .ok: nil
        case .fail(let name), .info(let name): name
        }
    }
}
