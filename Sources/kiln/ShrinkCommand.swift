import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnLoad
import KilnReplay
import KilnScenario
import KilnStack
import Logging

struct ShrinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shrink",
        abstract: "Minimize a failed run: the fewest fault events, rows, seconds, ops/s and operations that still fail.",
        discussion: """
            Delta debugging (ddmin) over the fault events (each pinned at its planned offset), then halving of the
            dataset range, each phase's duration and arrival rate, then removal of operations from the mixes. Every
            candidate is replayed (`kiln run --check`) up to --tries times; a fault subset is kept when the anomaly
            (same class, same place; default: the original's store anomalies, see `kiln replay --help`) appears once,
            a smaller row range, duration, rate or mix only when it appears in every try. Writes <run>-shrink-<time>/ (candidates/, runs/, shrink.md, shrink.json); the
            minimal bundle is the run directory of the smallest reproducing candidate. Exit 0 a minimal bundle was
            found; 2 the original did not reproduce; 3 interrupted before the baseline reproduced; 64 bad input or a
            run that did not fail.
            """
    )

    @Argument(help: "The run directory of a failed, checked run.")
    var runDirectory: String

    @Option(help: "Stop after this long with the smallest bundle so far (e.g. 20m, 90s).")
    var budget = "20m"

    @Option(help: "Replays per candidate before it counts as not reproducing (1-100).")
    var tries = 3

    @Option(name: .customLong("anomaly"), help: "PLACE:KIND a candidate must show, e.g. postgres.rows:lost (repeatable; default: every anomaly of the original).")
    var anomalies: [String] = []

    @Option(name: .customLong("stack"), help: "Stack file to replay on (e.g. a private stack for a destructive drill).")
    var stackFile: String?

    @Option(help: "Directory for the shrink's work directory (default: beside the original).")
    var runsDirectory: String?

    @Flag(help: "Shrink a bundle from another Kiln version or commit, or whose spec copy changed, with a warning.")
    var force = false

    @Flag(name: .shortAndLong, help: "Log more detail.")
    var verbose = false

    func run() throws {
        try exiting {
            var logger = Logger(label: "kiln.shrink") { _ in ConsoleLogHandler(logLevel: .info) }
            logger.logLevel = verbose ? .debug : .info
            guard let budgetDuration = DurationText.parse(budget), budgetDuration > .zero else {
                throw Failure(code: .invalidInput, message: "--budget: expected a duration above 0 such as 20m, found '\(budget)'")
            }
            guard (1...100).contains(tries) else {
                throw Failure(code: .invalidInput, message: "--tries: expected 1 to 100, found \(tries)")
            }
            if let stackFile, !FileManager.default.fileExists(atPath: stackFile) {
                throw Failure(code: .invalidInput, message: "--stack: \(stackFile): no such file")
            }
            let paths = KilnPaths.resolve()
            let (bundle, directory, original) = try ReplayBundleRecording.open(
                runDirectory, stackFile: stackFile, force: force, home: paths.home, logger: logger)
            guard original.failed else {
                throw Failure(
                    code: .invalidInput,
                    message: "\(directory.path): the run did not fail (\(ReplayBundleRecording.describe(original))): nothing to shrink")
            }
            let target = try ReplayBundleRecording.target(anomalies, original: original)
            let root = runsDirectory.map { URL(fileURLWithPath: $0) } ?? directory.deletingLastPathComponent()
            let work = root.appendingPathComponent("\(bundle.run)-shrink-\(ReplayBundleRecording.stamp())")
            logger.info("original \(bundle.run): \(ReplayBundleRecording.describe(original))")
            logger.info("shrinking into \(work.path) (budget \(budget), \(tries) tries per candidate)")
            let stop = StopFlag()
            let signals = SignalWatch(stop: stop, logger: logger)
            defer { signals.cancel() }
            let seconds = Double(budgetDuration.components.seconds) + Double(budgetDuration.components.attoseconds) / 1e18
            let shrinker = Shrinker(
                bundleDirectory: directory, bundle: bundle, original: original,
                launcher: ReplayBundleRecording.launcher, workDirectory: work,
                options: ShrinkOptions(
                    budgetSeconds: seconds, tries: tries, target: target,
                    stack: stackFile.map { URL(fileURLWithPath: $0) }),
                knownOperations: LoadRun.knownOperations(), knownSinks: LoadRun.knownSinks(), logger: logger,
                stop: { stop.isRaised })
            let result: ShrinkResult
            do {
                result = try shrinker.run()
            } catch let error as BundleError {
                throw Failure(code: .invalidInput, message: "\(error)")
            }
            var text = result.table + "\n\n"
            if let minimal = result.minimalRun {
                text += "minimal bundle: \(minimal.appendingPathComponent(ReplayBundle.fileName).path)\n"
                text += "faults: \(result.faultsKept.count) of \(result.faultsOriginal.count) kept (\(result.faultsKept.joined(separator: ", ")))\n"
                text += "rows: \(result.rowsKept.map(String.init) ?? "-") of \(result.rowsOriginal.map(String.init) ?? "-")\n"
                text += "repro: kiln replay \(minimal.path)\(stackFile.map { " --stack \($0)" } ?? "")\n"
            } else {
                text += "the original outcome did not reproduce in \(tries) tries: nothing to shrink\n"
            }
            text += String(format: "%.0f s%@\n", result.seconds, result.budgetSpent ? " (budget spent: the smallest bundle so far)" : "")
            print(text, terminator: "")
            try? text.write(to: work.appendingPathComponent("shrink.md"), atomically: true, encoding: .utf8)
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try? encoder.encode(result.steps).write(to: work.appendingPathComponent("shrink.json"))
            if result.minimalRun != nil { return .ok }
            return stop.isRaised ? .unknown : .thresholdFailed
        }
    }
}
