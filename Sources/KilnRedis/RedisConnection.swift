import CHiredis

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One blocking RESP2 connection: plaintext through hiredis's `redisContext`, or TLS through ``RedisTLSStream``
/// (OpenSSL for the socket, hiredis's reader for the replies) when opened with a ``RedisTLS``.
///
/// Ownership: the connection owns its `redisContext` or TLS stream and frees it in ``close()`` (idempotent) or in
/// `deinit`; every reply object is freed before the call returns.
/// Threading: not `Sendable`; every call blocks the calling thread, so use it from one dedicated worker thread
/// (never from Swift's cooperative pool), one connection per worker.
/// Timeouts: connecting and every socket read/write are bounded by `timeoutSeconds`. A timeout, I/O or protocol
/// error leaves the stream out of step with the server, so the connection is then unusable (later calls throw
/// `closed`): open a new one.
/// Signals: hiredis and OpenSSL write with `write(2)`, which raises SIGPIPE when the server has gone away; the first
/// connection therefore sets SIGPIPE to "ignore" if it still has its default disposition (which would kill the
/// process). A handler installed by the program is kept.
public final class RedisConnection {
    public let host: String
    public let port: Int
    /// How the connection is encrypted (nil: plaintext).
    public let tls: RedisTLS?
    /// The open transport; nil once closed.
    private var transport: Transport?
    /// Set once an error has desynchronised the stream.
    private var broken = false
    /// Arguments of the command being sent, concatenated (scratch space reused across calls).
    private var argumentBytes: [UInt8] = []
    private var argumentLengths: [Int] = []
    private var argumentPointers: [UnsafePointer<CChar>?] = []

    /// Pipelines are sent in batches of at most this many commands (or ``pipelineBatchBytes`` of arguments),
    /// each batch's replies read before the next is sent; this bounds client and server buffers.
    static let pipelineBatchCommands = 1024
    static let pipelineBatchBytes = 1 << 20

    private static let ignoreSIGPIPE: Void = {
        let previous = signal(SIGPIPE, SIG_IGN)
        if previous != nil {
            // Not SIG_DFL: the program chose a disposition; restore it.
            _ = signal(SIGPIPE, previous)
        }
    }()

    /// The socket and its protocol state.
    private enum Transport {
        case plaintext(UnsafeMutablePointer<redisContext>)
        case tls(RedisTLSStream)
    }

    /// Connects, waiting at most `timeoutSeconds`, and sets `timeoutSeconds` as the I/O timeout of every later
    /// read and write. With `tls`, the TLS handshake is part of connecting and the server's certificate must chain to
    /// `tls.caFile` and name `host`.
    /// - Throws: ``RedisError`` of kind `connect` (for TLS also a failed handshake or an untrusted certificate, the
    ///   reason starting with `TLS:`).
    public init(host: String, port: Int, timeoutSeconds: Double = 5, tls: RedisTLS? = nil) throws(RedisError) {
        precondition(timeoutSeconds > 0, "timeoutSeconds must be positive")
        Self.ignoreSIGPIPE
        self.host = host
        self.port = port
        self.tls = tls
        let address = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        if let tls {
            transport = .tls(
                try RedisTLSStream(host: host, port: port, tls: tls, timeoutSeconds: timeoutSeconds, address: address))
            return
        }
        let seconds = timeoutSeconds.rounded(.down)
        let timeout = timeval(tv_sec: Int(seconds), tv_usec: Int((timeoutSeconds - seconds) * 1_000_000))
        guard let context = redisConnectWithTimeout(host, Int32(port), timeout) else {
            throw RedisError(.connect, address: address, reason: "out of memory")
        }
        if context.pointee.err != 0 {
            let reason = Self.errorText(context)
            redisFree(context)
            throw RedisError(.connect, address: address, reason: reason)
        }
        if redisSetTimeout(context, timeout) != REDIS_OK {
            let reason = Self.errorText(context)
            redisFree(context)
            throw RedisError(.connect, address: address, reason: reason)
        }
        transport = .plaintext(context)
    }

    deinit {
        if case .plaintext(let context) = transport {
            redisFree(context)
        }
    }

    /// Authenticates this connection: `AUTH user password` for an ACL user, `AUTH password` for `default` (user nil).
    /// - Throws: ``RedisError`` of kind `server("WRONGPASS")` for a wrong pair or a disabled user; the password never
    ///   appears in the error.
    public func authenticate(user: String?, password: String) throws(RedisError) {
        _ = try command(user.map { ["AUTH", $0, password] } ?? ["AUTH", password])
    }

    /// Closes the connection. Idempotent; later calls throw a `closed` error.
    public func close() {
        if case .plaintext(let context) = transport {
            redisFree(context)
        }
        transport = nil
    }

    /// `false` after ``close()`` or after an error that made the connection unusable.
    public var isOpen: Bool {
        transport != nil && !broken
    }

    /// `host:port`, as used in error descriptions.
    public var address: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    // MARK: - Commands

    /// Sends one command and waits for its reply.
    /// - Throws: ``RedisError``; `server(prefix)` for an error reply (the connection stays usable).
    @discardableResult
    public func command(_ arguments: [String]) throws(RedisError) -> RedisReply {
        try send(arguments.lazy.map(\.utf8))
    }

    /// Binary-safe variant: arguments are sent with explicit lengths and may contain any byte, NUL included.
    @discardableResult
    public func command(_ arguments: [[UInt8]]) throws(RedisError) -> RedisReply {
        try send(arguments)
    }

    @discardableResult
    public func command(_ arguments: String...) throws(RedisError) -> RedisReply {
        try command(arguments)
    }

    /// Sends all `commands` before reading their replies (in batches, so pipelines of any length work) and returns
    /// one reply per command, in order. Error replies are returned in place as ``RedisReply/error(_:)``.
    /// - Throws: ``RedisError`` (`io`, `timeout`, `protocol`, `closed`) when the connection fails; then which
    ///   commands were applied is unknown.
    public func pipeline(_ commands: [[String]]) throws(RedisError) -> [RedisReply] {
        try sendPipeline(commands) { $0.lazy.map(\.utf8) }
    }

    /// Binary-safe variant of the `[[String]]` `pipeline`.
    public func pipeline(_ commands: [[[UInt8]]]) throws(RedisError) -> [RedisReply] {
        try sendPipeline(commands) { $0 }
    }

    /// Sends `commandCount` commands that the caller has already encoded as RESP arrays in `encoded` (one write of
    /// the whole buffer), then reads exactly `commandCount` replies. Replies are checked but not converted, so a bulk
    /// load allocates nothing per command here; the bytes are copied before the call returns.
    /// - Returns: how many replies were errors, and the first of them as a `server` error.
    /// - Throws: ``RedisError`` (`io`, `timeout`, `protocol`, `closed`) when the connection fails; then which
    ///   commands were applied is unknown. A wrong `commandCount` desynchronises the stream: pass the exact count.
    public func pipelineEncoded(
        _ encoded: UnsafeRawBufferPointer, commandCount: Int
    ) throws(RedisError) -> RedisPipelineErrors {
        let transport = try open()
        guard commandCount > 0, let base = encoded.baseAddress else {
            return RedisPipelineErrors(count: 0, first: nil)
        }
        try append(encoded: base.assumingMemoryBound(to: CChar.self), count: encoded.count, to: transport)
        var errors = 0
        var first: RedisError?
        for _ in 0..<commandCount {
            let raw = try nextReply(transport)
            let reply = raw.assumingMemoryBound(to: redisReply.self)
            if reply.pointee.type == REDIS_REPLY_ERROR {
                errors += 1
                if first == nil {
                    let text = String(
                        decoding: UnsafeRawBufferPointer(start: reply.pointee.str, count: reply.pointee.len),
                        as: UTF8.self)
                    first = RedisError.server(text, address: address)
                }
            }
            freeReplyObject(raw)
        }
        return RedisPipelineErrors(count: errors, first: first)
    }

    // MARK: - Helpers

    private func open() throws(RedisError) -> Transport {
        guard let transport, !broken else {
            let reason = transport == nil ? "closed" : "broken by an earlier error"
            throw RedisError(.closed, address: address, message: reason)
        }
        return transport
    }

    /// Queues the staged arguments as one command (hiredis's encoding on both transports).
    private func appendStaged(to transport: Transport) throws(RedisError) {
        let appended = withStagedArguments { count, pointers, lengths in
            switch transport {
            case .plaintext(let context): redisAppendCommandArgv(context, count, pointers, lengths) == REDIS_OK
            case .tls(let stream): stream.append(count: count, arguments: pointers, lengths: lengths)
            }
        }
        guard appended else { throw failure(transport, errno: errno) }
    }

    /// Queues bytes already encoded as RESP commands.
    private func append(encoded: UnsafePointer<CChar>, count: Int, to transport: Transport) throws(RedisError) {
        let appended =
            switch transport {
            case .plaintext(let context): redisAppendFormattedCommand(context, encoded, count) == REDIS_OK
            case .tls(let stream): stream.append(encoded: encoded, count: count)
            }
        guard appended else { throw failure(transport, errno: errno) }
    }

    /// Sends what is queued and waits for the next reply, a `redisReply` the caller frees.
    private func nextReply(_ transport: Transport) throws(RedisError) -> UnsafeMutableRawPointer {
        var raw: UnsafeMutableRawPointer?
        switch transport {
        case .plaintext(let context):
            let status = redisGetReply(context, &raw)
            let savedErrno = errno
            guard status == REDIS_OK, let raw else { throw contextError(context, errno: savedErrno) }
            return raw
        case .tls(let stream):
            guard let raw = stream.reply() else { throw failure(transport, errno: 0) }
            return raw
        }
    }

    /// The error of the transport's last failed call; marks the connection unusable.
    private func failure(_ transport: Transport, errno savedErrno: Int32) -> RedisError {
        switch transport {
        case .plaintext(let context):
            return contextError(context, errno: savedErrno)
        case .tls(let stream):
            broken = true
            return stream.error(address: address)
        }
    }

    private func send<Arguments: Collection>(
        _ arguments: Arguments
    ) throws(RedisError) -> RedisReply where Arguments.Element: Collection, Arguments.Element.Element == UInt8 {
        precondition(!arguments.isEmpty, "a Redis command needs at least one argument")
        let transport = try open()
        stage(arguments)
        try appendStaged(to: transport)
        let raw = try nextReply(transport)
        defer { freeReplyObject(raw) }
        let reply = Self.convert(raw.assumingMemoryBound(to: redisReply.self))
        if case .error(let message) = reply {
            throw RedisError.server(message, address: address)
        }
        return reply
    }

    private func sendPipeline<Command, Arguments: Collection>(
        _ commands: [Command], _ arguments: (Command) -> Arguments
    ) throws(RedisError) -> [RedisReply] where Arguments.Element: Collection, Arguments.Element.Element == UInt8 {
        let transport = try open()
        var replies: [RedisReply] = []
        replies.reserveCapacity(commands.count)
        var next = 0
        while next < commands.count {
            var pending = 0
            var pendingBytes = 0
            while next < commands.count, pending < Self.pipelineBatchCommands, pendingBytes < Self.pipelineBatchBytes {
                let command = arguments(commands[next])
                precondition(!command.isEmpty, "a Redis command needs at least one argument")
                stage(command)
                try appendStaged(to: transport)
                pending += 1
                pendingBytes += argumentBytes.count
                next += 1
            }
            for _ in 0..<pending {
                let raw = try nextReply(transport)
                replies.append(Self.convert(raw.assumingMemoryBound(to: redisReply.self)))
                freeReplyObject(raw)
            }
        }
        return replies
    }

    // MARK: - One command in flight without blocking (open-model multiplexing)

    /// The connection's socket, for a poller to wait on until it is readable; -1 when closed.
    public var descriptor: Int32 {
        guard let transport, !broken else { return -1 }
        switch transport {
        case .plaintext(let context): return context.pointee.fd
        case .tls(let stream): return stream.descriptor
        }
    }

    /// Sends one command without waiting for its reply; ``readReply()`` collects the reply once ``descriptor`` is
    /// readable. At most one command may be outstanding (the caller's invariant). The socket stays in blocking
    /// mode: a request of a few dozen bytes goes into an empty send buffer, so `write(2)` returns at once; a
    /// server that stopped reading makes it wait at most the connection's timeout.
    /// - Throws: ``RedisError`` (`io`, `timeout`, `closed`); then the connection is unusable.
    public func startCommand<Arguments: Collection>(
        _ arguments: Arguments
    ) throws(RedisError) where Arguments.Element: Collection, Arguments.Element.Element == UInt8 {
        precondition(!arguments.isEmpty, "a Redis command needs at least one argument")
        let transport = try open()
        stage(arguments)
        try appendStaged(to: transport)
        switch transport {
        case .plaintext(let context):
            var done: Int32 = 0
            while done == 0 {
                guard redisBufferWrite(context, &done) == REDIS_OK else { throw contextError(context, errno: errno) }
            }
        case .tls(let stream):
            guard stream.flush() else { throw failure(transport, errno: 0) }
        }
    }

    /// Reads what the socket holds (call it once ``descriptor`` is readable: the read then returns at once) and
    /// returns the reply of the command ``startCommand(_:)`` sent when it is complete, nil while it is not.
    /// - Throws: ``RedisError``; `server(prefix)` for an error reply (the connection stays usable); `io`,
    ///   `protocol`, `closed` otherwise (then it is unusable).
    public func readReply() throws(RedisError) -> RedisReplyShape? {
        let transport = try open()
        var raw: UnsafeMutableRawPointer?
        switch transport {
        case .plaintext(let context):
            guard redisBufferRead(context) == REDIS_OK else { throw contextError(context, errno: errno) }
            guard redisGetReplyFromReader(context, &raw) == REDIS_OK else { throw contextError(context, errno: errno) }
        case .tls(let stream):
            // Reads every byte the socket holds, so no decrypted reply waits inside OpenSSL while the poller sees an
            // idle socket.
            guard stream.readAvailable(&raw) else { throw failure(transport, errno: 0) }
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        let value = raw.assumingMemoryBound(to: redisReply.self).pointee
        switch value.type {
        case REDIS_REPLY_ERROR:
            throw RedisError.server(
                String(decoding: UnsafeRawBufferPointer(start: value.str, count: value.len), as: UTF8.self),
                address: address)
        case REDIS_REPLY_ARRAY: return .array(count: value.elements)
        case REDIS_REPLY_NIL: return .null
        default: return .scalar
        }
    }

    /// Marks the stream out of step (an outstanding reply was given up on): later calls throw `closed`.
    public func abandon() {
        broken = true
    }

    /// Copies `arguments` into the scratch buffers.
    private func stage<Arguments: Collection>(
        _ arguments: Arguments
    ) where Arguments.Element: Collection, Arguments.Element.Element == UInt8 {
        argumentBytes.removeAll(keepingCapacity: true)
        argumentLengths.removeAll(keepingCapacity: true)
        for argument in arguments {
            let start = argumentBytes.count
            argumentBytes.append(contentsOf: argument)
            argumentLengths.append(argumentBytes.count - start)
        }
        // Keeps the buffer non-empty, so its base address is valid even when every argument is empty.
        argumentBytes.append(0)
    }

    /// Calls `body` with `argc`, `argv` and `argvlen` pointing into the staged arguments.
    private func withStagedArguments<R>(
        _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R
    ) -> R {
        argumentBytes.withUnsafeBytes { raw in
            let base = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
            argumentPointers.removeAll(keepingCapacity: true)
            var offset = 0
            for length in argumentLengths {
                argumentPointers.append(base + offset)
                offset += length
            }
            return argumentPointers.withUnsafeMutableBufferPointer { pointers in
                argumentLengths.withUnsafeBufferPointer { lengths in
                    body(Int32(lengths.count), pointers.baseAddress!, lengths.baseAddress!)
                }
            }
        }
    }

    /// The error recorded in `context` by a failed call; marks the connection unusable.
    private func contextError(_ context: UnsafeMutablePointer<redisContext>, errno savedErrno: Int32) -> RedisError {
        broken = true
        let text = Self.errorText(context)
        switch context.pointee.err {
        case REDIS_ERR_IO where savedErrno == EAGAIN || savedErrno == EWOULDBLOCK || savedErrno == ETIMEDOUT:
            return RedisError(.timeout, address: address, reason: text)
        case REDIS_ERR_IO, REDIS_ERR_EOF:
            return RedisError(.io, address: address, reason: text)
        case REDIS_ERR_PROTOCOL:
            return RedisError(.protocol, address: address, message: text)
        default:
            return RedisError(.io, address: address, message: text)
        }
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    private static func convert(_ reply: UnsafePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            return .bulk(Array(UnsafeRawBufferPointer(start: value.str, count: value.len)))
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: UnsafeRawBufferPointer(start: value.str, count: value.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: UnsafeRawBufferPointer(start: value.str, count: value.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(value.integer))
        case REDIS_REPLY_ARRAY:
            return .array((0..<value.elements).map { index in convert(value.element[index]!) })
        default:
            return .null
        }
    }
}

/// What ``RedisConnection/readReply()`` tells of a reply without copying it (no allocation per field).
public enum RedisReplyShape: Sendable, Equatable {
    case array(count: Int)
    case null
    /// A status, integer or bulk string.
    case scalar
}

/// The error replies of a ``RedisConnection/pipelineEncoded(_:commandCount:)`` call.
public struct RedisPipelineErrors: Sendable {
    /// Number of commands answered with an error reply (those commands were not applied).
    public let count: Int
    /// The first error reply, as a `server` error (`nil` when `count` is 0).
    public let first: RedisError?
}
