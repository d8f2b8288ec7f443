import KilnCore
import KilnRedis

/// The error of a routed cluster command or batch. Outcome mapping (`RedisClusterClient`): `redis` is the node's
/// connection error (its own mapping: `connect`/`closed` nothing sent; `io`/`timeout`/`protocol` unknown);
/// `partiallyApplied` is a connection error after another node of the same batch applied commands (unknown);
/// `server` means the node rejected the command (not applied: CLUSTERDOWN, TRYAGAIN, WRONGTYPE…); `unroutable` (no
/// node serves the slot), `tooManyRedirects` and `topology` mean nothing was applied.
public enum RedisClusterError: Error, Sendable, CustomStringConvertible {
    case redis(RedisError)
    case partiallyApplied(RedisError)
    /// The first word of the error reply (never its text, which can echo values).
    case server(word: String, node: HostPort)
    case unroutable(slot: Int)
    case tooManyRedirects(slot: Int)
    case topology(String)

    public var description: String {
        switch self {
        case .redis(let error): "redis-cluster: \(error.description)"
        case .partiallyApplied(let error): "redis-cluster (after other nodes applied): \(error.description)"
        case .server(let word, let node): "redis-cluster: server \(word) (\(node))"
        case .unroutable(let slot): "redis-cluster: no node serves slot \(slot)"
        case .tooManyRedirects(let slot):
            "redis-cluster: slot \(slot): more than \(RedisClusterRouter.maxRedirects) redirections"
        case .topology(let reason): "redis-cluster topology: \(reason)"
        }
    }
}

/// One command of a routed batch: its key's slot and its arguments.
public struct RedisClusterCommand: Sendable {
    public var slot: Int
    public var arguments: [[UInt8]]

    public init(slot: Int, arguments: [[UInt8]]) {
        self.slot = slot
        self.arguments = arguments
    }

    /// The command about `key` (its first key argument): the slot is the key's.
    public init(key: [UInt8], _ arguments: [[UInt8]]) {
        self.init(slot: RedisClusterSlot.of(key), arguments: arguments)
    }
}

/// A client of one Redis Cluster, routing on plain hiredis connections (Debian's hiredis 0.14 has no cluster
/// support): one connection per node it has talked to, and the slot map it learned from `CLUSTER SLOTS`.
///
/// Routing: a command goes to the primary that owns its slot. `MOVED` sends it again to the named node and then
/// refreshes the whole slot map; `ASK` sends `ASKING` plus the command to the named node, leaving the map alone. Both
/// replies mean the first node did not execute the command, so following them never applies an operation twice. At
/// most ``maxRedirects`` redirections per command.
/// Failover: a connection error to a node drops that connection and marks the map stale, so the next call asks the
/// cluster again and reaches the promoted replica once the cluster has promoted it. The failed call itself is thrown
/// (its outcome is the connection error's), never silently resent. While a failover spreads, nodes that have not yet
/// heard of it still name the dead primary: a map naming a node this router could not reach is used only when no
/// node asked gives one without it.
/// Ownership and threading: owns its connections; not `Sendable`; use it from one thread.
public final class RedisClusterRouter {
    public static let maxRedirects = 5

    public let seeds: [HostPort]
    public let timeoutSeconds: Double
    private var connections: [HostPort: RedisConnection] = [:]
    public private(set) var topology = RedisClusterTopology(ranges: [])
    private var topologyIsStale = true
    /// The node that gave the final reply (after redirections) to the first command of the last batch.
    public private(set) var lastNode: HostPort?
    /// Nodes whose connection failed since they last answered.
    private var unreachable: Set<HostPort> = []

    /// Connects to the first seed that answers `CLUSTER SLOTS` with a served slot.
    /// - Throws: `topology` (or the last seed's error) when none does.
    public init(seeds: [HostPort], timeoutSeconds: Double = 5) throws(RedisClusterError) {
        precondition(!seeds.isEmpty, "a cluster client needs at least one seed node")
        self.seeds = seeds
        self.timeoutSeconds = timeoutSeconds
        try refreshTopology()
    }

    /// Closes every connection. Idempotent.
    public func close() {
        for connection in connections.values { connection.close() }
        connections.removeAll()
    }

    /// Asks the known primaries, then the seeds, for `CLUSTER SLOTS` and keeps the first answer that covers a slot
    /// and names no unreachable node as a primary; when every answer names one, the first answer.
    public func refreshTopology() throws(RedisClusterError) {
        var lastError = RedisClusterError.topology("no seed answered")
        var candidates = topology.primaries
        for seed in seeds where !candidates.contains(seed) { candidates.append(seed) }
        var namingUnreachable: RedisClusterTopology?
        for node in candidates {
            let reply: RedisReply
            do {
                reply = try connection(to: node).command(["CLUSTER", "SLOTS"])
            } catch {
                drop(node)
                unreachable.insert(node)
                lastError = .redis(error)
                continue
            }
            unreachable.remove(node)
            do {
                let learned = try RedisClusterTopology(clusterSlotsReply: reply, askedNode: node)
                guard learned.coveredSlots > 0 else {
                    lastError = .topology("\(node) serves no slot")
                    continue
                }
                if learned.primaries.contains(where: unreachable.contains) {
                    if namingUnreachable == nil { namingUnreachable = learned }
                    continue
                }
                topology = learned
                topologyIsStale = false
                return
            } catch {
                lastError = .topology(error.description)
            }
        }
        if let namingUnreachable {
            topology = namingUnreachable
            topologyIsStale = false
            return
        }
        throw lastError
    }

    /// Sends one command to the node serving `slot` and returns its reply.
    /// - Throws: an error reply other than a redirection as `server`; see `RedisClusterError`.
    @discardableResult
    public func command(slot: Int, _ arguments: [[UInt8]]) throws(RedisClusterError) -> RedisReply {
        let reply = try execute([RedisClusterCommand(slot: slot, arguments: arguments)])[0]
        if case .error(let text) = reply { throw .server(word: Self.firstWord(text), node: lastNode ?? seeds[0]) }
        return reply
    }

    @discardableResult
    public func command(key: String, _ arguments: [String]) throws(RedisClusterError) -> RedisReply {
        try command(slot: RedisClusterSlot.of(key), arguments.map { Array($0.utf8) })
    }

    /// Sends `commands` as one pipeline per node (commands of one node keep their order), follows redirections and
    /// returns one reply per command, in order; error replies other than redirections are returned in place as
    /// `.error(text)` (those commands were not applied).
    /// - Throws: a node's connection error: `redis` when no command of the batch had been applied yet, else
    ///   `partiallyApplied`; `unroutable` before anything is sent; `tooManyRedirects`.
    public func execute(_ commands: [RedisClusterCommand]) throws(RedisClusterError) -> [RedisReply] {
        if topologyIsStale { try refreshTopology() }
        var replies = [RedisReply?](repeating: nil, count: commands.count)
        var pending: [(index: Int, node: HostPort, asking: Bool)] = []
        pending.reserveCapacity(commands.count)
        for (index, command) in commands.enumerated() {
            var owner = topology.primary(ofSlot: command.slot)
            if owner == nil {
                try refreshTopology()
                owner = topology.primary(ofSlot: command.slot)
            }
            guard let owner else { throw .unroutable(slot: command.slot) }
            pending.append((index, owner, false))
        }
        lastNode = nil
        var applied = false
        for _ in 0...Self.maxRedirects {
            var redirected: [(index: Int, node: HostPort, asking: Bool)] = []
            var moved = false
            // Nodes in the order of their first command, so a one-node batch is one pipeline.
            var order: [HostPort] = []
            var byNode: [HostPort: [(index: Int, asking: Bool)]] = [:]
            for item in pending {
                if byNode[item.node] == nil { order.append(item.node) }
                byNode[item.node, default: []].append((item.index, item.asking))
            }
            for node in order {
                let items = byNode[node]!
                var pipeline: [[[UInt8]]] = []
                pipeline.reserveCapacity(items.count)
                for item in items {
                    if item.asking { pipeline.append([Words.asking]) }
                    pipeline.append(commands[item.index].arguments)
                }
                let nodeReplies: [RedisReply]
                do {
                    nodeReplies = try connection(to: node).pipeline(pipeline)
                } catch {
                    drop(node)
                    unreachable.insert(node)
                    throw applied ? .partiallyApplied(error) : .redis(error)
                }
                if !unreachable.isEmpty { unreachable.remove(node) }
                var position = 0
                for item in items {
                    if item.asking { position += 1 }
                    let reply = nodeReplies[position]
                    position += 1
                    if case .error(let text) = reply, let redirect = RedisClusterRedirect(errorReply: text) {
                        redirected.append(
                            (item.index, HostPort(host: redirect.host, port: redirect.port), redirect.kind == .ask))
                        if redirect.kind == .moved { moved = true }
                        continue
                    }
                    if case .error = reply {} else { applied = true }
                    replies[item.index] = reply
                    if item.index == 0 { lastNode = node }
                }
            }
            if redirected.isEmpty { return replies.map { $0 ?? .null } }
            if moved { try? refreshTopology() }
            pending = redirected
        }
        throw .tooManyRedirects(slot: commands[pending[0].index].slot)
    }

    /// A connection to `node`, opened on first use and owned by this router (do not close it).
    public func connection(to node: HostPort) throws(RedisError) -> RedisConnection {
        if let open = connections[node], open.isOpen { return open }
        connections.removeValue(forKey: node)?.close()
        let opened = try RedisConnection(host: node.host, port: node.port, timeoutSeconds: timeoutSeconds)
        connections[node] = opened
        return opened
    }

    /// Drops the connection to `node` and marks the slot map stale (the next call asks the cluster again).
    public func drop(_ node: HostPort) {
        connections.removeValue(forKey: node)?.close()
        topologyIsStale = true
    }

    /// The first word of an error reply when it is an upper-case token (`MOVED`, `CLUSTERDOWN`), else `UNKNOWN`.
    public static func firstWord(_ text: String) -> String {
        let word = text.prefix { $0 != " " }
        let isToken = !word.isEmpty && word.count <= 32
            && word.utf8.allSatisfy { (65...90).contains($0) || (48...57).contains($0) || $0 == 95 || $0 == 45 }
        return isToken ? String(word) : "UNKNOWN"
    }
}

private enum Words {
    static let asking = Array("ASKING".utf8)
}
