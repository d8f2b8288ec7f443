import Foundation
import KilnScenario
import KilnStores
import Logging

/// Kiln's release version, recorded in every bundle; a bundle from another version is refused by `kiln replay`
/// unless `--force` (the operation plan's derivation may differ between versions).
public enum KilnVersion {
    public static let current = "0.9.0"
}

/// Writes `bundle.json` and the copies it names into a run directory: once before the first phase (the plan) and
/// again after the run (what happened: fault offsets and verification, the rows each phase wrote). A failure to
/// write is reported to the caller; the run itself does not depend on it.
public enum BundleWriter {
    /// The plan, before the first phase. `scenario` is resolved as `kiln run` will run it (after `--stack`,
    /// `--rows` and `--phase`); `scenarioFile` the file it was given; `stackFile` the `--stack` override.
    public static func writePlan(
        scenario: LoadScenario, scenarioFile: URL, stackFile: URL?, datasetRows: Int64, runDirectory: URL,
        kiln: ReplayBundle.KilnBuild, serverVersions: [String: String]? = nil
    ) throws -> ReplayBundle {
        var document = try ScenarioDocument(contentsOf: scenarioFile)
        let fileManager = FileManager.default
        func copy(_ source: URL, as name: String) throws {
            let target = runDirectory.appendingPathComponent(name)
            if fileManager.fileExists(atPath: target.path) { try fileManager.removeItem(at: target) }
            try Data(contentsOf: source).write(to: target)
        }
        // The stack: the --stack override, else the scenario's file, else (absent) stacks/embedded.yaml beside it.
        var stackCopy: String? = ReplayBundle.stackFileName
        if let stackFile {
            try copy(stackFile, as: ReplayBundle.stackFileName)
        } else if let path = document.stackPath {
            try copy(
                URL(fileURLWithPath: path, relativeTo: scenarioFile.deletingLastPathComponent()).standardizedFileURL,
                as: ReplayBundle.stackFileName)
        } else if document.stackIsInline {
            stackCopy = nil
        } else {
            try copy(
                scenarioFile.deletingLastPathComponent().appendingPathComponent("stacks/embedded.yaml"),
                as: ReplayBundle.stackFileName)
        }
        if let stackCopy { document.setStack(stackCopy) }
        try copy(scenario.dataset.spec, as: ReplayBundle.specFileName)
        document.setSpec(ReplayBundle.specFileName)
        document.setRows(datasetRows)
        document.setFresh(true)
        document.keepPhases(named: Set(scenario.phases.map(\.name)))
        try document.write(to: runDirectory.appendingPathComponent(ReplayBundle.scenarioFileName))
        let specData = try Data(contentsOf: scenario.dataset.spec)
        var stack = stackDescription(scenario, file: stackCopy)
        stack.serverVersions = serverVersions
        let bundle = ReplayBundle(
            kiln: kiln, run: runDirectory.lastPathComponent, createdAt: Int64(Date().timeIntervalSince1970 * 1000),
            scenario: .init(
                name: scenario.name, file: ReplayBundle.scenarioFileName, originalFile: scenarioFile.path,
                namespace: scenario.namespace),
            dataset: .init(
                specFile: ReplayBundle.specFileName, specHash: ContentHash.of(specData), seed: scenario.dataset.seed,
                rows: datasetRows),
            stack: stack,
            faultsPlanned: plannedFaults(scenario),
            faultsHappened: nil, firstPhaseStartedAt: nil,
            phases: scenario.phases.enumerated().map { phasePlan($1, number: $0) },
            complete: false)
        try bundle.write(to: runDirectory)
        return bundle
    }

    /// After the run: the faults as report.json recorded them and each phase's write rows from history.jsonl.
    /// What cannot be read stays nil (never invented).
    public static func writeOutcome(_ plan: ReplayBundle, runDirectory: URL, logger: Logger) throws {
        var bundle = plan
        let facts = try? RecordedRun.readReport(runDirectory)
        bundle.firstPhaseStartedAt = facts?.firstPhaseStartedAt
        if let facts, let start = facts.firstPhaseStartedAt {
            bundle.faultsHappened = facts.faults.map {
                ReplayBundle.HappenedFault(
                    name: $0.name, kind: $0.kind, target: $0.target, startedMs: $0.startedAt.map { $0 - start },
                    stoppedMs: $0.stoppedAt.map { $0 - start }, verified: $0.verified)
            }
        }
        do {
            let rows = try HistoryRows.read(runDirectory.appendingPathComponent("history.jsonl"))
            for index in bundle.phases.indices { bundle.phases[index].writeRows = rows[bundle.phases[index].name] ?? [:] }
        } catch {
            logger.warning("bundle: cannot read the rows of history.jsonl: \(error)")
        }
        bundle.complete = true
        try bundle.write(to: runDirectory)
    }

    static func stackDescription(_ scenario: LoadScenario, file: String?) -> ReplayBundle.Stack {
        let stack = scenario.stack
        var settings: [String: String] = [:]
        if let redis = stack.section(RedisStackConfig.self) {
            for (setting, value) in redis.serverSettings { settings["redis.\(setting.rawValue)"] = String(value) }
            settings["redis.master_name"] = redis.masterName
            settings["redis.sentinels"] = String(redis.sentinels.count)
        }
        if let postgres = stack.section(PostgresStackConfig.self) {
            settings["postgres.replicas"] = String(postgres.replicas.count)
        }
        if !stack.faketime.isEmpty { settings["faketime"] = stack.faketime.joined(separator: ",") }
        for entry in scenario.faults?.entries ?? [] where entry.kind == .pgFailover {
            settings["postgres.replication(\(entry.name))"] = entry.options["replication"] ?? "async"
        }
        return ReplayBundle.Stack(
            file: file, name: stack.name, kind: stack.kind.rawValue, network: stack.network.rawValue, settings: settings)
    }

    static func plannedFaults(_ scenario: LoadScenario) -> [ReplayBundle.PlannedFault] {
        guard let spec = scenario.faults else { return [] }
        return spec.plan(seed: scenario.dataset.seed).map {
            ReplayBundle.PlannedFault(
                name: $0.name, kind: $0.entry.kind.rawValue, target: $0.entry.target,
                startMs: ScenarioDocument.milliseconds($0.start), stopMs: ScenarioDocument.milliseconds($0.stop),
                options: $0.entry.options.merging($0.entry.toxic.map { ["toxic": $0] } ?? [:]) { a, _ in a })
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func phasePlan(_ phase: LoadScenario.Phase, number: Int) -> ReplayBundle.Phase {
        let choice = "op k: SplitMix64(seed, k, stream \(1000 + number)) over the mix's cumulative weights; its row: "
            + "writes the store's next row, reads SplitMix64(seed, k, stream \(2000 + number)) mod the rows written before the phase"
        var arrival: [ReplayBundle.ArrivalStage] = []
        var planned: Int64?
        var duration: Double?
        var mix = phase.mix.map { ReplayBundle.MixEntry(operation: $0.name, weight: $0.weight) }
        switch phase.executor {
        case .bulk(let rows, _, let operations, _, _):
            planned = rows
            mix = operations.map { ReplayBundle.MixEntry(operation: $0, weight: 1) }
        case .constantArrivalRate(let rate, let length):
            duration = seconds(length)
            arrival = [.init(fromRate: rate, toRate: rate, seconds: seconds(length))]
        case .rampingArrivalRate(let startRate, let stages):
            var from = startRate
            for stage in stages {
                arrival.append(.init(fromRate: from, toRate: stage.target, seconds: seconds(stage.duration)))
                from = stage.target
            }
            duration = arrival.reduce(0) { $0 + $1.seconds }
        case .closed(let length):
            duration = seconds(length)
        }
        if !arrival.isEmpty {
            let total = arrival.reduce(0.0) { $0 + ($1.fromRate + $1.toRate) / 2 * $1.seconds }
            planned = Int64((total + 1e-9).rounded(.down))
        }
        return ReplayBundle.Phase(
            name: phase.name, number: number, executor: phase.executor.name, workers: phase.workers,
            plannedOps: planned, arrival: arrival, seconds: duration, mix: mix,
            operationChoice: phase.executor.name == "bulk" ? "bulk: consecutive batches of the store's next rows" : choice,
            writeRows: nil)
    }
}

/// The dataset rows each phase's writes took per store, from `history.jsonl` (one streaming pass).
enum HistoryRows {
    private struct Line: Decodable {
        var phase: String
        var op: String
        var row: Int64
        var rows: Int64
    }

    static func read(_ file: URL) throws -> [String: [String: ReplayBundle.RowRange]] {
        var result: [String: [String: ReplayBundle.RowRange]] = [:]
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        let decoder = JSONDecoder()
        var pending = Data()
        func take(_ line: Data) {
            guard !line.isEmpty, let entry = try? decoder.decode(Line.self, from: line), entry.rows > 0 else { return }
            let store = String(entry.op.prefix { $0 != "." })
            let range = result[entry.phase]?[store]
            result[entry.phase, default: [:]][store] = ReplayBundle.RowRange(
                first: min(range?.first ?? entry.row, entry.row), end: max(range?.end ?? 0, entry.row + entry.rows))
        }
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            pending.append(chunk)
            var lineStart = pending.startIndex
            while let newline = pending[lineStart...].firstIndex(of: 0x0A) {
                take(pending[lineStart..<newline])
                lineStart = pending.index(after: newline)
            }
            pending = Data(pending[lineStart...])
        }
        take(pending)
        return result
    }
}
