import ArgumentParser
import Foundation
import KilnAudit
import KilnCore
import KilnLoad
import KilnReplay
import KilnScenario
import KilnStack
import Logging

/// Writes a run directory's bundle for `kiln run` (RunCommand.swift); a bundle that cannot be written is logged,
/// never fails the run.
enum ReplayBundleRecording {
    static func currentBuild(home: URL) -> ReplayBundle.KilnBuild {
        ReplayBundle.KilnBuild(version: KilnVersion.current, commit: RunCommand.gitRevision(home))
    }

    static func writePlan(
        _ scenario: LoadScenario, scenarioFile: URL, stackFile: String?, datasetRows: Int64, directory: URL, home: URL,
        logger: Logger
    ) -> ReplayBundle? {
        do {
            return try BundleWriter.writePlan(
                scenario: scenario, scenarioFile: scenarioFile, stackFile: stackFile.map { URL(fileURLWithPath: $0) },
                datasetRows: datasetRows, runDirectory: directory, kiln: currentBuild(home: home),
                serverVersions: ServerVersions.query(scenario.stack))
        } catch {
            logger.error("bundle: cannot write \(directory.appendingPathComponent(ReplayBundle.fileName).path): \(error)")
            return nil
        }
    }

    static func writeOutcome(_ plan: ReplayBundle?, directory: URL, logger: Logger) {
        guard let plan else { return }
        do {
            try BundleWriter.writeOutcome(plan, runDirectory: directory, logger: logger)
        } catch {
            logger.error("bundle: cannot complete \(directory.appendingPathComponent(ReplayBundle.fileName).path): \(error)")
        }
    }

    /// The bundle, its original outcome (which must have been checked) and the gate's warnings; every refusal is
    /// exit 64 naming the file and what is wrong.
    static func open(_ location: String, stackFile: String?, force: Bool, home: URL, logger: Logger) throws
        -> (bundle: ReplayBundle, directory: URL, original: RunOutcome)
    {
        let (bundle, directory): (ReplayBundle, URL)
        let original: RunOutcome
        do {
            (bundle, directory) = try ReplayBundle.read(URL(fileURLWithPath: location))
            original = try RunOutcome.read(directory)
            for warning in try ReplayGate.check(bundle, directory: directory, current: currentBuild(home: home), force: force) {
                logger.warning("\(warning)")
            }
            // The scenario copy parses as `kiln run` will parse it (FILE:LINE:COLUMN errors), before any replay.
            var scenario = try LoadScenario.load(
                contentsOf: directory.appendingPathComponent(bundle.scenario.file), knownOperations: LoadRun.knownOperations())
            if let stackFile { scenario.stack = try StackDefinition.load(contentsOf: URL(fileURLWithPath: stackFile)) }
            // Every replay's `kiln run` would refuse it (exit 64) one by one: refused once, before any.
            if let refusal = StackDirectoryGuard.refusal(scenario.stack, paths: KilnPaths.resolve().forStack(scenario.stack)) {
                throw Failure(code: .invalidInput, message: refusal)
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(code: .invalidInput, message: "\(error)")
        }
        guard original.checked else {
            throw Failure(
                code: .invalidInput,
                message: "\(directory.appendingPathComponent("check.json").path): missing, the original run was never checked, "
                    + "so there is no outcome to reproduce: run `kiln check \(directory.path)` first")
        }
        return (bundle, directory, original)
    }

    /// `--anomaly PLACE:KIND` values, each one the original has; nil when none is given. Exit 64 otherwise.
    static func target(_ texts: [String], original: RunOutcome) throws -> Set<AnomalySite>? {
        guard !texts.isEmpty else { return nil }
        var sites = Set<AnomalySite>()
        for text in texts {
            guard let site = AnomalySite.parse(text) else {
                throw Failure(code: .invalidInput, message: "--anomaly: expected PLACE:KIND, found '\(text)'")
            }
            guard original.anomalies[site] != nil else {
                let known = original.anomalies.keys.sorted().map { "\($0.place):\($0.kind)" }.joined(separator: ", ")
                throw Failure(
                    code: .invalidInput,
                    message: "--anomaly: the original has no \(text) (it has: \(known.isEmpty ? "no anomaly" : known))")
            }
            sites.insert(site)
        }
        return sites
    }

    static var launcher: KilnProcessLauncher {
        KilnProcessLauncher(executable: Bundle.main.executableURL ?? URL(fileURLWithPath: "/proc/self/exe"))
    }

    static func stamp() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: Date())
    }

    static func describe(_ outcome: RunOutcome) -> String {
        guard outcome.failed else { return "valid (every place valid, every threshold held)" }
        let sites = outcome.anomalies.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }
        return (sites + outcome.failedThresholds.sorted().map { "threshold \($0) failed" }
            + outcome.failedDrills.sorted().map { "drill \($0) failed" }).joined(separator: "; ")
    }
}

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
            valid again. A replay whose run found the stack unreachable (exit 69) is started again, up to 3 times. Replays go to sibling run directories
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
                        if try StackCommand.restoreFileRoles(stack, logger: logger) {
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
