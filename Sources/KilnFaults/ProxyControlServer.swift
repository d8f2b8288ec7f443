import Foundation
import KilnCore
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A Toxiproxy-like HTTP API over one `FaultProxy`:
/// - `GET /proxy` — listen and upstream addresses, connection and byte counters;
/// - `GET /toxics` — the toxics as a JSON array;
/// - `POST /toxics` with a toxic as JSON (`{"name", "type", "stream", "toxicity", "attributes"}`) — 200 and the
///   toxic, 400 on a bad toxic, 409 when the name exists;
/// - `DELETE /toxics/NAME` — 204, or 404 when there is no such toxic; `DELETE /toxics` removes all.
/// Bodies are limited to 64 KiB. Lifetime: `start()` binds, `stop()` closes and shuts down the server's own
/// event-loop thread (idempotent). Requests are answered off the event loop, since the proxy's calls block.
public final class ProxyControlServer: Sendable {
    public let proxy: FaultProxy
    private let group: MultiThreadedEventLoopGroup
    private let channel: NIOLockedValueBoxChannel

    public init(proxy: FaultProxy) {
        self.proxy = proxy
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        channel = NIOLockedValueBoxChannel()
    }

    /// Binds `address` (port 0 picks a free one) and returns the bound address.
    @discardableResult
    public func start(listen address: HostPort) throws -> HostPort {
        let proxy = self.proxy
        let bound = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(ControlHandler(proxy: proxy))
                }
            }
            .bind(host: address.host, port: address.port).wait()
        channel.set(bound)
        return HostPort(
            host: bound.localAddress?.ipAddress ?? address.host, port: bound.localAddress?.port ?? address.port)
    }

    public func stop() {
        try? channel.take()?.close().wait()
        try? group.syncShutdownGracefully()
    }

    /// The routing, separate from NIO so it is testable: method, path, body -> status, JSON body.
    public static func respond(
        to proxy: FaultProxy, method: String, path: String, body: Data
    ) -> (HTTPResponseStatus, Data) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        func json(_ value: some Encodable, _ status: HTTPResponseStatus = .ok) -> (HTTPResponseStatus, Data) {
            ((try? encoder.encode(value)).map { (status, $0) }) ?? (.internalServerError, Data())
        }
        func failure(_ status: HTTPResponseStatus, _ message: String) -> (HTTPResponseStatus, Data) {
            json(["error": message], status)
        }
        let parts = path.split(separator: "?", maxSplits: 1)[0].split(separator: "/").map(String.init)
        switch (HTTPMethod(rawValue: method), parts) {
        case (.GET, ["proxy"]):
            return json(proxy.statistics)
        case (.GET, ["toxics"]):
            return json(proxy.toxics)
        case (.POST, ["toxics"]):
            let toxic: Toxic
            do {
                toxic = try JSONDecoder().decode(Toxic.self, from: body)
            } catch let invalid as ToxicError {
                return failure(.badRequest, invalid.description)
            } catch {
                return failure(.badRequest, "body is not a toxic: \(error)")
            }
            do {
                try proxy.addToxic(toxic)
            } catch {
                return failure(.conflict, error.description)
            }
            return json(toxic)
        case (.DELETE, ["toxics"]):
            proxy.removeAllToxics()
            return (.noContent, Data())
        case (.DELETE, let parts) where parts.count == 2 && parts[0] == "toxics":
            let name = parts[1].removingPercentEncoding ?? parts[1]
            return proxy.removeToxic(named: name) ? (.noContent, Data()) : failure(.notFound, "no toxic \(name)")
        default:
            return failure(.notFound, "no route \(method) \(path)")
        }
    }
}

/// The bound control channel, set once by `start` and taken by `stop`.
final class NIOLockedValueBoxChannel: Sendable {
    private let box = NIOLockedValueBox<(any Channel)?>(nil)
    func set(_ channel: any Channel) { box.withLockedValue { $0 = channel } }
    func take() -> (any Channel)? {
        box.withLockedValue { value in
            defer { value = nil }
            return value
        }
    }
}

private final class ControlHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let proxy: FaultProxy
    private var head: HTTPRequestHead?
    private var body = Data()
    private static let limit = 64 * 1024

    init(proxy: FaultProxy) { self.proxy = proxy }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = Data()
        case .body(let buffer):
            if body.count + buffer.readableBytes <= Self.limit { body.append(contentsOf: buffer.readableBytesView) }
        case .end:
            guard let head else { return }
            self.head = nil
            // The proxy's calls block on its own loops, never on this one.
            let proxy = self.proxy
            let body = self.body
            let loop = context.eventLoop
            let bound = NIOLoopBound(context, eventLoop: loop)
            let keepAlive = head.isKeepAlive
            DispatchQueue.global().async {
                let (status, payload) =
                    body.count > Self.limit
                    ? (.payloadTooLarge, Data(#"{"error":"body over 64 KiB"}"#.utf8))
                    : ProxyControlServer.respond(to: proxy, method: head.method.rawValue, path: head.uri, body: body)
                loop.execute {
                    let context = bound.value
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: "application/json")
                    headers.add(name: "Content-Length", value: String(payload.count))
                    if !keepAlive { headers.add(name: "Connection", value: "close") }
                    let response = HTTPResponseHead(version: head.version, status: status, headers: headers)
                    context.write(NIOAny(HTTPServerResponsePart.head(response)), promise: nil)
                    if !payload.isEmpty {
                        var buffer = context.channel.allocator.buffer(capacity: payload.count)
                        buffer.writeBytes(payload)
                        context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
                    }
                    let done = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
                    if !keepAlive { done.whenComplete { _ in bound.value.close(promise: nil) } }
                }
            }
        }
    }
}
