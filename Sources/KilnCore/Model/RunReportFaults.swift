/// The fault timeline and failover-drill sections of `report.json` (schema `kiln.report/1`, both optional: absent
/// when the scenario has no faults). Whoever runs faults fills them; the report writers only read them.
/// Times are Unix milliseconds like the rest of the report.
extension RunReport {
    /// One fault, planned and actual. A window whose start or stop is nil did not happen (or was not recorded);
    /// the HTML report shades `started_at ..< stopped_at` (or up to the run's end when `stopped_at` is nil).
    public struct Fault: Codable, Sendable, Equatable {
        public var name: String
        /// e.g. `kill`, `pause`, `pg-failover`, `partition`, `proxy-latency`.
        public var kind: String
        /// The server or link it acts on, e.g. `postgres.primary` or `127.0.0.11 -> 127.0.0.12`.
        public var target: String
        public var plannedStart: Int64?
        public var startedAt: Int64?
        public var stoppedAt: Int64?
        /// `yes` (proven to take effect and to be undone), `no` (proven not to), `unknown` (could not be proven).
        public var verified: Verification
        public var note: String?
        /// A sharded run (`kiln run --shard i/n`): the shard that runs this fault (the scenario's `fault_shard`);
        /// nil in an unsharded run.
        public var runByShard: Int? = nil
        /// True in the report of a shard that did NOT run this fault: the entry is the planned timeline only (never
        /// started here, `verified: unknown`, no drill); the faulting shard's report holds what happened.
        public var plannedOnly: Bool? = nil

        public init(
            name: String, kind: String, target: String, plannedStart: Int64? = nil, startedAt: Int64? = nil,
            stoppedAt: Int64? = nil, verified: Verification, note: String? = nil
        ) {
            self.name = name
            self.kind = kind
            self.target = target
            self.plannedStart = plannedStart
            self.startedAt = startedAt
            self.stoppedAt = stoppedAt
            self.verified = verified
            self.note = note
        }

        /// Whether this report's own process ran the fault (false for a shard's planned-only entry).
        public var ranHere: Bool { plannedOnly != true }
    }

    /// The verdict and metrics of one failover drill (one fault × one store): e.g. `time_to_detect_ms`,
    /// `unavailable_ms`, `rto_ms`, `rpo_writes`, `errors`, `info`, `p99_before_ms`, `p99_during_ms`,
    /// `p99_worst_second_ms`, `p99_after_ms`.
    public struct Drill: Codable, Sendable, Equatable {
        public var name: String
        public var fault: String
        public var store: String
        /// `passed`, `failed` or `unknown`; junit.xml reports `failed` as a failure and `unknown` as an error.
        public var verdict: DrillVerdict
        public var reason: String?
        public var metrics: [String: Double]

        public init(
            name: String, fault: String, store: String, verdict: DrillVerdict, reason: String? = nil,
            metrics: [String: Double] = [:]
        ) {
            self.name = name
            self.fault = fault
            self.store = store
            self.verdict = verdict
            self.reason = reason
            self.metrics = metrics
        }
    }
}
