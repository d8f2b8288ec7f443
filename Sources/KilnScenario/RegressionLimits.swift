import Foundation

/// The `regression:` block of a scenario: how large a change `kiln compare` must see (and how sure it must be)
/// before it calls an operation regressed or improved. Every key is optional; the defaults are below.
///
/// ```yaml
/// regression:
///   p50: +10%          # per-second median p50 latency rose by at least 10 %
///   p99: +10%          # per-second median p99 latency rose by at least 10 %
///   throughput: -5%    # per-second median throughput fell by at least 5 %
///   error_rate: +1%    # error rate ((fail + info) / completed) rose by at least 1 percentage point
///   alpha: 0.01        # two-sided Mann-Whitney U significance level
///   min_samples: 5     # fewer per-second samples on either side: inconclusive
/// ```
public struct RegressionLimits: Sendable, Equatable, Codable {
    /// Relative increases (0.10 = +10 %).
    public var p50: Double
    public var p99: Double
    /// Relative decrease (0.05 = -5 %).
    public var throughput: Double
    /// Absolute increase of the error fraction (0.01 = one percentage point).
    public var errorRate: Double
    public var alpha: Double
    public var minSamples: Int
    /// A p99 change smaller than this many milliseconds is never a regression or an improvement: sub-millisecond
    /// p99s (a Redis read's ~0.6 ms) move by half their size between identical runs on a shared machine.
    public var p99FloorMs: Double

    public init(
        p50: Double = 0.10, p99: Double = 0.10, throughput: Double = 0.05, errorRate: Double = 0.01,
        alpha: Double = 0.01, minSamples: Int = 5, p99FloorMs: Double = 1
    ) {
        self.p99FloorMs = p99FloorMs
        self.p50 = p50
        self.p99 = p99
        self.throughput = throughput
        self.errorRate = errorRate
        self.alpha = alpha
        self.minSamples = minSamples
    }

    public static let defaults = RegressionLimits()

    /// Reads a `regression:` mapping strictly (unknown keys are errors naming file:line:field).
    public static func parse(_ fields: YAMLFields, base: RegressionLimits = .defaults) throws(SpecError)
        -> RegressionLimits
    {
        var limits = base
        limits.p50 = try change(fields, "p50", sign: 1, default: limits.p50)
        limits.p99 = try change(fields, "p99", sign: 1, default: limits.p99)
        limits.throughput = try change(fields, "throughput", sign: -1, default: limits.throughput)
        limits.errorRate = try change(fields, "error_rate", sign: 1, default: limits.errorRate)
        limits.alpha = try fields.double("alpha", default: limits.alpha, range: 0.000001...0.5)
        limits.minSamples = try fields.int("min_samples", default: limits.minSamples, range: 2...1_000_000)
        let floor = try fields.duration("p99_floor", default: .microseconds(Int64(limits.p99FloorMs * 1000)))
        limits.p99FloorMs = floor.milliseconds
        try fields.finish()
        return limits
    }

    /// The `regression:` block of a scenario file, without reading the rest of it (so a copy of the scenario in a
    /// run directory, whose relative paths no longer resolve, still gives its limits). Defaults when absent.
    public static func load(scenario url: URL) throws(SpecError) -> RegressionLimits {
        let document = try YAMLFields.document(contentsOf: url)
        guard let block = try document.optionalMapping("regression") else { return .defaults }
        return try parse(block)
    }

    /// Applies `METRIC=CHANGE` overrides from the command line (`p99=+20%`, `alpha=0.05`) on top of `self`.
    public func overriding(_ assignments: [String]) throws(SpecError) -> RegressionLimits {
        guard !assignments.isEmpty else { return self }
        var text = ""
        for assignment in assignments {
            let parts = assignment.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, parts[0].allSatisfy({ $0.isLetter || $0 == "_" || $0.isNumber })
            else {
                throw SpecError(
                    file: "--limit", line: 0, column: 0, field: assignment, message: "expected METRIC=VALUE, e.g. p99=+10%")
            }
            text += "\(parts[0]): \"\(parts[1])\"\n"
        }
        return try Self.parse(YAMLFields.document(text, file: "--limit"), base: self)
    }

    /// `+10%` (or `10%`) for increases, `-5%` (or `5%`) for decreases; the sign, when written, must point the
    /// way a regression goes. Returned as a positive fraction.
    static func change(_ fields: YAMLFields, _ key: String, sign: Double, default fallback: Double) throws(SpecError)
        -> Double
    {
        guard let text = try fields.optionalString(key) else { return fallback }
        var body = text.trimmingCharacters(in: .whitespaces)
        var written: Double?
        if body.hasPrefix("+") || body.hasPrefix("-") {
            written = body.hasPrefix("+") ? 1 : -1
            body.removeFirst()
        }
        guard body.hasSuffix("%"), let value = Double(body.dropLast().trimmingCharacters(in: .whitespaces)),
            value.isFinite, value > 0, value < 1000
        else {
            throw fields.error(key, "expected a change such as \(sign > 0 ? "+10%" : "-5%"), found '\(text)'")
        }
        if let written, written != sign {
            throw fields.error(
                key, "a regression of \(key) is \(sign > 0 ? "an increase (+)" : "a decrease (-)"), found '\(text)'")
        }
        return value / 100
    }
}
