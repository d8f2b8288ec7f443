import Foundation
import KilnStack

/// A wall-clock step on one server started under libfaketime (`FaketimeClock`): `start` writes the offset,
/// `stop` writes `+0`. Evidence is the server's own clock: PostgreSQL's `clock_timestamp()` against this machine's,
/// compared within `tolerance` (libfaketime re-reads the offset at most once a second, so each verification waits up to
/// `settle` for the change). Refused in `setup` when the running server is not under libfaketime with this offset
/// file, since writing the file would then change nothing. `teardown` writes `+0` whatever happened.
public final class ClockSkewFault: Fault {
    public let name: String
    public let node: PostgresNode
    public let clock: FaketimeClock
    public let offsetSeconds: Int64
    public let tolerance: Double
    public let settle: Duration

    public var kind: String { "clock-skew" }
    public var target: String { "\(node.name) \(Self.signed(Double(offsetSeconds)))" }

    public init(
        name: String? = nil, node: PostgresNode, offsetSeconds: Int64, tolerance: Double = 0.5,
        settle: Duration = .seconds(5)
    ) throws {
        guard let clock = node.clock else {
            throw ProcessFaultError("\(node.name) has no libfaketime offset file: it cannot be skewed")
        }
        guard offsetSeconds != 0 else { throw ProcessFaultError("clock-skew: an offset of 0 s changes nothing") }
        self.name = name ?? "clock-skew-\(node.name)"
        self.node = node
        self.clock = clock
        self.offsetSeconds = offsetSeconds
        self.tolerance = tolerance
        self.settle = settle
    }

    public func setup() throws {
        guard let pid = node.postmasterPID() else { throw ProcessFaultError("\(node.name) is not running") }
        guard clock.isEnabled, clock.governs(pid: pid) else {
            throw ProcessFaultError(
                "\(node.name) (pid \(pid)) does not run under libfaketime with \(clock.file.path): list it under "
                    + "`faketime:` in the stack file and restart it (kiln stack down && kiln stack up --stack FILE), "
                    + "e.g. Scenarios/stacks/embedded-faketime.yaml")
        }
    }

    public func start() throws { try clock.set(offsetSeconds: offsetSeconds) }

    public func stop() throws { try clock.set(offsetSeconds: 0) }

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        let expected = phase == .active ? Double(offsetSeconds) : 0
        let deadline = ContinuousClock.now + settle
        var last: Double?
        while true {
            do {
                let observed = try measureOffset()
                last = observed
                if abs(observed - expected) <= tolerance {
                    return .yes("\(node.name)'s clock is \(Self.signed(observed)) from this machine's (expected \(Self.signed(expected)))")
                }
            } catch {
                if ContinuousClock.now >= deadline {
                    return .unknown("cannot read \(node.name)'s clock: \(error)")
                }
            }
            if ContinuousClock.now >= deadline { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        guard let last else { return .unknown("no reading of \(node.name)'s clock within \(settle)") }
        return .no("\(node.name)'s clock is \(Self.signed(last)) from this machine's after \(settle), expected \(Self.signed(expected))")
    }

    public func teardown() { try? clock.set(offsetSeconds: 0) }

    /// The server's wall clock minus this machine's, in seconds, halfway through the round trip.
    public func measureOffset() throws -> Double {
        let connection = try node.connect()
        defer { connection.close() }
        let before = Date().timeIntervalSince1970
        let result = try connection.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
        let after = Date().timeIntervalSince1970
        guard let text = result.value(row: 0, column: 0), let server = Double(text) else {
            throw ProcessFaultError("clock_timestamp() returned no number")
        }
        return server - (before + after) / 2
    }

    static func signed(_ seconds: Double) -> String {
        String(format: "%@%.2f s", seconds < 0 ? "-" : "+", abs(seconds))
    }
}
