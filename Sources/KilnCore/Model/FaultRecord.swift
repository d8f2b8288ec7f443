import Foundation

/// One entry of the fault timeline (report.json `faults: [...]`, bundle.json). Times are milliseconds since the
/// Unix epoch; `verified` is `yes` only when the fault was proved both to take effect and to be undone.
public struct FaultRecord: Codable, Sendable, Equatable {
    public var name: String
    public var kind: String
    public var target: String
    public var plannedStart: Int64?
    public var plannedStop: Int64?
    public var startedAt: Int64?
    public var stoppedAt: Int64?
    public var verified: Verification
    /// Evidence of both phases and any error, e.g. "active: ...; healed: ...".
    public var note: String

    public init(
        name: String, kind: String, target: String, plannedStart: Int64? = nil, plannedStop: Int64? = nil,
        startedAt: Int64? = nil, stoppedAt: Int64? = nil, verified: Verification = .unknown, note: String = ""
    ) {
        self.name = name
        self.kind = kind
        self.target = target
        self.plannedStart = plannedStart
        self.plannedStop = plannedStop
        self.startedAt = startedAt
        self.stoppedAt = stoppedAt
        self.verified = verified
        self.note = note
    }

    enum CodingKeys: String, CodingKey {
        case name, kind, target, verified, note
        case plannedStart = "planned_start"
        case plannedStop = "planned_stop"
        case startedAt = "started_at"
        case stoppedAt = "stopped_at"
    }

    public static func millisecondsNow() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
}
