import Foundation
import KilnCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP proxy for one upstream server with Toxiproxy's toxics: clients connect to `listen`, each connection is
/// joined to a fresh connection to `upstream`, and the data of each direction passes through that direction's
/// toxics in the order they were added. Toxics are added and removed at run time from any thread; a change
/// applies to live connections as well as new ones.
///
/// Lifetime: `start()` binds the listener; `stop()` closes it and every proxied connection (idempotent). The
/// event loop group is the caller's when given (not shut down by the proxy), otherwise the proxy's own
/// (one thread, shut down by `stop()`, which the owner must call: the listener keeps the proxy alive).
/// Thread-safe: state is behind one lock, pipeline changes run on each connection's event loop. `stop()` and the
/// toxic calls block until done, so never call them from an event-loop thread.
public final class FaultProxy: Sendable {
    public let upstream: HostPort
    public let requestedListen: HostPort
    private let group: any EventLoopGroup
    private let ownsGroup: Bool
    private let logger: Logger
    private let state = NIOLockedValueBox(State())

    private struct State {
        var toxics: [Toxic] = []
        var connections: [ObjectIdentifier: Connection] = [:]
        var listener: (any Channel)?
        var accepted = 0
        var bytesUpstream = 0
        var bytesDownstream = 0
    }

    /// The two channels of one proxied connection and their glue (both on `client.eventLoop`).
    private struct Connection: @unchecked Sendable {
        // @unchecked: the glue handlers are only touched on `client.eventLoop`, which every use hops to.
        let client: any Channel
        let upstream: any Channel
        let clientGlue: ProxyGlueHandler
        let upstreamGlue: ProxyGlueHandler
    }

    public struct Statistics: Codable, Sendable, Equatable {
        public var listen: String
        public var upstream: String
        public var connectionsAccepted: Int
        public var connectionsOpen: Int
        public var bytesUpstream: Int
        public var bytesDownstream: Int

        enum CodingKeys: String, CodingKey {
            case listen, upstream
            case connectionsAccepted = "connections_accepted"
            case connectionsOpen = "connections_open"
            case bytesUpstream = "bytes_upstream"
            case bytesDownstream = "bytes_downstream"
        }
    }

    public init(
        listen: HostPort, upstream: HostPort, toxics: [Toxic] = [], group: (any EventLoopGroup)? = nil,
        logger: Logger = Logger(label: "kiln.proxy")
    ) {
        self.requestedListen = listen
        self.upstream = upstream
        if let group {
            self.group = group
            ownsGroup = false
        } else {
            self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            ownsGroup = true
        }
        self.logger = logger
        state.withLockedValue { $0.toxics = toxics }
    }

    /// The bound address (its port is the real one when `listen` asked for port 0).
    public var listenAddress: HostPort {
        guard let address = state.withLockedValue({ $0.listener?.localAddress }), let port = address.port else {
            return requestedListen
        }
        return HostPort(host: address.ipAddress ?? requestedListen.host, port: port)
    }

    /// Binds the listener. Throws when the address is taken or invalid.
    public func start() throws {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { self.accepted(channel) }
            }
        let channel = try bootstrap.bind(host: requestedListen.host, port: requestedListen.port).wait()
        state.withLockedValue { $0.listener = channel }
        logger.debug("proxy listening", metadata: ["kiln.listen": "\(listenAddress)", "kiln.upstream": "\(upstream)"])
    }

    /// Closes the listener and every proxied connection, then the proxy's own event loop group. Idempotent.
    public func stop() {
        let (listener, connections) = state.withLockedValue { state in
            let result = (state.listener, Array(state.connections.values))
            state.listener = nil
            state.connections = [:]
            return result
        }
        try? listener?.close().wait()
        for connection in connections {
            try? connection.client.close().wait()
            try? connection.upstream.close().wait()
        }
        if ownsGroup { try? group.syncShutdownGracefully() }
    }

    // MARK: toxics

    public var toxics: [Toxic] { state.withLockedValue { $0.toxics } }

    public var statistics: Statistics {
        let listen = listenAddress.description
        return state.withLockedValue { state in
            Statistics(
                listen: listen, upstream: upstream.description,
                connectionsAccepted: state.accepted, connectionsOpen: state.connections.count,
                bytesUpstream: state.bytesUpstream, bytesDownstream: state.bytesDownstream)
        }
    }

    /// Adds a toxic to new connections and to every live one (waits until all live connections have it).
    /// Throws `ToxicError` when a toxic of that name exists.
    public func addToxic(_ toxic: Toxic) throws(ToxicError) {
        try toxic.validate()
        let connections: [Connection]? = state.withLockedValue { state in
            if state.toxics.contains(where: { $0.name == toxic.name }) { return nil }
            state.toxics.append(toxic)
            return Array(state.connections.values)
        }
        guard let connections else { throw ToxicError("toxic \(toxic.name) already exists") }
        for connection in connections {
            try? connection.client.eventLoop.submit {
                Self.install(toxic, on: connection)
            }.wait()
        }
    }

    /// Removes a toxic from new and live connections; data it was holding is forwarded at once. Returns false
    /// when no toxic has that name.
    @discardableResult
    public func removeToxic(named name: String) -> Bool {
        let (found, connections) = state.withLockedValue { state in
            guard let index = state.toxics.firstIndex(where: { $0.name == name }) else {
                return (nil as Toxic?, [Connection]())
            }
            return (state.toxics.remove(at: index), Array(state.connections.values))
        }
        guard let found else { return false }
        for connection in connections {
            let channel = found.stream == .upstream ? connection.client : connection.upstream
            try? channel.pipeline.removeHandler(name: Self.handlerName(found)).wait()
        }
        return true
    }

    /// Removes every toxic.
    public func removeAllToxics() {
        for toxic in toxics { removeToxic(named: toxic.name) }
    }

    private static func handlerName(_ toxic: Toxic) -> String { "toxic:\(toxic.name)" }

    /// Adds `toxic`'s handler just before the glue of its direction's source channel (so toxics run in the order
    /// they were added), unless the connection's draw for `toxicity` says otherwise. Runs on the connection's loop.
    private static func install(_ toxic: Toxic, on connection: Connection) {
        guard toxic.toxicity >= 1 || Double.random(in: 0..<1) < toxic.toxicity else { return }
        let (channel, glue) =
            toxic.stream == .upstream
            ? (connection.client, connection.clientGlue) : (connection.upstream, connection.upstreamGlue)
        let handler = ToxicHandler(toxic)
        try? channel.pipeline.syncOperations.addHandler(handler, name: handlerName(toxic), position: .before(glue))
    }

    // MARK: connections

    private func accepted(_ client: any Channel) {
        state.withLockedValue { $0.accepted += 1 }
        let loop = client.eventLoop
        let upstream = self.upstream
        let connect = ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.autoRead, value: false)
            .connectTimeout(.seconds(5))
            .connect(host: upstream.host, port: upstream.port)
        let logger = self.logger
        connect.whenComplete { [self] result in
            switch result {
            case .failure(let error):
                logger.debug("upstream connect failed", metadata: ["kiln.error": "\(error)"])
                client.close(promise: nil)
            case .success(let upstreamChannel):
                self.join(client: client, upstream: upstreamChannel)
            }
        }
    }

    /// Runs on the client's event loop: glues the channels, installs the current toxics, starts reading.
    private func join(client: any Channel, upstream: any Channel) {
        let (clientGlue, upstreamGlue) = ProxyGlueHandler.matchedPair()
        clientGlue.onBytes = { [weak self] count in self?.state.withLockedValue { $0.bytesDownstream += count } }
        upstreamGlue.onBytes = { [weak self] count in self?.state.withLockedValue { $0.bytesUpstream += count } }
        let connection = Connection(
            client: client, upstream: upstream, clientGlue: clientGlue, upstreamGlue: upstreamGlue)
        do {
            try client.pipeline.syncOperations.addHandler(clientGlue)
            try upstream.pipeline.syncOperations.addHandler(upstreamGlue)
        } catch {
            client.close(promise: nil)
            upstream.close(promise: nil)
            return
        }
        let key = ObjectIdentifier(client)
        // Registering and installing in one event-loop task, under the lock for the snapshot: a toxic added
        // concurrently is installed exactly once (by this snapshot or by addToxic's hop, which runs after us).
        let (toxics, stopped) = state.withLockedValue { state in
            if state.listener != nil { state.connections[key] = connection }
            return (state.toxics, state.listener == nil)
        }
        if stopped {
            client.close(promise: nil)
            upstream.close(promise: nil)
            return
        }
        for toxic in toxics { Self.install(toxic, on: connection) }
        client.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLockedValue { $0.connections.removeValue(forKey: key) }
        }
        _ = client.setOption(.autoRead, value: true)
        _ = upstream.setOption(.autoRead, value: true)
    }
}
