/// Jepsen's validity: `unknown` when a checker could not decide (a scan failed, it threw) — never reported as valid.
/// Ordered by how bad it is: `valid < unknown < invalid`.
public enum Validity: String, Sendable, Codable, CaseIterable, Comparable, CustomStringConvertible {
    case valid, invalid, unknown

    var severity: Int {
        switch self {
        case .valid: 0
        case .unknown: 1
        case .invalid: 2
        }
    }

    public static func < (a: Validity, b: Validity) -> Bool { a.severity < b.severity }

    /// The validity of several results together: invalid beats unknown beats valid; `valid` for none (nothing was
    /// found wrong — a caller that needs evidence checks for an empty list itself).
    public static func worst(_ parts: some Sequence<Validity>) -> Validity {
        parts.max() ?? .valid
    }
}

/// Whether a fault was proven to act (report.json `faults[].verified`): `yes` (took effect and was undone, seen by a
/// client), `no` (proven not to: the target ignored it), `unknown` (could not be proven either way).
public enum Verification: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case yes, no, unknown

    /// `yes` only when both are `yes`; `no` when either is `no`; otherwise `unknown`.
    public func and(_ other: Verification) -> Verification {
        if self == .no || other == .no { return .no }
        if self == .yes && other == .yes { return .yes }
        return .unknown
    }
}

/// A failover drill's verdict (report.json `drills[].verdict`); junit.xml reports `failed` as a failure and `unknown`
/// as an error.
public enum DrillVerdict: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case passed, failed, unknown
}

/// The verdict of a run (report.json `verdict` and `load_verdict`), the same one summary.md, report.html, junit.xml
/// and the exit code give. The load alone writes `running`, `passed`, `thresholds-failed`, `interrupted` or
/// `not-checked`; a check, faults or drills may turn it into `anomaly`, `unknown` or `partial`.
public enum RunVerdict: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case passed
    case anomaly
    case thresholdsFailed = "thresholds-failed"
    case notChecked = "not-checked"
    case unknown
    case partial
    case interrupted
    case running

    /// The exit code of a run with this verdict (README: exit codes). Everything that is not a definite pass or a
    /// definite failure is 3: nothing undecided ever exits 0.
    public var exitCode: KilnExitCode {
        switch self {
        case .passed: .ok
        case .anomaly: .anomaly
        case .thresholdsFailed: .thresholdFailed
        case .notChecked, .unknown, .partial, .interrupted, .running: .unknown
        }
    }

    /// The verdict as a banner shows it: `NOT CHECKED`, `PASSED`, `THRESHOLDS-FAILED`, …
    public var title: String { self == .notChecked ? "NOT CHECKED" : rawValue.uppercased() }
}

/// What a run found, part by part: the input of the one function that decides a run's verdict and exit code
/// (`RunResults.verdict`). `kiln run`, `kiln check`, drills and the report writers all judge through it.
public struct RunResults: Sendable, Equatable {
    /// The check's validity; nil when no check ran (or none was needed).
    public var check: Validity?
    /// A threshold (SLO) of some phase failed.
    public var thresholdsFailed: Bool
    /// The verdicts of the run's failover drills.
    public var drills: [DrillVerdict]
    /// The load stopped before its phases completed (SIGINT/SIGTERM, a phase cut short).
    public var interrupted: Bool
    /// A check the run needs (faults, `--check`) did not run.
    public var notChecked: Bool
    /// The run directory covers only part of the run (e.g. no end time: the process died).
    public var partial: Bool

    public init(
        check: Validity? = nil, thresholdsFailed: Bool = false, drills: [DrillVerdict] = [], interrupted: Bool = false,
        notChecked: Bool = false, partial: Bool = false
    ) {
        self.check = check
        self.thresholdsFailed = thresholdsFailed
        self.drills = drills
        self.interrupted = interrupted
        self.notChecked = notChecked
        self.partial = partial
    }

    /// The run's verdict: an anomaly outranks a failed threshold or drill, which outranks an interruption, a check
    /// that did not run, an undecided check or drill, and a partial run; `passed` only when none of these holds.
    /// Its `exitCode` is the run's exit code.
    public var verdict: RunVerdict {
        if check == .invalid { return .anomaly }
        if thresholdsFailed || drills.contains(.failed) { return .thresholdsFailed }
        if interrupted { return .interrupted }
        if notChecked { return .notChecked }
        if check == .unknown || drills.contains(.unknown) { return .unknown }
        if partial { return .partial }
        return .passed
    }

    public var exitCode: KilnExitCode { verdict.exitCode }
}

// In text (tables, logs, junit properties) each of these reads as its report.json spelling, e.g. `thresholds-failed`.
extension Validity { public var description: String { rawValue } }
extension Verification { public var description: String { rawValue } }
extension DrillVerdict { public var description: String { rawValue } }
extension RunVerdict { public var description: String { rawValue } }
