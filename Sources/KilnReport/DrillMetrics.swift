import Foundation
import KilnBackend
import KilnBackends
import KilnCheck
import KilnCore

/// Failover-drill metrics of each fault on the store it acts on, from the run's per-second timeline (so their
/// resolution is one second): the window before the fault (up to 30 s), during it (start → stop) and after (the
/// rest of the run).
///
/// - `time_to_detect_ms`: fault start → the end of the first second with a failed or `info` op of the store, or
///   one whose p99 is over twice the before-p99 and at least 10 ms above it (absent when the store never noticed);
/// - `unavailable_ms`: the first such second → the first later second with ok ops and no errors;
/// - `rto_ms`: fault start → the end of the first second, from the first degraded one on, without errors or
///   `info` and with ok throughput back at 90 % of the before-mean (absent when it never came back: verdict
///   `failed`) and p99 within that limit; 0 when the store never noticed the fault. A failover recovers before
///   its stop (the stop heals the old primary); a pause or a latency toxic only after it;
/// - `errors`, `info`, `dropped` during the fault and until recovery; `p99_before_ms`, `p99_during_ms`,
///   `p99_after_ms` (medians of the per-second p99s of the store's busiest op); `p99_worst_second_ms`, the highest
///   per-second p99 from the start to a second after the stop: the ops a pause held all complete in the second
///   after its end, so the pause's length shows there while the median of the seconds hides it.
/// RPO (acknowledged writes lost) comes from `kiln check`'s reconcile result, not from the timeline: `kiln check`
/// writes `rpo_writes` into report.json's drills with `withRPO`.
/// Verdict: `passed` when the fault was verified and the store recovered, `unknown` when the fault's verification
/// was unknown, `failed` otherwise.
public enum DrillMetrics {
    /// The store a fault target belongs to: a server's name maps to the backend whose `serverNamePrefixes` (its name
    /// and its stack side's other server names, from `Backends.all`) has the longest one the target starts with:
    /// `redis-primary` and `sentinel-2` → redis, `redis-cluster-3` → redis-cluster; a proxy fault's
    /// `127.0.0.1:P -> 127.0.0.21:16379` through `proxied`.
    public static func store(of fault: RunReport.Fault, proxied: [String: String] = [:]) -> String? {
        let target = fault.target
        // A sink process's fault shows in the pipeline's staleness and the checks, not in the load's ops.
        if target.hasPrefix("sink:") { return nil }
        // Failovers name the service's servers or its Sentinels in their target (`kiln via sentinels …`).
        if let store = RecordedFaultKind(recorded: fault.kind)?.failoverStore { return store }
        for (address, store) in proxied where target.contains(address) { return store }
        return serverNamePrefixesLongestFirst.first { target.hasPrefix($0.prefix) }?.store
    }

    /// Every backend's server name prefixes with the backend, longest first, so a name that extends another
    /// (`redis-cluster`) wins over it.
    static let serverNamePrefixesLongestFirst: [(prefix: String, store: String)] =
        Backends.all.flatMap { backend in backend.serverNamePrefixes.map { ($0, backend.name) } }
        .sorted { $0.prefix.count > $1.prefix.count }

    public static func compute(
        faults: [RunReport.Fault], report: RunReport, timeline: [TimelineSample], proxied: [String: String] = [:]
    ) -> [RunReport.Drill] {
        let phaseStart = Dictionary(report.phases.map { ($0.name, $0.startedAt) }, uniquingKeysWith: { a, _ in a })
        return faults.compactMap { fault -> RunReport.Drill? in
            // A shard's planned-only entry: another shard ran the fault; its drill is judged there and on the merge.
            guard fault.ranHere, let store = store(of: fault, proxied: proxied) else { return nil }
            guard let start = fault.startedAt else {
                // Refused before it started (e.g. its setup found the target unfit): the drill did not happen.
                return RunReport.Drill(
                    name: "\(fault.name) on \(store)", fault: fault.name, store: store,
                    verdict: fault.verified == .no ? .failed : .unknown, reason: fault.note ?? "the fault did not start")
            }
            let stop = fault.stoppedAt ?? start
            // Per second of the store: (end time, ok, errors, info, dropped, worst p99).
            var seconds: [Int64: (ok: Int64, fail: Int64, info: Int64, dropped: Int64, p99: Double)] = [:]
            for sample in timeline where sample.store == store {
                guard let base = phaseStart[sample.phase] else { continue }
                let end = base + Int64(sample.second) * 1000
                var entry = seconds[end] ?? (0, 0, 0, 0, 0)
                entry.ok += sample.ok
                entry.fail += sample.fail
                entry.info += sample.info
                entry.dropped += sample.dropped
                entry.p99 = max(entry.p99, sample.p99Ms ?? 0)
                seconds[end] = entry
            }
            let ordered = seconds.keys.sorted()
            let before = ordered.filter { $0 <= start && $0 > start - 30_000 }
            let okBefore = before.isEmpty ? nil : Double(before.reduce(0) { $0 + seconds[$1]!.ok }) / Double(before.count)
            let p99Before = median(before.map { seconds[$0]!.p99 })
            var metrics: [String: Double] = [:]
            if let p99Before { metrics["p99_before_ms"] = p99Before }
            let during = ordered.filter { $0 > start && $0 <= stop + 1000 }.map { seconds[$0]!.p99 }
            if let value = median(during) { metrics["p99_during_ms"] = value }
            if let value = during.max() { metrics["p99_worst_second_ms"] = value }
            if let value = median(ordered.filter { $0 > stop + 1000 }.map { seconds[$0]!.p99 }) {
                metrics["p99_after_ms"] = value
            }
            let after = ordered.filter { $0 > start }
            // A slow second is one whose p99 is over twice the usual and 10 ms above it: single-digit-ms wobble
            // of a loopback p99 is not a fault's effect (a 4 ms p99 second once made an unnoticed partition's RTO 5 s).
            let threshold = max((p99Before ?? 0) * 2, (p99Before ?? 0) + 10)
            let detected = after.first { end in
                let entry = seconds[end]!
                return entry.fail + entry.info + entry.dropped > 0 || (p99Before != nil && entry.p99 > threshold)
            }
            if let detected { metrics["time_to_detect_ms"] = Double(detected - start) }
            if let detected,
                let firstBad = after.first(where: { let e = seconds[$0]!; return $0 >= detected && e.fail + e.info > 0 })
            {
                let back = after.first { $0 > firstBad && seconds[$0]!.ok > 0 && seconds[$0]!.fail + seconds[$0]!.info == 0 }
                if let back { metrics["unavailable_ms"] = Double(back - firstBad) }
            }
            var recovered: Int64?
            if let okBefore {
                // From the first degraded second on (a failover restores service while its fault still "runs":
                // the stop is the rebuild of the old primary); a second with errors or `info` is not recovered.
                // A fault the store never noticed (no error, drop or slow second): nothing to recover, RTO 0.
                let from = detected.map { $0 - 1 } ?? stop
                recovered = detected == nil ? start : ordered.first { end in
                    let entry = seconds[end]!
                    return end > from && entry.fail + entry.info == 0 && Double(entry.ok) >= 0.9 * okBefore
                        && (p99Before == nil || entry.p99 <= threshold)
                }
                if let recovered { metrics["rto_ms"] = Double(recovered - start) }
            }
            let windowEnd = recovered ?? ordered.last ?? stop
            let window = ordered.filter { $0 > start && $0 <= windowEnd }
            metrics["errors"] = Double(window.reduce(0) { $0 + seconds[$1]!.fail })
            metrics["info"] = Double(window.reduce(0) { $0 + seconds[$1]!.info })
            metrics["dropped"] = Double(window.reduce(0) { $0 + seconds[$1]!.dropped })
            let verdict: DrillVerdict
            let reason: String?
            if fault.verified == .unknown {
                (verdict, reason) = (.unknown, "the fault's effect could not be verified: \(fault.note ?? "")")
            } else if fault.verified != .yes {
                (verdict, reason) = (.failed, "the fault was not verified: \(fault.note ?? "")")
            } else if okBefore == nil {
                (verdict, reason) = (.unknown, "no ops of \(store) before the fault to compare with")
            } else if recovered == nil {
                (verdict, reason) = (.failed, "\(store) did not get back to 90 % of its throughput before the run ended")
            } else {
                (verdict, reason) = (.passed, nil)
            }
            return RunReport.Drill(
                name: "\(fault.name) on \(store)", fault: fault.name, store: store, verdict: verdict, reason: reason,
                metrics: metrics)
        }
    }

    /// The drills with `rpo_writes` set: acknowledged writes of the drill's store that the check found lost (the
    /// `lost` count of every checked place of that store, e.g. `postgres.rows`). A drill whose store was not checked
    /// gets none. The count is the run's: two drills on one store both show the loss of the whole run.
    public static func withRPO(_ drills: [RunReport.Drill], check: CheckReport) -> [RunReport.Drill] {
        drills.map { drill in
            let places = check.places.filter { $0.place.hasPrefix("\(drill.store).") }
            guard !places.isEmpty else { return drill }
            var drill = drill
            drill.metrics["rpo_writes"] = Double(places.reduce(Int64(0)) { $0 + ($1.counts["lost"] ?? 0) })
            return drill
        }
    }

    static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        return sorted[sorted.count / 2]
    }
}
