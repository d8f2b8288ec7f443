import Foundation
import KilnCore

#if canImport(Glibc)
    import Glibc
#endif

/// Blocking TCP probes used as fault evidence. Each call is bounded by its timeout and closes its socket.
public enum TCPProbe {
    public enum Result: Equatable, Sendable {
        /// Connected (and, for `request`, got at least one byte back).
        case answered
        /// Connection refused or reset: nothing listens, or the peer is gone.
        case refused(String)
        /// No answer within the timeout (dropped packets, a paused process).
        case timedOut

        public var answered: Bool { self == .answered }
    }

    /// Connects to `destination`, from `source` (a local address to bind) when given.
    public static func connect(to destination: HostPort, from source: String? = nil, timeout: Duration) -> Result {
        request(to: destination, from: source, payload: nil, timeout: timeout)
    }

    /// Connects and, with a payload, sends it and waits for any reply byte, all within `timeout`. A paused
    /// server still completes the TCP handshake (the kernel's backlog), so only a request proves it answers.
    public static func request(
        to destination: HostPort, from source: String? = nil, payload: [UInt8]?, timeout: Duration
    ) -> Result {
        let deadline = ContinuousClock.now + timeout
        let (opened, failure) = openSocket(to: destination, from: source, until: deadline)
        guard let fd = opened else { return failure }
        defer { close(fd) }
        guard let payload else { return .answered }
        let sent = payload.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == payload.count else { return .refused("send: \(String(cString: strerror(errno)))") }
        guard wait(fd, for: Int16(POLLIN), until: deadline) else { return .timedOut }
        var byte: UInt8 = 0
        let received = recv(fd, &byte, 1, 0)
        if received == 1 { return .answered }
        return .refused(received == 0 ? "closed without a reply" : String(cString: strerror(errno)))
    }

    /// A connected non-blocking TCP socket to `destination` (bound to `source` when given), or nil and why not
    /// (`refused` or `timedOut` at `deadline`). The caller owns the descriptor and closes it.
    static func openSocket(
        to destination: HostPort, from source: String?, until deadline: ContinuousClock.Instant
    ) -> (fd: Int32?, failure: Result) {
        guard let remote = ipv4(destination.host, port: destination.port) else {
            return (nil, .refused("not an IPv4 address: \(destination.host)"))
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return (nil, .refused("socket: \(String(cString: strerror(errno)))")) }
        func fail(_ result: Result) -> (fd: Int32?, failure: Result) {
            close(fd)
            return (nil, result)
        }
        if let source {
            guard var local = ipv4(source, port: 0) else { return fail(.refused("not an IPv4 address: \(source)")) }
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else { return fail(.refused("bind \(source): \(String(cString: strerror(errno)))")) }
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK)
        var address = remote
        let started = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if started != 0 {
            guard errno == EINPROGRESS else { return fail(.refused(String(cString: strerror(errno)))) }
            guard wait(fd, for: Int16(POLLOUT), until: deadline) else { return fail(.timedOut) }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            guard error == 0 else {
                return fail(error == ETIMEDOUT ? .timedOut : .refused(String(cString: strerror(error))))
            }
        }
        return (fd, .answered)
    }

    /// A Redis `PING` probe: answered only when the server is running and not paused.
    public static func redisPing(_ destination: HostPort, from source: String? = nil, timeout: Duration) -> Result {
        request(to: destination, from: source, payload: Array("PING\r\n".utf8), timeout: timeout)
    }

    private static func wait(_ fd: Int32, for events: Int16, until deadline: ContinuousClock.Instant) -> Bool {
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { return false }
            var poller = pollfd(fd: fd, events: events, revents: 0)
            let result = poll(&poller, 1, Int32(max(1, remaining.milliseconds)))
            if result == 1 { return true }
            if result < 0 && errno == EINTR { continue }
            if result == 0 { continue }
            return false
        }
    }

    static func ipv4(_ host: String, port: Int) -> sockaddr_in? {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(clamping: port)).bigEndian
        let name = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, name, &address.sin_addr) == 1 else { return nil }
        return address
    }

    /// Polls `probe` every 50 ms until it returns `expected` or `within` passes; returns the last result and the
    /// time it took.
    public static func waitFor(
        answered expected: Bool, within limit: Duration, probe: () -> Result
    ) -> (result: Result, elapsed: Duration) {
        let start = ContinuousClock.now
        while true {
            let result = probe()
            let elapsed = start.duration(to: .now)
            if result.answered == expected || elapsed >= limit { return (result, elapsed) }
            usleep(50_000)
        }
    }
}
