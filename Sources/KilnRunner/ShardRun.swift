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
    /// per shard).
    static func adapt(_ scenario: inout LoadScenario, to slice: ShardSlice, logger: Logger) throws {
        if scenario.faultShard >= slice.count {
            throw Failure(
                code: .invalidInput,
                message: "\(scenario.faultShardSource): fault_shard: \(scenario.faultShard) is not a shard of "
                    + "\(slice.count) (0..<\(slice.count))")
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
        if scenario.faults != nil, slice.index != scenario.faultShard {
            logger.info("shard \(slice): the faults run in shard \(scenario.faultShard)/\(slice.count); this one records its timeline")
            scenario.faults = nil
        }
    }

    /// A shard's own report is never a pass: its thresholds and checks belong to the merged run. The report says
    /// NOT CHECKED (why: `kiln merge`), keeping the load's verdict in `load_verdict`; the process still exits with
    /// the load's code (0 when the load ran to its end, 3 when interrupted), which is what a Kubernetes Job counts.
    static func markAwaitingMerge(_ report: inout RunReport, slice: ShardSlice, directory: URL) -> KilnExitCode {
        let code = KilnExitCode(rawValue: report.exitCode ?? 70) ?? .internalError
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
