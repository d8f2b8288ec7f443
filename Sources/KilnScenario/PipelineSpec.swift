import Foundation

/// The `pipeline:` block of a scenario: Kiln's reference sync workers consume the transactions the load put on
/// Kafka and apply them to the sink stores, optionally with planted bugs (Scenarios/README.md, "Pipeline").
public struct PipelineSpec: Sendable, Equatable {
    /// A sink store the workers apply transactions to, by its backend's name. The accepted names come from the
    /// backends that provide a sink (`Backend.sink`, listed by `Pipeline.sinkNames`), passed to the parser as
    /// `knownSinks`; this layer cannot see the backends. The constants name the reference sinks the planted bugs
    /// live in.
    public struct Sink: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let postgres = Sink(rawValue: "postgres")
        public static let redis = Sink(rawValue: "redis")
        public static let falkordb = Sink(rawValue: "falkordb")
        public static let clickhouse = Sink(rawValue: "clickhouse")
        /// The reference pipeline's sinks (the default `sinks:`), in order.
        public static let reference: [Sink] = [.postgres, .redis, .falkordb, .clickhouse]
    }

    /// A planted bug: each breaks one promise in one sink, so a checker must find it.
    public enum Bug: String, Sendable, CaseIterable, Equatable {
        /// ClickHouse sink stores its offsets before writing the batch: a crash in between loses the batch.
        case commitBeforeWrite = "commit-before-write"
        /// ClickHouse sink skips its "already applied?" lookup: a redelivered batch is inserted twice.
        case nonIdempotent = "non-idempotent"
        /// Graph sink silently skips every `drop_every`-th message.
        case dropEveryN = "drop-every-n"
        /// ClickHouse sink rounds amounts to whole currency units.
        case wrongRounding = "wrong-rounding"
        /// Graph sink also applies declined transactions, which the ledger rejects (rolls back).
        case phantom
        /// Redis sink skips feature updates of batches of `stale_batch` or more messages (the cache goes stale
        /// under load) but still advances its offsets.
        case staleCache = "stale-cache"
        /// Redis sink applies each batch newest first; its per-partition offset guard then drops the older ones.
        case reorder
        /// Redis sink sleeps `lag` before each batch, beyond its staleness SLO.
        case lag

        /// The sink the bug lives in.
        public var sink: Sink {
            switch self {
            case .commitBeforeWrite, .nonIdempotent, .wrongRounding: .clickhouse
            case .dropEveryN, .phantom: .falkordb
            case .staleCache, .reorder, .lag: .redis
            }
        }
    }

    public var sinks: [Sink]
    public var bugs: [Bug]
    /// `kiln run` runs each sink worker as a `kiln pipeline` child process (so faults can kill and restart it)
    /// instead of a thread of its own.
    public var processes = false
    /// Messages applied per batch (at most; a batch also ends when no message arrives for 50 ms).
    public var batch: Int
    /// A modelled crash of each sink worker after every `crashEvery`-th batch's first step (between the write
    /// and the offset store): the worker drops its connections and state and resumes from its stored offsets,
    /// like a killed and restarted process. nil: no crashes.
    public var crashEvery: Int?
    public var dropEvery: Int
    public var staleBatch: Int
    public var lag: Duration
    /// How long `kiln run` waits after the last phase for every sink to reach the end of the topic.
    public var convergenceTimeout: Duration
    /// Staleness SLO per sink: time from the Kafka write to the sink's commit.
    public var staleness: [Sink: Duration]

    /// Platform defaults (DOMAIN.md): 5 s to Redis, 30 s to the analytics store; the ledger and graph 30 s.
    public static let defaultStaleness: [Sink: Duration] = [
        .postgres: .seconds(30), .redis: .seconds(5), .falkordb: .seconds(30), .clickhouse: .seconds(30),
    ]

    public init(
        sinks: [Sink] = Sink.reference, bugs: [Bug] = [], batch: Int = 1000, crashEvery: Int? = nil,
        dropEvery: Int = 1000, staleBatch: Int = 200, lag: Duration = .seconds(7),
        convergenceTimeout: Duration = .seconds(120), staleness: [Sink: Duration] = PipelineSpec.defaultStaleness
    ) {
        self.sinks = sinks
        self.bugs = bugs
        self.batch = batch
        self.crashEvery = crashEvery
        self.dropEvery = dropEvery
        self.staleBatch = staleBatch
        self.lag = lag
        self.convergenceTimeout = convergenceTimeout
        self.staleness = staleness
    }

    public func has(_ bug: Bug) -> Bool { bugs.contains(bug) }

    /// - Parameter knownSinks: the sink names the backends provide, in order (every name in `sinks:` and
    ///   `staleness_slo:` must be one; an unknown name is an error at its FILE:LINE:COL).
    static func parse(_ fields: YAMLFields, knownSinks: [String]) throws(SpecError) -> PipelineSpec {
        var spec = PipelineSpec()
        spec.sinks = spec.sinks.filter { knownSinks.contains($0.rawValue) }
        if fields.contains("sinks") {
            spec.sinks = []
            for (text, line, column) in try fields.strings("sinks") {
                guard knownSinks.contains(text) else {
                    throw SpecError(
                        file: fields.file, line: line, column: column, field: fields.fieldPath("sinks"),
                        message: "unknown sink '\(text)' (sinks: \(knownSinks.joined(separator: ", ")))")
                }
                let sink = Sink(rawValue: text)
                if !spec.sinks.contains(sink) { spec.sinks.append(sink) }
            }
            if spec.sinks.isEmpty { throw fields.error("sinks", "needs at least one sink") }
        }
        if fields.contains("bugs") {
            for (text, line, column) in try fields.strings("bugs") {
                guard let bug = Bug(rawValue: text) else {
                    throw SpecError(
                        file: fields.file, line: line, column: column, field: fields.fieldPath("bugs"),
                        message: "unknown bug '\(text)' (bugs: \(Bug.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                guard spec.sinks.contains(bug.sink) else {
                    throw SpecError(
                        file: fields.file, line: line, column: column, field: fields.fieldPath("bugs"),
                        message: "bug '\(text)' lives in the \(bug.sink.rawValue) sink, which is not in `sinks`")
                }
                spec.bugs.append(bug)
            }
        }
        spec.batch = try fields.count("batch", default: 1000, range: 1...100_000)
        switch try fields.optionalString("workers") ?? "threads" {
        case "threads": spec.processes = false
        case "processes": spec.processes = true
        case let other: throw fields.error("workers", "expected threads or processes, found '\(other)'")
        }
        if fields.contains("crash_every") {
            spec.crashEvery = try fields.count("crash_every", range: 2...1_000_000)
        }
        spec.dropEvery = try fields.count("drop_every", default: 1000, range: 2...100_000_000)
        spec.staleBatch = try fields.count("stale_batch", default: 200, range: 2...100_000)
        spec.lag = try fields.duration("lag", default: .seconds(7))
        spec.convergenceTimeout = try fields.duration("convergence_timeout", default: .seconds(120))
        if let slo = try fields.optionalMapping("staleness_slo") {
            for key in slo.keys {
                guard knownSinks.contains(key) else {
                    throw slo.error(key, "unknown sink '\(key)'")
                }
                let sink = Sink(rawValue: key)
                spec.staleness[sink] = try slo.duration(key)
            }
            try slo.finish()
        }
        try fields.finish()
        return spec
    }
}
