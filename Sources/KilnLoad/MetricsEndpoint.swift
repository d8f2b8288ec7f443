import Foundation
import Glibc
import KilnScenario
import Logging
import Prometheus

/// `kiln run --metrics-port`: the run's live numbers in Prometheus text format at `http://ADDRESS:PORT/metrics`,
/// updated once per second from the controller's thread. The listener runs on its own thread and answers one
/// request per connection; it only reads the registry (thread-safe), so it never slows the load.
public final class MetricsEndpoint: PhaseObserver {
    public let registry = PrometheusCollectorRegistry()
    private let next: PhaseObserver?
    private let listener: Int32
    public let port: Int
    private let logger: Logger

    public struct CannotListen: Error, CustomStringConvertible {
        public var address: String
        public var reason: String
        public var description: String { "--metrics-port: cannot listen on \(address): \(reason)" }
    }

    /// Binds `host:port` (port 0 picks a free one, see `port`) and starts serving.
    public init(host: String = "127.0.0.1", port: Int, next: PhaseObserver?, logger: Logger) throws(CannotListen) {
        self.next = next
        self.logger = logger
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw CannotListen(address: "\(host):\(port)", reason: String(cString: strerror(errno))) }
        var one: Int32 = 1
        setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            Glibc.close(socket)
            throw CannotListen(address: "\(host):\(port)", reason: "not an IPv4 address")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(socket, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(socket)
            throw CannotListen(address: "\(host):\(port)", reason: reason)
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        listener = socket
        let registry = self.registry
        let thread = Thread {
            while true {
                let connection = accept(socket, nil, nil)
                if connection < 0 {
                    if errno == EINTR { continue }
                    return  // closed by `close()`
                }
                var request = [UInt8](repeating: 0, count: 4096)
                _ = recv(connection, &request, request.count, 0)
                let body = registry.emitToBuffer()
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
                let bytes = Array(head.utf8) + body
                _ = bytes.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                Glibc.close(connection)
            }
        }
        thread.name = "kiln-metrics"
        thread.start()
    }

    /// Stops listening (the accept thread ends).
    public func close() {
        shutdown(listener, Int32(SHUT_RDWR))
        Glibc.close(listener)
    }

    public func phaseStarted(_ phase: LoadScenario.Phase, number: Int, operations: [PlannedOperation]) {
        registry.makeGauge(name: "kiln_phase_number", help: "1-based number of the running phase").set(Double(number + 1))
        next?.phaseStarted(phase, number: number, operations: operations)
    }

    public func secondEnded(
        _ second: TimelineSecond, phase: LoadScenario.Phase, operations: [PlannedOperation], elapsed: Double,
        history: [CompletedOperation]
    ) {
        for (index, stats) in second.stats.enumerated() where !stats.isEmpty {
            let labels = [("phase", phase.name), ("op", operations[index].name)]
            for (outcome, count) in [("ok", stats.ok), ("fail", stats.fail), ("info", stats.info)] where count > 0 {
                registry.makeCounter(name: "kiln_ops_total", labels: labels + [("outcome", outcome)],
                    help: "Completed operations by outcome").increment(by: count)
            }
            if stats.dropped > 0 {
                registry.makeCounter(name: "kiln_dropped_total", labels: labels,
                    help: "Open-model operations not started within drop_after").increment(by: stats.dropped)
            }
            if stats.rows > 0 {
                registry.makeCounter(name: "kiln_rows_total", labels: labels, help: "Rows written by bulk operations")
                    .increment(by: stats.rows)
            }
            for (quantile, value) in [("0.5", 50.0), ("0.99", 99.0)] {
                if let seconds = stats.latencySeconds(percentile: value) {
                    registry.makeGauge(name: "kiln_latency_seconds", labels: labels + [("quantile", quantile)],
                        help: "Latency over the last second (from the intended start in open-model phases)").set(seconds)
                }
            }
        }
        registry.makeGauge(name: "kiln_phase_elapsed_seconds", help: "Seconds since the phase started").set(elapsed)
        next?.secondEnded(second, phase: phase, operations: operations, elapsed: elapsed, history: history)
    }
}
