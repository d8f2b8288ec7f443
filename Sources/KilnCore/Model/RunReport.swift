import Foundation

/// `report.json` of a run directory. Versioned by `schema`; fields are only ever added within a version.
/// Latencies are milliseconds; rates per second; times Unix milliseconds.
public struct RunReport: Codable, Sendable {
    public static let schemaVersion = "kiln.report/1"

    public struct Identity: Codable, Sendable {
        public var id: String
        public var scenario: String
        public var scenarioFile: String
        public var datasetSpec: String
        public var seed: UInt64
        public var datasetRows: Int64
        public var stack: String
        public var namespace: String
        public var kilnRevision: String?
        public var host: String
        public var cores: Int

        public init(
            id: String, scenario: String, scenarioFile: String, datasetSpec: String, seed: UInt64, datasetRows: Int64,
            stack: String, namespace: String, kilnRevision: String?, host: String, cores: Int
        ) {
            self.id = id
            self.scenario = scenario
            self.scenarioFile = scenarioFile
            self.datasetSpec = datasetSpec
            self.seed = seed
            self.datasetRows = datasetRows
            self.stack = stack
            self.namespace = namespace
            self.kilnRevision = kilnRevision
            self.host = host
            self.cores = cores
        }
    }

    public struct Latency: Codable, Sendable {
        public var p50: Double?
        public var p90: Double?
        public var p95: Double?
        public var p99: Double?
        public var p999: Double?
        public var p9999: Double?
        public var max: Double?
        public var mean: Double?

        public init(
            p50: Double?, p90: Double?, p95: Double?, p99: Double?, p999: Double?, p9999: Double?, max: Double?,
            mean: Double?
        ) {
            self.p50 = p50
            self.p90 = p90
            self.p95 = p95
            self.p99 = p99
            self.p999 = p999
            self.p9999 = p9999
            self.max = max
            self.mean = mean
        }
    }

    public struct Operation: Codable, Sendable {
        public var name: String
        public var store: String
        public var kind: String
        public var ok: Int64
        public var fail: Int64
        public var info: Int64
        public var errors: [String: Int64]
        public var dropped: Int64
        public var late: Int64
        public var rows: Int64
        /// Completed ops per second of the phase's arrival window (closed: of the phase; bulk: of the operation's
        /// active span).
        public var throughput: Double
        public var rowsPerSecond: Double?
        /// From the intended start in open-model phases (includes queueing); from the actual start otherwise.
        public var latencyMs: Latency
        /// From the actual start: the store's own time.
        public var serviceMs: Latency

        public init(
            name: String, store: String, kind: String, ok: Int64, fail: Int64, info: Int64, errors: [String: Int64],
            dropped: Int64, late: Int64, rows: Int64, throughput: Double, rowsPerSecond: Double?, latencyMs: Latency,
            serviceMs: Latency
        ) {
            self.name = name
            self.store = store
            self.kind = kind
            self.ok = ok
            self.fail = fail
            self.info = info
            self.errors = errors
            self.dropped = dropped
            self.late = late
            self.rows = rows
            self.throughput = throughput
            self.rowsPerSecond = rowsPerSecond
            self.latencyMs = latencyMs
            self.serviceMs = serviceMs
        }
    }

    public struct Phase: Codable, Sendable {
        public var name: String
        public var executor: String
        public var workers: Int
        public var startedAt: Int64
        public var seconds: Double
        public var complete: Bool
        public var plannedOps: Int64?
        public var operations: [Operation]
        public var thresholds: [ThresholdVerdict]
        /// Bulk with `defer_indexes`: seconds spent building the secondary indexes after the load (part of
        /// `seconds`, not of the rows/s — unless `indexBuildInBackground`), or the error that stopped the build.
        public var indexBuildSeconds: Double?
        public var indexBuildError: String?
        /// `index_build: background`: the build ran beside the phases that followed (its seconds are not in
        /// `seconds`); nil otherwise.
        public var indexBuildInBackground: Bool? = nil
        /// Open model with `pipeline_depth` > 1: the depth, and the ops sent while an earlier op of the same
        /// connection was outstanding (0: the phase never needed to pipeline); nil otherwise.
        public var pipelineDepth: Int? = nil
        public var pipelinedOps: Int64? = nil
        /// Peak resident memory of the kiln process so far (getrusage), at the phase's end, in MiB.
        public var peakRssMib: Double?

        public init(
            name: String, executor: String, workers: Int, startedAt: Int64, seconds: Double, complete: Bool,
            plannedOps: Int64?, operations: [Operation], thresholds: [ThresholdVerdict], indexBuildSeconds: Double? = nil,
            indexBuildError: String? = nil, peakRssMib: Double? = nil
        ) {
            self.name = name
            self.executor = executor
            self.workers = workers
            self.startedAt = startedAt
            self.seconds = seconds
            self.complete = complete
            self.plannedOps = plannedOps
            self.operations = operations
            self.thresholds = thresholds
            self.indexBuildSeconds = indexBuildSeconds
            self.indexBuildError = indexBuildError
            self.peakRssMib = peakRssMib
        }
    }

    public var schema = RunReport.schemaVersion
    public var identity: Identity
    public var startedAt: Int64
    public var endedAt: Int64?
    /// False while the run is going and after an interruption: the report covers only what ran.
    public var complete: Bool
    public var interrupted: Bool
    public var phases: [Phase]
    /// `passed`, `thresholds-failed`, `interrupted`, `running` from the load (`not-checked` instead of `passed` while a
    /// required check has not run); after `kiln check` (or `kiln run
    /// --check`), or when a run's faults or drills change it, the verdict of load, faults, drills and check together
    /// (`anomaly`, `unknown`, `partial` too), the same one summary.md, report.html, junit.xml and the exit code give.
    public var verdict: RunVerdict
    public var exitCode: Int32?
    /// The load's own verdict, kept when a check replaced `verdict`; nil before any check.
    public var loadVerdict: RunVerdict? = nil
    /// Store rows written per store at the end: `[0, n)` were handed to writes (for `kiln check`).
    public var storeRows: [String: Int64]
    /// The reference pipeline's sink workers, when the scenario ran one.
    public var pipeline: [SinkReport]? = nil
    /// Fault timeline and drill results (RunReportFaults.swift); nil when the run had no faults.
    public var faults: [Fault]? = nil
    public var drills: [Drill]? = nil
    /// True when the run's verdict waits for `kiln check`: a run with faults (a drill is judged by its check) or one
    /// started with `kiln run --check`. Until check.json exists such a run is `not-checked` (exit 3), never `passed`.
    /// Nil in reports written before this field: the report writers then treat a run with faults as required.
    public var checkRequired: Bool? = nil
    /// Why a required check did not run (`--no-check given`, `the run was interrupted before the check`, `the check
    /// could not run: …`); nil when it ran or was not required.
    public var notChecked: String? = nil

    public init(
        identity: Identity, startedAt: Int64, endedAt: Int64?, complete: Bool, interrupted: Bool, phases: [Phase],
        verdict: RunVerdict, exitCode: Int32?, storeRows: [String: Int64]
    ) {
        self.identity = identity
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.complete = complete
        self.interrupted = interrupted
        self.phases = phases
        self.verdict = verdict
        self.exitCode = exitCode
        self.storeRows = storeRows
    }

    /// `checkRequired`, or for an older report whether it had faults.
    public var needsCheck: Bool { checkRequired ?? !(faults ?? []).isEmpty }

    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }

    public static func decode(_ data: Data) throws -> RunReport {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(RunReport.self, from: data)
    }
}

extension RunReport {
    /// The report of a run that was not driven by a scenario (e.g. `kiln elle postgres --run-directory`): no phases,
    /// complete, its check required (its verdict is its check's). `scenario` names the workload.
    public static func standalone(
        id: String, scenario: String, seed: UInt64, stack: String, startedAt: Int64, endedAt: Int64
    ) -> RunReport {
        let identity = Identity(
            id: id, scenario: scenario, scenarioFile: "", datasetSpec: "", seed: seed, datasetRows: 0, stack: stack,
            namespace: "", kilnRevision: nil, host: ProcessInfo.processInfo.hostName,
            cores: ProcessInfo.processInfo.activeProcessorCount)
        var report = RunReport(
            identity: identity, startedAt: startedAt, endedAt: endedAt, complete: true, interrupted: false, phases: [],
            verdict: .notChecked, exitCode: nil, storeRows: [:])
        report.checkRequired = true
        return report
    }
}
