import Foundation

extension BlackBoxSpec {
    /// The `blackbox.staleness:` block: during `kiln run`, a sample of the entry writes the load acknowledged `ok`
    /// (`sample` per second) is looked up in every place until visible or `timeout`; the time from the ack to the
    /// first lookup that finds it is the path's staleness, held to `slo`. Parsed strictly, like the rest of the block:
    /// unknown keys, a store or place id that is not listed, bad durations and a timeout shorter than an SLO are
    /// `SpecError`s naming file:line:column and the field.
    ///
    /// ```yaml
    /// staleness:
    ///   sample: 2                 # probes per second (default 2)
    ///   poll: 25ms                # how often each place is asked about its pending probes (default 25ms)
    ///   slo: {redis: 5s, postgres.payments.ledger: 2s}   # by store or by place id; defaults below
    ///   timeout: 60s              # default: twice the largest SLO of the listed places, at least 10s
    /// ```
    public struct Staleness: Sendable {
        /// Platform defaults (DOMAIN.md, as the pipeline's): 5 s to Redis, 30 s to the analytics store (ClickHouse);
        /// every other place 30 s.
        public static let defaultSLO: [Store: Duration] = [
            .redis: .seconds(5), .clickhouse: .seconds(30), .postgres: .seconds(30), .kafka: .seconds(30),
            .falkordb: .seconds(30),
        ]

        /// Acknowledged entry writes sampled per second (each one probed in every place).
        public var sample: Double
        /// Interval between two lookups of one place's pending probes.
        public var poll: Duration
        /// How long a probe is polled before it is recorded "not visible".
        public var timeout: Duration
        /// SLOs as written: by store (`redis`) or by place id (`clickhouse.analytics.txns`).
        public var slo: [String: Duration]

        public init(
            sample: Double = 2, poll: Duration = .milliseconds(25), timeout: Duration, slo: [String: Duration] = [:]
        ) {
            self.sample = sample
            self.poll = poll
            self.timeout = timeout
            self.slo = slo
        }

        /// The SLO of `place`: its own id's, else its store's, else the default of its store.
        public func slo(for place: Place) -> Duration {
            slo[place.id] ?? slo[place.store.rawValue] ?? Self.defaultSLO[place.store] ?? .seconds(30)
        }

        static func parse(_ fields: YAMLFields, places: [Place]) throws(SpecError) -> Staleness {
            let sample = try fields.double("sample", default: 2, range: 0.01...10_000)
            let poll = try fields.duration("poll", default: .milliseconds(25))
            guard poll >= .milliseconds(1), poll <= .seconds(10) else {
                throw fields.error("poll", "expected a poll interval between 1ms and 10s")
            }
            var slo: [String: Duration] = [:]
            if let block = try fields.optionalMapping("slo") {
                let ids = places.map(\.id)
                for key in block.keys {
                    guard Store(rawValue: key) != nil || ids.contains(key) else {
                        throw block.error(
                            key,
                            "'\(key)' is neither a store (\(Store.allCases.map(\.rawValue).joined(separator: ", "))) "
                                + "nor a listed place (\(ids.joined(separator: ", ")))")
                    }
                    let value = try block.duration(key)
                    guard value > .zero else { throw block.error(key, "an SLO must be longer than 0") }
                    slo[key] = value
                }
                try block.finish()
            }
            var staleness = Staleness(sample: sample, poll: poll, timeout: .seconds(10), slo: slo)
            let largest = places.map { staleness.slo(for: $0) }.max() ?? .seconds(30)
            if fields.contains("timeout") {
                staleness.timeout = try fields.duration("timeout")
                guard staleness.timeout >= largest else {
                    throw fields.error(
                        "timeout",
                        "the timeout must be at least the largest SLO (\(Self.text(largest))): a probe stops at the timeout")
                }
            } else {
                staleness.timeout = max(.seconds(10), largest * 2)
            }
            try fields.finish()
            return staleness
        }

        /// `250ms`, `5s`, `1.5s`: a duration as a scenario writes it.
        public static func text(_ duration: Duration) -> String {
            let millis = duration.milliseconds
            if millis < 1000 { return "\(Int(millis.rounded()))ms" }
            let seconds = millis / 1000
            return seconds == seconds.rounded() ? "\(Int(seconds))s" : String(format: "%.3gs", seconds)
        }
    }
}
