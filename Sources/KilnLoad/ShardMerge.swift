import Foundation
import Histogram
import KilnCore
import KilnScenario
import KilnStores

/// `kiln merge`: the run directories of the n shards of one run (`kiln run --shard i/n`) become one run directory
/// that `kiln check` and `kiln report` read exactly as an unsharded run's:
/// - HDR histograms (`histograms/<phase>/<op>.json`, service times under `service/`) are added bucket by bucket —
///   the merged p50/p99 are those of one histogram holding every shard's samples (never averaged percentiles);
/// - counts, errors by class, dropped, late and rows are summed per operation; thresholds are re-evaluated on the
///   merged totals; the verdict follows the same rules as `kiln run`'s;
/// - `timeline.jsonl` is summed per (phase, second); a merged second's p50/p99/max are the largest shard's (an
///   upper bound: per-second histograms are not kept), the phase totals are exact;
/// - `history.jsonl` is the shards' histories in index order, each line tagged `"shard":i`, times moved onto the
///   earliest shard's clock (the shards' start times differ by their `started_at`, millisecond precision), and a
///   fault proxy's address in `server` replaced by the server behind it (`ShardHeader.proxies`).
/// Refused (`Refusal`, exit 64) before anything is written: shards of different scenario files, seeds, dataset
/// sizes, namespaces, phases or shard counts; a duplicate index; a missing index; a directory that is no shard.
public enum ShardMerge {
    public struct Refusal: Error, CustomStringConvertible {
        public var description: String
    }

    /// One shard's run directory, read.
    struct Shard {
        var directory: URL
        var header: ShardHeader
        var report: RunReport
        var scenarioBytes: Data
    }

    /// Reads and cross-checks the shards; returns them by index.
    static func readShards(_ directories: [URL]) throws(Refusal) -> [Shard] {
        guard !directories.isEmpty else { throw Refusal(description: "no shard run directories given") }
        var shards: [Shard] = []
        for directory in directories {
            let header: ShardHeader
            do {
                header = try ShardHeader.read(from: directory)
            } catch {
                throw Refusal(
                    description: "\(directory.path): not a shard run directory (no readable \(ShardHeader.fileName): "
                        + "run it with `kiln run SCENARIO --shard i/n`)")
            }
            guard let reportData = try? Data(contentsOf: directory.appendingPathComponent("report.json")),
                let report = try? RunReport.decode(reportData)
            else { throw Refusal(description: "\(directory.path): no readable report.json") }
            guard let scenarioBytes = try? Data(contentsOf: directory.appendingPathComponent("scenario.yaml")) else {
                throw Refusal(description: "\(directory.path): no readable scenario.yaml")
            }
            shards.append(Shard(directory: directory, header: header, report: report, scenarioBytes: scenarioBytes))
        }
        let first = shards[0]
        for shard in shards.dropFirst() {
            func differ(_ what: String, _ a: String, _ b: String) -> Refusal {
                Refusal(
                    description: "\(shard.directory.path) and \(first.directory.path) are shards of different runs: "
                        + "\(what) \(b) vs \(a)")
            }
            let (a, b) = (first.header, shard.header)
            if a.scenario != b.scenario { throw differ("scenario", a.scenario, b.scenario) }
            if first.scenarioBytes != shard.scenarioBytes {
                throw differ("scenario file", "scenario.yaml", "a different scenario.yaml (the files' bytes differ)")
            }
            if a.seed != b.seed { throw differ("seed", "\(a.seed)", "\(b.seed)") }
            if a.datasetRows != b.datasetRows { throw differ("dataset rows", "\(a.datasetRows)", "\(b.datasetRows)") }
            if a.namespace != b.namespace { throw differ("namespace", a.namespace, b.namespace) }
            if a.phases != b.phases {
                throw differ("phases", a.phases.joined(separator: ","), b.phases.joined(separator: ","))
            }
            if a.faultShard != b.faultShard {
                throw Refusal(
                    description: "\(shard.directory.path) and \(first.directory.path) disagree on which shard runs the "
                        + "faults: fault_shard \(b.faultShard) vs \(a.faultShard)")
            }
            if a.count != b.count {
                throw Refusal(
                    description: "\(shard.directory.path) is shard \(b.index)/\(b.count) and \(first.directory.path) "
                        + "shard \(a.index)/\(a.count): slices of different shard counts overlap")
            }
        }
        let count = first.header.count
        var byIndex: [Int: Shard] = [:]
        for shard in shards {
            if let earlier = byIndex[shard.header.index] {
                throw Refusal(
                    description: "shard \(shard.header.index)/\(count) given twice: \(earlier.directory.path) and "
                        + "\(shard.directory.path) (overlapping slices)")
            }
            byIndex[shard.header.index] = shard
        }
        let missing = (0..<count).filter { byIndex[$0] == nil }
        if !missing.isEmpty {
            throw Refusal(
                description: "missing shard\(missing.count == 1 ? "" : "s") \(missing.map { "\($0)/\(count)" }.joined(separator: ", ")) "
                    + "of \(count): a merge needs every slice")
        }
        let ordered = (0..<count).map { byIndex[$0]! }
        // Faults run in one shard only (`fault_shard`): a second shard that ran faults (or the wrong one) would make
        // the merged drill count a fault twice or judge the timeline of a fault no shard was supposed to run.
        let faultShard = first.header.faultShard
        let ranFaults = ordered.filter { ($0.report.faults ?? []).contains(where: \.ranHere) }
        if ranFaults.count > 1 {
            throw Refusal(
                description: "shards \(ranFaults.map { "\($0.header.index)" }.joined(separator: " and ")) all ran faults "
                    + "(\(ranFaults.map(\.directory.path).joined(separator: ", "))): a sharded run's faults run in one "
                    + "shard only (fault_shard: \(faultShard))")
        }
        if let ran = ranFaults.first, ran.header.index != faultShard {
            throw Refusal(
                description: "\(ran.directory.path): shard \(ran.header.index)/\(count) ran faults but fault_shard is "
                    + "\(faultShard): its faults are not the run's")
        }
        return ordered
    }

    /// The fault shard's fault timeline on the merged run's clock. A merged timeline second is second k of each
    /// shard's phase, counted from that shard's own phase start; the merged phase starts at the earliest shard's. So
    /// each fault moves by (merged phase start − fault shard's phase start) of the phase it started in (its planned
    /// start when it never started; the first phase when it came before every phase): it then sits at the same phase
    /// second of the merged timeline as it did in the fault shard's, which is where an unsharded run would have it.
    /// Each entry names the shard that ran it; a proxy fault's note says it acted on that shard's clients only.
    static func faultsOnMergedClock(
        _ faults: [RunReport.Fault], of shard: RunReport, index: Int, count: Int, merged: [RunReport.Phase]
    ) -> [RunReport.Fault] {
        let mergedStart = Dictionary(merged.map { ($0.name, $0.startedAt) }, uniquingKeysWith: { a, _ in a })
        return faults.map { fault in
            var fault = fault
            let reference = fault.startedAt ?? fault.plannedStart
            let phase = reference.flatMap { time in shard.phases.last { $0.startedAt <= time } } ?? shard.phases.first
            let shift = phase.flatMap { phase in mergedStart[phase.name].map { $0 - phase.startedAt } } ?? 0
            fault.plannedStart = fault.plannedStart.map { $0 + shift }
            fault.startedAt = fault.startedAt.map { $0 + shift }
            fault.stoppedAt = fault.stoppedAt.map { $0 + shift }
            fault.runByShard = index
            fault.plannedOnly = nil
            if fault.kind.hasPrefix("proxy"), count > 1 {
                let scope = "run by shard \(index)/\(count): its proxy carried that shard's clients only"
                fault.note = fault.note.map { "\($0); \(scope)" } ?? scope
            }
            return fault
        }
    }

    /// Merges `directories` into the new directory `output` (must not exist) and returns the merged report (also
    /// written). `scenario` is the run's scenario (for thresholds and the open-model arrival windows).
    public static func merge(_ directories: [URL], into output: URL, scenario: LoadScenario) throws(Refusal)
        -> RunReport
    {
        let shards = try readShards(directories)
        if FileManager.default.fileExists(atPath: output.path) {
            throw Refusal(description: "\(output.path) exists: a merge never overwrites a run directory")
        }
        let histograms = try ShardMergeFiles.readHistograms(shards.map(\.directory))
        try verify(histograms, holdEveryOpOf: shards)
        do {
            try FileManager.default.createDirectory(
                at: output.appendingPathComponent("histograms"), withIntermediateDirectories: true)
            try shards[0].scenarioBytes.write(to: output.appendingPathComponent("scenario.yaml"))
            for extra in ["stack.yaml"] {
                let source = shards[0].directory.appendingPathComponent(extra)
                if FileManager.default.fileExists(atPath: source.path) {
                    try FileManager.default.copyItem(at: source, to: output.appendingPathComponent(extra))
                }
            }
            let origin = shards.map(\.report.startedAt).min() ?? 0
            try ShardMergeFiles.concatenateHistories(
                shards.map {
                    ($0.directory, $0.header.index, ($0.report.startedAt - origin) * 1_000_000,
                        Dictionary(($0.header.proxies ?? []).map { ($0.listen, $0.upstream) }, uniquingKeysWith: { a, _ in a }))
                },
                into: output.appendingPathComponent("history.jsonl"))
            try ShardMergeFiles.sumTimelines(
                shards.map(\.directory), into: output.appendingPathComponent("timeline.jsonl"))
        } catch {
            throw Refusal(description: "cannot write \(output.path): \(error)")
        }
        ShardMergeFiles.writeHistograms(histograms, into: output)
        var report = mergedReport(shards, output: output, scenario: scenario, histograms: histograms)
        report.endedAt = shards.contains { $0.report.endedAt == nil } ? nil : shards.compactMap(\.report.endedAt).max()
        let manifest = MergeManifest(
            count: shards.count,
            shards: shards.map { .init(index: $0.header.index, directory: $0.directory.path, id: $0.report.identity.id,
                verdict: $0.report.verdict.rawValue, complete: $0.report.complete) },
            faultShard: shards[0].header.faultShard,
            proxied: Dictionary(
                shards.flatMap { $0.header.proxies ?? [] }.map { ($0.listen, $0.store) }, uniquingKeysWith: { a, _ in a }))
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(manifest).write(to: output.appendingPathComponent(MergeManifest.fileName))
            let data = try RunReport.encoder.encode(report)
            try data.write(to: output.appendingPathComponent("report.json"), options: .atomic)
        } catch {
            throw Refusal(description: "cannot write \(output.path): \(error)")
        }
        return report
    }

    /// The merged latency histogram of every operation must hold exactly the ops the shards' reports count as
    /// completed: a histogram that lost samples (a truncated or stale file) would make the merged percentiles lie.
    static func verify(_ histograms: ShardMergeFiles.Histograms, holdEveryOpOf shards: [Shard]) throws(Refusal) {
        var completed: [String: [String: Int64]] = [:]
        for shard in shards {
            for phase in shard.report.phases {
                for operation in phase.operations {
                    completed[phase.name, default: [:]][operation.name, default: 0] +=
                        operation.ok + operation.fail + operation.info
                }
            }
        }
        for (phase, operations) in completed {
            for (operation, count) in operations {
                let held = Int64(histograms.latency[phase]?[operation]?.totalCount ?? 0)
                if held != count {
                    throw Refusal(
                        description: "histograms/\(phase)/\(operation).json of the shards hold \(held) samples, their "
                            + "reports count \(count) completed ops: a shard's histograms do not match its report")
                }
            }
        }
    }

    static func mergedReport(
        _ shards: [Shard], output: URL, scenario: LoadScenario, histograms: ShardMergeFiles.Histograms
    ) -> RunReport {
        var identity = shards[0].report.identity
        identity.id = output.lastPathComponent
        var report = RunReport(
            identity: identity, startedAt: shards.map(\.report.startedAt).min() ?? 0, endedAt: nil,
            complete: false, interrupted: shards.contains { $0.report.interrupted }, phases: [], verdict: .running,
            exitCode: nil, storeRows: [:])
        for shard in shards {
            for (store, rows) in shard.report.storeRows { report.storeRows[store] = max(report.storeRows[store] ?? 0, rows) }
        }
        // A drill is judged by its check, as an unsharded run (shards themselves never check: ShardRunOptions).
        report.checkRequired = scenario.faults != nil
        let phaseNames = shards[0].report.phases.map(\.name)
        for name in phaseNames {
            let parts = shards.compactMap { $0.report.phases.first { $0.name == name } }
            guard let scenarioPhase = scenario.phases.first(where: { $0.name == name }) else { continue }
            report.phases.append(
                mergedPhase(parts, phase: scenarioPhase, everyShard: parts.count == shards.count,
                    histograms: histograms))
        }
        // The faults are the fault shard's (readShards refused any other shard that ran faults), with their
        // verification, moved onto the merged clock; the other shards' planned-only entries are not the run's.
        let faultShard = shards[0].header.faultShard
        if let faulting = shards.first(where: { $0.header.index == faultShard }), let faults = faulting.report.faults {
            report.faults = faultsOnMergedClock(
                faults.filter(\.ranHere), of: faulting.report, index: faultShard, count: shards.count,
                merged: report.phases)
        }
        // A planned fault the fault shard has no record of did not happen as far as the merge can tell: it stays in
        // the timeline, never started and `verified: unknown`, so its drill is unknown — a drill whose fault is
        // missing never passes.
        if let spec = scenario.faults {
            let recorded = Set((report.faults ?? []).map(\.name))
            let missing = spec.plan(seed: scenario.dataset.seed).filter { !recorded.contains($0.name) }
            if !missing.isEmpty {
                report.faults = (report.faults ?? []) + missing.map { instance in
                    var fault = RunReport.Fault(
                        name: instance.name, kind: instance.entry.kind.rawValue, target: instance.entry.target,
                        verified: .unknown,
                        note: "not in the record of the fault shard \(faultShard)/\(shards.count): no shard ran it")
                    fault.runByShard = faultShard
                    return fault
                }
            }
        }
        report.complete = report.phases.count == shards[0].header.phases.count
            && shards.allSatisfy { $0.report.complete } && report.phases.allSatisfy(\.complete)
        let thresholdsFailed = report.phases.contains { $0.thresholds.contains { !$0.passed } }
        // A drill is judged by its check, as an unsharded run: NOT CHECKED until `kiln check` of the merged run.
        // As an unsharded run (LoadRun): a shard whose index rebuild failed makes the merged run partial, never passed.
        let unindexed = report.phases.contains { $0.indexBuildError != nil }
        let loadResults = RunResults(thresholdsFailed: thresholdsFailed, interrupted: !report.complete, partial: unindexed)
        let results = RunResults(
            thresholdsFailed: thresholdsFailed, interrupted: !report.complete, notChecked: report.checkRequired == true,
            partial: unindexed)
        if results.verdict != loadResults.verdict { report.loadVerdict = loadResults.verdict }
        report.verdict = results.verdict
        report.exitCode = results.exitCode.rawValue
        return report
    }

    static func mergedPhase(
        _ parts: [RunReport.Phase], phase: LoadScenario.Phase, everyShard: Bool, histograms: ShardMergeFiles.Histograms
    ) -> RunReport.Phase {
        var names: [String] = []
        for part in parts { for operation in part.operations where !names.contains(operation.name) { names.append(operation.name) } }
        var planned: [PlannedOperation] = []
        var totals: [OperationStats] = []
        var operations: [RunReport.Operation] = []
        let seconds = parts.map(\.seconds).max() ?? 0
        for name in names {
            let pieces = parts.compactMap { $0.operations.first { $0.name == name } }
            var stats = OperationStats()
            for piece in pieces {
                stats.ok += piece.ok
                stats.fail += piece.fail
                stats.info += piece.info
                stats.dropped += piece.dropped
                stats.late += piece.late
                stats.rows += piece.rows
                for (error, count) in piece.errors { stats.errors[error, default: 0] += count }
            }
            if let latency = histograms.latency[phase.name]?[name] { stats.latency = latency }
            if let service = histograms.service[phase.name]?[name] { stats.service = service }
            let kind = OperationDescriptor.Kind(rawValue: pieces[0].kind) ?? .read
            // The shards ran side by side: a bulk op's merged active span is the longest shard's.
            let span = pieces.map { piece -> Double in
                let completed = Double(piece.ok + piece.fail + piece.info)
                return piece.throughput > 0 ? completed / piece.throughput : 0
            }.max() ?? 0
            stats.firstStart = 0
            stats.lastEnd = UInt64(max(0, span) * 1e9)
            let measurement = PhaseMeasurement(
                phase: phase, operations: [], totals: [], timeline: [], startedAtMillis: 0, seconds: seconds,
                complete: true, plannedOps: nil)
            let rateSpan = kind == .bulk ? span : measurement.rateSeconds
            operations.append(
                RunReport.Operation(
                    name: name, store: pieces[0].store, kind: pieces[0].kind, ok: stats.ok, fail: stats.fail,
                    info: stats.info, errors: stats.errors, dropped: stats.dropped, late: stats.late, rows: stats.rows,
                    throughput: rateSpan > 0 ? Double(stats.completed) / rateSpan : 0,
                    rowsPerSecond: kind == .bulk && span > 0 ? Double(stats.rows) / span : nil,
                    latencyMs: RunReport.Latency(stats), serviceMs: RunReport.Latency(stats, service: true)))
            // Only for threshold evaluation: the typed operation of the scenario's name (the shards ran it).
            let operationName = String(name.dropFirst(pieces[0].store.count + 1))
            guard let descriptor = StoreRegistry.driver(named: pieces[0].store)?.operation(named: operationName) else {
                continue
            }
            planned.append(
                PlannedOperation(
                    name: name, store: pieces[0].store, storeIndex: 0, operation: descriptor, kind: kind, weight: 1))
            totals.append(stats)
        }
        let measurement = PhaseMeasurement(
            phase: phase, operations: planned, totals: totals, timeline: [],
            startedAtMillis: parts.map(\.startedAt).min() ?? 0, seconds: seconds,
            complete: everyShard && parts.allSatisfy(\.complete),
            plannedOps: parts.contains { $0.plannedOps == nil } ? nil : parts.compactMap(\.plannedOps).reduce(0, +))
        var merged = RunReport.Phase(
            name: phase.name, executor: phase.executor.name, workers: phase.workers,
            startedAt: measurement.startedAtMillis, seconds: seconds, complete: measurement.complete,
            plannedOps: measurement.plannedOps, operations: operations,
            thresholds: ThresholdEvaluation.evaluate(measurement),
            indexBuildSeconds: parts.compactMap(\.indexBuildSeconds).max(),
            indexBuildError: parts.compactMap(\.indexBuildError).first,
            peakRssMib: parts.compactMap(\.peakRssMib).max())
        merged.indexBuildInBackground = parts.compactMap(\.indexBuildInBackground).first
        merged.pipelineDepth = parts.compactMap(\.pipelineDepth).first
        merged.pipelinedOps = parts.contains { $0.pipelinedOps != nil } ? parts.compactMap(\.pipelinedOps).reduce(0, +) : nil
        return merged
    }
}

/// `merge.json` of a merged run directory: which shard directories it was made of.
public struct MergeManifest: Codable, Sendable {
    public static let fileName = "merge.json"
    public struct Source: Codable, Sendable {
        public var index: Int
        public var directory: String
        public var id: String
        public var verdict: String
        public var complete: Bool
    }
    public var schema = "kiln.merge/1"
    public var count: Int
    public var shards: [Source]
    public var faultShard: Int
    /// Fault proxies' listen addresses → their store (for the drills of the merged run).
    public var proxied: [String: String]

    enum CodingKeys: String, CodingKey {
        case schema, count, shards, proxied
        case faultShard = "fault_shard"
    }

    public static func read(from directory: URL) throws -> MergeManifest {
        try JSONDecoder().decode(MergeManifest.self, from: Data(contentsOf: directory.appendingPathComponent(fileName)))
    }
}
