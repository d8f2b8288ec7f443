import Foundation
import KilnCore
import KilnData
import KilnPipeline
import KilnScenario
import KilnStores
import Logging

/// Runs a load scenario's phases in order against a stack and writes the run directory. Blocking; call it from a
/// plain thread (the CLI's main thread), never from Swift's cooperative pool.
public final class LoadRun {
    public struct Failure: Error, CustomStringConvertible {
        public var code: KilnExitCode
        public var message: String
        public var description: String { message }
    }

    public let scenario: LoadScenario
    public let dataset: Dataset
    public let directory: RunDirectory
    public let stop: StopFlag
    let logger: Logger
    let environment: [String: String]
    let progress: PhaseObserver?
    let identity: RunReport.Identity
    /// The stores this run may drive (the registry's, or a test's).
    let drivers: [StoreDriver]
    /// Rows each store already holds from an earlier run (`kiln run --continue-from`): reads may pick them and
    /// writes continue after them.
    let initialStoreRows: StoreRows
    /// The fault schedule, when the scenario has one.
    public var companion: RunCompanion?
    /// Current primaries that failover faults move; the clients follow them.
    public var primaries: PrimaryDirectory?
    /// Told of every write acknowledged `ok` (black-box staleness probes).
    public var ackTap: (any AckTap)?
    /// How a sink process of `pipeline.workers: processes` is launched: given the sink and the `kiln pipeline` command
    /// (executable, arguments), the command to run instead (e.g. with `--stack`, inside the sink's host). Nil: as is.
    public var pipelineLauncher: PipelineLauncher?
    /// Moves the calling worker thread into a client group's host (a phase's `client_groups`), before it opens any
    /// connection; nil: phases with client groups fail their workers rather than run them from the wrong host.
    public var enterClientGroup: (@Sendable (String) throws -> Void)?
    /// The run's verdict waits for `kiln check` (RunReport.checkRequired): a load that passed is written
    /// `not-checked` (exit 3, the load's own verdict in `load_verdict`) until the check replaces it, so a run killed
    /// between its load and its check never leaves `passed` behind.
    public var checkRequired = false
    /// This process's shard of the run (`kiln run --shard i/n`); nil: the whole run.
    public var shard: ShardSlice?

    /// Every operation name the registry offers, for `LoadScenario.load(knownOperations:)`.
    public static func knownOperations(_ drivers: [StoreDriver] = StoreRegistry.drivers) -> Set<String> {
        Set(drivers.flatMap { driver in driver.operations.map { "\(driver.name).\($0.name)" } })
    }

    /// Every pipeline sink the backends provide (with its bugs and default SLO), for `LoadScenario.load(knownSinks:)`.
    public static func knownSinks() -> [PipelineSpec.KnownSink] { Pipeline.knownSinks }

    public init(
        scenario: LoadScenario, dataset: Dataset, directory: RunDirectory, stop: StopFlag, environment: [String: String],
        revision: String?, logger: Logger, progress: PhaseObserver?, drivers: [StoreDriver] = StoreRegistry.drivers,
        initialStoreRows: StoreRows = StoreRows()
    ) throws(Failure) {
        self.drivers = drivers
        self.initialStoreRows = initialStoreRows
        self.scenario = scenario
        self.dataset = dataset
        self.directory = directory
        self.stop = stop
        self.environment = environment
        self.logger = logger
        self.progress = progress
        identity = RunReport.Identity(
            id: directory.url.lastPathComponent, scenario: scenario.name, scenarioFile: scenario.file.path,
            datasetSpec: scenario.dataset.spec.path, seed: scenario.dataset.seed, datasetRows: dataset.rows,
            stack: scenario.stack.name, namespace: scenario.namespace, kilnRevision: revision,
            host: ProcessInfo.processInfo.hostName, cores: ProcessInfo.processInfo.activeProcessorCount)
        try Self.validateRows(scenario, datasetRows: dataset.rows)
        if let problem = Self.pipelineProblem(scenario, drivers: drivers) {
            throw Failure(code: .invalidInput, message: problem.description)
        }
    }

    /// The first phase with `pipeline_depth` > 1 whose mix has an operation its client does not pipeline
    /// (`StoreDriver.pipelinedOperations`: today PostgreSQL's point read), at the field.
    public static func pipelineProblem(
        _ scenario: LoadScenario, drivers: [StoreDriver] = StoreRegistry.drivers
    ) -> SpecError? {
        for phase in scenario.phases where phase.pipelineDepth > 1 {
            for weighted in phase.mix where weighted.weight > 0 {
                let parts = weighted.name.split(separator: ".", maxSplits: 1).map(String.init)
                var pipelined = false
                if parts.count == 2, let driver = drivers.first(where: { $0.name == parts[0] }),
                    let operation = driver.operation(named: parts[1])
                {
                    pipelined = driver.pipelinedOperations.contains(operation)
                }
                if !pipelined {
                    let pipelinable = drivers.flatMap { driver in
                        driver.pipelinedOperations.map { "\(driver.name).\($0.name)" }
                    }.sorted()
                    return SpecError(
                        at: phase.pipelineDepthSource, field: "phases.pipeline_depth",
                        message: "phase '\(phase.name)': \(weighted.name) is not pipelined by its client (operations "
                            + "that pipeline: \(pipelinable.joined(separator: ", "))); remove pipeline_depth or the operation")
                }
            }
        }
        return nil
    }

    /// Bulk phases must fit in the dataset: each store's rows are loaded once.
    static func validateRows(_ scenario: LoadScenario, datasetRows: Int64) throws(Failure) {
        if let problem = rowsProblem(scenario, datasetRows: datasetRows) {
            throw Failure(code: .invalidInput, message: problem.description)
        }
    }

    /// The first bulk phase that loads more rows into a store than the dataset holds, at the phase's `rows`.
    public static func rowsProblem(_ scenario: LoadScenario, datasetRows: Int64) -> SpecError? {
        var loaded: [String: Int64] = [:]
        for phase in scenario.phases {
            guard case .bulk(let rows, _, let operations, _, _) = phase.executor else { continue }
            for store in operations.map({ String($0.split(separator: ".")[0]) }) {
                loaded[store, default: 0] += rows
                if loaded[store]! > datasetRows {
                    return SpecError(
                        at: phase.rowsSource, field: "phases.rows",
                        message: "phase '\(phase.name)': bulk loads \(loaded[store]!) rows into \(store), but the "
                            + "dataset has \(datasetRows) (raise dataset.rows)")
                }
            }
        }
        return nil
    }

    /// Runs every phase (until the stop flag is raised) and returns the final report, also written to the run
    /// directory. A store that cannot be reached is recorded in its ops' outcomes, not thrown; only a store whose
    /// setup fails before the first phase throws (`stackUnavailable`).
    public func run() throws(Failure) -> RunReport {
        let runStart = MonotonicClock.now()
        var report = RunReport(
            identity: identity, startedAt: MonotonicClock.wallMillis(), endedAt: nil, complete: false,
            interrupted: false, phases: [], verdict: .running, exitCode: nil, storeRows: [:])
        report.checkRequired = checkRequired
        try? directory.writeReport(report)
        let context = ClientContext(
            stack: scenario.stack, dataset: dataset, namespace: scenario.namespace, timeout: scenario.timeout,
            environment: environment, logger: logger, primaries: primaries)
        try setUpStores(context)
        var pipeline = try startPipeline(context)
        var pipelineProcesses: PipelineProcesses?
        if let spec = scenario.pipeline, spec.processes, pipeline != nil {
            pipeline = nil
            do {
                pipelineProcesses = try PipelineProcesses.start(
                    spec: spec, scenarioFile: scenario.file, directory: directory.url, logger: logger,
                    launcher: pipelineLauncher, context: context)
            } catch {
                throw Failure(code: .internalError, message: "pipeline: cannot start the sink processes: \(error)")
            }
        }

        var storeRows = initialStoreRows
        // The fault schedule's clock is the first phase's: `at: 1s` is 1 s after that phase's clock starts (after its
        // workers connected), so the second before a fault is whole in the timeline.
        var companionStarted = false
        let processes = pipelineProcesses
        let startCompanion: () -> Void = { [companion] in companion?.phasesStarting(sinkProcesses: processes) }
        // Builds started in the background (`index_build: background`), each with its phase's index in report.phases.
        var backgroundBuilds: [(phaseIndex: Int, build: BackgroundIndexBuild)] = []
        func awaitBuilds(where needed: (BackgroundIndexBuild) -> Bool) {
            backgroundBuilds.removeAll { entry in
                guard needed(entry.build) else { return false }
                if !entry.build.isFinished {
                    logger.info("waiting for the secondary indexes of phase \(report.phases[entry.phaseIndex].name) (\(entry.build.stores.joined(separator: ", ")))")
                }
                let result = entry.build.wait()
                report.phases[entry.phaseIndex].indexBuildSeconds = result.seconds
                report.phases[entry.phaseIndex].indexBuildError = result.error
                report.phases[entry.phaseIndex].indexBuildInBackground = true
                try? directory.writeReport(report)
                return true
            }
        }
        for (number, phase) in scenario.phases.enumerated() {
            if stop.isRaised { break }
            let (operations, stores) = plan(phase)
            // A phase never runs against a store whose indexes are still being built.
            awaitBuilds { !Set($0.stores).isDisjoint(with: stores) }
            let drivers = stores.map { driver(named: $0) }
            let phaseContext = PhaseContext(
                phase: phase, phaseNumber: number, operations: operations, stores: stores, drivers: drivers,
                clientContext: context, storeRows: storeRows, seed: scenario.dataset.seed, runStart: runStart,
                stop: stop, ackTap: ackTap, enterClientGroup: enterClientGroup, shard: shard)
            let recorder = DirectoryObserver(directory: directory, next: progress)
            let deferred = phase.deferIndexes ? deferIndexes(stores: stores, context: context) : []
            var measurement = PhaseRunner(
                context: phaseContext, logger: logger, observer: recorder,
                clockStarted: companionStarted ? nil : startCompanion
            ).run()
            companionStarted = true
            var indexBuild: (seconds: Double?, error: String?) = (nil, nil)
            if phase.indexBuild == .background, !deferred.isEmpty, !stop.isRaised {
                logger.info("\(deferred.map(\.store).joined(separator: ", ")): the index build runs in the background while the next phases run")
                backgroundBuilds.append(
                    (report.phases.count, BackgroundIndexBuild(deferred, phase: phase.name, logger: logger)))
            } else {
                indexBuild = buildIndexes(deferred, phase: phase.name)
                measurement.seconds += indexBuild.seconds ?? 0
            }
            directory.writeHistograms(measurement)
            for (index, store) in stores.enumerated() where shard != nil {
                storeRows[store] = min(phaseContext.shardRowsAfterPhase(storeIndex: index), dataset.rows)
            }
            for (index, store) in stores.enumerated() where shard == nil {
                var written = phaseContext.writeCursors[index].value
                if case .bulk(let rows, _, _, _, _) = phase.executor {
                    written = min(written, phaseContext.readableRows[index] + rows)
                }
                storeRows[store] = min(max(storeRows[store], written), dataset.rows)
            }
            // A shard measured 1/n of the load: thresholds are judged on the merged run (`kiln merge`), never here.
            let verdicts = shard == nil ? ThresholdEvaluation.evaluate(measurement) : []
            var phaseReport = RunReport.phase(measurement, verdicts: verdicts)
            phaseReport.indexBuildSeconds = indexBuild.seconds
            phaseReport.indexBuildError = indexBuild.error
            report.phases.append(phaseReport)
            report.storeRows = storeRows.rows
            for verdict in verdicts where !verdict.passed {
                logger.warning(
                    "threshold failed: \(verdict.phase) \(verdict.scope): \(verdict.expression) (observed \(verdict.observedText))")
            }
            try? directory.writeReport(report)
        }
        awaitBuilds { _ in true }
        if let companion {
            companion.phasesEnded()
            report.faults = companion.faultTimeline
            try? directory.writeReport(report)
        }
        if let children = pipelineProcesses {
            report.pipeline = children.finish(stop: stop)
        }
        if let pipeline {
            pipeline.markLoadEnded()
            logger.info("pipeline: waiting for the sinks to catch up (at most \(pipeline.spec.convergenceTimeout))")
            let converged = pipeline.waitForConvergence { stop.isRaised }
            report.pipeline = pipeline.stop()
            logger.info("pipeline: \(converged ? "every sink caught up" : "NOT every sink caught up")")
            for sink in report.pipeline ?? [] {
                let p99 = sink.staleness.p99.map { String(format: "%.0f ms", $0) } ?? "-"
                logger.info(
                    "pipeline \(sink.sink): \(sink.messages) messages, \(sink.applied) applied, \(sink.duplicatesSkipped) redelivered, \(sink.skipped) skipped, \(sink.crashes) crashes, \(sink.errors) errors, staleness p99 \(p99)")
            }
        }
        report.interrupted = stop.isRaised
        report.complete = !stop.isRaised && report.phases.count == scenario.phases.count
            && report.phases.allSatisfy(\.complete)
        // The load's own verdict; a required check that has not run yet makes a passing load `not-checked`.
        // A failed index rebuild leaves a store without its indexes: never a pass (RunData.partialReason says why).
        var load = RunResults(
            thresholdsFailed: report.phases.contains { $0.thresholds.contains { !$0.passed } },
            interrupted: !report.complete, partial: report.phases.contains { $0.indexBuildError != nil })
        report.verdict = load.verdict
        if checkRequired, report.verdict == .passed {
            report.loadVerdict = report.verdict
            load.notChecked = true
            report.verdict = load.verdict
        }
        report.exitCode = report.verdict.exitCode.rawValue
        report.endedAt = MonotonicClock.wallMillis()
        do {
            try directory.writeReport(report)
        } catch {
            throw Failure(code: .internalError, message: "cannot write \(directory.url.path)/report.json: \(error)")
        }
        return report
    }

    /// Scenario parsing checked every name against the same drivers, so a miss is a bug.
    func driver(named name: String) -> StoreDriver {
        guard let driver = drivers.first(where: { $0.name == name }) else {
            preconditionFailure("store \(name) passed scenario validation but has no driver")
        }
        return driver
    }

    /// The phase's operations resolved against the registry, and the stores they use (in first-use order).
    func plan(_ phase: LoadScenario.Phase) -> ([PlannedOperation], [String]) {
        var stores: [String] = []
        var operations: [PlannedOperation] = []
        for weighted in phase.mix where weighted.weight > 0 {
            let parts = weighted.name.split(separator: ".", maxSplits: 1).map(String.init)
            let driver = driver(named: parts[0])
            guard let operation = driver.operation(named: parts[1]) else {
                preconditionFailure("operation \(weighted.name) passed scenario validation but its store has no such operation")
            }
            if !stores.contains(parts[0]) { stores.append(parts[0]) }
            operations.append(
                PlannedOperation(
                    name: weighted.name, store: parts[0], storeIndex: stores.firstIndex(of: parts[0])!,
                    operation: operation, kind: operation.kind,
                    weight: weighted.weight))
        }
        return (operations, stores)
    }

    /// Sets up the sinks of the scenario's reference pipeline and starts its workers; nil without a pipeline.
    func startPipeline(_ context: ClientContext) throws(Failure) -> Pipeline? {
        guard let spec = scenario.pipeline else { return nil }
        let pipeline = Pipeline(spec: spec, context: context, logger: logger)
        do {
            try pipeline.setUp(fresh: scenario.fresh)
        } catch {
            throw Failure(code: .stackUnavailable, message: "pipeline: setup failed: \(error)")
        }
        if !spec.processes { pipeline.start() }
        let bugs = spec.bugs.isEmpty ? "no planted bugs" : "planted bugs: \(spec.bugs.map(\.name).joined(separator: ", "))"
        logger.info("pipeline: sinks \(spec.sinks.map(\.rawValue).joined(separator: ", ")) started (\(bugs))")
        return pipeline
    }

    /// Drops the secondary indexes of the phase's stores that have them; returns those clients (open, for the
    /// build afterwards). A store whose drop fails keeps its indexes and loads with them (logged).
    func deferIndexes(stores: [String], context: ClientContext) -> [(store: String, client: any SecondaryIndexes)] {
        var deferred: [(store: String, client: any SecondaryIndexes)] = []
        for store in stores {
            guard let client = try? driver(named: store).open(context) else { continue }
            guard let indexed = client as? any SecondaryIndexes else {
                client.close()
                continue
            }
            do {
                try indexed.dropSecondaryIndexes()
                deferred.append((store, indexed))
                logger.info("\(store): secondary indexes dropped for the bulk load; they are rebuilt after it")
            } catch {
                logger.warning("\(store): could not drop the secondary indexes (\(error)); loading with them")
                indexed.close()
            }
        }
        return deferred
    }

    /// Builds the indexes `deferIndexes` dropped — also after an interrupted phase — and closes the clients.
    func buildIndexes(
        _ deferred: [(store: String, client: any SecondaryIndexes)], phase: String
    ) -> (seconds: Double?, error: String?) {
        Self.buildIndexes(deferred, phase: phase, logger: logger)
    }

    /// `buildIndexes` on the calling thread, which owns `deferred`'s clients until it returns (they are closed).
    static func buildIndexes(
        _ deferred: [(store: String, client: any SecondaryIndexes)], phase: String, logger: Logger
    ) -> (seconds: Double?, error: String?) {
        guard !deferred.isEmpty else { return (nil, nil) }
        let start = MonotonicClock.now()
        var failure: String?
        for (store, client) in deferred {
            logger.info("\(store): building the secondary indexes (phase \(phase))")
            do {
                try client.buildSecondaryIndexes()
            } catch {
                failure = "\(store): \(error)"
                logger.error("\(store): building the secondary indexes failed: \(error)")
            }
            client.close()
        }
        let seconds = Double(MonotonicClock.now() &- start) / 1e9
        if let failure {
            logger.error(
                "secondary indexes NOT all built (phase \(phase), \(String(format: "%.1f", seconds)) s): \(failure); the run is partial")
        } else {
            logger.info("secondary indexes built in \(String(format: "%.1f", seconds)) s (phase \(phase))")
        }
        return (seconds, failure)
    }

    /// Opens one client per store the scenario uses and runs its setup (after teardown when `fresh`).
    func setUpStores(_ context: ClientContext) throws(Failure) {
        var used: [String] = []
        for phase in scenario.phases {
            for store in plan(phase).1 where !used.contains(store) { used.append(store) }
        }
        for store in used {
            try Self.setUp(driver(named: store), context, fresh: scenario.fresh, logger: logger)
        }
    }
}

/// Appends each second to the run directory, then hands it on (to the progress line).
final class DirectoryObserver: PhaseObserver {
    let directory: RunDirectory
    let next: PhaseObserver?

    init(directory: RunDirectory, next: PhaseObserver?) {
        self.directory = directory
        self.next = next
    }

    func phaseStarted(_ phase: LoadScenario.Phase, number: Int, operations: [PlannedOperation]) {
        next?.phaseStarted(phase, number: number, operations: operations)
    }

    func secondEnded(
        _ second: TimelineSecond, phase: LoadScenario.Phase, operations: [PlannedOperation], elapsed: Double,
        history: [CompletedOperation]
    ) {
        directory.appendTimeline(second, phase: phase.name, operations: operations)
        directory.appendHistory(history, phase: phase.name, operations: operations)
        next?.secondEnded(second, phase: phase, operations: operations, elapsed: elapsed, history: history)
    }
}


/// A deferred secondary-index build on its own thread (`index_build: background`).
/// Ownership: the build thread owns the clients from `init` until it has closed them; no other thread touches them.
/// `wait()` blocks until the build ends (there is no timeout: the build has none either, as at the end of a phase;
/// an interrupted run still waits, so no store is left half-built without the report saying so).
final class BackgroundIndexBuild: @unchecked Sendable {
    let stores: [String]
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var result: (seconds: Double?, error: String?)?

    init(_ deferred: [(store: String, client: any SecondaryIndexes)], phase: String, logger: Logger) {
        stores = deferred.map(\.store)
        nonisolated(unsafe) let owned = deferred
        let thread = Thread { [self] in
            let outcome = LoadRun.buildIndexes(owned, phase: phase, logger: logger)
            lock.withLock { result = outcome }
            done.signal()
        }
        thread.name = "kiln-index-build"
        thread.start()
    }

    var isFinished: Bool { lock.withLock { result != nil } }

    /// The build's seconds and error; blocks until it has ended. Call at most once.
    func wait() -> (seconds: Double?, error: String?) {
        done.wait()
        return lock.withLock { result! }
    }
}
