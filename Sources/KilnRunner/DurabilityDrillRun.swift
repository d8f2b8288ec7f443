import Dispatch
import Foundation
import KilnCore
import KilnDurability
import KilnLoad
import KilnScenario
import KilnStack
import Logging

/// `kiln run` of a durability drill file (a top-level `durability:` block): parses it strictly, runs it on its own
/// private servers (`DurabilityDrillRunner`) and maps its verdict to the exit code (passed 0, anomaly 1, failed 2,
/// unknown 3). The drill is its own check: `--no-check` is refused rather than reported as passed.
enum DurabilityDrillRun {
    static func run(
        url: URL, stackFile: String?, runsDirectory: String?, id: String?, noCheck: Bool, logger: Logger
    ) throws -> KilnExitCode {
        guard !noCheck else {
            throw Failure(code: .invalidInput, message: "\(url.path) is a durability drill: its check is the drill itself (--no-check does not apply)")
        }
        var spec = try DurabilityDrillSpec.load(contentsOf: url)
        if let stackFile {
            let stack = try StackDefinition.load(contentsOf: URL(fileURLWithPath: stackFile))
            guard stack.kind == .embedded else {
                throw Failure(code: .invalidInput, message: "--stack \(stackFile): a durability drill needs a private embedded stack file")
            }
            spec.stack = stack
        }
        let root = runsDirectory.map { URL(fileURLWithPath: $0) }
            ?? KilnPaths.resolve().home.appendingPathComponent("Reports/runs")
        let directory = root.appendingPathComponent(id ?? RunDirectory.makeID(scenario: spec.name))
        // SIGINT/SIGTERM: kill the drill's private servers, remove its work directory, exit 3 (interrupted).
        let work = DurabilityDrillRunner.workDirectory(spec)
        let addresses = DurabilityDrillRunner.privateAddresses(spec)
        var sources: [DispatchSourceSignal] = []
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                FileHandle.standardError.write(Data("kiln: interrupted; stopping the drill's private servers\n".utf8))
                DurabilityLeftovers.sweep(work, addresses: addresses)
                exit(KilnExitCode.unknown.rawValue)
            }
            source.resume()
            sources.append(source)
        }
        defer { for source in sources { source.cancel() } }
        let report = try DurabilityDrillRunner.run(spec, runDirectory: directory, logger: logger)
        print(report.summary)
        print("run directory: \(directory.path)")
        return report.verdict.exitCode
    }
}
