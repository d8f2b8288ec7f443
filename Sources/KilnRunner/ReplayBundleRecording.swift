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
public enum ReplayBundleRecording {
    public static func currentBuild(home: URL) -> ReplayBundle.KilnBuild {
        ReplayBundle.KilnBuild(version: KilnVersion.current, commit: RunController.gitRevision(home))
    }

    public static func writePlan(
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

    public static func writeOutcome(_ plan: ReplayBundle?, directory: URL, logger: Logger) {
        guard let plan else { return }
        do {
            try BundleWriter.writeOutcome(plan, runDirectory: directory, logger: logger)
        } catch {
            logger.error("bundle: cannot complete \(directory.appendingPathComponent(ReplayBundle.fileName).path): \(error)")
        }
    }

    /// The bundle, its original outcome (which must have been checked) and the gate's warnings; every refusal is
    /// exit 64 naming the file and what is wrong.
    public static func open(_ location: String, stackFile: String?, force: Bool, home: URL, logger: Logger) throws
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
    public static func target(_ texts: [String], original: RunOutcome) throws -> Set<AnomalySite>? {
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

    public static var launcher: KilnProcessLauncher {
        KilnProcessLauncher(executable: Bundle.main.executableURL ?? URL(fileURLWithPath: "/proc/self/exe"))
    }

    public static func stamp() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: Date())
    }

    public static func describe(_ outcome: RunOutcome) -> String {
        guard outcome.failed else { return "valid (every place valid, every threshold held)" }
        let sites = outcome.anomalies.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }
        return (sites + outcome.failedThresholds.sorted().map { "threshold \($0) failed" }
            + outcome.failedDrills.sorted().map { "drill \($0) failed" }).joined(separator: "; ")
    }
}
