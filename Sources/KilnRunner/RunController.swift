import Dispatch
import Foundation
import KilnCheck
import KilnCore
import KilnData
import KilnDurability
import KilnLoad
import KilnFaults
import KilnReport
import KilnReplay
import KilnScenario
import KilnStack
import KilnStores
import Logging

/// `kiln run`: resolves the scenario and its stack, sets the stores up, runs the phases with their faults, pipeline
/// and probes, writes the run directory, runs the check after the heal when the run is judged by it, and returns
/// the run's exit code (`RunResults`). Errors are `Failure`s with their documented codes; the caller (the CLI's one
/// handler, or a test) maps them. Prints the run's summary and verdict on stdout, progress on stderr.
public struct RunController {
    /// Scenario file, e.g. Scenarios/nightly-regression.yaml (nil only with `listOperations`).
    public var scenario: String?
    /// Directory that holds run directories (default: Reports/runs of this checkout).
    public var runsDirectory: String?
    /// Run id (default: UTC time and scenario name).
    public var id: String?
    /// Stack file to run on instead of the scenario's `stack:` (copied into the run directory as stack.yaml).
    public var stackFile: String?
    /// Override of the scenario's dataset rows (K/M/B allowed).
    public var rows: String?
    /// Serve live metrics in Prometheus text format on this port.
    public var metricsPort: Int?
    public var metricsAddress = "127.0.0.1"
    /// An earlier run directory whose stores' data this run continues.
    public var continueFrom: String?
    /// Only these phases, in order; empty: all.
    public var phases: [String] = []
    /// Faults on hosts listed in the scenario's chaos.allow are confirmed.
    public var confirmChaos = false
    /// Check after the run (a scenario with faults does this unless `noCheck`).
    public var check = false
    /// Do not check after a scenario with faults: the run is then NOT CHECKED.
    public var noCheck = false
    /// Print the operations each store offers, and nothing else.
    public var listOperations = false
    public var sharding = ShardRequest()
    public var verbose = false

    public init(scenario: String? = nil) {
        self.scenario = scenario
    }

    public func run() throws -> KilnExitCode {
            if listOperations {
                for driver in StoreRegistry.drivers {
                    for operation in driver.operations {
                        let name = "\(driver.name).\(operation.name)"
                        print("\(name.padding(toLength: 30, withPad: " ", startingAt: 0)) \(operation.kind.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0)) \(operation.summary)")
                    }
                }
                return .ok
            }
            guard let scenario else { throw Failure(code: .invalidInput, message: "missing SCENARIO (a file in Scenarios/)") }
            guard !(check && noCheck) else { throw Failure(code: .invalidInput, message: "--check and --no-check exclude each other") }
            var logger = Logger(label: "kiln.run") { _ in ConsoleLogHandler(logLevel: .info) }
            logger.logLevel = verbose ? .debug : .info
            let paths = KilnPaths.resolve()
            let url = URL(fileURLWithPath: scenario)
            if DurabilityDrillSpec.isDurabilityDrill(url) {
                guard phases.isEmpty, continueFrom == nil, rows == nil, metricsPort == nil else {
                    throw Failure(
                        code: .invalidInput,
                        message: "\(url.path) is a durability drill: --phase, --continue-from, --rows and --metrics-port do not apply")
                }
                return try DurabilityDrillRun.run(
                    url: url, stackFile: stackFile, runsDirectory: runsDirectory, id: id, noCheck: noCheck, logger: logger)
            }
            var loaded = try LoadScenario.load(contentsOf: url, knownOperations: LoadRun.knownOperations(),
                knownSinks: LoadRun.knownSinks())
            if let stackFile {
                do {
                    loaded.stack = try StackDefinition.load(contentsOf: URL(fileURLWithPath: stackFile))
                } catch {
                    throw Failure(code: .invalidInput, message: "\(error)")
                }
            }
            let stackPaths = paths.forStack(loaded.stack)
            // Another stack's state.json must not lead the leftover sweep and the faults to its servers.
            if let refusal = StackDirectoryGuard.refusal(loaded.stack, paths: stackPaths) {
                throw Failure(code: .invalidInput, message: refusal)
            }
            if !phases.isEmpty {
                let known = loaded.phases.map(\.name)
                for name in phases where !known.contains(name) {
                    throw Failure(
                        code: .invalidInput,
                        message: "--phase: no phase '\(name)' in \(url.path) (phases: \(known.joined(separator: ", ")))")
                }
                loaded.phases = loaded.phases.filter { phases.contains($0.name) }
            }
            // Faults between hosts and client groups need a hosts stack: refused before anything starts (as
            // `kiln validate` does).
            if let refusal = HostsRequirement.refusal(loaded) {
                throw Failure(code: .invalidInput, message: "\(refusal)")
            }
            // Every store the (selected) phases drive needs its section in the stack.
            do {
                try loaded.checkStackServesStores()
            } catch {
                throw Failure(code: .invalidInput, message: "\(error)")
            }
            var initialRows = StoreRows()
            if let continueFrom {
                let file = URL(fileURLWithPath: continueFrom).appendingPathComponent("report.json")
                guard let data = try? Data(contentsOf: file), let earlier = try? RunReport.decode(data) else {
                    throw Failure(code: .invalidInput, message: "--continue-from: cannot read \(file.path)")
                }
                guard earlier.identity.namespace == loaded.namespace, earlier.identity.seed == loaded.dataset.seed else {
                    throw Failure(
                        code: .invalidInput,
                        message: "--continue-from: \(continueFrom) used namespace \(earlier.identity.namespace) and seed "
                            + "\(earlier.identity.seed); this scenario uses \(loaded.namespace) and \(loaded.dataset.seed)")
                }
                initialRows.rows = earlier.storeRows
                loaded.fresh = false
            }
            var rowCount = loaded.dataset.rows
            if let rows {
                guard let parsed = CountSuffix.parse(rows) else {
                    throw Failure(code: .invalidInput, message: "--rows: expected a count such as 10M, found '\(rows)'")
                }
                rowCount = Int64(parsed)
            }
            let spec = try DatasetSpec.load(contentsOf: loaded.dataset.spec)
            let dataset: Dataset
            do {
                dataset = try Dataset(spec: spec, seed: loaded.dataset.seed, rows: rowCount)
            } catch {
                throw Failure(code: .invalidInput, message: "\(loaded.dataset.rowsSource): dataset.rows: \(error)")
            }
            if continueFrom != nil, let earlierRows = initialRows.rows.values.max(), earlierRows > dataset.rows {
                throw Failure(
                    code: .invalidInput,
                    message: "--continue-from: the earlier run wrote \(earlierRows) rows; this dataset has only \(dataset.rows)")
            }
            let shardSlice = try sharding.slice(environment: ProcessInfo.processInfo.environment)
            if sharding.setupOnly {
                do throws(LoadRun.Failure) {
                    _ = try LoadRun.setUpOnly(
                        scenario: loaded, dataset: dataset, environment: ProcessInfo.processInfo.environment,
                        logger: logger)
                } catch {
                    throw Failure(code: error.code, message: error.message)
                }
                return .ok
            }
            var plannedElsewhere: FaultScheduleSpec?
            if let shardSlice {
                if check { throw Failure(code: .invalidInput, message: "--check: a shard is checked after `kiln merge` (kiln check MERGED_RUN)") }
                plannedElsewhere = try ShardRequest.adapt(&loaded, to: shardSlice, logger: logger)
            }
            let root = runsDirectory.map { URL(fileURLWithPath: $0) }
                ?? paths.home.appendingPathComponent("Reports/runs")
            let directory: RunDirectory
            do {
                directory = try RunDirectory(
                    root: root, id: id ?? RunDirectory.makeID(scenario: loaded.name), scenarioFile: url)
            } catch {
                throw Failure(code: .invalidInput, message: "\(error)")
            }
            // bundle.json: the plan now, what happened once the run (and its check) ended, whatever way it ends.
            let bundlePlan = ReplayBundleRecording.writePlan(
                loaded, scenarioFile: url, stackFile: stackFile, datasetRows: dataset.rows, directory: directory.url,
                home: paths.home, logger: logger)
            defer { ReplayBundleRecording.writeOutcome(bundlePlan, directory: directory.url, logger: logger) }
            let stop = StopFlag()
            let signals = SignalWatch(stop: stop, logger: logger)
            defer { signals.cancel() }
            let progress = ProgressLine(terminal: isatty(STDERR_FILENO) == 1, logger: logger)
            var observer: PhaseObserver = progress
            var metrics: MetricsEndpoint?
            if let metricsPort {
                do {
                    metrics = try MetricsEndpoint(host: metricsAddress, port: metricsPort, next: progress, logger: logger)
                } catch {
                    throw Failure(code: .invalidInput, message: "\(error)")
                }
                observer = metrics!
                logger.info("metrics: http://\(metricsAddress):\(metrics!.port)/metrics")
            }
            defer { metrics?.close() }
            logger.info("run \(directory.url.lastPathComponent): \(loaded.phases.count) phases, dataset \(dataset.rows) rows, seed \(loaded.dataset.seed)")
            if let stackFile {
                do {
                    try Data(contentsOf: URL(fileURLWithPath: stackFile)).write(
                        to: directory.url.appendingPathComponent(CheckRun.runStackFile))
                } catch {
                    throw Failure(code: .invalidInput, message: "--stack: cannot copy \(stackFile) into the run directory: \(error)")
                }
            }
            // What a killed run left (hosts of dead processes; paused servers, qdiscs and rules on this stack's hosts)
            // must not distort this one.
            if loaded.stack.kind == .embedded,
                let embedded = try? EmbeddedStack(definition: loaded.stack, paths: stackPaths, logger: logger)
            {
                for line in embedded.removeLeftovers() { logger.info("removed leftover: \(line)") }
            }
            // An embedded stack keeps its data under its run directory: warn before the first phase when the bulk
            // phases will not fit there (a warning: the footprints are estimates).
            if loaded.stack.kind == .embedded, let free = BulkDiskEstimate.freeBytes(at: stackPaths.stack),
                let warning = BulkDiskEstimate(loaded).warning(freeBytes: free, directory: stackPaths.stack.path)
            {
                logger.warning("\(warning)")
            }
            try PatroniRunLeader.refuseFaults(loaded)
            let faults = try prepareFaults(&loaded, paths: stackPaths, runID: directory.url.lastPathComponent, logger: logger)
            // A Patroni stack: the clients start on the node that holds the leader lock and follow it (the watch moves
            // the directory's `postgres` entry; each PostgreSQL client reconnects on the next operation). The watch
            // runs until the check has read the leader of that moment.
            let patroniLeader = try loaded.stack.patroni.map { try PatroniRunLeader.startWatch($0, logger: logger) }
            defer { patroniLeader?.watch.stop() }
            defer { for proxy in faults.proxies.values { proxy.stop() } }
            if let shardSlice {
                try ShardRequest.writeHeader(
                    shardSlice, scenario: loaded, datasetRows: dataset.rows, phases: loaded.phases.map(\.name),
                    proxies: faults.proxies.map {
                        .init(store: $0.key, listen: $0.value.listenAddress.description, upstream: $0.value.upstream.description)
                    },
                    directory: directory.url)
            }
            let run: LoadRun
            do throws(LoadRun.Failure) {
                run = try LoadRun(
                    scenario: loaded, dataset: dataset, directory: directory, stop: stop,
                    environment: ProcessInfo.processInfo.environment, revision: Self.gitRevision(paths.home),
                    logger: logger, progress: observer, initialStoreRows: initialRows)
            } catch {
                throw Failure(code: error.code, message: error.message)
            }
            // A drill is judged by its check; so is any run given --check. Recorded before the first phase, so a run
            // killed before its check reads NOT CHECKED, never passed.
            let judgedByCheck = shardSlice == nil && (check || faults.runner != nil)
            run.checkRequired = judgedByCheck
            run.companion = faults.runner ?? plannedElsewhere.map { spec in
                PlannedFaultTimeline(
                    spec: spec, seed: loaded.dataset.seed, faultShard: loaded.faultShard, count: shardSlice?.count ?? 1)
            }
            run.shard = shardSlice
            run.enterClientGroup = try Self.clientGroupPlacement(loaded, paths: stackPaths, logger: logger)
            run.pipelineLauncher = Self.pipelineLauncher(stackFile: stackFile, stack: loaded.stack, paths: stackPaths)
            run.primaries = patroniLeader?.directory ?? faults.runner?.primaries
                ?? PostgresRoles.directory(loaded.stack, logger: logger)
            let prober = StalenessProbes.start(loaded, dataset: dataset, primaries: run.primaries, logger: logger)
            run.ackTap = prober
            var report: RunReport
            do throws(LoadRun.Failure) {
                report = try run.run()
            } catch {
                _ = prober?.finish { true }
                throw Failure(code: error.code, message: error.message)
            }
            progress.finish()
            let shardLoadCode = shardSlice.map {
                ShardRequest.markAwaitingMerge(&report, slice: $0, directory: directory.url)
            }
            if let prober { StalenessProbes.finish(prober, directory: directory.url, stop: stop, logger: logger) }
            if let timeline = report.faults, !timeline.isEmpty {
                let samples = (try? RunData.load(directory.url))?.timeline ?? []
                let proxied = Dictionary(
                    faults.proxies.map { ($0.value.listenAddress.description, $0.key) }, uniquingKeysWith: { a, _ in a })
                report.drills = DrillMetrics.compute(faults: timeline, report: report, timeline: samples, proxied: proxied)
                try? directory.writeReport(report)
                for drill in report.drills ?? [] {
                    let metrics = drill.metrics.sorted { $0.key < $1.key }.map { "\($0.key) \(Int($0.value))" }
                    let verdict = drill.verdict == .passed ? "availability passed (the check judges the drill)" : drill.verdict.rawValue
                    logger.info("drill \(drill.name): \(verdict)\(drill.reason.map { " (\($0))" } ?? ""); \(metrics.joined(separator: ", "))")
                }
            }
            print(RunSummary.text(report))
            ReportInput.writeOutputs(directory.url)
            print("run directory: \(directory.url.path)")
            let loadCode = shardLoadCode ?? KilnExitCode(rawValue: report.exitCode ?? 70) ?? .internalError
            guard judgedByCheck else { return loadCode }
            var notChecked: String?
            if stop.isRaised {
                notChecked = "the run was interrupted before the check"
            } else if noCheck {
                notChecked = "--no-check given"
            } else {
                logger.info("checking the run (kiln check \(directory.url.path))")
                if let leader = patroniLeader?.directory.primary(of: "postgres") {
                    logger.info("patroni: the check reads the leader of now, \(leader)")
                }
                do {
                    _ = try CheckRun(runDirectory: directory.url.path).check(
                        primaries: patroniLeader?.directory ?? faults.runner?.primaries, nothingWrittenIsValid: true)
                } catch let failure as Failure {
                    // check.json was not written: the verdict cannot be judged, whatever the load said.
                    FileHandle.standardError.write(Data("kiln: check: \(failure.message)\n".utf8))
                    notChecked = "the check could not run: \(failure.message)"
                } catch {
                    FileHandle.standardError.write(Data("kiln: check: \(error)\n".utf8))
                    notChecked = "the check could not run: \(error)"
                }
            }
            if let notChecked { CheckRun.recordNotChecked(notChecked, in: directory.url) }
            guard let judged = try? RunData.load(directory.url) else { return loadCode == .ok ? .unknown : loadCode }
            let result = ReportResult.of(judged)
            CheckRun.recordVerdict(result, of: judged, in: directory.url)
            ReportInput.writeOutputs(directory.url)
            print("verdict: \(result.consoleVerdict)" + result.reasons.map { "\n  \($0)" }.joined())
            return result.exitCode
    }

    /// Sink processes get `--stack` when the run has one; on a hosts stack each runs in its own host
    /// (`sink-<sink>`, 10.213.7.61–.64) when the stack created it, else in the root namespace.
    static func pipelineLauncher(stackFile: String?, stack: StackDefinition, paths: KilnPaths) -> PipelineLauncher? {
        let embedded = stack.network == .hosts ? try? EmbeddedStack(
            definition: stack, paths: paths, logger: Logger(label: "kiln.run")) : nil
        let hosts = embedded?.hosts ?? [:]
        guard stackFile != nil || !hosts.isEmpty else { return nil }
        let present = Set((try? HostNetwork(logger: Logger(label: "kiln.run")).hosts()) ?? [])
        return { sink, executable, arguments in
            var arguments = arguments
            if let stackFile { arguments += ["--stack", stackFile] }
            guard let host = hosts["sink-\(sink.rawValue)"], present.contains(host) else { return (executable, arguments) }
            return HostNetwork.command(in: host, executable, arguments)
        }
    }

    /// Checks the scenario's fault targets against the safety gate, starts the fault proxies it asks for (the
    /// scenario's stack then points its clients at them) and builds the fault runner. Nothing is started when a
    /// target is refused.
    func prepareFaults(
        _ scenario: inout LoadScenario, paths: KilnPaths, runID: String, logger: Logger
    ) throws -> (runner: FaultRunner?, proxies: [String: FaultProxy]) {
        guard let spec = scenario.faults else { return (nil, [:]) }
        let embedded = scenario.stack.kind == .embedded
            ? try? EmbeddedStack(definition: scenario.stack, paths: paths, logger: logger) : nil
        // A stack its own script started (the hardened stack): its servers and logins, and the kinds it refuses.
        let environment = ProcessInfo.processInfo.environment
        let scripted = scenario.stack.kind == .external && scenario.stack.startedBy != nil
            ? try ScriptedStackFaults(
                scenario.stack,
                directory: ScriptedStack.directory(scenario.stack, runDirectory: nil, environment: environment, home: paths.home),
                home: paths.home, environment: environment)
            : nil
        if let scripted {
            for entry in spec.entries {
                if let reason = scripted.refusal(entry) {
                    throw Failure(code: .invalidInput, message: "\(entry.source): faults: \(reason)")
                }
            }
        }
        for entry in spec.entries {
            guard scenario.stack.network == .hosts, let hostFault = entry.hostFault else { continue }
            let known = Set(embedded?.hosts.keys.map { $0 } ?? []).union(["kiln"])
            if let stranger = hostFault.namedHosts.first(where: { !known.contains($0) }) {
                throw Failure(
                    code: .invalidInput,
                    message: "\(entry.source): faults: '\(stranger)' is not a host of stack \(scenario.stack.name) "
                        + "(hosts: \(known.sorted().joined(separator: ", ")))")
            }
            if case .latency(_, let server, _, _) = hostFault,
                embedded?.servers.contains(where: { $0.name == server && embedded?.hosts[$0.name] != nil }) != true
            {
                let servers = embedded?.servers.map(\.name).joined(separator: ", ") ?? ""
                throw Failure(
                    code: .invalidInput,
                    message: "\(entry.source): faults: latency: the second end '\(server)' must be a server host of "
                        + "stack \(scenario.stack.name) (servers: \(servers))")
            }
        }
        for entry in spec.entries
        where scripted == nil && ![.proxy, .pgFailover, .redisFailover].contains(entry.kind)
            && !entry.target.hasPrefix("sink:") && !(scenario.stack.network == .hosts && entry.hostFault != nil)
        {
            guard embedded?.servers.contains(where: { $0.name == entry.target }) == true else {
                let names = embedded?.servers.map(\.name).joined(separator: ", ") ?? "none: not an embedded stack"
                throw Failure(
                    code: .invalidInput,
                    message: "\(entry.source): faults.target: '\(entry.target)' is not a server of stack \(scenario.stack.name) (servers: \(names))")
            }
        }
        for entry in spec.entries where entry.target.hasPrefix("sink:") && scenario.pipeline?.processes != true {
            throw Failure(
                code: .invalidInput,
                message: "\(entry.source): faults.target: \(entry.target) needs `pipeline: {workers: processes}`")
        }
        for entry in spec.entries {
            var single = spec
            single.entries = [entry]
            do {
                try ChaosSafety.check(
                    targets: scripted.map { scripted in single.entries.compactMap(scripted.targetAddress) }
                        ?? FaultRunner.targetAddresses(single, stack: scenario.stack, embedded: embedded),
                    stack: scenario.stack, allow: spec.allow, confirmed: confirmChaos)
            } catch {
                throw Failure(code: .invalidInput, message: "\(entry.source): faults.target: \(error)")
            }
        }
        var proxies: [String: FaultProxy] = [:]
        for store in spec.proxied {
            guard let upstream = FaultRunner.proxiedEndpoint(store, stack: scenario.stack) else { continue }
            // On a hosts stack the proxy listens on Kiln's bridge address, which Kiln's own host and every client
            // group's namespace reach (127.0.0.1 would be each namespace's own loopback).
            let listen = scenario.stack.network == .hosts ? HostAddress.clientHost.description : "127.0.0.1"
            let proxy = FaultProxy(listen: HostPort(host: listen, port: 0), upstream: upstream)
            do {
                try proxy.start()
            } catch {
                throw Failure(code: .stackUnavailable, message: "fault proxy for \(store): \(error)")
            }
            proxies[store] = proxy
            Backends.backend(named: store)?.stack.proxy?.redirect(&scenario.stack, proxy.listenAddress)
            logger.info("fault proxy: \(store) clients connect to \(proxy.listenAddress) -> \(upstream)")
        }
        let runner = FaultRunner(
            spec: spec, seed: scenario.dataset.seed, stack: scenario.stack, embedded: embedded, scripted: scripted,
            proxies: proxies, runID: runID, logger: logger)
        return (runner, proxies)
    }

    /// Where the phases' `client_groups` workers run: each group is a host of the hosts stack, and a worker thread
    /// enters it (setns) before opening any connection. Refuses, before anything starts, a group the stack does not
    /// have or a stack that is not a hosts stack. nil when no phase names a group.
    static func clientGroupPlacement(_ scenario: LoadScenario, paths: KilnPaths, logger: Logger) throws
        -> (@Sendable (String) throws -> Void)?
    {
        let named = scenario.phases.flatMap { phase in phase.clientGroups.map { (phase.name, $0) } }
        guard let first = named.first else { return nil }
        if let refusal = HostsRequirement.refusal(scenario) {
            throw Failure(code: .invalidInput, message: "\(refusal)")
        }
        guard scenario.stack.network == .hosts,
            let embedded = try? EmbeddedStack(definition: scenario.stack, paths: paths, logger: logger)
        else {
            throw Failure(
                code: .invalidInput,
                message: "\(scenario.file.path): phase \(first.0): client_groups need a hosts stack (network: hosts) "
                    + "with client_groups; \(scenario.stack.name) runs its clients on Kiln's own host")
        }
        let groups = Set(scenario.stack.clientGroups.map(\.name))
        if let (phase, group) = named.first(where: { !groups.contains($0.1) }) {
            throw Failure(
                code: .invalidInput,
                message: "\(scenario.file.path): phase \(phase): '\(group)' is not a client group of stack "
                    + "\(scenario.stack.name) (client_groups: \(groups.sorted().joined(separator: ", ")))")
        }
        let hosts = embedded.hosts.filter { groups.contains($0.key) }
        return { group in
            guard let host = hosts[group] else {
                throw Failure(code: .invalidInput, message: "no client group \(group)")
            }
            try HostNetwork.enterForCurrentThread(host)
        }
    }

    static func gitRevision(_ home: URL) -> String? {
        guard let output = try? LocalProcess.run("/usr/bin/git", ["-C", home.path, "rev-parse", "--short", "HEAD"])
        else { return nil }
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// The black-box staleness probes of a run (`blackbox.staleness:`), started before the first phase and finished
/// after the last one, with their final convergence wait; the result goes to the run directory for `kiln check`.
enum StalenessProbes {
    static func start(
        _ scenario: LoadScenario, dataset: Dataset, primaries: PrimaryDirectory?, logger: Logger
    ) -> StalenessProber? {
        guard let spec = scenario.blackbox, let staleness = spec.staleness else { return nil }
        let context = ClientContext(
            stack: scenario.stack, dataset: dataset, namespace: scenario.namespace, timeout: scenario.timeout,
            environment: ProcessInfo.processInfo.environment, logger: logger, primaries: primaries)
        let prober = StalenessProber(spec: spec, context: context)
        prober.start()
        // A sample acknowledged before its place's lookup is open would count the connect as staleness.
        if !prober.ready(within: 10) {
            logger.warning("black-box staleness: not every place's lookup opened within 10 s; their first probes wait for it")
        }
        logger.info(
            "black-box staleness: probing \(String(format: "%g", staleness.sample)) acknowledged \(spec.entry.rawValue) writes/s in \(spec.places.count) places (timeout \(BlackBoxSpec.Staleness.text(staleness.timeout)))")
        return prober
    }

    static func finish(_ prober: StalenessProber, directory: URL, stop: StopFlag, logger: Logger) {
        logger.info("black-box staleness: waiting for the pending probes (at most \(BlackBoxSpec.Staleness.text(prober.staleness.timeout)))")
        let report = prober.finish { stop.isRaised }
        do {
            try report.write(to: directory)
        } catch {
            logger.error("black-box staleness: cannot write \(BlackBoxStalenessReport.fileName): \(error)")
        }
        for path in report.paths {
            func ms(_ value: Double?) -> String { value.map { String(format: "%.0f ms", $0) } ?? "-" }
            if let reason = path.noProbe {
                logger.info("staleness \(path.path): \(reason)")
                continue
            }
            logger.info(
                "staleness \(path.path): p50 \(ms(path.p50Ms)) p99 \(ms(path.p99Ms)) max \(ms(path.maxMs)) (SLO \(ms(path.sloMs))), \(path.visible)/\(path.probes) seen, \(path.neverVisible) never visible, \(path.unprobed) unprobed\(path.lastError.map { "; last lookup error: \($0)" } ?? "")")
        }
    }
}

/// SIGINT/SIGTERM raise the stop flag; a second signal exits at once (130). Dispatch handles the signals, so
/// nothing async-signal-unsafe runs inside a handler.
public final class SignalWatch {
    private let sources: [DispatchSourceSignal]

    public init(stop: StopFlag, logger: Logger) {
        let queue = DispatchQueue(label: "kiln.signals")
        sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler {
                if stop.isRaised {
                    FileHandle.standardError.write(Data("\nkiln: second signal, exiting without a report\n".utf8))
                    exit(130)
                }
                logger.warning("signal \(number): stopping the load; the report of what ran is being written")
                stop.raise()
            }
            source.resume()
            return source
        }
    }

    /// Stops watching and gives SIGINT/SIGTERM back their default action (the controller also runs in-process, in
    /// tests: a process that called it must stay killable).
    public func cancel() {
        for source in sources { source.cancel() }
        for number in [SIGINT, SIGTERM] { signal(number, SIG_DFL) }
    }
}

/// The live line while a run goes: phase, elapsed, ops/s, p50/p99 of the last second, errors, dropped. On a
/// terminal it is redrawn each second; otherwise a log line every 10 s. Called on the controller's thread only.
final class ProgressLine: PhaseObserver {
    let terminal: Bool
    let logger: Logger
    private var phaseName = ""
    private var errors: Int64 = 0
    private var dropped: Int64 = 0
    private var lastLog = 0.0
    private var drawn = false

    init(terminal: Bool, logger: Logger) {
        self.terminal = terminal
        self.logger = logger
    }

    func phaseStarted(_ phase: LoadScenario.Phase, number: Int, operations: [PlannedOperation]) {
        finish()
        phaseName = phase.name
        errors = 0
        dropped = 0
        lastLog = 0
        logger.info("phase \(number + 1) '\(phase.name)' (\(phase.executor.name), \(phase.workers) workers): \(operations.map(\.name).joined(separator: ", "))")
    }

    func secondEnded(
        _ second: TimelineSecond, phase: LoadScenario.Phase, operations: [PlannedOperation], elapsed: Double,
        history: [CompletedOperation]
    ) {
        var merged = OperationStats()
        for stats in second.stats { merged.add(stats) }
        errors += merged.fail + merged.info
        dropped += merged.dropped
        let p50 = merged.latencySeconds(percentile: 50).map { String(format: "%.1fms", $0 * 1000) } ?? "-"
        let p99 = merged.latencySeconds(percentile: 99).map { String(format: "%.1fms", $0 * 1000) } ?? "-"
        let rows = merged.rows > 0 ? String(format: "  %.0f rows/s", Double(merged.rows)) : ""
        let line = String(
            format: "%@  %5.0fs  %8.0f ops/s%@  p50 %@  p99 %@  errors %lld  dropped %lld", phaseName, elapsed,
            Double(merged.completed), rows, p50, p99, errors, dropped)
        if terminal {
            FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
            drawn = true
        } else if elapsed - lastLog >= 10 {
            lastLog = elapsed
            logger.info("\(line)")
        }
    }

    func finish() {
        if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
        drawn = false
    }
}

/// The end-of-run table on stdout.
public enum RunSummary {
    public static func text(_ report: RunReport) -> String {
        // A run judged by its check has no verdict yet: the load's own is printed as such.
        var lines = [
            report.verdict == .notChecked
                ? "load verdict: \(report.loadVerdict ?? .passed) (the run is judged by its check)"
                : "verdict: \(report.verdict)"
        ]
        for phase in report.phases {
            lines.append(
                "phase \(phase.name) (\(phase.executor)), \(String(format: "%.1f", phase.seconds)) s\(phase.complete ? "" : ", interrupted")")
            lines.append(
                "  operation                      ok      fail  info  dropped   ops/s     rows/s      p50 ms   p99 ms   max ms")
            for operation in phase.operations {
                func ms(_ value: Double?) -> String { value.map { String(format: "%8.2f", $0) } ?? "       -" }
                lines.append(
                    String(
                        format: "  %@ %9lld %9lld %5lld %8lld %8.0f %10@ %@ %@ %@",
                        operation.name.padding(toLength: 26, withPad: " ", startingAt: 0), operation.ok, operation.fail,
                        operation.info, operation.dropped, operation.throughput,
                        operation.rowsPerSecond.map { String(format: "%.0f", $0) } ?? "-", ms(operation.latencyMs.p50),
                        ms(operation.latencyMs.p99), ms(operation.latencyMs.max)))
                if !operation.errors.isEmpty {
                    let classes = operation.errors.sorted { $0.value > $1.value }.prefix(5).map { "\($0.key) ×\($0.value)" }
                    lines.append("      errors: \(classes.joined(separator: ", "))")
                }
            }
            for verdict in phase.thresholds {
                lines.append(
                    "  \(verdict.passed ? "PASS" : "FAIL") \(verdict.scope): \(verdict.expression)  (observed \(verdict.observedText))")
            }
        }
        return lines.joined(separator: "\n")
    }
}
