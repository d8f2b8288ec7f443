import Foundation

/// The `pipeline:` block of a scenario: Kiln's reference sync workers consume the transactions the load put on
/// Kafka and apply them to the sink stores, optionally with planted bugs (Scenarios/README.md, "Pipeline").
public struct PipelineSpec: Sendable, Equatable {
    /// A sink store the workers apply transactions to, by its backend's name. The accepted names come from the
    /// backends that provide a sink (`Backend.sink`, listed by `Pipeline.sinkNames`), passed to the parser as
    /// `knownSinks`; this layer cannot see the backends. The constants (`PipelineSpec.Sink.redis`) live in the
    /// backends' folders, beside each sink.
    public struct Sink: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
    }

    /// A planted bug: each breaks one promise in one sink, so a checker must find it. The bugs a sink can plant are
    /// declared by its backend (`SinkDriver.bugs`; the constants, `PipelineSpec.Bug.lag`, live in the backend's
    /// folder beside the sink that implements them) and reach the parser with the sink (`KnownSink.bugs`); this layer
    /// names none.
    public struct Bug: Hashable, Sendable, CustomStringConvertible {
        /// The name in scenario files (`bugs: [lag]`).
        public let name: String
        /// The sink the bug lives in.
        public let sink: Sink

        public init(_ name: String, in sink: Sink) {
            self.name = name
            self.sink = sink
        }

        public var description: String { name }
    }

    /// What the parser knows of a sink a backend provides (`SinkDriver.known`): its name, the bugs it can plant, its
    /// default staleness SLO and whether it is in the default `sinks:` (the reference pipeline).
    public struct KnownSink: Sendable {
        public let sink: Sink
        public let bugs: [Bug]
        /// The staleness SLO when `staleness_slo:` does not name the sink.
        public let defaultStaleness: Duration
        /// Whether a `pipeline:` block without `sinks:` runs this sink.
        public let isDefault: Bool

        public init(
            _ sink: Sink, bugs: [Bug] = [], defaultStaleness: Duration = PipelineSpec.fallbackStaleness,
            isDefault: Bool = false
        ) {
            precondition(bugs.allSatisfy { $0.sink == sink }, "sink \(sink) declares a bug of another sink")
            self.sink = sink
            self.bugs = bugs
            self.defaultStaleness = defaultStaleness
            self.isDefault = isDefault
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
    /// Staleness SLO per sink: time from the Kafka write to the sink's commit. The parser starts from every known
    /// sink's `defaultStaleness`; `init` leaves it empty (`stalenessSLO(of:)` then gives `fallbackStaleness`).
    public var staleness: [Sink: Duration]

    /// The staleness SLO of a sink that neither its backend (`KnownSink.defaultStaleness`) nor `staleness_slo:` sets.
    /// The platform defaults (DOMAIN.md: 5 s to Redis, 30 s elsewhere) are declared by the sinks' backends.
    public static let fallbackStaleness: Duration = .seconds(30)

    /// The staleness SLO of `sink`: `staleness[sink]`, else `fallbackStaleness`.
    public func stalenessSLO(of sink: Sink) -> Duration { staleness[sink] ?? Self.fallbackStaleness }

    public init(
        sinks: [Sink] = [], bugs: [Bug] = [], batch: Int = 1000, crashEvery: Int? = nil,
        dropEvery: Int = 1000, staleBatch: Int = 200, lag: Duration = .seconds(7),
        convergenceTimeout: Duration = .seconds(120), staleness: [Sink: Duration] = [:]
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

    /// - Parameter knownSinks: the sinks the backends provide, in order (every name in `sinks:` and `staleness_slo:`
    ///   must be one of them and every name in `bugs:` one of their bugs; an unknown name is an error at its
    ///   FILE:LINE:COL). The default `sinks:` and staleness SLOs come from them too.
    static func parse(_ fields: YAMLFields, knownSinks known: [KnownSink]) throws(SpecError) -> PipelineSpec {
        let knownSinks = known.map(\.sink.rawValue)
        let knownBugs = known.flatMap(\.bugs)
        var spec = PipelineSpec(
            sinks: known.filter(\.isDefault).map(\.sink),
            staleness: Dictionary(known.map { ($0.sink, $0.defaultStaleness) }, uniquingKeysWith: { first, _ in first }))
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
                guard let bug = knownBugs.first(where: { $0.name == text }) else {
                    throw SpecError(
                        file: fields.file, line: line, column: column, field: fields.fieldPath("bugs"),
                        message: "unknown bug '\(text)' (bugs: \(knownBugs.map(\.name).joined(separator: ", ")))")
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
