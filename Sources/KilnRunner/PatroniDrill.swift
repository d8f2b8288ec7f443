import Foundation
import KilnCheck
import KilnCore
import KilnFaults
import KilnPostgres
import KilnScenario
import KilnStack
import Logging
import Synchronization

/// `kiln patroni drill FILE`: an HA drill against a Patroni stack, judged by its check. Loads the drill file and
/// its Patroni stack, makes the run directory and runs the drill; returns its exit code (0 valid, 1 anomaly, 2 fault
/// not in effect, 3 unknown). Errors are `Failure`s or the specs' own errors, mapped by `ErrorExit`.
public struct PatroniDrillRequest {
    /// Drill file (Scenarios/drills/patroni-*.yaml).
    public var file: String
    /// Override of the file's synchronous_mode.
    public var synchronousMode: Bool?
    /// Run directory parent.
    public var runsDirectory = "Reports/runs"
    /// Run id (default: time and drill name).
    public var id: String?
    /// Planted loss: acknowledged rows deleted from the final leader before the check.
    public var plantLoss = 0
    public var verbose = false

    public init(file: String) {
        self.file = file
    }

    public func run() throws -> KilnExitCode {
                var logger = Logger(label: "kiln.patroni") { _ in ConsoleLogHandler(logLevel: .info) }
                logger.logLevel = verbose ? .debug : .info
                var spec = try PatroniDrillSpec.load(contentsOf: URL(fileURLWithPath: file))
                if let synchronousMode { spec.synchronousMode = synchronousMode }
                let stack = try PatroniStackSpec.load(contentsOf: spec.stack)
                let cluster = try PatroniCluster(spec: stack, home: KilnPaths.resolve().home, logger: logger)
                let runID = id ?? "\(Self.timestamp())-\(spec.name)-\(spec.synchronousMode ? "sync" : "async")"
                let runDirectory = URL(fileURLWithPath: runsDirectory).appendingPathComponent(runID)
                try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
                let drill = PatroniDrillRun(
                    spec: spec, cluster: cluster, runID: runID, directory: runDirectory, plantLoss: plantLoss,
                    logger: logger)
                return try drill.run()
    }

        static func timestamp() -> String {
            let formatter = DateFormatter()
            formatter.dateFormat = "yyyyMMdd-HHmmss"
            formatter.timeZone = TimeZone(identifier: "UTC")
            return formatter.string(from: Date())
        }
}

/// One drill: writers (one OS thread each) follow the leader through a `PrimaryDirectory` that a
/// `PatroniLeaderWatch` keeps on the node whose `GET /leader` answers 200; the fault runs on the calling thread.
final class PatroniDrillRun {
    let spec: PatroniDrillSpec
    let cluster: PatroniCluster
    let runID: String
    let directory: URL
    let plantLoss: Int
    let logger: Logger
    static let table = "kiln_patroni_drill"

    init(spec: PatroniDrillSpec, cluster: PatroniCluster, runID: String, directory: URL, plantLoss: Int, logger: Logger) {
        self.spec = spec
        self.cluster = cluster
        self.runID = runID
        self.directory = directory
        self.plantLoss = plantLoss
        self.logger = logger
    }

    private func endpoint(_ node: HostPort) -> PostgresEndpoint {
        PostgresEndpoint(host: node.host, port: node.port, database: cluster.spec.database, user: cluster.spec.user)
    }

    func run() throws -> KilnExitCode {
        let before = cluster.status()
        guard before.isHealthy, let leader = before.leaderIndex else {
            throw StackError(
                server: cluster.spec.name,
                message: "not healthy (one leader, every replica streaming, etcd majority): run `kiln stack up --stack \(spec.stack.path)`")
        }
        try cluster.setSynchronousMode(spec.synchronousMode)
        let leaderNode = cluster.spec.nodes[cluster.status().leaderIndex ?? leader]
        do {
            let setup = try PostgresConnection(endpoint(leaderNode), connectTimeoutSeconds: 5)
            try setup.execute("DROP TABLE IF EXISTS \(Self.table)")
            try setup.execute(
                "CREATE TABLE \(Self.table) (txn_id bigint PRIMARY KEY, worker int NOT NULL, "
                    + "node text NOT NULL DEFAULT inet_server_addr()::text, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        }
        let directoryOfPrimaries = PrimaryDirectory(["postgres": leaderNode])
        let watch = PatroniLeaderWatch(
            restEndpoints: cluster.spec.nodes.indices.map { cluster.spec.restEndpoint(ofNode: $0) },
            nodes: cluster.spec.nodes, directory: directoryOfPrimaries)
        let faultLeader = cluster.nodeIndex(leaderNode.host)!
        let fault = PatroniFault(spec.fault, cluster: cluster, leader: faultLeader, runID: runID, logger: logger)
        let driver = FaultDriver(fault)
        defer { fault.teardown() }

        logger.info(
            "drill starting",
            metadata: [
                "kiln.drill": "\(spec.name)", "kiln.fault": "\(spec.fault.rawValue)", "kiln.leader": "\(leaderNode)",
                "kiln.synchronous_mode": "\(spec.synchronousMode)",
            ])
        let t0 = DispatchTime.now().uptimeNanoseconds
        let loadEnd = t0 + UInt64(spec.duration.components.seconds) * 1_000_000_000
            + UInt64(spec.duration.components.attoseconds / 1_000_000_000)
        watch.start()
        let writers = (0..<spec.writers).map { PatroniDrillWriter(worker: $0, run: self, primaries: directoryOfPrimaries) }
        let counter = TxnCounter()
        for writer in writers { writer.start(t0: t0, until: loadEnd, interval: Double(spec.writers) / Double(spec.rate), counter: counter) }

        Self.sleep(until: t0 + Self.nanos(spec.faultAt))
        // Ctrl-C or SIGTERM while the fault acts: undo it (continue, remove rules, restart a killed member) first.
        InterruptHealer.shared.install()
        let activeFault = UncheckedFault(fault)
        let healToken = InterruptHealer.shared.register {
            try? activeFault.fault.stop()
            activeFault.fault.teardown()
        }
        let faultStart = DispatchTime.now().uptimeNanoseconds
        var record = driver.start()
        logger.info("fault started", metadata: ["kiln.fault": "\(record.name)", "kiln.evidence": "\(record.note)"])
        if spec.fault != .switchover { Self.sleep(until: faultStart + Self.nanos(spec.faultDuration)) }
        record = driver.stop()
        InterruptHealer.shared.unregister(healToken)
        logger.info("fault stopped", metadata: ["kiln.verified": "\(record.verified.rawValue)", "kiln.evidence": "\(record.note)"])

        Self.sleep(until: loadEnd)
        var writes: [PatroniDrillCheck.Write] = []
        let joinDeadline = DispatchTime.now().uptimeNanoseconds + 15_000_000_000
        for writer in writers { writes += writer.finish(deadline: joinDeadline) }

        // The check reads the leader once the cluster settled (the old leader rejoined, pg_rewind done).
        let settleDeadline = ContinuousClock.now + spec.settle
        var after = cluster.status()
        while !after.isHealthy, ContinuousClock.now < settleDeadline {
            usleep(500_000)
            after = cluster.status()
        }
        watch.stop()
        let rounds = watch.observations.map { round in
            (at: round.atNanos, leaders: round.leaders.map { cluster.spec.nodes[$0].description })
        }
        try writeHistory(writes, t0: t0)

        let leaders = cluster.leadersByREST()
        guard leaders.count == 1 else {
            try writeReport(record: record, result: nil, notChecked: "no single leader after \(spec.settle): GET /leader 200 on \(leaders)", t0: t0, faultStart: faultStart)
            print("verdict: NOT CHECKED (no single leader to read after \(spec.settle))")
            return .unknown
        }
        let finalLeader = cluster.spec.nodes[leaders[0]]
        let reader = try PostgresConnection(endpoint(finalLeader), connectTimeoutSeconds: 5)
        var planted: [Int64] = []
        if plantLoss > 0 {
            let acked = writes.filter { $0.outcome == .ok }.map(\.txnID).sorted()
            let step = max(1, acked.count / plantLoss)
            planted = stride(from: 0, to: acked.count, by: step).prefix(plantLoss).map { acked[$0] }
            let victims = planted.map(String.init)
            try reader.execute("DELETE FROM \(Self.table) WHERE txn_id IN (\(victims.joined(separator: ",")))")
            logger.warning("planted loss: deleted acknowledged rows", metadata: ["kiln.txn_ids": "\(victims.joined(separator: ","))"])
        }
        let rows = try reader.execute("SELECT txn_id FROM \(Self.table)")
        var present = Set<Int64>()
        for row in 0..<rows.rowCount { if let text = rows.value(row: row, column: 0), let id = Int64(text) { present.insert(id) } }
        let result = PatroniDrillCheck.check(
            writes: writes, present: present, faultStart: faultStart, loadEnd: loadEnd, leaderRounds: rounds,
            initialLeader: leaderNode.description)
        try writeReport(record: record, result: result, notChecked: nil, t0: t0, faultStart: faultStart, planted: planted)
        print(summary(result, record: record, finalLeader: finalLeader))
        if !result.valid { return .anomaly }
        switch record.verified {
        case .no: return .thresholdFailed
        case .unknown: return .unknown
        case .yes: return .ok
        }
    }

    func summary(_ result: PatroniDrillCheck.Result, record: FaultRecord, finalLeader: HostPort) -> String {
        func ms(_ value: Double?) -> String { value.map { String(format: "%.0f ms", $0) } ?? "-" }
        let lost = result.lost.prefix(20).map(String.init).joined(separator: ",")
        return """
            drill \(spec.name) (\(spec.fault.rawValue), synchronous_mode \(spec.synchronousMode ? "on" : "off")): fault verified \(record.verified.rawValue)
              writes: \(result.acknowledged) acknowledged, \(result.failed) failed, \(result.unknown) unknown (\(result.unknownPresent) of them present)
              time to new leader: \(ms(result.timeToNewLeaderMs))  unavailability: \(ms(result.unavailabilityMs))  RTO: \(ms(result.rtoMs))
              RPO: \(result.lost.count) acknowledged writes lost\(result.lost.isEmpty ? "" : " (txn_id \(lost)\(result.lost.count > 20 ? ",…" : ""))")
              phantom: \(result.phantom.count)  split-brain: \(result.splitBrain.isEmpty ? "no" : "YES: " + result.splitBrain.map(\.description).joined(separator: "; "))
              acknowledging nodes: \(result.ackingNodes.joined(separator: " -> "))  final leader: \(finalLeader)
            verdict: \(result.valid ? "valid" : "INVALID")
            run directory: \(directory.path)
            """
    }

    private func writeHistory(_ writes: [PatroniDrillCheck.Write], t0: UInt64) throws {
        // Kiln's history shape, so `DualPrimaryAnalysis.acks(fromHistory:)` reads it as it reads a run's.
        var text = ""
        for write in writes.sorted(by: { $0.start < $1.start }) {
            let server = write.server.map { #","server":"\#($0)""# } ?? ""
            text += #"{"phase":"patroni-drill","op":"postgres.insert","worker":\#(write.worker),"row":\#(write.txnID),"rows":1,"outcome":"\#(write.outcome.rawValue)"\#(server),"start_ns":\#(write.start &- t0),"end_ns":\#(write.end &- t0)}"#
            text += "\n"
        }
        try text.write(to: directory.appendingPathComponent("history.jsonl"), atomically: true, encoding: .utf8)
    }

    private func writeReport(
        record: FaultRecord, result: PatroniDrillCheck.Result?, notChecked: String?, t0: UInt64, faultStart: UInt64,
        planted: [Int64] = []
    ) throws {
        struct Report: Encodable {
            var schema = "kiln.patroni-drill/1"
            var drill: String
            var fault: String
            var synchronous_mode: Bool
            var writers: Int
            var rate: Int
            var duration_s: Double
            var fault_at_ms: Double
            var fault_record: FaultRecord
            var verdict: String
            var not_checked: String?
            var check: PatroniDrillCheck.Result?
            /// txn_ids `--plant-loss` deleted from the final leader before the check read it.
            var planted_loss: [Int64]
        }
        let verdict = notChecked != nil ? "not-checked" : (result?.valid == true ? "valid" : "invalid")
        let report = Report(
            drill: spec.name, fault: spec.fault.rawValue, synchronous_mode: spec.synchronousMode, writers: spec.writers,
            rate: spec.rate, duration_s: Double(Self.nanos(spec.duration)) / 1e9, fault_at_ms: Double(faultStart - t0) / 1e6,
            fault_record: record, verdict: verdict, not_checked: notChecked, check: result, planted_loss: planted)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(report).write(to: directory.appendingPathComponent("patroni-drill.json"))
    }

    static func nanos(_ duration: Duration) -> UInt64 {
        UInt64(duration.components.seconds) * 1_000_000_000 + UInt64(duration.components.attoseconds / 1_000_000_000)
    }

    static func sleep(until deadline: UInt64) {
        let now = DispatchTime.now().uptimeNanoseconds
        if deadline > now { usleep(useconds_t(min(UInt64(UInt32.max), (deadline - now) / 1000))) }
    }
}

/// One writer: an OS thread with its own connection, reconnecting to the directory's primary whenever the watch
/// moved it (generation changed) or the connection broke, and recording every write with its outcome and node.
/// Outcomes: `ok` = the INSERT's commit was acknowledged; `fail` = nothing was sent (connect failed) or the server
/// refused it for a reason that rules out a commit (read-only 25xxx, constraint 23xxx, syntax 42xxx); `info` =
/// anything else (connection lost, administrator shutdown mid-statement): it may or may not have committed.
final class PatroniDrillWriter: @unchecked Sendable {
    // @unchecked: `writes` and `inFlight` are guarded by `state`; the connection lives on the writer thread only.
    let worker: Int
    let run: PatroniDrillRun
    let primaries: PrimaryDirectory
    private let state = Mutex<(writes: [PatroniDrillCheck.Write], inFlight: PatroniDrillCheck.Write?, done: Bool)>(([], nil, false))

    init(worker: Int, run: PatroniDrillRun, primaries: PrimaryDirectory) {
        self.worker = worker
        self.run = run
        self.primaries = primaries
    }

    func start(t0: UInt64, until end: UInt64, interval: Double, counter: TxnCounter) {
        let thread = Thread { [self] in
            defer { state.withLock { $0.done = true } }
            // With client groups, writer i writes from group i mod n (its sockets open from that host), so a
            // partition can cut one group off; without, from Kiln's host.
            let groups = run.cluster.clientGroupHosts
            if !groups.isEmpty {
                do {
                    try HostNetwork.enterForCurrentThread(groups[worker % groups.count])
                } catch {
                    run.logger.error("writer cannot enter its client group: it writes nothing", metadata: ["kiln.error": "\(error)"])
                    return
                }
            }
            var connection: PostgresConnection?
            var generation = -1
            var next = Double(t0) + interval * 1e9 * Double(worker) / Double(max(1, run.spec.writers))
            while true {
                PatroniDrillRun.sleep(until: UInt64(next))
                let start = DispatchTime.now().uptimeNanoseconds
                if start >= end { break }
                next = max(next + interval * 1e9, Double(start))
                let txn = counter.next()
                let entry = primaries.entry(of: "postgres")!
                if connection == nil || entry.generation != generation {
                    connection?.close()
                    connection = nil
                    do {
                        connection = try PostgresConnection(
                            PostgresEndpoint(
                                host: entry.endpoint.host, port: entry.endpoint.port, database: run.cluster.spec.database,
                                user: run.cluster.spec.user), connectTimeoutSeconds: 1, networkTimeoutMilliseconds: 2000)
                        generation = entry.generation
                    } catch {
                        record(txn, .fail, nil, start)
                        usleep(50_000)
                        continue
                    }
                }
                let server = entry.endpoint.description
                state.withLock { $0.inFlight = .init(txnID: txn, worker: worker, outcome: .info, server: server, start: start, end: start) }
                do throws(PostgresError) {
                    try connection!.execute(
                        "INSERT INTO \(PatroniDrillRun.table) (txn_id, worker) VALUES ($1, $2)", [String(txn), String(worker)])
                    record(txn, .ok, server, start)
                } catch {
                    let definite = error.kind == .server && ["25", "23", "42", "22"].contains(String((error.sqlState ?? "").prefix(2)))
                    record(txn, definite ? .fail : .info, server, start)
                    if !(error.kind == .server && definite && error.sqlState?.hasPrefix("23") == true) {
                        connection?.close()
                        connection = nil
                    }
                }
            }
            connection?.close()
        }
        thread.name = "kiln-patroni-writer-\(worker)"
        thread.start()
    }

    private func record(_ txn: Int64, _ outcome: PatroniDrillCheck.Outcome, _ server: String?, _ start: UInt64) {
        let end = DispatchTime.now().uptimeNanoseconds
        state.withLock {
            $0.inFlight = nil
            $0.writes.append(.init(txnID: txn, worker: worker, outcome: outcome, server: server, start: start, end: end))
        }
    }

    /// Waits for the thread until `deadline`; a write still in flight then is recorded `info` (its outcome unknown).
    func finish(deadline: UInt64) -> [PatroniDrillCheck.Write] {
        while !state.withLock({ $0.done }), DispatchTime.now().uptimeNanoseconds < deadline { usleep(20_000) }
        return state.withLock { state in
            var writes = state.writes
            if !state.done, var pending = state.inFlight {
                pending.end = DispatchTime.now().uptimeNanoseconds
                writes.append(pending)
            }
            return writes
        }
    }
}

/// The drill's txn_ids: 1, 2, 3, … across all writers, each handed out once.
final class TxnCounter: Sendable {
    private let value = Mutex<Int64>(0)
    func next() -> Int64 { value.withLock { $0 += 1; return $0 } }
}

/// The fault, handed to the interrupt healer's queue. @unchecked Sendable: the healer calls it only after SIGINT/SIGTERM,
/// normally while the drill thread sleeps through the fault's hold, and the process exits right after; should the
/// drill thread be stopping the fault at that moment, both undo the same things (SIGCONT, rule deletion, a start of a
/// member that is already running is refused by its port).
final class UncheckedFault: @unchecked Sendable {
    let fault: PatroniFault
    init(_ fault: PatroniFault) { self.fault = fault }
}
