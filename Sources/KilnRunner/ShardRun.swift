import Foundation
import KilnCore
import KilnData
import KilnLoad
import KilnScenario
import KilnStores
import Logging

/// `kiln run`'s sharding request: `--shard i/n`, or `--shards N` with the index from `JOB_COMPLETION_INDEX` (what a
/// Kubernetes Indexed Job sets in each pod), and `--setup-only` (the stores' setup a sharded run does once, first).
public struct ShardRequest: Sendable {
    /// Run shard INDEX/COUNT of the scenario (e.g. 0/4).
    public var shard: String?
    /// Run one of N shards; the index is read from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job's pod).
    public var shards: Int?
    /// Only set up the scenario's stores, then exit.
    public var setupOnly = false

    public init(shard: String? = nil, shards: Int? = nil, setupOnly: Bool = false) {
        self.shard = shard
        self.shards = shards
        self.setupOnly = setupOnly
    }

    /// The shard this process runs, nil when unsharded.
    func slice(environment: [String: String]) throws -> ShardSlice? {
        if shard != nil, shards != nil {
            throw Failure(code: .invalidInput, message: "--shard and --shards exclude each other")
        }
        do {
            if let shard { return try ShardSlice.parse(shard) }
            guard let shards else { return nil }
            guard let text = environment["JOB_COMPLETION_INDEX"] else {
                throw Failure(
                    code: .invalidInput,
                    message: "--shards \(shards): JOB_COMPLETION_INDEX is not set (a Kubernetes Indexed Job sets it; "
                        + "elsewhere use --shard INDEX/\(shards))")
            }
            guard let index = Int(text) else {
                throw Failure(
                    code: .invalidInput, message: "--shards: JOB_COMPLETION_INDEX is '\(text.prefix(40))', not an integer")
            }
            return try ShardSlice(index: index, count: shards)
        } catch let invalid as ShardSlice.Invalid {
            throw Failure(code: .invalidInput, message: "--shard: \(invalid)")
        }
    }

    /// Adapts the scenario to shard `slice` (or refuses it, exit 64): no teardown (`--setup-only` does it once),
    /// faults only in the scenario's `fault_shard`, no pipeline (its sinks would consume every shard's messages once
    /// per shard). Returns the fault schedule this shard does NOT run but records as planned (`PlannedFaultTimeline`):
    /// nil in the fault shard and in a scenario without faults.
    @discardableResult
    static func adapt(_ scenario: inout LoadScenario, to slice: ShardSlice, logger: Logger) throws -> FaultScheduleSpec? {
        if let refusal = ShardSlice.faultShardRefusal(scenario, count: slice.count) {
            throw Failure(code: .invalidInput, message: refusal)
        }
        if scenario.pipeline != nil {
            throw Failure(
                code: .invalidInput,
                message: "\(scenario.file.path): pipeline: a scenario with a reference pipeline cannot be sharded "
                    + "(each shard's sinks would consume every shard's messages)")
        }
        let writes = Set(LoadRun.knownOperations().filter { LoadRun.isWrite($0) })
        if let refusal = ShardSlice.refusal(scenario, count: slice.count, knownWrites: writes) {
            throw Failure(code: .invalidInput, message: "\(scenario.file.path): \(refusal)")
        }
        if scenario.fresh {
            logger.info(
                "shard \(slice): no fresh teardown (run `kiln run SCENARIO --setup-only` once before the shards)")
            scenario.fresh = false
        }
        guard let faults = scenario.faults, slice.index != scenario.faultShard else { return nil }
        logger.info(
            "shard \(slice): the faults run in shard \(scenario.faultShard)/\(slice.count); this one records their planned timeline")
        scenario.faults = nil
        return faults
    }

    /// A shard's own report is never a pass: its thresholds and checks belong to the merged run. The report says
    /// NOT CHECKED (why: `kiln merge`), keeping the load's verdict in `load_verdict`; the process still exits with
    /// the load's code (0 when the load ran to its end, 3 when interrupted), which is what a Kubernetes Job counts.
    static func markAwaitingMerge(_ report: inout RunReport, slice: ShardSlice, directory: URL) -> KilnExitCode {
        let code = KilnExitCode(rawValue: report.exitCode ?? 70) ?? .internalError
        // The faults this shard ran itself (the fault shard's) name it; planned-only entries already name theirs.
        if var faults = report.faults {
            for index in faults.indices where faults[index].runByShard == nil { faults[index].runByShard = slice.index }
            report.faults = faults
        }
        report.checkRequired = true
        report.notChecked = "shard \(slice) of a sharded run: its thresholds and checks are judged on the merged run "
            + "(kiln merge SHARD_DIR... -o MERGED && kiln check MERGED)"
        if report.verdict == .passed {
            report.loadVerdict = report.verdict
            report.verdict = .notChecked
            report.exitCode = KilnExitCode.unknown.rawValue
        }
        try? RunReport.encoder.encode(report).write(to: directory.appendingPathComponent("report.json"), options: .atomic)
        return code
    }

    static func writeHeader(
        _ slice: ShardSlice, scenario: LoadScenario, datasetRows: Int64, phases: [String],
        proxies: [ShardHeader.ProxyRoute], directory: URL
    ) throws {
        var header = ShardHeader(
            slice: slice, scenario: scenario.name, seed: scenario.dataset.seed, datasetRows: datasetRows,
            namespace: scenario.namespace, faultShard: scenario.faultShard, phases: phases)
        header.proxies = proxies.isEmpty ? nil : proxies
        do {
            try header.write(to: directory)
        } catch {
            throw Failure(code: .internalError, message: "cannot write \(directory.path)/\(ShardHeader.fileName): \(error)")
        }
    }
}

extension LoadRun {
    /// Whether `store.operation` writes dataset rows (kind `write`).
    public static func isWrite(_ name: String) -> Bool {
        let parts = name.split(separator: ".", maxSplits: 1).map(String.init)
        guard parts.count == 2, let driver = StoreRegistry.drivers.first(where: { $0.name == parts[0] }) else { return false }
        return driver.operations.contains { $0.name == parts[1] && $0.kind == .write }
    }
}

/// The fault schedule of a shard that does not run the faults (`fault_shard` names another shard): the same plan
/// the fault shard runs (`FaultScheduleSpec.plan`, same seed, offsets from this shard's first phase), recorded in
/// report.json as `planned_only` entries run by shard `faultShard` — never started here, `verified: unknown`, no
/// drill — so this shard's report never shows a fault as verified that it did not run, and `kiln merge` can tell the
/// shard that ran the faults from the others. Runs nothing; `phasesEnded` returns at once (no heal wait: nothing to
/// heal here).
final class PlannedFaultTimeline: RunCompanion, @unchecked Sendable {
    // @unchecked: `startedAt` is only touched under `lock`; the rest is immutable after init.
    let plan: [FaultScheduleSpec.Instance]
    let faultShard: Int
    let count: Int
    private let lock = NSLock()
    private var startedAt: Date?

    init(spec: FaultScheduleSpec, seed: UInt64, faultShard: Int, count: Int) {
        plan = spec.plan(seed: seed)
        self.faultShard = faultShard
        self.count = count
    }

    func phasesStarting(sinkProcesses: SinkProcessControl?) {
        lock.lock()
        startedAt = Date()
        lock.unlock()
    }

    func phasesEnded() {}

    var faultTimeline: [RunReport.Fault] {
        lock.lock()
        let start = startedAt
        lock.unlock()
        return plan.map { instance in
            let planned = start.map { Int64(($0.timeIntervalSince1970 + Self.seconds(instance.start)) * 1000) }
            var fault = RunReport.Fault(
                name: instance.name, kind: instance.entry.kind.rawValue, target: instance.entry.target,
                plannedStart: planned, verified: .unknown,
                note: "planned only: run by shard \(faultShard)/\(count) (fault_shard); this shard ran no fault and "
                    + "records the plan (kiln merge takes shard \(faultShard)'s record)")
            fault.runByShard = faultShard
            fault.plannedOnly = true
            return fault
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        let parts = duration.components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
