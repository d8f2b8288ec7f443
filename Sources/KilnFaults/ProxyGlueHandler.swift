import NIOCore
import NIOPosix

/// Joins the two channels of one proxied connection (after swift-nio's connect-proxy example): what one side
/// reads (after its toxics) is written to the other; reads pause while the other side is not writable; a
/// half-close (`inputClosed`) becomes a write-side close of the partner; when either channel closes, so does the
/// other. `ToxicEvent`s from the toxics reset or close the whole connection.
///
/// Threading: both handlers of a pair live on the same event loop (the proxy connects upstream on the client
/// channel's loop), so partner calls are direct.
final class ProxyGlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Whether this handler sits on the client's channel (a reset goes to the client).
    let isClientSide: Bool
    private var partner: ProxyGlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var outputClosed = false
    private var inputClosed = false
    /// Bytes this side wrote to its channel (for the proxy's counters).
    private(set) var bytesWritten = 0
    var onBytes: ((Int) -> Void)?

    private init(isClientSide: Bool) {
        self.isClientSide = isClientSide
    }

    static func matchedPair() -> (client: ProxyGlueHandler, upstream: ProxyGlueHandler) {
        let client = ProxyGlueHandler(isClientSide: true)
        let upstream = ProxyGlueHandler(isClientSide: false)
        client.partner = upstream
        upstream.partner = client
        return (client, upstream)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    // MARK: calls from the partner

    private func partnerWrite(_ data: ByteBuffer) {
        guard let context, !outputClosed else { return }
        onBytes?(data.readableBytes)
        context.write(wrapOutboundOut(data), promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    private func partnerWriteEOF() {
        guard let context, !outputClosed else { return }
        outputClosed = true
        context.flush()
        context.close(mode: .output, promise: nil)
        if inputClosed { context.close(promise: nil) }
    }

    private func partnerClose(reset: Bool) {
        guard let context else { return }
        if reset {
            // SO_LINGER 0: close sends RST instead of FIN.
            _ = (context.channel as? any SocketOptionProvider)?.setSoLinger(linger(l_onoff: 1, l_linger: 0))
        }
        context.close(promise: nil)
    }

    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    // MARK: own channel

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.partnerWrite(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerClose(reset: false)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            inputClosed = true
            partner?.partnerWriteEOF()
            if outputClosed { context.close(promise: nil) }
        } else if let event = event as? ToxicEvent {
            let reset = event == .resetPeer
            if isClientSide {
                partnerClose(reset: reset)
                partner?.partnerClose(reset: false)
            } else {
                partner?.partnerClose(reset: reset)
                partnerClose(reset: false)
            }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
    }

    func read(context: ChannelHandlerContext) {
        if partner?.partnerWritable ?? false {
            context.read()
        } else {
            pendingRead = true
        }
    }
}

@available(*, unavailable)
extension ProxyGlueHandler: Sendable {}
