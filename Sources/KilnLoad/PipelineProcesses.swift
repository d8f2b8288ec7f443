import Foundation
import KilnPipeline
import KilnScenario
import Logging

/// The sink workers of `pipeline.workers: processes`: one `kiln pipeline SCENARIO --sink S` child per sink, so a
/// fault can kill, pause or restart one (it resumes from its stored offsets). At the load's end each child gets
/// SIGUSR1, finishes once caught up (or after the convergence timeout) and writes `pipeline-<sink>.json` in the
/// run directory. Used by the controller thread only; the children are killed if the run itself is stopped.
final class PipelineProcesses {
    let spec: PipelineSpec
    let directory: URL
    let logger: Logger
    private(set) var children: [(sink: PipelineSpec.Sink, process: Process)] = []

    init(spec: PipelineSpec, directory: URL, logger: Logger) {
        self.spec = spec
        self.directory = directory
        self.logger = logger
    }

    static func start(spec: PipelineSpec, scenarioFile: URL, directory: URL, logger: Logger) throws -> PipelineProcesses {
        let processes = PipelineProcesses(spec: spec, directory: directory, logger: logger)
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        for sink in spec.sinks {
            let process = Process()
            process.executableURL = executable
            process.arguments = [
                "pipeline", scenarioFile.path, "--sink", sink.rawValue, "--report", processes.reportFile(sink).path,
            ]
            let log = directory.appendingPathComponent("pipeline-\(sink.rawValue).log")
            FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            processes.children.append((sink, process))
            logger.info("pipeline: sink \(sink.rawValue) runs as process \(process.processIdentifier) (log \(log.path))")
        }
        return processes
    }

    func reportFile(_ sink: PipelineSpec.Sink) -> URL { directory.appendingPathComponent("pipeline-\(sink.rawValue).json") }

    /// Tells every child the load has ended and collects their reports. A child that is gone (killed and not
    /// restarted) or does not finish in time is reported as not converged, with why.
    func finish(stop: StopFlag) -> [SinkReport] {
        for child in children where child.process.isRunning {
            kill(child.process.processIdentifier, stop.isRaised ? SIGTERM : SIGUSR1)
        }
        let limit = Date().addingTimeInterval(
            Double(spec.convergenceTimeout.components.seconds) + 15)
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
}
