/// A cluster redirection read from an error reply: `MOVED <slot> <host>:<port>` (the slot now lives on that node:
/// update the slot map) or `ASK <slot> <host>:<port>` (the slot is being migrated: send `ASKING` and this one command
/// to that node, without updating the map).
///
/// Guaranteed: a redirection reply means the node did not execute the command, so following it is not a retry of an
/// applied operation.
public struct RedisClusterRedirect: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case moved
        case ask
    }

    public let kind: Kind
    public let slot: Int
    public let host: String
    public let port: Int

    public init(kind: Kind, slot: Int, host: String, port: Int) {
        self.kind = kind
        self.slot = slot
        self.host = host
        self.port = port
    }

    /// Parses an error reply's text; `nil` when it is not a well-formed MOVED or ASK.
    public init?(errorReply text: String) {
        let words = text.split(separator: " ")
        guard words.count == 3 else { return nil }
        switch words[0] {
        case "MOVED": kind = .moved
        case "ASK": kind = .ask
        default: return nil
        }
        guard let slot = Int(words[1]), (0..<RedisClusterSlot.count).contains(slot) else { return nil }
        let endpoint = words[2]
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]),
            (1...65_535).contains(port)
        else { return nil }
        var host = String(endpoint[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        }
        guard !host.isEmpty else { return nil }
        self.slot = slot
        self.host = host
        self.port = port
    }
}
