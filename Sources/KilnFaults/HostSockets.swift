import Foundation
import KilnCore
import KilnStack

#if canImport(Glibc)
    import Glibc
#endif

/// Sockets opened inside a host's network namespace, for fault evidence. A socket keeps the namespace it was opened
/// in, so each is opened on a short-lived dedicated thread that entered the namespace (`onHostThread`); reading and
/// writing it afterwards may happen on any thread.
public enum HostSockets {
    /// Binds `fd` to `address:port` (0: any port) and returns the bound port; closes `fd` and throws on failure.
    static func bind(_ fd: Int32, address: String, port: Int) throws -> Int {
        guard var local = TCPProbe.ipv4(address, port: port) else {
            Glibc.close(fd)
            throw PartitionError("not an IPv4 address: \(address)")
        }
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw PartitionError("bind \(address):\(port): \(reason)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: local.sin_port))
    }

    /// Runs `body` on a new OS thread that first entered `host`'s namespace (Kiln's root host: no entering), waits for
    /// it and returns its result. The thread ends with `body`, so no other work ever runs in the namespace by accident.
    public static func onHostThread<T: Sendable>(_ host: FaultHost, _ body: @escaping @Sendable () throws -> T) throws
        -> T
    {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { done.signal() }
            do {
                if let network = host.network { try HostNetwork.enterForCurrentThread(network) }
                box.set(.success(try body()))
            } catch {
                box.set(.failure(error))
            }
        }
        thread.name = "kiln-host-\(host.name)"
        thread.start()
        done.wait()
        return try box.get()
    }

    /// Opens non-blocking TCP connects from `source` to every destination at once and waits for all within
    /// `timeout`: one probe round of a matrix row in the time of one timeout.
    public static func connectAll(from source: FaultHost, to destinations: [HostPort], timeout: Duration) throws
        -> [TCPProbe.Result]
    {
        try onHostThread(source) { connectAllHere(destinations, timeout: timeout) }
    }

    static func connectAllHere(_ destinations: [HostPort], timeout: Duration) -> [TCPProbe.Result] {
        let deadline = ContinuousClock.now + timeout
        var results = [TCPProbe.Result?](repeating: nil, count: destinations.count)
        var descriptors = [Int32](repeating: -1, count: destinations.count)
        defer { for fd in descriptors where fd >= 0 { close(fd) } }
        for (index, destination) in destinations.enumerated() {
            guard var address = TCPProbe.ipv4(destination.host, port: destination.port) else {
                results[index] = .refused("not an IPv4 address: \(destination.host)")
                continue
            }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else {
                results[index] = .refused("socket: \(String(cString: strerror(errno)))")
                continue
            }
            descriptors[index] = fd
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK)
            let started = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if started == 0 {
                results[index] = .answered
            } else if errno != EINPROGRESS {
                results[index] = .refused(String(cString: strerror(errno)))
            }
        }
        while results.contains(where: { $0 == nil }) {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { break }
            let pending = results.indices.filter { results[$0] == nil }
            var pollers = pending.map { pollfd(fd: descriptors[$0], events: Int16(POLLOUT), revents: 0) }
            let ready = poll(&pollers, nfds_t(pollers.count), Int32(max(1, remaining.milliseconds)))
            if ready < 0 && errno != EINTR { break }
            for (slot, index) in pending.enumerated() where pollers[slot].revents != 0 {
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(descriptors[index], SOL_SOCKET, SO_ERROR, &error, &length)
                results[index] =
                    error == 0 ? .answered : error == ETIMEDOUT ? .timedOut : .refused(String(cString: strerror(error)))
            }
        }
        return results.map { $0 ?? .timedOut }
    }

    /// Sends `count` numbered UDP datagrams from `source` to `receiver` (paced: 50 every millisecond, so no socket
    /// buffer overflows) and returns how many distinct ones arrived within `linger` after the last send.
    public static func udpDelivery(
        from source: FaultHost, to receiver: UDPReceiver, count: Int, linger: Duration = .milliseconds(300)
    ) throws -> Int {
        receiver.reset()
        let destination = receiver.endpoint
        try onHostThread(source) {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { throw PartitionError("udp socket: \(String(cString: strerror(errno)))") }
            defer { Glibc.close(fd) }
            guard var address = TCPProbe.ipv4(destination.host, port: destination.port) else {
                throw PartitionError("not an IPv4 address: \(destination.host)")
            }
            for number in 0..<count {
                var payload = UInt32(number).bigEndian
                _ = withUnsafePointer(to: &address) { target in
                    target.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, &payload, 4, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
                if number % 50 == 49 { usleep(1_000) }
            }
        }
        Thread.sleep(forTimeInterval: linger.seconds)
        return receiver.received
    }

    final class ResultBox<T: Sendable>: @unchecked Sendable {
        // @unchecked: `result` is written once by the host thread before it signals, read after the wait.
        private var result: Result<T, any Error>?
        func set(_ value: Result<T, any Error>) { result = value }
        func get() throws -> T { try result!.get() }
    }
}

/// A TCP listener inside a host that accepts and drains every connection (counting the bytes it reads; with `echo`,
/// writing them back), so probes, round trips and throughput measurements have something to reach on hosts that run
/// no server (client groups, tests' hosts).
/// Owns its socket and its accept thread; `close` (or deinit) stops both.
public final class HostListener: @unchecked Sendable {
    // @unchecked: `fd` and `closed` change only under `lock`; the byte log is appended under `lock` by connection
    // threads and read under it.
    public let endpoint: HostPort
    public let echo: Bool
    private let fd: Int32
    private let lock = NSLock()
    private var closed = false
    private var arrivals: [(at: ContinuousClock.Instant, bytes: Int)] = []

    /// Listens on `port` (0: any) at the host's address.
    public init(in host: FaultHost, port: Int = 0, echo: Bool = false) throws {
        self.echo = echo
        let address = host.address
        let (fd, port) = try HostSockets.onHostThread(host) { () throws -> (Int32, Int) in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw PartitionError("socket: \(String(cString: strerror(errno)))") }
            var reuse: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
            let bound = try HostSockets.bind(fd, address: address, port: port)
            guard listen(fd, 1024) == 0 else {
                let reason = String(cString: strerror(errno))
                Glibc.close(fd)
                throw PartitionError("listen on \(address):\(port): \(reason)")
            }
            return (fd, bound)
        }
        self.fd = fd
        endpoint = HostPort(host: address, port: port)
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "kiln-listener-\(host.name)"
        thread.start()
    }

    private func acceptLoop() {
        while true {
            let connection = accept(fd, nil, nil)
            if connection < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                Glibc.close(fd)  // shut down by `close`: the descriptor is released here, after its last use
                return
            }
            let thread = Thread { [self] in drain(connection) }
            thread.start()
        }
    }

    private func drain(_ connection: Int32) {
        defer { Glibc.close(connection) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(connection, &buffer, buffer.count, 0)
            if count <= 0 { return }
            if echo, buffer.withUnsafeBytes({ send(connection, $0.baseAddress, count, Int32(MSG_NOSIGNAL)) }) != count {
                return
            }
            lock.lock()
            arrivals.append((.now, count))
            let stop = closed
            lock.unlock()
            if stop { return }
        }
    }

    /// Bytes read between `start` and `end`.
    public func bytes(from start: ContinuousClock.Instant, to end: ContinuousClock.Instant) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return arrivals.filter { $0.at >= start && $0.at < end }.reduce(0) { $0 + $1.bytes }
    }

    public func resetCount() {
        lock.lock()
        arrivals.removeAll()
        lock.unlock()
    }

    public func close() {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        // Wakes the blocked accept/recv; that thread closes the descriptor, so it is never reused under it.
        shutdown(fd, Int32(SHUT_RDWR))
    }

    deinit { close() }
}

/// A UDP socket inside a host that counts the distinct numbered datagrams it receives (`HostSockets.udpDelivery`).
/// Owns its socket and its receive thread; `close` (or deinit) stops both.
public final class UDPReceiver: @unchecked Sendable {
    // @unchecked: `seen` and `closed` change only under `lock`.
    public let endpoint: HostPort
    private let fd: Int32
    private let lock = NSLock()
    private var seen: Set<UInt32> = []
    private var closed = false

    public init(in host: FaultHost) throws {
        let address = host.address
        let (fd, port) = try HostSockets.onHostThread(host) { () throws -> (Int32, Int) in
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { throw PartitionError("udp socket on \(address): \(String(cString: strerror(errno)))") }
            var size: Int32 = 8 << 20
            setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size))
            return (fd, try HostSockets.bind(fd, address: address, port: 0))
        }
        self.fd = fd
        endpoint = HostPort(host: address, port: port)
        let thread = Thread { [self] in receiveLoop() }
        thread.name = "kiln-udp-\(host.name)"
        thread.start()
    }

    private func receiveLoop() {
        var number: UInt32 = 0
        while true {
            let count = recv(fd, &number, 4, 0)
            if count < 0 && errno == EINTR { continue }
            lock.lock()
            if closed || count < 0 {
                lock.unlock()
                Glibc.close(fd)  // after its last use; `close` only shuts it down
                return
            }
            if count == 4 { seen.insert(UInt32(bigEndian: number)) }
            lock.unlock()
        }
    }

    public var received: Int {
        lock.lock()
        defer { lock.unlock() }
        return seen.count
    }

    public func reset() {
        lock.lock()
        seen.removeAll()
        lock.unlock()
    }

    public func close() {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        // Wakes the blocked accept/recv; that thread closes the descriptor, so it is never reused under it.
        shutdown(fd, Int32(SHUT_RDWR))
    }

    deinit { close() }
}
