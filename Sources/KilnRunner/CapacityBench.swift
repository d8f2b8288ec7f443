import Foundation
import KilnCore
import KilnLoad
import KilnStack

/// One store's capacity measurement: Kiln's open-model steps and the peer tool, on the same server.
public struct CapacityBench {
    public struct Step {
        public var rate: Double
        public var okPerSecond: Double
        public var planned: Int64
        public var ok: Int64
        public var dropped: Int64
        public var late: Int64
        public var p50: Double
        public var p99: Double
        public var sustained: Bool { dropped == 0 && Double(ok) >= 0.99 * Double(planned) && p99 < 100 }
        public var line: String {
            String(format: "rate %.0f: ok %lld/%lld (%.0f ok/s), dropped %lld, late %lld, p50 %.3f ms, p99 %.2f ms%@",
                rate, ok, planned, okPerSecond, dropped, late, p50, p99, sustained ? "" : "  (not sustained)")
        }
    }

    public let bench: LoadBench
    public let store: String
    public let rows: Int64
    public let workers: Int
    public let seconds: Int
    public init(bench: LoadBench, store: String, rows: Int64, workers: Int, seconds: Int) {
        self.bench = bench
        self.store = store
        self.rows = rows
        self.workers = workers
        self.seconds = seconds
    }

    static let namespace = "benchcap"

    public var kilnOperation: String { store == "redis" ? "redis.feature-read" : "postgres.point-read" }
    public var peerLabel: String {
        store == "redis"
            ? "redis-benchmark -c \(workers) -n <rate×\(seconds)s> HGETALL \(Self.namespace):user:<row 0's user>:features"
            : "pgbench -n -M prepared -c \(workers) -j 2 -T \(seconds) -f <point-read of \(Self.namespace)_transactions>"
    }

    /// One fresh scenario: the bulk load, then one open-model phase per rate.
    public func kiln(rates: [Double], environment: [String: String] = [:]) throws -> [Step] {
        var phases = "  - {name: load, executor: bulk, rows: \(rows), batch: 5K, workers: 2, stores: [\(store)]}\n"
        for (index, rate) in rates.enumerated() {
            phases += "  - {name: step-\(index), executor: constant-arrival-rate, rate: \(Int(rate)), duration: \(seconds)s, "
                + "workers: \(workers), drop_after: 1s, mix: {\(kilnOperation): 1}}\n"
        }
        let report = try bench.phase("capacity-\(store)", rows: rows, namespace: Self.namespace, phases: phases, environment: environment)
        return zip(rates, report.phases.dropFirst()).map { rate, phase in
            let operation = phase.operations[0]
            return Step(
                rate: rate, okPerSecond: Double(operation.ok) / Double(seconds), planned: phase.plannedOps ?? 0,
                ok: operation.ok, dropped: operation.dropped, late: operation.late,
                p50: operation.latencyMs.p50 ?? -1, p99: operation.latencyMs.p99 ?? -1)
        }
    }

    /// The peer's ops/s with `workers` connections for about `seconds`.
    public func peer() throws -> Double {
        if store == "redis" {
            let primary = bench.stack.redis.primary
            let user = try bench.dataset(rows: rows).transaction(0).userID
            let output = try LocalProcess.run(
                "/usr/bin/redis-benchmark",
                ["-h", primary.host, "-p", String(primary.port), "-c", String(workers), "-n", String(60_000 * seconds),
                 "-q", "HGETALL", "\(Self.namespace):user:\(user):features"])
            guard let range = output.range(of: #"([0-9.]+) requests per second"#, options: .regularExpression),
                let rate = Double(output[range].split(separator: " ")[0])
            else { throw Failure(code: .internalError, message: "cannot read redis-benchmark's output: \(output)") }
            return rate
        }
        let script = bench.scratch.appendingPathComponent("point-read.sql")
        try """
        \\set id random(1, \(rows))
        SELECT txn_id, user_id, merchant_id, device_id, location_id, amount, currency, (extract(epoch FROM ts) * 1000)::bigint AS ts_ms, channel, status, fraud_score, is_fraud, ring_id FROM \(Self.namespace)_transactions WHERE txn_id = :id;

        """.write(to: script, atomically: true, encoding: .utf8)
        let pg = bench.stack.postgres
        let output = try LocalProcess.run(
            "/usr/bin/pgbench",
            ["-n", "-M", "prepared", "-c", String(workers), "-j", "2", "-T", String(seconds), "-f", script.path,
             "-h", pg.primary.host, "-p", String(pg.primary.port), "-U", pg.user, pg.database])
        guard let range = output.range(of: #"tps = ([0-9.]+) \(without"#, options: .regularExpression),
            let rate = Double(output[range].split(separator: " ")[2])
        else { throw Failure(code: .internalError, message: "cannot read pgbench's output: \(output)") }
        return rate
    }
}
