import Foundation
import KilnCore

/// One fault Kiln can inject: a process kill, a pause, a partition, a proxy toxic. The five calls follow
/// Jepsen's nemesis: `setup` once before the run, `start` applies the fault, `stop` undoes it, `verify` proves
/// that it took effect (phase `.active`, called right after `start`) or that it was undone (phase `.healed`,
/// called after `stop`), and `teardown` heals whatever is left (idempotent; also after a failed `start`).
///
/// Threading: a fault is driven by one caller at a time (the fault scheduler or a test); calls block the calling
/// thread (signals, iptables, TCP probes), so never drive one from Swift's cooperative pool. `FaultDriver` runs
/// the sequence and produces the `FaultRecord`.
public protocol Fault: AnyObject {
    /// Unique within a run, e.g. `kill-redis-1`.
    var name: String { get }
    /// The fault type, e.g. `kill`, `pause`, `partition`, `proxy:latency`.
    var kind: String { get }
    /// What the fault acts on, e.g. a server name or `127.0.0.21:16379`.
    var target: String { get }

    func setup() throws
    func start() throws
    func stop() throws
    /// Never throws: a probe that cannot decide yields `.unknown` with the reason as evidence.
    func verify(_ phase: FaultPhase) -> FaultEvidence
    func teardown()
}

extension Fault {
    public func setup() throws {}
}

public enum FaultPhase: String, Sendable, Codable {
    /// After `start`: did the fault take effect?
    case active
    /// After `stop`: was it undone?
    case healed
}

public struct FaultEvidence: Sendable, Equatable {
    public var verified: Verification
    /// What was observed, e.g. "PING to 127.0.0.121:21001 got no reply within 300 ms".
    public var text: String

    public init(_ verified: Verification, _ text: String) {
        self.verified = verified
        self.text = text
    }

    public static func yes(_ text: String) -> FaultEvidence { FaultEvidence(.yes, text) }
    public static func no(_ text: String) -> FaultEvidence { FaultEvidence(.no, text) }
    public static func unknown(_ text: String) -> FaultEvidence { FaultEvidence(.unknown, text) }
}

/// Runs one fault's sequence and keeps its record. `start` applies and verifies the fault; `stop` undoes it,
/// verifies the heal and tears down. A throwing `start` or `stop` is recorded as `verified: no` with the error as
/// note (the driver still tears the fault down), never rethrown past the record: the timeline must show it.
/// Not thread-safe: one driver per fault, called from one thread.
public final class FaultDriver {
    public let fault: any Fault
    public private(set) var record: FaultRecord
    private var active = FaultEvidence.unknown("not started")
    private var started = false

    public init(_ fault: any Fault, plannedStart: Int64? = nil, plannedStop: Int64? = nil) {
        self.fault = fault
        record = FaultRecord(
            name: fault.name, kind: fault.kind, target: fault.target, plannedStart: plannedStart,
            plannedStop: plannedStop)
    }

    /// Sets up and starts the fault, then verifies that it took effect.
    @discardableResult
    public func start() -> FaultRecord {
        do {
            try fault.setup()
            record.startedAt = FaultRecord.millisecondsNow()
            try fault.start()
            started = true
            active = fault.verify(.active)
        } catch {
            active = .no("start failed: \(error)")
            fault.teardown()
        }
        record.verified = active.verified == .no ? .no : .unknown
        record.note = "active: \(active.text)"
        return record
    }

    /// Stops the fault, verifies the heal and tears it down. The record's `verified` combines both phases.
    @discardableResult
    public func stop() -> FaultRecord {
        guard started else {
            fault.teardown()
            return record
        }
        started = false
        var healed: FaultEvidence
        do {
            try fault.stop()
            record.stoppedAt = FaultRecord.millisecondsNow()
            healed = fault.verify(.healed)
        } catch {
            record.stoppedAt = FaultRecord.millisecondsNow()
            healed = .no("stop failed: \(error)")
        }
        fault.teardown()
        record.verified = active.verified.and(healed.verified)
        record.note = "active: \(active.text); healed: \(healed.text)"
        return record
    }

    /// `start`, hold for `duration`, `stop`: the whole record.
    public func run(for duration: Duration) -> FaultRecord {
        start()
        if started { Thread.sleep(forTimeInterval: duration.seconds) }
        return stop()
    }
}
