import Foundation
import KilnCore
import KilnLoad
import KilnStack

/// How Kiln's open-model engine runs in a capacity step (`kiln bench capacity --modes`).
public enum CapacityEngineMode: Equatable, Sendable, CustomStringConvertible {
    /// The default engine: multiplexing loops, one op per connection.
    case multiplexed
    /// A thread per connection (`KILN_OPEN_MULTIPLEX=0`).
    case threads
    /// Multiplexed with a batch window of this many µs (`KILN_OPEN_BATCH_WINDOW_US`).
    case window(micros: UInt64)
    /// Multiplexed with `pipeline_depth` of this many ops per connection when no connection is idle.
    case pipeline(depth: Int)

    /// `multiplexed`, `threads`, `window=N` (µs, 0–1,000,000) or `pipeline=N` (2–64).
    public init(parsing text: String) throws(Failure) {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        switch (parts.first ?? "", parts.count == 2 ? parts[1] : nil) {
        case ("multiplexed", nil): self = .multiplexed
        case ("threads", nil): self = .threads
        case ("window", let value?):
            guard let micros = UInt64(value), micros <= 1_000_000 else {
                throw Failure(code: .invalidInput, message: "--modes: window=\(value): expected 0–1000000 µs")
            }
            self = .window(micros: micros)
        case ("pipeline", let value?):
            guard let depth = Int(value), (2...64).contains(depth) else {
                throw Failure(code: .invalidInput, message: "--modes: pipeline=\(value): expected a depth of 2–64")
            }
            self = .pipeline(depth: depth)
        default:
            throw Failure(code: .invalidInput,
                message: "--modes: unknown mode '\(text)' (multiplexed, threads, window=<µs>, pipeline=<depth>)")
        }
    }

    public var description: String {
        switch self {
        case .multiplexed: "multiplexed"
        case .threads: "threads"
        case .window(let micros): "window=\(micros)"
        case .pipeline(let depth): "pipeline=\(depth)"
        }
    }

    /// The run's environment for this mode.
    public var environment: [String: String] {
        switch self {
        case .multiplexed, .pipeline: [:]
        case .threads: ["KILN_OPEN_MULTIPLEX": "0"]
        case .window(let micros): ["KILN_OPEN_BATCH_WINDOW_US": String(micros)]
        }
    }

    /// The phases' `pipeline_depth`.
    public var pipelineDepth: Int {
        if case .pipeline(let depth) = self { return depth }
        return 1
    }
}

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
        /// With `pipeline=N`: ops sent behind an outstanding op of the same connection.
        public var pipelined: Int64?
        public init(
            rate: Double, okPerSecond: Double, planned: Int64, ok: Int64, dropped: Int64, late: Int64, p50: Double,
            p99: Double, pipelined: Int64? = nil
        ) {
            self.rate = rate
            self.okPerSecond = okPerSecond
            self.planned = planned
            self.ok = ok
            self.dropped = dropped
            self.late = late
            self.p50 = p50
            self.p99 = p99
            self.pipelined = pipelined
        }
        public var sustained: Bool { dropped == 0 && Double(ok) >= 0.99 * Double(planned) && p99 < 100 }
        public var line: String {
            String(format: "rate %.0f: ok %lld/%lld (%.0f ok/s), dropped %lld, late %lld, p50 %.3f ms, p99 %.2f ms%@%@",
                rate, ok, planned, okPerSecond, dropped, late, p50, p99,
                pipelined.map { String(format: ", pipelined %lld", $0) } ?? "", sustained ? "" : "  (not sustained)")
        }
    }

    /// One step of pgbench's own open model (`pgbench -R rate -L 100`): transactions scheduled at `rate` (Poisson),
    /// latency measured from the scheduled start, a transaction already more than 100 ms late when its client gets
    /// to it is skipped. The same rule as Kiln's `Step.sustained`: at most 1 % of the scheduled transactions over
    /// 100 ms (skipped or above the limit — p99 < 100 ms; skipped ≤ 1 % is Kiln's "≥ 99 % completed"). Its tps
    /// must also reach 97 % of the rate: a run that scheduled too few (it ended early) is not a sustained one;
    /// pgbench's Poisson schedule and the transactions in flight at -T's end put tps ~1 % under the rate (measured:
    /// 0.989–0.997 of it on steps with nothing late), so the bound is 97 %, not 99 %.
    public struct OpenPeerStep: Equatable {
        public var rate: Double
        public var seconds: Int
        public var processed: Int64
        public var skipped: Int64
        public var aboveLimit: Int64
        public var latencyAverageMs: Double
        public var lagMaxMs: Double
        /// pgbench's `tps`: processed over the time its clients ran (connection set-up excluded).
        public var okPerSecond: Double
        public var scheduled: Int64 { processed + skipped }
        public var sustained: Bool {
            scheduled > 0 && Double(skipped + aboveLimit) <= 0.01 * Double(scheduled) && okPerSecond >= 0.97 * rate
        }
        public var line: String {
            String(format: "rate %.0f: processed %lld (%.0f ops/s), skipped %lld, above 100 ms %lld, latency avg %.3f ms, lag max %.1f ms%@",
                rate, processed, okPerSecond, skipped, aboveLimit, latencyAverageMs, lagMaxMs,
                sustained ? "" : "  (not sustained)")
        }

        /// Reads pgbench's summary (`-R … -L …`); nil when a line it prints with those options is missing.
        public init?(pgbenchOutput output: String, rate: Double, seconds: Int) {
            func number(_ pattern: String) -> Double? {
                guard let range = output.range(of: pattern, options: .regularExpression) else { return nil }
                let match = output[range]
                guard let start = match.firstIndex(where: \.isNumber) else { return nil }
                return Double(match[start...].prefix { $0.isNumber || $0 == "." })
            }
            guard let processed = number(#"actually processed: [0-9]+"#),
                let skipped = number(#"transactions skipped: [0-9]+"#),
                let above = number(#"latency limit: [0-9]+"#),
                let latency = number(#"latency average = [0-9.]+"#),
                let lag = number(#"\(max [0-9.]+\) ms"#),
                let tps = number(#"tps = [0-9.]+"#)
            else { return nil }
            self.okPerSecond = tps
            self.rate = rate
            self.seconds = seconds
            self.processed = Int64(processed)
            self.skipped = Int64(skipped)
            self.aboveLimit = Int64(above)
            self.latencyAverageMs = latency
            self.lagMaxMs = lag
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

    /// One fresh scenario: the bulk load, a 3 s warm-up at half the first rate (not measured: the freshly loaded
    /// rows' first reads, the table's first statistics and the connections' first statements would otherwise
    /// fall on the first step only), then one open-model phase per rate.
    public func kiln(rates: [Double], mode: CapacityEngineMode = .multiplexed) throws -> [Step] {
        var phases = "  - {name: load, executor: bulk, rows: \(rows), batch: 5K, workers: 2, stores: [\(store)]}\n"
        let pipelining = mode.pipelineDepth > 1 ? "pipeline_depth: \(mode.pipelineDepth), " : ""
        if let first = rates.first {
            phases += "  - {name: warm-up, executor: constant-arrival-rate, rate: \(max(1, Int(first / 2))), duration: 3s, "
                + "workers: \(workers), drop_after: 1s, \(pipelining)mix: {\(kilnOperation): 1}}\n"
        }
        for (index, rate) in rates.enumerated() {
            phases += "  - {name: step-\(index), executor: constant-arrival-rate, rate: \(Int(rate)), duration: \(seconds)s, "
                + "workers: \(workers), drop_after: 1s, \(pipelining)mix: {\(kilnOperation): 1}}\n"
        }
        let report = try bench.phase(
            "capacity-\(store)", rows: rows, namespace: Self.namespace, phases: phases, environment: mode.environment)
        return zip(rates, report.phases.dropFirst(2)).map { rate, phase in
            let operation = phase.operations[0]
            return Step(
                rate: rate, okPerSecond: Double(operation.ok) / Double(seconds), planned: phase.plannedOps ?? 0,
                ok: operation.ok, dropped: operation.dropped, late: operation.late,
                p50: operation.latencyMs.p50 ?? -1, p99: operation.latencyMs.p99 ?? -1, pipelined: phase.pipelinedOps)
        }
    }

    /// The peer's ops/s with `workers` connections for about `seconds`. PostgreSQL with `pipelineDepth` > 1:
    /// pgbench sends that many point reads per script between `\startpipeline` and `\endpipeline` (its own
    /// pipelining: a batch per round trip), and the rate is its scripts/s × the depth.
    /// pgbench's own open model at each rate (PostgreSQL only): `pgbench -R rate -L 100` with the same script,
    /// connections and seconds as the closed-model peer — the like-for-like peer of Kiln's open-model steps.
    public func openPeer(rates: [Double]) throws -> [OpenPeerStep] {
        precondition(store == "postgres", "pgbench is PostgreSQL's peer")
        let script = try pointReadScript(pipelineDepth: 1)
        return try rates.map { rate in
            let output = try pgbench(script, ["-R", String(Int(rate)), "-L", "100"])
            guard let step = OpenPeerStep(pgbenchOutput: output, rate: rate, seconds: seconds) else {
                throw Failure(code: .internalError, message: "cannot read pgbench -R's output: \(output)")
            }
            return step
        }
    }

    public var openPeerLabel: String {
        "pgbench -n -M prepared -c \(workers) -j 2 -T \(seconds) -R <rate> -L 100 -f <point-read of \(Self.namespace)_transactions>"
    }

    public func peer(pipelineDepth: Int = 1) throws -> Double {
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
        let output = try pgbench(try pointReadScript(pipelineDepth: pipelineDepth), [])
        guard let range = output.range(of: #"tps = ([0-9.]+) \(without"#, options: .regularExpression),
            let rate = Double(output[range].split(separator: " ")[2])
        else { throw Failure(code: .internalError, message: "cannot read pgbench's output: \(output)") }
        return rate * Double(pipelineDepth)
    }

    /// pgbench with `workers` connections on 2 threads for `seconds`, prepared statements, `script`, plus `options`;
    /// its output.
    private func pgbench(_ script: URL, _ options: [String]) throws -> String {
        let pg = bench.stack.postgres
        return try LocalProcess.run(
            "/usr/bin/pgbench",
            ["-n", "-M", "prepared", "-c", String(workers), "-j", "2", "-T", String(seconds)] + options
                + ["-f", script.path, "-h", pg.primary.host, "-p", String(pg.primary.port), "-U", pg.user, pg.database])
    }

    /// pgbench's script of Kiln's point read (`pipelineDepth` > 1: that many reads between `\startpipeline` and
    /// `\endpipeline`, a key of its own each).
    private func pointReadScript(pipelineDepth: Int) throws -> URL {
        let script = bench.scratch.appendingPathComponent("point-read-\(pipelineDepth).sql")
        func select(_ variable: String) -> String {
            "SELECT txn_id, user_id, merchant_id, device_id, location_id, amount, currency, "
                + "(extract(epoch FROM ts) * 1000)::bigint AS ts_ms, channel, status, fraud_score, is_fraud, ring_id FROM "
                + "\(Self.namespace)_transactions WHERE txn_id = :\(variable);\n"
        }
        var text: String
        if pipelineDepth > 1 {
            // A key of its own for each read of the batch.
            text = (1...pipelineDepth).map { "\\set id\($0) random(1, \(rows))\n" }.joined() + "\\startpipeline\n"
            text += (1...pipelineDepth).map { select("id\($0)") }.joined() + "\\endpipeline\n"
        } else {
            text = "\\set id random(1, \(rows))\n" + select("id")
        }
        try text.write(to: script, atomically: true, encoding: .utf8)
        return script
    }
}

extension CapacityBench {
    /// One engine mode's capacity in one trial: the highest sustained rate among the steps it ran and its
    /// `--saturation` run. When the highest rate tried was sustained, the capacity is a lower bound (`atLeast`): the
    /// steps stopped before the engine did.
    public struct ModeCapacity {
        public let mode: CapacityEngineMode
        /// The run at twice the peer's rate (`--saturation`).
        public let saturated: Step?
        public let okPerSecond: Double
        public let atLeast: Bool
        public let p50At80: Double?

        public init(mode: CapacityEngineMode, steps: [Step], saturated: Step?, p50At80: Double?) {
            let tried = steps + (saturated.map { [$0] } ?? [])
            self.mode = mode
            self.saturated = saturated
            self.okPerSecond = tried.filter(\.sustained).map(\.okPerSecond).max() ?? 0
            self.atLeast = tried.max { $0.rate < $1.rate }?.sustained ?? false
            self.p50At80 = p50At80
        }

        /// "N" or "≥ N".
        public var text: String { (atLeast ? "≥ " : "") + String(format: "%.0f", okPerSecond) }
    }
}
