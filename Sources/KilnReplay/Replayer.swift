import Foundation
import Logging

/// One `kiln run` of a scenario file, with its check, into `runsDirectory/id`.
public struct RunRequest: Sendable {
    public var scenario: URL
    /// `--stack` for the run (e.g. a private stack for a destructive drill); nil: the scenario's own.
    public var stack: URL?
    public var runsDirectory: URL
    public var id: String

    public init(scenario: URL, stack: URL?, runsDirectory: URL, id: String) {
        self.scenario = scenario
        self.stack = stack
        self.runsDirectory = runsDirectory
        self.id = id
    }
}

public struct LaunchedRun: Sendable {
    public var exitCode: Int32
    public var directory: URL
    public var seconds: Double
    /// The run's console output.
    public var log: URL

    public init(exitCode: Int32, directory: URL, seconds: Double, log: URL) {
        self.exitCode = exitCode
        self.directory = directory
        self.seconds = seconds
        self.log = log
    }
}

/// Starts a run and waits for it. The command's launcher runs Kiln's own executable (`kiln run … --check`), so a
/// replay is exactly what `kiln run` does; tests may substitute their own.
public protocol RunLauncher: Sendable {
    func launch(_ request: RunRequest) throws -> LaunchedRun
}

/// `kiln run SCENARIO --runs-directory R --id ID --check [--stack S]` as a child process, output to `R/ID.log`.
public struct KilnProcessLauncher: RunLauncher {
    public var executable: URL

    public init(executable: URL) { self.executable = executable }

    public func launch(_ request: RunRequest) throws -> LaunchedRun {
        try FileManager.default.createDirectory(at: request.runsDirectory, withIntermediateDirectories: true)
        let log = request.runsDirectory.appendingPathComponent("\(request.id).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let output = try FileHandle(forWritingTo: log)
        defer { try? output.close() }
        let process = Process()
        process.executableURL = executable
        var arguments = [
            "run", request.scenario.path, "--runs-directory", request.runsDirectory.path, "--id", request.id, "--check",
        ]
        if let stack = request.stack { arguments += ["--stack", stack.path] }
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        let started = Date()
        try process.run()
        process.waitUntilExit()
        return LaunchedRun(
            exitCode: process.terminationStatus, directory: request.runsDirectory.appendingPathComponent(request.id),
            seconds: Date().timeIntervalSince(started), log: log)
    }
}

/// Refuses a bundle whose plan this Kiln may derive differently: another Kiln version, or a dataset spec copy
/// whose bytes no longer match the recorded hash. `force` turns each refusal into a warning. Another commit of the
/// same version is a warning only (every commit of a working tree would otherwise refuse its own bundles).
public enum ReplayGate {
    public static func check(
        _ bundle: ReplayBundle, directory: URL, current: ReplayBundle.KilnBuild, force: Bool
    ) throws(BundleError) -> [String] {
        let file = directory.appendingPathComponent(ReplayBundle.fileName).path
        var refusals: [BundleError] = []
        var warnings: [String] = []
        if bundle.kiln.version != current.version {
            refusals.append(
                BundleError(
                    file: file, path: "kiln.version",
                    message: "made by Kiln \(bundle.kiln.version), this is Kiln \(current.version): the plan may be derived differently"))
        } else if let recorded = bundle.kiln.commit, let now = current.commit, recorded != now {
            warnings.append(
                "\(file): kiln.commit: made at commit \(recorded), this checkout is at \(now): if the replay differs, compare the two")
        }
        let spec = directory.appendingPathComponent(bundle.dataset.specFile)
        if let data = try? Data(contentsOf: spec) {
            let hash = ContentHash.of(data)
            if hash != bundle.dataset.specHash {
                refusals.append(
                    BundleError(
                        file: file, path: "dataset.spec_hash",
                        message: "\(spec.lastPathComponent) hashes to \(hash), the bundle recorded \(bundle.dataset.specHash): the spec changed, so the rows differ"))
            }
        }
        if let first = refusals.first, !force { throw first }
        return warnings + refusals.map { "\($0.description) (replaying anyway: --force)" }
    }
}

/// One replay of a bundle and its judgement.
public struct ReplayAttempt: Sendable {
    public var number: Int
    public var directory: URL
    public var exitCode: Int32
    public var seconds: Double
    public var reproduction: Reproduction
    /// How many times it was started (more than 1: the earlier starts found the stack unreachable, exit 69).
    public var starts = 1
}

/// Replays a bundle: each time a fresh `kiln run --check` of the bundle's scenario (the same seed, rows, phases,
/// arrival schedule and pinned fault timeline; `fresh: true` drops and recreates the scenario's own tables and keys
/// first), then judges its outcome against the original's.
public struct Replayer {
    public var launcher: any RunLauncher
    public var logger: Logger
    /// Seconds between starts of a replay whose run found the stack unreachable.
    public var unreachablePause = 10.0

    public init(launcher: any RunLauncher, logger: Logger) {
        self.launcher = launcher
        self.logger = logger
    }

    public func replay(
        bundleDirectory: URL, bundle: ReplayBundle, original: RunOutcome, times: Int, stack: URL?,
        runsDirectory: URL, idPrefix: String, target: Set<AnomalySite>? = nil, strict: Bool = false,
        stop: () -> Bool = { false }, beforeEach: (Int) -> Void = { _ in },
        progress: (ReplayAttempt) -> Void = { _ in }
    ) -> [ReplayAttempt] {
        var attempts: [ReplayAttempt] = []
        for number in 1...max(1, times) {
            if stop() { break }
            beforeEach(number)
            var attempt: ReplayAttempt
            var starts = 0
            repeat {
                // A replay whose run found the stack unreachable before its first phase (exit 69: e.g. the broker a
                // previous replay's heal restarted still starting, a ClickHouse setup timeout under load) ran none of
                // the plan: started again (up to `Self.unreachableStarts` times), each start recorded.
                if starts > 0 {
                    logger.warning("replay \(number): kiln run found the stack unreachable (exit 69); starting it again in \(Int(unreachablePause)) s")
                    Thread.sleep(forTimeInterval: unreachablePause)
                }
                starts += 1
                let request = RunRequest(
                    scenario: bundleDirectory.appendingPathComponent(bundle.scenario.file), stack: stack,
                    runsDirectory: runsDirectory, id: "\(idPrefix)-\(number)" + (starts > 1 ? "-start-\(starts)" : ""))
                attempt = Self.attempt(
                    number: number, request: request, launcher: launcher, original: original, target: target, strict: strict)
                attempt.starts = starts
            } while attempt.exitCode == 69 && starts < Self.unreachableStarts && !stop()
            for change in Self.versionChanges(from: bundle, to: attempt.directory) {
                logger.warning("replay \(number): \(change): the servers are not those of the original")
            }
            attempts.append(attempt)
            progress(attempt)
        }
        return attempts
    }

    /// One run and its judgement; a run that could not start or left no readable report is `.notJudged`.
    /// Each server whose version (as the replay's own bundle recorded it) differs from the original's; empty when
    /// either bundle has no versions.
    static func versionChanges(from original: ReplayBundle, to replayDirectory: URL) -> [String] {
        guard let before = original.stack.serverVersions,
            let after = (try? ReplayBundle.read(replayDirectory))?.bundle.stack.serverVersions
        else { return [] }
        return before.keys.sorted().compactMap { server in
            guard let now = after[server], let then = before[server], now != then, !now.hasPrefix("unknown") else { return nil }
            return "\(server) was \(then), now \(now)"
        }
    }

    /// Starts of one replay while its run exits 69 (stack unreachable).
    static let unreachableStarts = 3

    static func attempt(
        number: Int, request: RunRequest, launcher: any RunLauncher, original: RunOutcome, target: Set<AnomalySite>?,
        strict: Bool = false
    ) -> ReplayAttempt {
        let launched: LaunchedRun
        do {
            launched = try launcher.launch(request)
        } catch {
            return ReplayAttempt(
                number: number, directory: request.runsDirectory.appendingPathComponent(request.id), exitCode: -1,
                seconds: 0, reproduction: .notJudged(reason: "the replay could not start: \(error)"))
        }
        let reproduction: Reproduction
        if [64, 69, 70].contains(launched.exitCode) {
            reproduction = .notJudged(reason: "kiln run exited \(launched.exitCode) (see \(launched.log.path))")
        } else {
            do {
                let outcome = try RunOutcome.read(launched.directory)
                reproduction = Reproduction.judge(original: original, replay: outcome, target: target, strict: strict)
            } catch {
                reproduction = .notJudged(reason: "\(error)")
            }
        }
        return ReplayAttempt(
            number: number, directory: launched.directory, exitCode: launched.exitCode, seconds: launched.seconds,
            reproduction: reproduction)
    }
}
