import KilnCore

/// What `kiln stack status` shows for one server.
public struct ServerStatus: Sendable {
    public enum Health: Sendable, Equatable {
        /// The recorded process runs and answered a real query.
        case up
        /// No process of ours runs for this server.
        case down
        /// The process runs but its probe failed (starting, hung, paused).
        case unhealthy(String)
    }

    public var name: String
    public var endpoint: HostPort
    public var pid: Int32?
    /// e.g. primary, replica, sentinel, broker; nil when the probe could not tell.
    public var role: String?
    public var health: Health
    public var log: String
    /// The network namespace the server runs in (hosts stack); nil on loopback.
    public var namespace: String? = nil

    public var isUp: Bool { health == .up }
}

/// Why the stack could not be started or stopped; always names the server and, where one exists, its log.
public struct StackError: Error, CustomStringConvertible {
    public var server: String
    public var message: String
    public var log: String?

    public init(server: String, message: String, log: String? = nil) {
        self.server = server
        self.message = message
        self.log = log
    }

    public var description: String {
        var text = "\(server): \(message)"
        if let log { text += "\n  log: \(log)" + StackError.tail(of: log) }
        return text
    }

    static func tail(of path: String, lines: Int = 8) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "" }
        let last = text.split(separator: "\n", omittingEmptySubsequences: true).suffix(lines)
        return last.isEmpty ? "" : "\n    " + last.joined(separator: "\n    ")
    }
}
