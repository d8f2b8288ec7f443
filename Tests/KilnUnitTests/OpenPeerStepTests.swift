import KilnRunner
import Testing

/// `kiln bench capacity --open-peer`: pgbench's own open model (`-R rate -L 100`) is read from its summary and
/// judged by Kiln's sustain rule (≤ 1 % of the scheduled transactions over 100 ms, a throughput ≥ 97 % of the rate).
@Suite("Capacity bench: pgbench -R as the open-model peer")
struct OpenPeerStepTests {
    /// pgbench 15's summary of `-R … -L 100 -T 8`, with the counts given; the defaults are a measured run at
    /// `-R 24000` on this machine.
    static func summary(
        processed: Int = 189_910, skipped: Int = 0, skippedPercent: String = "0.000", above: Int = 66,
        tps: String = "23851.175497"
    ) -> String {
        """
        pgbench (15.14 (Debian 15.14-0+deb12u1))
        transaction type: /tmp/point-read-1.sql
        query mode: prepared
        number of clients: 64
        number of threads: 2
        duration: 8 s
        number of transactions actually processed: \(processed)
        number of failed transactions: 0 (0.000%)
        number of transactions skipped: \(skipped) (\(skippedPercent)%)
        number of transactions above the 100.0 ms latency limit: \(above)/\(processed) (0.035%)
        latency average = 2.656 ms
        latency stddev = 6.914 ms
        rate limit schedule lag: avg 2.051 (max 99.680) ms
        initial connection time = 61.112 ms
        tps = \(tps) (without initial connection time)
        """
    }

    @Test func aRateTheServerKeepsUpWithIsSustained() throws {
        let step = try #require(CapacityBench.OpenPeerStep(pgbenchOutput: Self.summary(), rate: 24000, seconds: 8))
        #expect(step.processed == 189_910)
        #expect(step.skipped == 0)
        #expect(step.aboveLimit == 66)
        #expect(step.latencyAverageMs == 2.656)
        #expect(step.lagMaxMs == 99.68)
        #expect(step.okPerSecond == 23851.175497)
        // 0.994 of the rate: pgbench's Poisson schedule and the transactions in flight at -T's end.
        #expect(step.sustained)
    }

    @Test func skippedAndLateTransactionsOverOnePercentAreNotSustained() throws {
        // -R 27000, measured: 1.6 % skipped (already 100 ms late when their client got to them), 2.3 % above.
        let late = Self.summary(processed: 207_612, skipped: 3396, skippedPercent: "1.609", above: 4736, tps: "26130.2")
        let step = try #require(CapacityBench.OpenPeerStep(pgbenchOutput: late, rate: 27000, seconds: 8))
        #expect(step.scheduled == 211_008)
        #expect(!step.sustained)
        // Skipped alone over 1 % is enough; so is above the limit alone.
        let skipped = Self.summary(processed: 207_612, skipped: 3396, skippedPercent: "1.609", above: 0, tps: "26130.2")
        #expect(CapacityBench.OpenPeerStep(pgbenchOutput: skipped, rate: 27000, seconds: 8)?.sustained == false)
        #expect(CapacityBench.OpenPeerStep(pgbenchOutput: Self.summary(above: 1900), rate: 24000, seconds: 8)?.sustained == false)
    }

    @Test func aRunThatFellShortOfItsRateIsNotSustained() throws {
        // Nothing late, but only 90 % of 24000/s ran (pgbench ended early or its clients stalled).
        let short = Self.summary(processed: 172_800, above: 0, tps: "21600.0")
        let step = try #require(CapacityBench.OpenPeerStep(pgbenchOutput: short, rate: 24000, seconds: 8))
        #expect(!step.sustained)
    }

    @Test(arguments: ["", "tps = 100 (without initial connection time)", "number of transactions actually processed: 5"])
    func aSummaryWithoutTheOpenModelLinesIsNotRead(output: String) {
        #expect(CapacityBench.OpenPeerStep(pgbenchOutput: output, rate: 100, seconds: 1) == nil)
    }
}

/// A mode's capacity in one trial: the highest sustained rate of its steps and its `--saturation` run, a lower bound
/// (`≥`) when the highest rate tried was sustained.
@Suite("Capacity bench: a mode's capacity")
struct ModeCapacityTests {
    static func step(_ rate: Double, sustained: Bool) -> CapacityBench.Step {
        CapacityBench.Step(
            rate: rate, okPerSecond: sustained ? rate : rate * 0.9, planned: Int64(rate * 8),
            ok: Int64(sustained ? rate * 8 : rate * 7.2), dropped: sustained ? 0 : 100, late: 0, p50: 0.2,
            p99: sustained ? 10 : 500)
    }

    @Test func theHighestSustainedStepIsTheCapacityAndAFailedStepAboveItBoundsIt() {
        let capacity = CapacityBench.ModeCapacity(
            mode: .multiplexed, steps: [Self.step(100, sustained: true), Self.step(120, sustained: true),
                                        Self.step(140, sustained: false)],
            saturated: nil, p50At80: 0.2)
        #expect(capacity.okPerSecond == 120)
        #expect(!capacity.atLeast)
        #expect(capacity.text == "120")
    }

    @Test func aSustainedSaturationRunCountsAndMakesTheCapacityALowerBound() {
        let capacity = CapacityBench.ModeCapacity(
            mode: .pipeline(depth: 8), steps: [Self.step(100, sustained: true), Self.step(110, sustained: true)],
            saturated: Self.step(200, sustained: true), p50At80: nil)
        #expect(capacity.okPerSecond == 200)
        #expect(capacity.atLeast)
        #expect(capacity.text == "≥ 200")
    }

    @Test func aFailedSaturationRunLeavesTheStepsCapacity() {
        let capacity = CapacityBench.ModeCapacity(
            mode: .multiplexed, steps: [Self.step(100, sustained: true), Self.step(110, sustained: true)],
            saturated: Self.step(200, sustained: false), p50At80: nil)
        #expect(capacity.okPerSecond == 110)
        #expect(!capacity.atLeast)
    }

    @Test func nothingSustainedIsZero() {
        let capacity = CapacityBench.ModeCapacity(
            mode: .multiplexed, steps: [Self.step(100, sustained: false)], saturated: nil, p50At80: nil)
        #expect(capacity.okPerSecond == 0)
        #expect(!capacity.atLeast)
    }
}
