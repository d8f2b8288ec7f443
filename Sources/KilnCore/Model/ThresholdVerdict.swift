/// A threshold checked against a phase's totals.
public struct ThresholdVerdict: Sendable, Codable {
    public var phase: String
    /// `store.operation`, a store, or `phase`.
    public var scope: String
    public var expression: String
    /// The measured value in the expression's unit (seconds for latencies, a fraction for error_rate); nil when
    /// nothing was measured for the scope (which fails the threshold: no evidence is not a pass).
    public var observed: Double?
    public var passed: Bool
    public var source: String

    public init(phase: String, scope: String, expression: String, observed: Double?, passed: Bool, source: String) {
        self.phase = phase
        self.scope = scope
        self.expression = expression
        self.observed = observed
        self.passed = passed
        self.source = source
    }
}
