/// Intended start times of an open-model phase: op `k` (0-based) is due at `time(of: k)` nanoseconds after the
/// phase starts, for `count` ops. A pure function of the plan, so a re-run schedules the same ops at the same
/// offsets. Rates are piecewise linear: a constant rate is one flat stage.
public struct ArrivalTimes: Sendable, Equatable {
    public struct Stage: Sendable, Equatable {
        public var fromRate: Double
        public var toRate: Double
        public var seconds: Double
    }

    public let stages: [Stage]
    /// Ops due before the end of each stage (cumulative, rounded down).
    let cumulative: [Double]
    /// Total ops in the phase: ⌊∫ rate dt⌋.
    public let count: Int64
    public let totalSeconds: Double

    public init(stages: [Stage]) {
        self.stages = stages
        var total = 0.0
        var cumulative: [Double] = []
        for stage in stages {
            total += (stage.fromRate + stage.toRate) / 2 * stage.seconds
            cumulative.append(total)
        }
        self.cumulative = cumulative
        count = Int64((total + 1e-9).rounded(.down))
        totalSeconds = stages.reduce(0) { $0 + $1.seconds }
    }

    public static func constant(rate: Double, seconds: Double) -> ArrivalTimes {
        ArrivalTimes(stages: [Stage(fromRate: rate, toRate: rate, seconds: seconds)])
    }

    public static func ramping(startRate: Double, targets: [(rate: Double, seconds: Double)]) -> ArrivalTimes {
        var stages: [Stage] = []
        var from = startRate
        for target in targets {
            stages.append(Stage(fromRate: from, toRate: target.rate, seconds: target.seconds))
            from = target.rate
        }
        return ArrivalTimes(stages: stages)
    }

    /// Nanoseconds after the phase start at which op `k` is due: the time t where ∫₀ᵗ rate = k.
    public func time(of k: Int64) -> UInt64 {
        let n = Double(k)
        var before = 0.0
        var offset = 0.0
        for (index, stage) in stages.enumerated() {
            if n < cumulative[index] || index == stages.count - 1 {
                let inStage = n - before
                let t: Double
                let slope = (stage.toRate - stage.fromRate) / stage.seconds
                if abs(slope) < 1e-12 {
                    t = stage.fromRate > 0 ? inStage / stage.fromRate : 0
                } else {
                    // fromRate·t + slope·t²/2 = inStage
                    let discriminant = max(0, stage.fromRate * stage.fromRate + 2 * slope * inStage)
                    t = (discriminant.squareRoot() - stage.fromRate) / slope
                }
                return UInt64(max(0, (offset + min(max(t, 0), stage.seconds)) * 1e9))
            }
            before = cumulative[index]
            offset += stage.seconds
        }
        return UInt64(offset * 1e9)
    }
}
