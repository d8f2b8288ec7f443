import Foundation

/// Whether a replay reproduced the original run's outcome. Only `.reproduced` and `.stayedValid` count as the
/// original outcome again; a replay whose check did not run is `.notJudged`, never reproduced.
public enum Reproduction: Sendable, Equatable {
    /// Every anomaly site of the original (place and class), every failed threshold and every failed drill again.
    /// `sameKeys` of the original's kept keys were reported again, of `originalKeys`.
    /// `notAgain`: what of the original's secondary outcome (see `Reproduction.required`) this replay lacked.
    case reproduced(sameKeys: Int, originalKeys: Int, extra: [String], notAgain: [String] = [])
    /// The original passed, and so did the replay.
    case stayedValid
    /// The replay was judged and differs: what the original had that the replay lacks, and what it found besides.
    case diverged(missing: [String], extra: [String])
    /// The replay did not run to a judgement (its check did not run, it was interrupted, it could not start).
    case notJudged(reason: String)

    /// The original outcome happened again.
    public var matches: Bool {
        switch self {
        case .reproduced, .stayedValid: true
        case .diverged, .notJudged: false
        }
    }

    public var summary: String {
        switch self {
        case .reproduced(let same, let keys, let extra, let notAgain):
            "reproduced (\(same) of \(keys) kept keys again)" + (extra.isEmpty ? "" : "; also: \(extra.joined(separator: ", "))")
                + (notAgain.isEmpty ? "" : "; secondary, not again: \(notAgain.joined(separator: ", "))")
        case .stayedValid: "valid again"
        case .diverged(let missing, let extra):
            "NOT reproduced: missing \(missing.isEmpty ? "nothing" : missing.joined(separator: ", "))"
                + (extra.isEmpty ? "" : "; new: \(extra.joined(separator: ", "))")
        case .notJudged(let reason): "NOT JUDGED: \(reason)"
        }
    }

    /// What a replay must show again when no `--anomaly` names it: the original's failure, without what only
    /// follows from it by timing.
    /// - Anomaly sites in a store's own places (`postgres.rows lost`, `kafka.messages lost`, `clickhouse.rows
    ///   duplicated`): always.
    /// - Sites of cross-store invariants (`invariant.*`, e.g. graph-ledger): only when the original has no store
    ///   anomaly. When stores lost writes, an invariant comparing two of them finds the writes one had applied and
    ///   the other not at the moment of the fault: which (and whether any) is a race of the consumers, not part of
    ///   the bug (kafka-broker-kill: 1-4 such pairs beside ~2000 lost messages, in a different set every run).
    /// - Failed thresholds and failed drill availability: only when the original has no anomaly at all (then they
    ///   are its failure); beside anomalies they are timings of the same fault.
    /// `strict` requires all of it (the original's whole outcome).
    public static func required(_ original: RunOutcome, strict: Bool = false)
        -> (sites: Set<AnomalySite>, thresholds: Set<String>, drills: Set<String>)
    {
        let all = Set(original.anomalies.keys)
        if strict || all.isEmpty { return (all, original.failedThresholds, original.failedDrills) }
        let stores = all.filter { !$0.place.hasPrefix("invariant.") }
        return (stores.isEmpty ? all : stores, [], [])
    }

    /// Compares a replay's outcome with the original's. `target` narrows what must appear again to those sites
    /// (`--anomaly`, shrink's "the anomaly"); nil: `required(original, strict:)`. What the original had beyond the
    /// required outcome and the replay lacks is listed (`notAgain`), never hidden.
    public static func judge(
        original: RunOutcome, replay: RunOutcome, target: Set<AnomalySite>? = nil, strict: Bool = false
    ) -> Reproduction {
        if replay.interrupted { return .notJudged(reason: "the replay was interrupted") }
        guard case .checked = replay.judgement else {
            if case .notChecked(let reason) = replay.judgement { return .notJudged(reason: reason) }
            return .notJudged(reason: "not checked")
        }
        let required = required(original, strict: strict)
        let wantedSites = target ?? required.sites
        let wantThresholds = target == nil ? required.thresholds : []
        let wantDrills = target == nil ? required.drills : []
        var notAgain = Set(original.anomalies.keys).subtracting(wantedSites).filter { (replay.anomalies[$0] ?? 0) == 0 }
            .sorted().map(\.description)
        notAgain += original.failedThresholds.subtracting(wantThresholds).subtracting(replay.failedThresholds).sorted()
            .map { "threshold \($0)" }
        notAgain += original.failedDrills.subtracting(wantDrills).subtracting(replay.failedDrills).sorted()
            .map { "drill \($0)" }
        var missing = wantedSites.filter { (replay.anomalies[$0] ?? 0) == 0 }.sorted().map(\.description)
        missing += wantThresholds.subtracting(replay.failedThresholds).sorted().map { "threshold \($0)" }
        missing += wantDrills.subtracting(replay.failedDrills).sorted().map { "drill \($0)" }
        var extra = Set(replay.anomalies.keys).subtracting(original.anomalies.keys).sorted().map(\.description)
        extra += replay.failedThresholds.subtracting(original.failedThresholds).sorted().map { "threshold \($0)" }
        extra += replay.failedDrills.subtracting(original.failedDrills).sorted().map { "drill \($0)" }
        if original.anomalies.isEmpty && original.failedThresholds.isEmpty && original.failedDrills.isEmpty {
            // The original passed: the replay must pass too (and decide every place).
            if !replay.unknownPlaces.isEmpty {
                return .notJudged(reason: "places unknown: \(replay.unknownPlaces.sorted().joined(separator: ", "))")
            }
            return extra.isEmpty ? .stayedValid : .diverged(missing: [], extra: extra)
        }
        guard missing.isEmpty else {
            let undecided = wantedSites.filter { replay.unknownPlaces.contains($0.place) }
            if !undecided.isEmpty, missing.count == undecided.count {
                return .notJudged(reason: "the check could not decide \(undecided.map(\.place).sorted().joined(separator: ", "))")
            }
            return .diverged(missing: missing, extra: extra)
        }
        var same = 0
        var kept = 0
        for site in wantedSites {
            let originalKeys = original.keys[site] ?? []
            kept += originalKeys.count
            same += originalKeys.intersection(replay.keys[site] ?? []).count
        }
        return .reproduced(sameKeys: same, originalKeys: kept, extra: extra, notAgain: notAgain)
    }
}
