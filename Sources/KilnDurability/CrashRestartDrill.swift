import Foundation
import KilnStores
import KilnData
import KilnPostgres
import KilnRedis
import Logging

/// Crash-restart durability drill: a private server with the drill's persistence setting, paced writes, SIGKILL of
/// every process of it under the load, a restart from its own disk, and a check by key of what was acknowledged and
/// lost against what the setting promises (`LossPromise`, `CrashLossJudge`). The server and its directory are
/// removed on every path.
public struct CrashRestartDrill {
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

    var flavor: PrivateServer.Flavor {
        let redisArguments: [String]
        switch (spec.plant, spec.setting) {
        case (.appendonlyOff, _): redisArguments = ["--appendonly", "no", "--save", ""]
        case (_, .aofEverySec): redisArguments = ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        default: redisArguments = ["--appendonly", "no", "--save", "\(spec.rdbSaveEvery) 1"]
        }
        switch spec.server {
        case .redis: return .redis(arguments: redisArguments)
        case .falkordb: return .falkordb(arguments: redisArguments)
        case .postgres:
            if spec.plant == .fsyncOff {
                return .postgres(settings: [("fsync", "off"), ("synchronous_commit", "off"), ("wal_writer_delay", "10s")])
            }
            return .postgres(settings: [
                ("fsync", "on"), ("synchronous_commit", spec.setting == .synchronousCommitOn ? "on" : "off"),
            ])
        }
    }

    public func run(history sink: (WriteHistory) -> Void = { _ in }) -> DurabilityReport {
        var report = DurabilityReport(drill: spec.name, kind: spec.kind.rawValue, plant: spec.plant.rawValue)
        let server = PrivateServer(
            name: "\(spec.server.rawValue)-\(spec.setting.rawValue)", flavor: flavor,
            endpoint: spec.server == .redis ? spec.stack.redis.primary
                : spec.server == .falkordb ? spec.stack.graph.endpoint : spec.stack.postgres.primary,
            directory: workDirectory.appendingPathComponent("server"))
        defer { server.stop() }
        let store: any LedgerStore
        switch spec.server {
        case .redis: store = RedisLedger(host: server.endpoint.host, port: server.endpoint.port)
        case .falkordb: store = FalkorDBLedger(host: server.endpoint.host, port: server.endpoint.port)
        case .postgres: store = PostgresLedger(endpoint: server.postgresEndpoint)
        }
        var crash = DurabilityReport.Crash(
            server: spec.server.rawValue, setting: spec.setting.rawValue, effectiveSettings: [:], promise: "",
            killedPIDs: [], restartSeconds: 0,
            judged: CrashLossJudge.Result(
                killedMicros: 0, boundMicros: 0, acknowledged: 0, lost: 0, lostWithinPromise: 0, lossWindowMicros: 0,
                findings: [], beyondPromise: 0, phantom: 0, mismatched: 0))
        do {
            logger.info("durability: starting \(server.name) at \(server.endpoint) in \(server.directory.path)")
            try server.start()
            try store.setup()
            crash.effectiveSettings = try effectiveSettings(server)
            let walWriterDelay = Self.milliseconds(crash.effectiveSettings["wal_writer_delay"] ?? "200ms") * 1000
            let load = WriteLoad(store: store, dataset: dataset, rate: spec.rate, workers: spec.workers, timeout: spec.timeout)
            let loadStart = WallClock.micros()
            load.start()
            Thread.sleep(forTimeInterval: Self.seconds(spec.killAfter))
            let snapshot = spec.setting == .rdb ? try lastSnapshot(server) : nil
            let killed: (killedAt: Int64, pids: [pid_t])
            do {
                killed = try server.crash()
            } catch {
                load.stop()
                throw error
            }
            logger.info("durability: SIGKILL of \(killed.pids.count) process(es) of \(server.name)")
            crash.killedPIDs = killed.pids
            Thread.sleep(forTimeInterval: Self.seconds(spec.loadAfterKill))
            load.stop()
            sink(load.history)
            let records = load.history.records
            report.writes = WriteCounts(records)
            let restartStart = ContinuousClock.now
            try server.start(initialize: false)
            crash.restartSeconds = Self.seconds(restartStart.duration(to: .now))
            let stored = try store.read()
            let promise = spec.promise(walWriterDelayMicros: walWriterDelay, lastSnapshotMicros: snapshot)
            crash.promise = promise.text
            crash.judged = CrashLossJudge(dataset: dataset).judge(
                history: records, killedAt: killed.killedAt, promise: promise, stored: stored)
            report.crash = crash
            let judged = crash.judged
            if judged.acknowledged == 0 {
                report.verdict = .unknown
                report.reasons.append("no write was acknowledged before the kill: nothing to check")
            } else if spec.setting == .rdb, (snapshot ?? 0) < loadStart {
                report.verdict = .unknown
                report.reasons.append("no RDB snapshot completed during the load: the promise was not exercised")
            } else if judged.phantom > 0 || judged.mismatched > 0 {
                report.verdict = .anomaly
                report.reasons.append("\(judged.phantom) phantom and \(judged.mismatched) mismatched transaction(s) after the restart")
            } else if judged.beyondPromise > 0 {
                report.verdict = .failed
                report.reasons.append("\(judged.beyondPromise) acknowledged write(s) lost beyond the promise (\(promise.text))")
            } else {
                report.verdict = .passed
            }
        } catch {
            report.crash = crash
            report.verdict = .unknown
            report.reasons.append("drill did not complete: \(error)")
        }
        return report
    }

    func effectiveSettings(_ server: PrivateServer) throws -> [String: String] {
        switch spec.server {
        case .redis, .falkordb:
            let connection = try RedisConnection(host: server.endpoint.host, port: server.endpoint.port)
            defer { connection.close() }
            var settings: [String: String] = [:]
            for name in ["appendonly", "appendfsync", "save"] {
                let pair = try connection.command("CONFIG", "GET", name).array ?? []
                if pair.count == 2 { settings[name] = pair[1].string ?? "" }
            }
            return settings
        case .postgres:
            let connection = try PostgresConnection(server.postgresEndpoint, connectTimeoutSeconds: 5)
            defer { connection.close() }
            var settings: [String: String] = [:]
            for name in ["synchronous_commit", "fsync", "wal_writer_delay"] {
                settings[name] = try connection.execute("SHOW \(name)").value(row: 0, column: 0) ?? "?"
            }
            return settings
        }
    }

    /// The time (Unix µs) before which the last completed RDB snapshot holds every write: its completion second,
    /// less its duration and one second of rounding. Nil when none completed since start.
    func lastSnapshot(_ server: PrivateServer) throws -> Int64? {
        let connection = try RedisConnection(host: server.endpoint.host, port: server.endpoint.port)
        defer { connection.close() }
        let info = try connection.command("INFO", "persistence").string ?? ""
        var fields: [String: String] = [:]
        for line in info.split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        guard let saved = fields["rdb_last_save_time"].flatMap(Int64.init), fields["rdb_last_bgsave_status"] == "ok" else { return nil }
        let took = max(0, fields["rdb_last_bgsave_time_sec"].flatMap(Int64.init) ?? 0)
        return (saved - took - 1) * 1_000_000
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// PostgreSQL's `SHOW` of a time setting (`200ms`, `10s`, `1min`) in milliseconds.
    static func milliseconds(_ text: String) -> Int64 {
        let digits = Int64(text.prefix { $0.isNumber }) ?? 200
        let unit = text.drop { $0.isNumber }
        switch unit {
        case "s": return digits * 1000
        case "min": return digits * 60_000
        case "us": return max(1, digits / 1000)
        default: return digits
        }
    }
}
