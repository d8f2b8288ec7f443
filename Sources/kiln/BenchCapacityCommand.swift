import ArgumentParser
import Foundation
import KilnCore
import KilnLoad
import KilnStack

extension BenchCommand {
    /// Open-model capacity against the peer's closed-model rate at the same connection count (issue 18, item 5):
    /// redis.feature-read vs `redis-benchmark -c N HGETALL <a feature key>`, postgres.point-read vs `pgbench -S`-style
    /// select-only (`pgbench -M prepared -f` with Kiln's own point-read query on Kiln's table), alternating.
    struct Capacity: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open-model capacity of the load engine vs redis-benchmark / pgbench at the same connection count.",
            discussion: """
                Per trial: one `kiln run` scenario (fresh namespace benchcap: bulk of --rows rows, then one
                constant-arrival-rate phase per --steps fraction of the peer's last rate, --seconds each, --workers
                workers, drop_after 1s) for each --modes engine (multiplexed: the default open model, threads: a
                thread per connection, KILN_OPEN_MULTIPLEX=0), then the peer with the same connection count. A step is sustained when it
                dropped nothing and completed ≥ 99 % of its planned ops within the phase with p99 < 100 ms (not a
                growing backlog). Kiln's capacity = the highest sustained step's ok/s; ratio = capacity / peer rate.
                The embedded (or shared) stack must be up; nothing is paused or flushed.
                """
        )
        @Option(help: "Comma-separated subset: redis,postgres.") var only = "redis,postgres"
        @Option(help: "Connections: Kiln's open-model workers and the peer's clients.") var workers = 64
        @Option(help: "Interleaved Kiln/peer trials.") var trials = 2
        @Option(help: "Seconds per open-model step and per peer run.") var seconds = 10
        @Option(help: "Rates tried, as fractions of the peer's previous rate.") var steps = "0.8,1.0,1.2"
        @Option(help: "Engine modes, alternated in each trial: multiplexed (default engine), threads (KILN_OPEN_MULTIPLEX=0).")
        var modes = "multiplexed,threads"
        @Option(help: "Rows loaded (the read key space).") var rows = "20K"
        @Option(help: "Stack file (default: the embedded stack); a private stack keeps other load off the measurement.")
        var stack: String?

        func run() throws {
            try exiting {
                let bench = try LoadBench(stackFile: stack.map { URL(fileURLWithPath: $0) })
                let rowCount = try Load.count(rows)
                let fractions = steps.split(separator: ",").compactMap { Double($0) }
                guard !fractions.isEmpty else { throw Failure(code: .invalidInput, message: "no --steps") }
                let selected = Set(only.split(separator: ",").map(String.init))
                for store in ["redis", "postgres"] where selected.contains(store) {
                    let target = CapacityBench(
                        bench: bench, store: store, rows: rowCount, workers: workers, seconds: seconds)
                    print("== \(store): \(target.kilnOperation) (open model, \(workers) workers) vs \(target.peerLabel)")
                    // The keys/table exist before the first peer run.
                    _ = try target.kiln(rates: [])
                    var peer = try target.peer()
                    print(String(format: "peer warm-up: %.0f ops/s", peer))
                    let engineModes = modes.split(separator: ",").map(String.init)
                    var ratios: [String: [Double]] = [:]
                    for trial in 1...max(1, trials) {
                        let rates = fractions.map { ($0 * peer).rounded() }
                        var capacities: [(String, Double, Double?)] = []
                        for mode in engineModes {
                            let steps = try target.kiln(
                                rates: rates, environment: mode == "threads" ? ["KILN_OPEN_MULTIPLEX": "0"] : [:])
                            for step in steps { print("  trial \(trial) kiln[\(mode)] " + step.line) }
                            let capacity = steps.filter(\.sustained).map(\.okPerSecond).max() ?? 0
                            let at80 = fractions.firstIndex { abs($0 - 0.8) < 1e-9 }.map { steps[$0].p50 }
                            capacities.append((mode, capacity, at80))
                        }
                        peer = try target.peer()
                        for (mode, capacity, at80) in capacities {
                            ratios[mode, default: []].append(capacity / peer)
                            print(String(
                                format: "  trial %d %@: kiln capacity %.0f ops/s vs peer %.0f ops/s (after): ratio %.2f; p50 at 0.8× %@",
                                trial, mode, capacity, peer, capacity / peer, at80.map { String(format: "%.3f ms", $0) } ?? "-"))
                        }
                    }
                    for mode in engineModes {
                        let sorted = ratios[mode, default: [0]].sorted()
                        print(String(format: "%@ [%@]: median ratio %.2f of %d trials %@", store, mode,
                            sorted[sorted.count / 2], sorted.count, ratios[mode, default: []].map { String(format: "%.2f", $0) }.description))
                    }
                }
                return .ok
            }
        }
    }
}

/// One store's capacity measurement: Kiln's open-model steps and the peer tool, on the same server.
struct CapacityBench {
    struct Step {
        var rate: Double
        var okPerSecond: Double
        var planned: Int64
        var ok: Int64
        var dropped: Int64
        var late: Int64
        var p50: Double
        var p99: Double
        var sustained: Bool { dropped == 0 && Double(ok) >= 0.99 * Double(planned) && p99 < 100 }
        var line: String {
            String(format: "rate %.0f: ok %lld/%lld (%.0f ok/s), dropped %lld, late %lld, p50 %.3f ms, p99 %.2f ms%@",
                rate, ok, planned, okPerSecond, dropped, late, p50, p99, sustained ? "" : "  (not sustained)")
        }
    }

    let bench: LoadBench
    let store: String
    let rows: Int64
    let workers: Int
    let seconds: Int
    static let namespace = "benchcap"

    var kilnOperation: String { store == "redis" ? "redis.feature-read" : "postgres.point-read" }
    var peerLabel: String {
        store == "redis"
            ? "redis-benchmark -c \(workers) -n <rate×\(seconds)s> HGETALL \(Self.namespace):user:<row 0's user>:features"
            : "pgbench -n -M prepared -c \(workers) -j 2 -T \(seconds) -f <point-read of \(Self.namespace)_transactions>"
    }

    /// One fresh scenario: the bulk load, then one open-model phase per rate.
    func kiln(rates: [Double], environment: [String: String] = [:]) throws -> [Step] {
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
    func peer() throws -> Double {
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
