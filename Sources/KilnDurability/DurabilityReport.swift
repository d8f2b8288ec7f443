import Foundation
import KilnCore

/// A durability drill's verdict. Judged by its checks only: a step that did not run makes it `unknown`, never
/// `passed`.
public enum DrillVerdict: String, Sendable, Codable {
    case passed
    /// Lost, phantom or mismatched transactions that no promise allows (a restore or restart that is wrong).
    case anomaly
    /// A broken promise (loss beyond what the setting promises) or a corrupted backup nobody caught.
    case failed
    /// A step did not run or had no evidence (no acknowledged write, no snapshot, a restore that did not start).
    case unknown

    public var exitCode: KilnExitCode {
        switch self {
        case .passed: .ok
        case .anomaly: .anomaly
        case .failed: .thresholdFailed
        case .unknown: .unknown
        }
    }

    /// The worse of two verdicts (unknown < failed < anomaly in severity order after passed).
    func worst(_ other: DrillVerdict) -> DrillVerdict {
        let order: [DrillVerdict] = [.passed, .unknown, .failed, .anomaly]
        return order.firstIndex(of: other)! > order.firstIndex(of: self)! ? other : self
    }
}

public struct WriteCounts: Sendable, Codable, Equatable {
    public var ok = 0
    public var fail = 0
    public var info = 0

    public init(_ records: [WriteRecord]) {
        for record in records {
            switch record.outcome {
            case .ok: ok += 1
            case .fail: fail += 1
            case .info: info += 1
            }
        }
    }
}

/// report.json of a durability drill (`durability.json` in the run directory).
public struct DurabilityReport: Sendable, Codable {
    public struct Crash: Sendable, Codable {
        public var server: String
        public var setting: String
        /// What the server said it runs with (CONFIG GET / SHOW) at setup: evidence, not the judge.
        public var effectiveSettings: [String: String]
        public var promise: String
        public var killedPIDs: [Int32]
        /// From the restart command to the first answer: the server's own recovery time.
        public var restartSeconds: Double
        public var judged: CrashLossJudge.Result

        enum CodingKeys: String, CodingKey {
            case server, setting
            case effectiveSettings = "effective_settings"
            case promise
            case killedPIDs = "killed_pids"
            case restartSeconds = "restart_seconds"
            case judged
        }
    }

    public struct Restore: Sendable, Codable {
        public var offsetSeconds: Double
        public var target: String
        /// The time the restore was asked to stop at (differs from `target` only with a planted skew).
        public var restoredTo: String
        public var restoreSeconds: Double
        /// From restore start to the promoted server answering: the recovery time objective measured.
        public var rtoSeconds: Double
        public var check: RestoreCheck.Result?
        public var error: String?

        enum CodingKeys: String, CodingKey {
            case offsetSeconds = "offset_s"
            case target
            case restoredTo = "restored_to"
            case restoreSeconds = "restore_seconds"
            case rtoSeconds = "rto_seconds"
            case check, error
        }
    }

    public struct Corruption: Sendable, Codable {
        public var file: String
        public var verify: PgBackRest.Verification
        public var restoreFailed: Bool
        public var restoreError: String?
        public var checkValid: Bool?
        public var caught: Bool

        enum CodingKeys: String, CodingKey {
            case file, verify
            case restoreFailed = "restore_failed"
            case restoreError = "restore_error"
            case checkValid = "check_valid"
            case caught
        }
    }

    public var drill: String
    public var kind: String
    public var plant: String
    public var verdict: DrillVerdict
    public var reasons: [String]
    public var writes: WriteCounts
    public var crash: Crash?
    public var backups: [PgBackRest.Backup]?
    public var restores: [Restore]?
    public var corruption: Corruption?

    public init(drill: String, kind: String, plant: String) {
        self.drill = drill
        self.kind = kind
        self.plant = plant
        verdict = .unknown
        reasons = []
        writes = WriteCounts([])
    }

    public func write(to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: url)
    }

    /// A few lines for the console and summary.md.
    public var summary: String {
        var lines = ["durability drill \(drill) (\(kind)\(plant == "none" ? "" : ", planted: \(plant)")): \(verdict.rawValue.uppercased())"]
        lines.append("  writes: ok \(writes.ok), fail \(writes.fail), info \(writes.info)")
        if let crash {
            let judged = crash.judged
            lines.append("  \(crash.server) \(crash.setting) (running: \(crash.effectiveSettings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")))")
            lines.append("  promise: \(crash.promise)")
            lines.append(String(
                format: "  measured: acknowledged %d, lost %d (window %.3f s before the kill), beyond the promise %d, phantom %d, mismatched %d; restart %.2f s",
                judged.acknowledged, judged.lost, Double(judged.lossWindowMicros) / 1e6, judged.beyondPromise,
                judged.phantom, judged.mismatched, crash.restartSeconds))
        }
        for backup in backups ?? [] {
            lines.append(String(
                format: "  backup %@ %@: %.2f s, database %lld B, delta %lld B, repository %lld B (delta %lld B)",
                backup.label, backup.type, backup.seconds, backup.databaseBytes, backup.deltaBytes, backup.repositoryBytes,
                backup.repositoryDeltaBytes))
        }
        for restore in restores ?? [] {
            if let check = restore.check {
                lines.append(String(
                    format: "  restore to +%.1f s (%@): RTO %.2f s (restore %.2f s); required %d, present %d, lost %d, phantom %d, mismatched %d, undecided %d (%d present)",
                    restore.offsetSeconds, restore.target, restore.rtoSeconds, restore.restoreSeconds, check.required,
                    check.present, check.lost, check.phantom, check.mismatched, check.undecided, check.undecidedPresent))
            } else {
                lines.append(String(format: "  restore to +%.1f s: NOT CHECKED (%@)", restore.offsetSeconds, restore.error ?? "?"))
            }
        }
        if let corruption {
            lines.append("  corrupted backup file \(URL(fileURLWithPath: corruption.file).lastPathComponent): verify "
                + (corruption.verify.valid ? "said valid" : "flagged it (exit \(corruption.verify.exitCode), invalid: \(corruption.verify.invalidFiles.count))")
                + ", restore " + (corruption.restoreFailed ? "failed" : "succeeded")
                + (corruption.checkValid.map { ", check \($0 ? "valid" : "INVALID")" } ?? "")
                + (corruption.caught ? " -> caught" : " -> NOT CAUGHT"))
        }
        for reason in reasons { lines.append("  - \(reason)") }
        return lines.joined(separator: "\n")
    }
}
