import Foundation
import KilnCore
#if canImport(Glibc)
import Glibc
#endif

extension RunReport.Latency {
    init(_ stats: OperationStats, service: Bool = false) {
        let histogram = service ? stats.service : stats.latency
        func at(_ percentile: Double) -> Double? {
            histogram.totalCount == 0 ? nil : Double(histogram.valueAtPercentile(percentile)) / 1000
        }
        self.init(
            p50: at(50), p90: at(90), p95: at(95), p99: at(99), p999: at(99.9), p9999: at(99.99),
            max: histogram.totalCount == 0 ? nil : Double(histogram.max) / 1000,
            mean: histogram.totalCount == 0 ? nil : histogram.mean / 1000)
    }
}

extension RunReport {
    static func phase(_ measurement: PhaseMeasurement, verdicts: [ThresholdVerdict]) -> Phase {
        let operations = measurement.operations.enumerated().map { index, planned in
            let stats = measurement.totals[index]
            let span = planned.kind == .bulk ? stats.activeSeconds : measurement.rateSeconds
            return RunReport.Operation(
                name: planned.name, store: planned.store, kind: planned.kind.rawValue, ok: stats.ok, fail: stats.fail,
                info: stats.info, errors: stats.errors, dropped: stats.dropped, late: stats.late, rows: stats.rows,
                throughput: span > 0 ? Double(stats.completed) / span : 0,
                rowsPerSecond: planned.kind == .bulk && span > 0 ? Double(stats.rows) / span : nil,
                latencyMs: RunReport.Latency(stats), serviceMs: RunReport.Latency(stats, service: true))
        }
        var phase = RunReport.Phase(
            name: measurement.phase.name, executor: measurement.phase.executor.name, workers: measurement.phase.workers,
            startedAt: measurement.startedAtMillis, seconds: measurement.seconds, complete: measurement.complete,
            plannedOps: measurement.plannedOps, operations: operations, thresholds: verdicts,
            peakRssMib: peakResidentMiB())
        if measurement.phase.pipelineDepth > 1 {
            phase.pipelineDepth = measurement.phase.pipelineDepth
            phase.pipelinedOps = measurement.pipelinedOps ?? 0
        }
        return phase
    }

    /// The process's peak resident set so far, in MiB (Linux reports `ru_maxrss` in KiB).
    static func peakResidentMiB() -> Double? {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return nil }
        return (Double(usage.ru_maxrss) / 1024 * 10).rounded() / 10
    }
}
