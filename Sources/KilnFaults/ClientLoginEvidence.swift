import Foundation
import KilnCore

/// What an authenticated client of one server sees during a network fault (a partition's `effect`): a witness
/// connection that logged in before the fault (`init`), whose operation must stall while the fault holds, and a new
/// login, which must fail while it holds and succeed after the heal. Ownership: owns the witness connection until
/// the healed evidence or `close()`. Threading: calls are serialized by a lock; each blocks for at most a few seconds
/// (PostgreSQL's new login waits up to libpq's 2 s connect timeout).
public final class ClientLoginEvidence: @unchecked Sendable {
    public let spoken: ServerProtocol
    public let endpoint: HostPort
    /// How long an operation may take before it counts as stalled, and a new login before it counts as unanswered.
    public let stallTimeout: Duration
    /// How long the healed evidence retries a new login (a server's listen queue and TCP's retransmissions settle).
    public let healTimeout: Duration
    private let lock = NSLock()
    private var witness: (any ClientWitness)?

    /// Logs in now. Throws when the login or its first operation fails: without it no client could show the fault.
    public init(
        _ spoken: ServerProtocol, endpoint: HostPort, stallTimeout: Duration = .seconds(1),
        healTimeout: Duration = .seconds(20)
    ) throws {
        self.spoken = spoken
        self.endpoint = endpoint
        self.stallTimeout = stallTimeout
        self.healTimeout = healTimeout
        witness = try spoken.openWitness(to: endpoint, timeout: .seconds(5))
    }

    public func evidence(_ phase: FaultPhase) -> FaultEvidence {
        lock.lock()
        defer { lock.unlock() }
        switch phase {
        case .active:
            guard let witness else { return .unknown("no connection logged in before the fault") }
            let old = witness.exchange(within: stallTimeout)
            let oldText = "\(witness.operation) on a connection logged in before the fault: \(old.text)"
            let new = ServiceProbe.login(spoken).run(endpoint, timeout: stallTimeout)
            let newText = "a new login to \(endpoint): \(ProcessFault.describe(new, within: stallTimeout))"
            if old.answered { return .no("\(oldText) — the server still serves its clients; \(newText)") }
            if new.answered { return .no("\(newText); \(oldText)") }
            return .yes("\(oldText); \(newText)")
        case .healed:
            witness?.close()
            witness = nil
            let (result, elapsed) = TCPProbe.waitFor(answered: true, within: healTimeout) {
                ServiceProbe.login(spoken).run(endpoint, timeout: .seconds(2))
            }
            guard result.answered else {
                return .no("a new login to \(endpoint) (\(spoken.operation)): \(result) after \(healTimeout)")
            }
            return .yes("a new login to \(endpoint) and \(spoken.operation) answered after \(elapsed.wholeMilliseconds) ms")
        }
    }

    public func close() {
        lock.lock()
        witness?.close()
        witness = nil
        lock.unlock()
    }
}
