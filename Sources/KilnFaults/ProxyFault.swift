import Foundation
import KilnCore

/// A toxic on a running `FaultProxy` as a fault: `start` adds it, `stop` removes it. Evidence, when a request
/// probe is given (e.g. `.redisPing` for a Redis upstream), is a round trip through the proxy: for `latency` it
/// takes at least 90 % of the latency while active and less than half of it after (below 5 ms a probe cannot
/// tell, and the active evidence is `unknown`); for `timeout` it gets no
/// reply; for `reset_peer` (timeout 0) and `limit_data` 0 it is refused. Other toxics (bandwidth, slicer,
/// slow_close) are not visible to a small probe: their `active` evidence is `unknown` ("installed").
public final class ProxyFault: Fault {
    public let name: String
    public let proxy: FaultProxy
    public let toxic: Toxic
    public let probe: ServiceProbe?

    public var kind: String { "proxy:\(toxic.kind.typeName)" }
    public var target: String { "\(proxy.listenAddress) -> \(proxy.upstream)" }

    public init(name: String? = nil, proxy: FaultProxy, toxic: Toxic, probe: ServiceProbe? = nil) {
        self.name = name ?? "proxy-\(toxic.name)"
        self.proxy = proxy
        self.toxic = toxic
        self.probe = probe
    }

    public func start() throws {
        try proxy.addToxic(toxic)
    }

    public func stop() throws {
        proxy.removeToxic(named: toxic.name)
    }

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        let present = proxy.toxics.contains { $0.name == toxic.name }
        switch phase {
        case .active:
            guard present else { return .no("toxic \(toxic.name) is not installed") }
            guard let probe, probe.isRequest else { return .unknown("toxic \(toxic.name) installed; no request probe") }
            let (result, elapsed) = roundTrip(probe, timeout: .seconds(2))
            switch toxic.kind {
            case .latency(let latency, _) where latency < Self.resolvableLatencyMs:
                return .unknown(
                    "toxic \(toxic.name) installed; round trip \(Int(elapsed)) ms: one probe cannot tell a \(latency) ms "
                        + "latency from this machine's own jitter (below \(Self.resolvableLatencyMs) ms)")
            case .latency(let latency, let jitter):
                let floor = Double(latency - jitter) * 0.9
                guard result.answered else { return .no("probe through the proxy failed: \(result)") }
                return elapsed >= floor
                    ? .yes("round trip \(Int(elapsed)) ms with \(latency) ms latency\(probe.through)")
                    : .no("round trip \(Int(elapsed)) ms, expected >= \(Int(floor)) ms\(probe.through)")
            case .timeout:
                return result == .timedOut
                    ? .yes("probe through the proxy got no reply within 2 s")
                    : .no("probe through the proxy: \(result)")
            case .resetPeer(0), .limitData(0):
                return result.answered ? .no("probe through the proxy answered") : .yes("probe: \(result)")
            default:
                return .unknown("toxic \(toxic.name) installed; a small probe cannot show \(toxic.kind.typeName)")
            }
        case .healed:
            guard !present else { return .no("toxic \(toxic.name) is still installed") }
            guard let probe else { return .unknown("toxic removed; no probe") }
            let (result, elapsed) = roundTrip(probe, timeout: .seconds(2))
            guard result.answered else { return .no("probe through the proxy after removal: \(result)") }
            if case .latency(let latency, _) = toxic.kind, latency >= Self.resolvableLatencyMs,
                elapsed >= Double(latency) * 0.5
            {
                return .no("round trip still \(Int(elapsed)) ms after removal")
            }
            return .yes("toxic removed; probe answered in \(Int(elapsed)) ms\(probe.through)")
        }
    }

    public func teardown() {
        proxy.removeToxic(named: toxic.name)
    }

    /// Latency toxics below this (ms) are `unknown` while active: a loopback round trip here varies by a few ms.
    static let resolvableLatencyMs = 5

    /// One probe through the proxy on a new connection, with its duration in milliseconds.
    private func roundTrip(_ probe: ServiceProbe, timeout: Duration) -> (TCPProbe.Result, Double) {
        let start = ContinuousClock.now
        let result = probe.run(proxy.listenAddress, timeout: timeout)
        return (result, Double(start.duration(to: .now).wholeMilliseconds))
    }
}
