import Foundation
import KilnCore
import KilnPipeline
import KilnScenario
import KilnStores
import Logging

/// Rewrites the `kiln pipeline` command of one sink process (executable, arguments) before it starts; called on the
/// controller or a fault thread (restart).
public typealias PipelineLauncher = @Sendable (PipelineSpec.Sink, String, [String]) -> (String, [String])

/// The sink workers of `pipeline.workers: processes`: one `kiln pipeline SCENARIO --sink S` child per sink, so a
/// fault can kill, pause or restart one (it resumes from its stored offsets). At the load's end each child gets
/// SIGUSR1, finishes once caught up (or after the convergence timeout) and writes `pipeline-<sink>.json` in the
/// run directory. `finish` is called by the controller thread; `pid(of:)` and `restart` by fault threads.
final class PipelineProcesses: SinkProcessControl, @unchecked Sendable {
    // @unchecked: `children` is only read or replaced under `lock` (fault threads restart sinks while the
    // controller thread may read them).
    private let lock = NSLock()
    let spec: PipelineSpec
    let directory: URL
    let logger: Logger
    private var children: [(sink: PipelineSpec.Sink, process: Process)] = []
    private var launcher: PipelineLauncher?
    /// Where the sinks' stored offsets are read (set by `start`; nil: `appliedOffset` throws).
    private var context: ClientContext?

    init(spec: PipelineSpec, directory: URL, logger: Logger) {
        self.spec = spec
        self.directory = directory
        self.logger = logger
    }

    static func start(
        spec: PipelineSpec, scenarioFile: URL, directory: URL, logger: Logger, launcher: PipelineLauncher? = nil,
        context: ClientContext? = nil
    ) throws -> PipelineProcesses {
        let processes = PipelineProcesses(spec: spec, directory: directory, logger: logger)
        processes.context = context
        processes.scenarioFile = scenarioFile
        processes.launcher = launcher
        for sink in spec.sinks {
            let process = try processes.spawn(sink)
            processes.lock.withLock { processes.children.append((sink, process)) }
        }
        return processes
    }

    private var scenarioFile = URL(fileURLWithPath: "/")

    /// Starts `kiln pipeline SCENARIO --sink S`, appending to its log in the run directory.
    private func spawn(_ sink: PipelineSpec.Sink) throws -> Process {
        let process = Process()
        var executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        var arguments = [
            "pipeline", scenarioFile.path, "--sink", sink.rawValue, "--report", reportFile(sink).path, "--exit-with-parent",
        ]
        if let launcher { (executable, arguments) = launcher(sink, executable, arguments) }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let log = directory.appendingPathComponent("pipeline-\(sink.rawValue).log")
        if !FileManager.default.fileExists(atPath: log.path) {
            FileManager.default.createFile(atPath: log.path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        logger.info("pipeline: sink \(sink.rawValue) runs as process \(process.processIdentifier) (log \(log.path))")
        return process
    }

    func reportFile(_ sink: PipelineSpec.Sink) -> URL { directory.appendingPathComponent("pipeline-\(sink.rawValue).json") }

    /// Tells every child the load has ended and collects their reports. A child that is gone (killed and not
    /// restarted) or does not finish in time is reported as not converged, with why.
    func finish(stop: StopFlag) -> [SinkReport] {
        let children = lock.withLock { self.children }
        for child in children where child.process.isRunning {
            kill(child.process.processIdentifier, stop.isRaised ? SIGTERM : SIGUSR1)
        }
        let limit = Date().addingTimeInterval(
            spec.convergenceTimeout.seconds + 15)
        while Date() < limit && children.contains(where: { $0.process.isRunning }) {
            if stop.isRaised {
                for child in children where child.process.isRunning { kill(child.process.processIdentifier, SIGTERM) }
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return children.map { sink, process in
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                return SinkReport.missing(sink, spec: spec, reason: "process \(process.processIdentifier) did not finish in time")
            }
            guard let data = try? Data(contentsOf: reportFile(sink)),
                let report = try? decoder.decode([SinkReport].self, from: data).first
            else {
                return SinkReport.missing(
                    sink, spec: spec,
                    reason: "process exited with status \(process.terminationStatus) and wrote no report")
            }
            return report
        }
    }

    func pid(of sink: String) -> pid_t? {
        let child = lock.withLock { children.first(where: { $0.sink.rawValue == sink }) }
        guard let child, child.process.isRunning else { return nil }
        return child.process.processIdentifier
    }

    /// The sum over partitions of the offsets `sink` stored as applied, read from its store on a new connection.
    func appliedOffset(of sink: String) throws -> Int64 {
        guard let context, let kind = spec.sinks.first(where: { $0.rawValue == sink }) else {
            throw PipelineProcessError(reason: "cannot read the offsets of sink \(sink)")
        }
        let store = try Pipeline.makeSink(kind, spec: spec, context: context)
        defer { store.close() }
        return try store.storedOffsets().values.reduce(0, +)
    }

    func restart(_ sink: String) throws {
        guard let child = lock.withLock({ children.first(where: { $0.sink.rawValue == sink }) }) else {
            throw PipelineProcessError(reason: "no sink process \(sink)")
        }
        guard !child.process.isRunning else { return }
        let process = try spawn(child.sink)
        lock.withLock {
            if let index = children.firstIndex(where: { $0.sink == child.sink }) { children[index].process = process }
        }
    }
}

struct PipelineProcessError: Error, CustomStringConvertible {
    var reason: String
    var description: String { "pipeline: \(reason)" }
}

/// The sink processes of a run, for faults that kill, pause or restart one. Called from the fault threads:
/// `pid(of:)` and `restart` are serialized by the caller per sink (one fault per sink at a time).
public protocol SinkProcessControl: AnyObject, Sendable {
    func pid(of sink: String) -> pid_t?
    func restart(_ sink: String) throws
    /// What the sink has applied: the sum over partitions of the offsets it stored with its writes, read from its
    /// store (what a client of that store sees), never from the process.
    func appliedOffset(of sink: String) throws -> Int64
}

/// Runs beside the phases — the fault schedule. `phasesStarting` is called on the controller thread when the first
/// phase's clock starts (stores and the pipeline set up, its workers connected; never when the run stops before
/// that) and returns at once; `phasesEnded` after the last phase or a
/// stop, and returns once everything it did is undone; `faultTimeline` is then final.
public protocol RunCompanion: AnyObject {
    func phasesStarting(sinkProcesses: SinkProcessControl?)
    func phasesEnded()
    var faultTimeline: [RunReport.Fault] { get }
}
