import ArgumentParser
import Dispatch
import Foundation
import KilnRunner
import KilnData
import KilnLoad
import KilnPipeline
import KilnScenario
import KilnStores
import Logging

/// `kiln pipeline SCENARIO`: the scenario's reference sync workers as a process of their own, so that a fault can
/// kill, pause or restart them (a killed worker resumes from its stored offsets when started again).
struct PipelineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Run a scenario's reference pipeline sync workers (Kafka → sinks) until SIGINT/SIGTERM.",
        discussion: """
            Uses the scenario's `pipeline:` block (sinks, bugs, batch) and namespace. Each sink resumes from the
            offsets it stored; `--setup` first creates the sinks' tables and keys (and drops them when the scenario
            is `fresh`). On SIGINT/SIGTERM the workers finish their batch and the per-sink report (messages, applied,
            redelivered, skipped, crashes, staleness) is printed as JSON, or written to --report.
            `--until-caught-up` instead stops once every sink has read to the end of the topic (for scripts).
            """
    )

    @Argument(help: "Scenario file with a `pipeline:` block, e.g. Scenarios/pipeline.yaml.")
    var scenario: String

    @Option(name: .customLong("sink"), help: "Run only this sink (repeatable): postgres, redis, falkordb, clickhouse.")
    var sinks: [String] = []

    @Flag(help: "Create the sinks' tables/keys first (dropping them when the scenario says fresh).")
    var setup = false

    @Flag(help: "Stop once every sink has read to the end of the topic (after at least 5 s idle).")
    var untilCaughtUp = false

    @Option(help: "Write the per-sink report (JSON) to this file instead of standard output.")
    var report: String?

    @Flag(help: "Exit when the parent process dies (kiln run starts its sink processes this way, so a kill -9 of the run leaves none behind).")
    var exitWithParent = false

    @Option(name: .customLong("stack"), help: "Stack file to use instead of the scenario's `stack:` (kiln run --stack passes its own).")
    var stackFile: String?

    @Flag(name: .shortAndLong, help: "Log more detail.")
    var verbose = false

    func run() throws {
        try exiting {
            var logger = Logger(label: "kiln.pipeline") { _ in ConsoleLogHandler(logLevel: .info) }
            logger.logLevel = verbose ? .debug : .info
            let url = URL(fileURLWithPath: scenario)
            var loaded = try LoadScenario.load(contentsOf: url, knownOperations: LoadRun.knownOperations(),
                knownSinks: LoadRun.knownSinks())
            if let stackFile {
                do {
                    loaded.stack = try StackDefinition.load(contentsOf: URL(fileURLWithPath: stackFile))
                } catch {
                    throw Failure(code: .invalidInput, message: "\(error)")
                }
            }
            guard var spec = loaded.pipeline else {
                throw Failure(code: .invalidInput, message: "\(url.path): no `pipeline:` block")
            }
            if !sinks.isEmpty {
                spec.sinks = try sinks.map { name in
                    let sink = PipelineSpec.Sink(rawValue: name)
                    guard spec.sinks.contains(sink) else {
                        throw Failure(
                            code: .invalidInput,
                            message: "--sink \(name): the scenario's sinks are \(spec.sinks.map(\.rawValue).joined(separator: ", "))")
                    }
                    return sink
                }
            }
            let dataset: Dataset
            do {
                dataset = try Dataset(
                    spec: try DatasetSpec.load(contentsOf: loaded.dataset.spec), seed: loaded.dataset.seed,
                    rows: loaded.dataset.rows)
            } catch {
                throw Failure(code: .invalidInput, message: "\(url.path): dataset: \(error)")
            }
            let context = ClientContext(
                stack: loaded.stack, dataset: dataset, namespace: loaded.namespace, timeout: loaded.timeout,
                environment: ProcessInfo.processInfo.environment, logger: logger)
            let pipeline = Pipeline(spec: spec, context: context, logger: logger)
            if setup {
                do {
                    try pipeline.setUp(fresh: loaded.fresh)
                } catch {
                    throw Failure(code: .stackUnavailable, message: "pipeline: setup failed: \(error)")
                }
            }
            let stop = StopFlag()
            let signals = SignalWatch(stop: stop, logger: logger)
            let parent = getppid()
            // Not prctl(PR_SET_PDEATHSIG): it fires when the parent's spawning *thread* exits, and kiln run
            // restarts killed sinks from short-lived fault threads. A reparented child sees a new getppid().
            defer { signals.cancel() }
            pipeline.start()
            logger.info("pipeline: sinks \(spec.sinks.map(\.rawValue).joined(separator: ", ")) of namespace \(loaded.namespace) running (pid \(getpid()))")
            if untilCaughtUp { pipeline.markLoadEnded() }
            // `kiln run` sends SIGUSR1 when its load has ended: from then on, stop once caught up.
            signal(SIGUSR1, SIG_IGN)
            let loadEnded = DispatchSource.makeSignalSource(signal: SIGUSR1, queue: DispatchQueue(label: "kiln.usr1"))
            let ended = StopFlag()
            loadEnded.setEventHandler { ended.raise() }
            loadEnded.resume()
            defer { loadEnded.cancel() }
            var endedAt: Date?
            var lastLog = Date()
            while !stop.isRaised {
                if exitWithParent && getppid() != parent {
                    logger.warning("pipeline: the parent process is gone; stopping")
                    break
                }
                if ended.isRaised && endedAt == nil {
                    pipeline.markLoadEnded()
                    endedAt = Date()
                }
                if untilCaughtUp || endedAt != nil {
                    if pipeline.waitForConvergence(stop: { true }) { break }
                    let limit = spec.convergenceTimeout.seconds
                    if let endedAt, Date().timeIntervalSince(endedAt) > limit { break }
                }
                Thread.sleep(forTimeInterval: 0.2)
                if Date().timeIntervalSince(lastLog) >= 10 {
                    lastLog = Date()
                    for sink in pipeline.reports() {
                        logger.info("pipeline \(sink.sink): \(sink.messages) messages, \(sink.applied) applied, \(sink.errors) errors")
                    }
                }
            }
            let reports = pipeline.stop()
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try encoder.encode(reports)
            if let report {
                try data.write(to: URL(fileURLWithPath: report), options: .atomic)
            } else {
                print(String(decoding: data, as: UTF8.self))
            }
            return .ok
        }
    }
}
