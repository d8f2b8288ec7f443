import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnLoad
import KilnReplay
import KilnScenario
import KilnStack
import Logging

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Re-run a failed (or passed) run from its bundle on fresh stores and say whether its outcome reproduced.",
        discussion: """
            Each replay is `kiln run --check` of the bundle's scenario (same dataset spec, seed, rows, phases, arrival
            schedule, operation choice and fault timeline; `fresh: true` recreates the scenario's own tables and
            keys). Reproduced = every anomaly class in every store place of the original again; its cross-store
            invariant anomalies only when it had no store anomaly, its failed thresholds and drills only when it had no
            anomaly (those that do not come again are listed; --strict requires them all); for a passing original,
            valid again. A replay whose run found the stack unreachable (exit 69) is started again, up to 3 times.
            Replays go to sibling run directories
            `<run>-replay-<time>-<n>`. Exit 0 every replay reproduced; 2 at least one was judged and differed; 3 a
            replay could not be judged (its check did not run); 64 a bad bundle, a bundle of another Kiln version or
            spec (unless --force), or an original that was never checked.
            """
    )

    @Argument(help: "A run directory (with bundle.json) or a bundle.json.")
    var bundle: String

    @Option(help: "Replay this many times and report the reproduction rate (1-1000).")
    var times = 1

    @Option(name: .customLong("stack"), help: "Stack file to replay on (e.g. a private stack for a destructive drill).")
    var stackFile: String?

    @Option(help: "Directory for the replays' run directories (default: beside the original).")
    var runsDirectory: String?

    @Option(name: .customLong("anomaly"), help: "PLACE:KIND that must appear again (repeatable; default: every anomaly, failed threshold and drill of the original).")
    var anomalies: [String] = []

    @Flag(help: "Require the original's whole outcome again: also its cross-store invariant anomalies, failed thresholds and failed drills beside store anomalies (by default those are reported when they differ, not required).")
    var strict = false

    @Flag(help: "Replay a bundle from another Kiln version or commit, or whose spec copy changed, with a warning.")
    var force = false

    @Flag(name: .shortAndLong, help: "Log more detail.")
    var verbose = false

    func run() throws {
        try exiting {
            var logger = Logger(label: "kiln.replay") { _ in ConsoleLogHandler(logLevel: .info) }
            logger.logLevel = verbose ? .debug : .info
            guard (1...1000).contains(times) else {
                throw Failure(code: .invalidInput, message: "--times: expected 1 to 1000, found \(times)")
            }
            if let stackFile, !FileManager.default.fileExists(atPath: stackFile) {
                throw Failure(code: .invalidInput, message: "--stack: \(stackFile): no such file")
            }
            let paths = KilnPaths.resolve()
            let (bundle, directory, original) = try ReplayBundleRecording.open(
                self.bundle, stackFile: stackFile, force: force, home: paths.home, logger: logger)
            let target = try ReplayBundleRecording.target(anomalies, original: original)
            let replayStack: StackDefinition? =
                if let stackFile { try? StackDefinition.load(contentsOf: URL(fileURLWithPath: stackFile)) } else {
                    (try? LoadScenario.load(
                        contentsOf: directory.appendingPathComponent(bundle.scenario.file),
                        knownOperations: LoadRun.knownOperations()))?.stack
                }
            let runs = runsDirectory.map { URL(fileURLWithPath: $0) } ?? directory.deletingLastPathComponent()
            let prefix = "\(bundle.run)-replay-\(ReplayBundleRecording.stamp())"
            logger.info("original \(bundle.run): \(ReplayBundleRecording.describe(original))")
            logger.info(
                "replaying \(times)× (seed \(bundle.dataset.seed), \(bundle.dataset.rows) rows, \(bundle.faultsPlanned.count) fault events) into \(runs.path)/\(prefix)-N")
            let stop = StopFlag()
            let signals = SignalWatch(stop: stop, logger: logger)
            defer { signals.cancel() }
            let attempts = Replayer(launcher: ReplayBundleRecording.launcher, logger: logger).replay(
                bundleDirectory: directory, bundle: bundle, original: original, times: times,
                stack: stackFile.map { URL(fileURLWithPath: $0) }, runsDirectory: runs, idPrefix: prefix,
                target: target, strict: strict, stop: { stop.isRaised },
                beforeEach: { number in
                    // A drill's faults name servers (`redis-primary`, `postgres-primary`): each replay starts from the
                    // roles the stack file names, as the original did, not those a previous replay's failover left.
                    guard !bundle.faultsPlanned.isEmpty, let stack = replayStack else { return }
                    do {
                        if try StackRoles.restoreFileRoles(stack, logger: logger) {
                            logger.info("replay \(number): the servers take their stack file's roles again (failed back)")
                        }
                    } catch {
                        logger.warning("replay \(number): could not restore the stack file's roles: \(error)")
                    }
                }
            ) { attempt in
                let starts = attempt.starts > 1 ? ", started \(attempt.starts) times: the earlier found the stack unreachable" : ""
                logger.info("replay \(attempt.number)/\(times): \(attempt.reproduction.summary) (\(Int(attempt.seconds)) s, exit \(attempt.exitCode)\(starts), \(attempt.directory.path))")
            }
            let matched = attempts.filter(\.reproduction.matches).count
            let diverged = attempts.contains { if case .diverged = $0.reproduction { true } else { false } }
            let notJudged = attempts.filter { if case .notJudged = $0.reproduction { true } else { false } }.count
            let what = original.failed ? "reproduced" : "valid again"
            if matched == 0 {
                // Never the word "reproduced" on its own when nothing did.
                print(
                    "REPLAY \(bundle.run): NOT \(what) in any of \(times) replays (\(attempts.count - notJudged) judged and differed, "
                        + "\(notJudged) not judged, \(times - attempts.count) not run)")
            } else {
                print("REPLAY \(bundle.run): \(what) in \(matched) of \(times) replays (\(Int((Double(matched) / Double(times) * 100).rounded())) %)")
            }
            for attempt in attempts { print("  \(attempt.number): \(attempt.reproduction.summary)  \(attempt.directory.path)") }
            if attempts.count < times { print("  \(times - attempts.count) replays did not run (interrupted)") }
            if matched == times { return .ok }
            return diverged ? .thresholdFailed : .unknown
        }
    }
}
