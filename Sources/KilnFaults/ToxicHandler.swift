import NIOCore

/// Events a toxic sends to the proxy's glue handler, which acts on the whole connection.
public enum ToxicEvent: Sendable, Equatable {
    /// Reset the client connection (SO_LINGER 0, then close) and close the upstream one.
    case resetPeer
    /// Close both connections (after what was already forwarded).
    case close
}

/// Applies one toxic to the data read from one side of a proxied connection (inbound `ByteBuffer`s and the
/// `ChannelEvent.inputClosed` half-close event), before the glue handler forwards them to the other side.
///
/// Chunks are queued with a release time and forwarded in arrival order on the channel's event loop (one timer
/// for the queue head). Removing the handler at run time forwards everything still queued at once, so a removed
/// latency toxic never loses or reorders data. Threading: event-loop bound like every `ChannelHandler`.
public final class ToxicHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    public let toxic: Toxic
    private enum Segment {
        case bytes(ByteBuffer)
        case inputClosed
    }
    private var queue: [(release: NIODeadline, segment: Segment)] = []
    private var queueHead = 0
    private var timer: Scheduled<Void>?
    private var connectionTimer: Scheduled<Void>?
    /// The release time of the last queued segment: no segment is released before an earlier one.
    private var lastRelease = NIODeadline.uptimeNanoseconds(0)
    /// Bytes forwarded so far (`limit_data`).
    private var forwarded = 0
    /// Set once `limit_data` was reached or the handler is being removed.
    private var closed = false
    /// Whether a read was forwarded without a `channelReadComplete` yet.
    private var readPending = false
    private var random: any RandomNumberGenerator

    public init(_ toxic: Toxic, random: any RandomNumberGenerator = SystemRandomNumberGenerator()) {
        self.toxic = toxic
        self.random = random
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let bound = NIOLoopBound(context, eventLoop: loop)
        switch toxic.kind {
        case .resetPeer(let timeout):
            connectionTimer = loop.scheduleTask(in: .milliseconds(Int64(timeout))) {
                bound.value.fireUserInboundEventTriggered(ToxicEvent.resetPeer)
            }
        case .timeout(let timeout) where timeout > 0:
            connectionTimer = loop.scheduleTask(in: .milliseconds(Int64(timeout))) {
                bound.value.fireUserInboundEventTriggered(ToxicEvent.close)
            }
        default:
            break
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        connectionTimer?.cancel()
        timer = nil
        connectionTimer = nil
    }

    public func removeHandler(context: ChannelHandlerContext, removalToken: ChannelHandlerContext.RemovalToken) {
        timer?.cancel()
        connectionTimer?.cancel()
        timer = nil
        connectionTimer = nil
        // Whatever is queued goes on now, in order, and is flushed (the glue writes to the other side on
        // channelRead but flushes on channelReadComplete); the toxic no longer applies.
        if !closed {
            release(context: context, until: nil)
            flushReadComplete(context: context)
        }
        context.leavePipeline(removalToken: removalToken)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard !closed else { return }
        let now = context.eventLoop.now
        switch toxic.kind {
        case .latency(let latency, let jitter):
            var delay = Int64(latency) * 1_000_000
            if jitter > 0 {
                delay += Int64.random(in: -Int64(jitter) * 1_000_000...Int64(jitter) * 1_000_000, using: &random)
            }
            enqueue(.bytes(buffer), at: now + .nanoseconds(max(0, delay)), context: context)
        case .bandwidth(let rate):
            // Pieces of at most 1/20 s of data, each released when the previous one would have finished.
            let bytesPerSecond = Int64(rate) * 1000
            let piece = Int(max(1, bytesPerSecond / 20))
            var rest = buffer
            var start = max(now, lastRelease)
            while let slice = rest.readSlice(length: min(piece, rest.readableBytes)), slice.readableBytes > 0 {
                start = start + .nanoseconds(Int64(slice.readableBytes) * 1_000_000_000 / bytesPerSecond)
                enqueue(.bytes(slice), at: start, context: context)
            }
        case .timeout:
            return
        case .slicer(let size, let variation, let delay):
            var rest = buffer
            var release = max(now, lastRelease)
            while rest.readableBytes > 0 {
                let length = variation > 0 ? size + Int.random(in: -variation...variation, using: &random) : size
                guard let slice = rest.readSlice(length: min(max(1, length), rest.readableBytes)) else { break }
                enqueue(.bytes(slice), at: release, context: context)
                release = release + .microseconds(Int64(delay))
            }
        case .limitData(let limit):
            let allowed = limit - forwarded
            if buffer.readableBytes < allowed {
                forwarded += buffer.readableBytes
                enqueue(.bytes(buffer), at: now, context: context)
            } else {
                var rest = buffer
                if allowed > 0, let slice = rest.readSlice(length: allowed) {
                    enqueue(.bytes(slice), at: now, context: context)
                }
                forwarded = limit
                closed = true
                flushReadComplete(context: context)
                context.fireUserInboundEventTriggered(ToxicEvent.close)
            }
        case .resetPeer, .slowClose:
            enqueue(.bytes(buffer), at: now, context: context)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        flushReadComplete(context: context)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, event == .inputClosed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard !closed else { return }
        var release = context.eventLoop.now
        switch toxic.kind {
        case .slowClose(let delay): release = release + .milliseconds(Int64(delay))
        case .timeout: return
        default: break
        }
        enqueue(.inputClosed, at: release, context: context)
    }

    // MARK: queue

    private func enqueue(_ segment: Segment, at release: NIODeadline, context: ChannelHandlerContext) {
        let release = max(release, lastRelease)
        lastRelease = release
        queue.append((release, segment))
        if queue.count - queueHead == 1 {
            if release <= context.eventLoop.now {
                self.release(context: context, until: context.eventLoop.now)
            } else {
                schedule(context: context)
            }
        }
    }

    /// Forwards every queued segment due by `until` (all of them when nil), then arms the timer for the next.
    private func release(context: ChannelHandlerContext, until: NIODeadline?) {
        while queueHead < queue.count {
            let (release, segment) = queue[queueHead]
            if let until, release > until { break }
            queueHead += 1
            switch segment {
            case .bytes(let buffer):
                readPending = true
                context.fireChannelRead(wrapInboundOut(buffer))
            case .inputClosed:
                flushReadComplete(context: context)
                context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            }
        }
        if queueHead == queue.count {
            queue.removeAll(keepingCapacity: true)
            queueHead = 0
        } else if queueHead > 1024 {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
        if until != nil, queueHead < queue.count { schedule(context: context) }
    }

    private func schedule(context: ChannelHandlerContext) {
        timer?.cancel()
        let deadline = queue[queueHead].release
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = bound.value
            handler.timer = nil
            handler.release(context: context, until: context.eventLoop.now)
            handler.flushReadComplete(context: context)
        }
    }

    private func flushReadComplete(context: ChannelHandlerContext) {
        guard readPending else { return }
        readPending = false
        context.fireChannelReadComplete()
    }
}

@available(*, unavailable)
extension ToxicHandler: Sendable {}
