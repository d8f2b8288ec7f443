/// What one reference-pipeline sink worker did, as `report.json` `pipeline[]` records it (and the staleness checker
/// reads it).
public struct SinkReport: Codable, Sendable {
    public var sink: String
    public var bugs: [String]
    /// Messages consumed (redeliveries after a crash count again).
    public var messages: Int64
    public var applied: Int64
    public var duplicatesSkipped: Int64
    /// Not applied by rule (declined) or by a planted bug.
    public var skipped: Int64
    public var batches: Int64
    /// Modelled crashes (`crash_every`) and restarts after errors.
    public var crashes: Int64
    public var errors: Int64
    public var lastError: String?
    /// True when the worker had read to the end of the topic after the load ended.
    public var converged: Bool
    /// Time from a message's Kafka timestamp to the commit of its batch in the sink, ms.
    public var staleness: Staleness
    /// Times the consumer skipped offsets (each re-fetched from the expected offset), and the first one.
    public var offsetJumps: Int64? = nil
    public var firstJump: String? = nil
    public var sloMs: Double

    public struct Staleness: Codable, Sendable {
        public var count: Int64
        public var p50: Double?
        public var p99: Double?
        public var max: Double?

        public init(count: Int64, p50: Double?, p99: Double?, max: Double?) {
            self.count = count
            self.p50 = p50
            self.p99 = p99
            self.max = max
        }
    }

    public init(
        sink: String, bugs: [String], messages: Int64, applied: Int64, duplicatesSkipped: Int64, skipped: Int64,
        batches: Int64, crashes: Int64, errors: Int64, lastError: String?, converged: Bool, staleness: Staleness,
        offsetJumps: Int64? = nil, firstJump: String? = nil, sloMs: Double
    ) {
        self.sink = sink
        self.bugs = bugs
        self.messages = messages
        self.applied = applied
        self.duplicatesSkipped = duplicatesSkipped
        self.skipped = skipped
        self.batches = batches
        self.crashes = crashes
        self.errors = errors
        self.lastError = lastError
        self.converged = converged
        self.staleness = staleness
        self.offsetJumps = offsetJumps
        self.firstJump = firstJump
        self.sloMs = sloMs
    }
}
