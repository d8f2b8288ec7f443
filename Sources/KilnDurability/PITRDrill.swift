import Foundation
import KilnStores
import KilnData
import KilnPostgres
import Logging

/// Backup and point-in-time recovery drill with pgBackRest: a private PostgreSQL server archiving its WAL into a
/// private repository; a full backup, paced writes, an incremental backup inside the load, more writes; then each
/// target T is restored into a new data directory, started (promoted), and checked against the history and the
/// generator (`RestoreCheck`). Last, one byte of the latest backup is changed: `pgbackrest verify`, a restore, or
/// the check must catch it. Every server started is stopped and the work directory removed on every path.
public struct PITRDrill {
    public let spec: DurabilityDrillSpec
    public let dataset: Dataset
    public let workDirectory: URL
    public let logger: Logger

    public init(spec: DurabilityDrillSpec, dataset: Dataset, workDirectory: URL, logger: Logger) {
        self.spec = spec
        self.dataset = dataset
        self.workDirectory = workDirectory
        self.logger = logger
    }

    public func run(history sink: (WriteHistory) -> Void = { _ in }) -> DurabilityReport {
        var report = DurabilityReport(drill: spec.name, kind: spec.kind.rawValue, plant: spec.plant.rawValue)
        let backRest = PgBackRest(directory: workDirectory.appendingPathComponent("pgbackrest"))
        let primaryEndpoint = spec.stack.postgres.primary
        let primaryDirectory = workDirectory.appendingPathComponent("primary")
        let primary = PrivateServer(
            name: "pitr-primary",
            flavor: .postgres(
                settings: [],
                config: """
                    wal_level = replica
                    archive_mode = on
                    archive_command = \(backRest.archiveCommand)
                    max_wal_senders = 3
                    """),
            endpoint: primaryEndpoint, directory: primaryDirectory)
        defer { primary.stop() }
        do {
            try FileManager.default.createDirectory(at: backRest.directory, withIntermediateDirectories: true)
            try backRest.writeConfig(data: primary.postgresData, port: primaryEndpoint.port, socketDirectory: primaryDirectory)
            logger.info("pitr: starting the private primary at \(primaryEndpoint)")
            try primary.start()
            let store = PostgresLedger(endpoint: primary.postgresEndpoint)
            try store.setup()
            try backRest.stanzaCreate()
            var backups = [try backRest.backup(type: "full")]
            logger.info("pitr: full backup \(backups[0].label) in \(String(format: "%.1f", backups[0].seconds)) s")
            let load = WriteLoad(store: store, dataset: dataset, rate: spec.rate, workers: spec.workers, timeout: spec.timeout)
            let loadStart = Date()
            let loadStartMicros = WallClock.micros()
            load.start()
            let incrementalAt = loadStart.addingTimeInterval(Self.seconds(spec.incrementalAt))
            Thread.sleep(forTimeInterval: max(0, incrementalAt.timeIntervalSinceNow))
            do {
                backups.append(try backRest.backup(type: "incr"))
            } catch {
                load.stop()
                throw error
            }
            logger.info("pitr: incremental backup \(backups[1].label) in \(String(format: "%.1f", backups[1].seconds)) s (under load)")
            Thread.sleep(forTimeInterval: max(0, loadStart.addingTimeInterval(Self.seconds(spec.load)).timeIntervalSinceNow))
            load.stop()
            sink(load.history)
            let records = load.history.records
            report.writes = WriteCounts(records)
            report.backups = backups
            // Every commit of the load must be in the archive before a restore can reach it.
            let connection = try PostgresConnection(primary.postgresEndpoint, connectTimeoutSeconds: 5)
            _ = try connection.execute("SELECT pg_switch_wal()")
            connection.close()
            try backRest.run(["check"])

            var restores: [DurabilityReport.Restore] = []
            let checker = RestoreCheck(dataset: dataset)
            for (index, offset) in spec.targets.enumerated() {
                let target = loadStartMicros + Int64(Self.seconds(offset) * 1e6)
                let restoredTo = spec.plant == .targetSkew ? target + 3_000_000 : target
                restores.append(restoreAndCheck(
                    backRest, index: index, offset: offset, target: target, restoredTo: restoredTo, records: records,
                    checker: checker))
            }
            report.restores = restores
            if spec.corruptBackup, let latest = backups.last {
                report.corruption = corruptAndRestore(
                    backRest, label: latest.label, offset: spec.targets.max()!, loadStart: loadStartMicros,
                    records: records, checker: checker)
            }
            judge(&report)
        } catch {
            report.verdict = .unknown
            report.reasons.append("drill did not complete: \(error)")
        }
        return report
    }

    func judge(_ report: inout DurabilityReport) {
        Self.judge(&report, corruptionExpected: spec.corruptBackup)
    }

    /// The drill's verdict from its steps: any restore not checked or without evidence makes it `unknown`; lost,
    /// phantom or mismatched transactions `anomaly`; a corrupted backup caught by nothing (verify valid, restore
    /// succeeded, check valid) `failed`; a corruption step that did not run `unknown`. Never `passed` without
    /// at least one checked restore.
    public static func judge(_ report: inout DurabilityReport, corruptionExpected: Bool) {
        var verdict = DrillVerdict.passed
        for restore in report.restores ?? [] {
            let at = String(format: "+%.1f s", restore.offsetSeconds)
            guard let check = restore.check else {
                verdict = verdict.worst(.unknown)
                report.reasons.append("restore to \(at) was not checked: \(restore.error ?? "?")")
                continue
            }
            if !check.findings.isEmpty {
                verdict = verdict.worst(.anomaly)
                report.reasons.append("restore to \(at): lost \(check.lost), phantom \(check.phantom), mismatched \(check.mismatched)")
            } else if check.required == 0 {
                verdict = verdict.worst(.unknown)
                report.reasons.append("restore to \(at): no write was acknowledged before the target (no evidence)")
            }
        }
        if (report.restores ?? []).isEmpty {
            verdict = verdict.worst(.unknown)
            report.reasons.append("no restore ran")
        }
        if corruptionExpected {
            if let corruption = report.corruption {
                if !corruption.caught {
                    verdict = verdict.worst(.failed)
                    report.reasons.append("a changed byte in backup file \(corruption.file) was caught by nothing")
                }
            } else {
                verdict = verdict.worst(.unknown)
                report.reasons.append("the corrupted-backup step did not run")
            }
        }
        report.verdict = verdict
    }

    /// Restores to `restoredTo` into a new directory, starts it on the primary's host at port + 1 + index, waits for
    /// the promotion, reads the ledger and checks it against target `target`.
    func restoreAndCheck(
        _ backRest: PgBackRest, index: Int, offset: Duration, target: Int64, restoredTo: Int64, records: [WriteRecord],
        checker: RestoreCheck
    ) -> DurabilityReport.Restore {
        var result = DurabilityReport.Restore(
            offsetSeconds: Self.seconds(offset), target: WallClock.postgresText(target),
            restoredTo: WallClock.postgresText(restoredTo), restoreSeconds: 0, rtoSeconds: 0, check: nil, error: nil)
        let server = restoredServer(index: index)
        defer {
            server.stop()
            try? FileManager.default.removeItem(at: server.directory)
        }
        do {
            let start = ContinuousClock.now
            try FileManager.default.createDirectory(at: server.directory, withIntermediateDirectories: true)
            try ServerFiles.giveToPostgres(server.directory)
            logger.info("pitr: restoring to \(result.restoredTo) into \(server.directory.path)")
            try backRest.restore(into: server.postgresData, targetTime: result.restoredTo)
            result.restoreSeconds = Self.seconds(start.duration(to: .now))
            try server.start(initialize: false)
            try waitPromoted(server)
            result.rtoSeconds = Self.seconds(start.duration(to: .now))
            if spec.plant == .tamperRestored { try tamper(server) }
            let stored = try PostgresLedger(endpoint: server.postgresEndpoint).read()
            result.check = checker.check(history: records, target: target, restored: stored)
        } catch {
            result.error = "\(error)"
        }
        return result
    }

    func corruptAndRestore(
        _ backRest: PgBackRest, label: String, offset: Duration, loadStart: Int64, records: [WriteRecord],
        checker: RestoreCheck
    ) -> DurabilityReport.Corruption {
        var corruption = DurabilityReport.Corruption(
            file: "", verify: PgBackRest.Verification(exitCode: -1, invalidFiles: [], reportsError: false),
            restoreFailed: false, restoreError: nil, checkValid: nil, caught: false)
        do {
            corruption.file = try backRest.corruptLargestFile(of: label)
        } catch {
            corruption.restoreError = "could not corrupt the backup: \(error)"
            return corruption
        }
        logger.info("pitr: changed one byte of \(corruption.file); verifying and restoring")
        corruption.verify = backRest.verify()
        let target = loadStart + Int64(Self.seconds(offset) * 1e6)
        let restore = restoreAndCheck(
            backRest, index: spec.targets.count, offset: offset, target: target, restoredTo: target, records: records,
            checker: checker)
        if let check = restore.check {
            corruption.checkValid = check.valid
        } else {
            corruption.restoreFailed = true
            corruption.restoreError = restore.error.map { String($0.prefix(400)) }
        }
        corruption.caught = !corruption.verify.valid || corruption.restoreFailed || corruption.checkValid == false
        return corruption
    }

    func restoredServer(index: Int) -> PrivateServer {
        let primary = spec.stack.postgres.primary
        return PrivateServer(
            name: "pitr-restore-\(index + 1)",
            flavor: .postgres(settings: [("archive_mode", "off")]),
            endpoint: .init(host: primary.host, port: primary.port + 1 + index),
            directory: workDirectory.appendingPathComponent("restore-\(index + 1)"))
    }

    func waitPromoted(_ server: PrivateServer, timeout: Duration = .seconds(300)) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let connection = try? PostgresConnection(server.postgresEndpoint, connectTimeoutSeconds: 2) {
                defer { connection.close() }
                if (try? connection.execute("SELECT pg_is_in_recovery()").value(row: 0, column: 0)) == "f" { return }
            }
            guard server.mainPID() != nil else {
                throw DurabilityError("\(server.name) exited during recovery (log: \(server.log.path))")
            }
            usleep(100_000)
        }
        throw DurabilityError("\(server.name) still in recovery after \(timeout)")
    }

    /// The planted defect `tamper-restored`: the lowest txn_id gets another amount, the next one is deleted.
    func tamper(_ server: PrivateServer) throws {
        let connection = try PostgresConnection(server.postgresEndpoint, connectTimeoutSeconds: 5)
        defer { connection.close() }
        try connection.execute(
            "UPDATE \(PostgresLedger.table) SET amount_cents = amount_cents + 1 WHERE txn_id = (SELECT min(txn_id) FROM \(PostgresLedger.table))")
        try connection.execute(
            "DELETE FROM \(PostgresLedger.table) WHERE txn_id = (SELECT min(txn_id) + 1 FROM \(PostgresLedger.table))")
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
