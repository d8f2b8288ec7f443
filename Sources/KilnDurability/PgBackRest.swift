import Foundation
import KilnStack

/// pgBackRest (Debian `pgbackrest` 2.45) for one private PostgreSQL server: its own config file, repository, log
/// and lock directories under `directory` (owned by `postgres`, as every command runs as `postgres`). Stanza `kiln`.
/// Blocking calls; one caller at a time. Owns nothing that runs: every command completes before its call returns.
public final class PgBackRest {
    public static let executable = "/usr/bin/pgbackrest"
    public let directory: URL
    public let stanza = "kiln"
    public var config: URL { directory.appendingPathComponent("pgbackrest.conf") }
    public var repository: URL { directory.appendingPathComponent("repo") }

    public struct Backup: Sendable, Codable, Equatable {
        public var label: String
        public var type: String
        /// Size of the cluster the backup covers (pgBackRest's `info.size`), and of what it stored (`delta`).
        public var databaseBytes: Int64
        public var deltaBytes: Int64
        /// Bytes in the repository (compressed).
        public var repositoryBytes: Int64
        public var repositoryDeltaBytes: Int64
        /// Wall time of the `backup` command as Kiln measured it.
        public var seconds: Double

        enum CodingKeys: String, CodingKey {
            case label, type
            case databaseBytes = "database_bytes"
            case deltaBytes = "delta_bytes"
            case repositoryBytes = "repository_bytes"
            case repositoryDeltaBytes = "repository_delta_bytes"
            case seconds
        }
    }

    /// What `pgbackrest verify` said. pgBackRest 2.45 exits 0 even when it finds invalid files ("completed
    /// successfully" with `status: error` in its report), so the verdict is read from the report text.
    public struct Verification: Sendable, Codable, Equatable {
        public var exitCode: Int32
        public var invalidFiles: [String]
        public var reportsError: Bool
        public var valid: Bool { exitCode == 0 && !reportsError && invalidFiles.isEmpty }

        enum CodingKeys: String, CodingKey {
            case exitCode = "exit_code"
            case invalidFiles = "invalid_files"
            case reportsError = "reports_error"
        }

        /// Reads verify's console output at log level info.
        public static func parse(_ output: String, exitCode: Int32) -> Verification {
            var invalid: [String] = []
            var error = false
            for line in output.split(separator: "\n") {
                if let range = line.range(of: "invalid checksum '") ?? line.range(of: "invalid result '")
                    ?? line.range(of: "missing '")
                {
                    invalid.append(String(line[range.upperBound...].prefix { $0 != "'" }))
                }
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed == "status: error" || trimmed.hasPrefix("checksum invalid:") || trimmed.contains("status: invalid") {
                    error = true
                }
            }
            return Verification(exitCode: exitCode, invalidFiles: invalid, reportsError: error)
        }
    }

    public init(directory: URL) { self.directory = directory }

    /// Writes the config for a server whose data directory is `data`, listening on `port` with its Unix socket in
    /// `socketDirectory`. Jobs are not retried (`job-retry=0`): a corrupt file fails the restore at once.
    public func writeConfig(data: URL, port: Int, socketDirectory: URL) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else {
            throw DurabilityError("pgBackRest is not installed (\(Self.executable)); run scripts/bootstrap")
        }
        for sub in ["repo", "log", "lock"] {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        let text = """
            [global]
            repo1-path=\(repository.path)
            repo1-retention-full=10
            log-path=\(directory.appendingPathComponent("log").path)
            lock-path=\(directory.appendingPathComponent("lock").path)
            log-level-console=warn
            log-level-file=info
            start-fast=y
            job-retry=0
            process-max=1

            [\(stanza)]
            pg1-path=\(data.path)
            pg1-port=\(port)
            pg1-socket-path=\(socketDirectory.path)

            """
        try text.write(to: config, atomically: true, encoding: .utf8)
        try ServerFiles.giveToPostgres(directory)
    }

    /// The server's `archive_command`.
    public var archiveCommand: String { "'\(Self.executable) --config=\(config.path) --stanza=\(stanza) archive-push %p'" }

    @discardableResult
    public func run(_ arguments: [String]) throws -> String {
        try LocalProcess.run(Self.executable, ["--config=\(config.path)", "--stanza=\(stanza)"] + arguments, user: "postgres")
    }

    public func stanzaCreate() throws {
        try run(["stanza-create"])
        try run(["check"])
    }

    /// Takes a backup (`full`, `diff` or `incr`) and returns its sizes from `info` and its measured duration.
    public func backup(type: String) throws -> Backup {
        let start = ContinuousClock.now
        try run(["--type=\(type)", "backup"])
        let elapsed = start.duration(to: .now)
        guard var last = try backups().last else { throw DurabilityError("pgbackrest info lists no backup after a backup") }
        last.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return last
    }

    public func backups() throws -> [Backup] {
        let text = try run(["--output=json", "info"])
        guard let stanzas = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]],
            let backups = stanzas.first?["backup"] as? [[String: Any]]
        else { throw DurabilityError("pgbackrest info: unexpected JSON") }
        return backups.map { entry in
            let info = entry["info"] as? [String: Any] ?? [:]
            let repository = info["repository"] as? [String: Any] ?? [:]
            func int(_ value: Any?) -> Int64 { (value as? NSNumber)?.int64Value ?? 0 }
            return Backup(
                label: entry["label"] as? String ?? "?", type: entry["type"] as? String ?? "?",
                databaseBytes: int(info["size"]), deltaBytes: int(info["delta"]),
                repositoryBytes: int(repository["size"]), repositoryDeltaBytes: int(repository["delta"]), seconds: 0)
        }
    }

    public func verify() -> Verification {
        do {
            let output = try run(["--log-level-console=info", "verify"])
            return .parse(output, exitCode: 0)
        } catch let failure as LocalProcess.Failure {
            return .parse(failure.output, exitCode: failure.status)
        } catch {
            return Verification(exitCode: -1, invalidFiles: [], reportsError: true)
        }
    }

    /// Restores into the empty directory `data` up to `targetTime` (PostgreSQL time text), then promotes.
    /// The restored cluster keeps the same `archive_command`: start it with `archive_mode=off`, or it archives a new
    /// timeline into this repository.
    public func restore(into data: URL, targetTime: String) throws {
        try run([
            "--pg1-path=\(data.path)", "--type=time", "--target=\(targetTime)", "--target-action=promote",
            "--target-timeline=current", "restore",
        ])
    }

    /// Changes one byte in the middle of the largest data file of backup `label` (the drill's ledger table, at its
    /// size), and returns the file's path in the repository.
    public func corruptLargestFile(of label: String) throws -> String {
        let base = repository.appendingPathComponent("backup/\(stanza)/\(label)/pg_data/base")
        var largest: (path: String, size: Int64)?
        let enumerator = FileManager.default.enumerator(atPath: base.path)
        while let item = enumerator?.nextObject() as? String {
            let path = base.appendingPathComponent(item).path
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                attributes[.type] as? FileAttributeType == .typeRegular, let size = (attributes[.size] as? NSNumber)?.int64Value
            else { continue }
            if size > (largest?.size ?? 0) { largest = (path, size) }
        }
        guard let largest, largest.size > 64 else { throw DurabilityError("backup \(label) holds no data file to corrupt") }
        guard let handle = FileHandle(forUpdatingAtPath: largest.path) else { throw DurabilityError("cannot open \(largest.path)") }
        defer { try? handle.close() }
        let offset = UInt64(largest.size / 2)
        try handle.seek(toOffset: offset)
        let old = try handle.read(upToCount: 1) ?? Data([0])
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: Data([old[old.startIndex] ^ 0xFF]))
        return largest.path
    }
}
