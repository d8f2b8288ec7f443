import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
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
                Per trial: one `kiln run` scenario (fresh namespace benchcap: bulk of --rows rows, a 3 s warm-up
                at half the first rate, not measured, then one
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
        @Option(help: """
            Engine modes, alternated in each trial: multiplexed (default engine), threads (KILN_OPEN_MULTIPLEX=0), \
            window=N (multiplexed with KILN_OPEN_BATCH_WINDOW_US=N: ops due within N µs leave from one wake-up), \
            pipeline=N (multiplexed with pipeline_depth: N — PostgreSQL only; the peer does not pipeline).
            """)
        var modes = "multiplexed,threads"
        @Flag(help: """
            PostgreSQL: also run pgbench's own open model at each trial's rates (pgbench -R <rate> -L 100, same \
            script and connections) and judge it by the same rule: the like-for-like peer of an open model.
            """)
        var openPeer = false
        @Flag(help: """
            Also run each mode once at twice the peer's rate (a backlog from the first second on, so every \
            connection always has an op: the engine's raw throughput) and compare its ok/s with the peer's closed \
            loop measured right after.
            """)
        var saturation = false
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
                let engineModes = try modes.split(separator: ",").map { text throws(Failure) in
                    try CapacityEngineMode(parsing: String(text)) }
                if selected.contains("redis"), engineModes.contains(where: { $0.pipelineDepth > 1 }) {
                    throw Failure(code: .invalidInput, message: "--modes: pipeline=N runs PostgreSQL only (use --only postgres)")
                }
                if openPeer, !selected.contains("postgres") {
                    throw Failure(code: .invalidInput, message: "--open-peer: pgbench's open model is PostgreSQL's peer (add postgres to --only)")
                }
                for store in ["redis", "postgres"] where selected.contains(store) {
                    let target = CapacityBench(
                        bench: bench, store: store, rows: rowCount, workers: workers, seconds: seconds)
                    print("== \(store): \(target.kilnOperation) (open model, \(workers) workers) vs \(target.peerLabel)")
                    // The keys/table exist before the first peer run.
                    _ = try target.kiln(rates: [])
                    var peer = try target.peer()
                    print(String(format: "peer warm-up: %.0f ops/s", peer))
                    var ratios: [String: [Double]] = [:]  // by mode's description
                    var openRatios: [String: [Double?]] = [:]  // against pgbench -R (nil: it sustained no step), by mode
                    var saturationRatios: [String: [Double]] = [:]  // saturated ok/s over the peer's, by mode
                    if openPeer, store == "postgres" { print("   open-model peer: \(target.openPeerLabel)") }
                    for trial in 1...max(1, trials) {
                        let rates = fractions.map { ($0 * peer).rounded() }
                        var capacities: [CapacityBench.ModeCapacity] = []
                        for mode in engineModes {
                            let steps = try target.kiln(rates: rates, mode: mode)
                            for step in steps { print("  trial \(trial) kiln[\(mode)] " + step.line) }
                            let overload = saturation ? try target.kiln(rates: [2 * peer], mode: mode).first : nil
                            if let overload { print("  trial \(trial) kiln[\(mode)] saturated " + overload.line) }
                            capacities.append(CapacityBench.ModeCapacity(
                                mode: mode, steps: steps, saturated: overload,
                                p50At80: fractions.firstIndex { abs($0 - 0.8) < 1e-9 }.map { steps[$0].p50 }))
                        }
                        peer = try target.peer()
                        for kiln in capacities {
                            guard let okPerSecond = kiln.saturated?.okPerSecond else { continue }
                            saturationRatios[kiln.mode.description, default: []].append(okPerSecond / peer)
                            print(String(format: "  trial %d %@: kiln saturated %.0f ok/s vs peer %.0f ops/s (after): ratio %.2f",
                                trial, kiln.mode.description, okPerSecond, peer, okPerSecond / peer))
                        }
                        if openPeer, store == "postgres" {
                            let steps = try target.openPeer(rates: rates)
                            for step in steps { print("  trial \(trial) pgbench -R " + step.line) }
                            let open = steps.filter(\.sustained).map(\.okPerSecond).max()
                            for kiln in capacities where kiln.mode.pipelineDepth == 1 {
                                openRatios[kiln.mode.description, default: []].append(open.map { kiln.okPerSecond / $0 })
                                print(String(
                                    format: "  trial %d %@: kiln capacity %@ ops/s vs pgbench -R capacity %@ (same rule): ratio %@",
                                    trial, kiln.mode.description, kiln.text, open.map { String(format: "%.0f ops/s", $0) } ?? "none sustained",
                                    open.map { String(format: "%.2f", kiln.okPerSecond / $0) } ?? "-"))
                            }
                        }
                        // A pipelining mode is also compared with pgbench pipelining the same number of reads.
                        for kiln in capacities where kiln.mode.pipelineDepth > 1 && store == "postgres" {
                            let pipelinedPeer = try target.peer(pipelineDepth: kiln.mode.pipelineDepth)
                            print(String(
                                format: "  trial %d %@: kiln capacity %@ ops/s vs pgbench with \\startpipeline of %d reads %.0f ops/s: ratio %@%.2f",
                                trial, kiln.mode.description, kiln.text, kiln.mode.pipelineDepth, pipelinedPeer,
                                kiln.atLeast ? "≥ " : "", kiln.okPerSecond / pipelinedPeer))
                        }
                        for kiln in capacities {
                            ratios[kiln.mode.description, default: []].append(kiln.okPerSecond / peer)
                            print(String(
                                format: "  trial %d %@: kiln capacity %@ ops/s vs peer %.0f ops/s (after): ratio %@%.2f; p50 at 0.8× %@",
                                trial, kiln.mode.description, kiln.text, peer, kiln.atLeast ? "≥ " : "", kiln.okPerSecond / peer,
                                kiln.p50At80.map { String(format: "%.3f ms", $0) } ?? "-"))
                        }
                    }
                    for mode in engineModes {
                        let sorted = ratios[mode.description, default: [0]].sorted()
                        print(String(format: "%@ [%@]: median ratio %.2f of %d trials %@", store, mode.description,
                            sorted[sorted.count / 2], sorted.count, ratios[mode.description, default: []].map { String(format: "%.2f", $0) }.description))
                        if let raw = saturationRatios[mode.description]?.sorted() {
                            print(String(format: "%@ [%@] saturated: median ratio %.2f of %d trials %@", store,
                                mode.description, raw[raw.count / 2], raw.count, raw.map { String(format: "%.2f", $0) }.description))
                        }
                        if let open = openRatios[mode.description] {
                            let measured = open.compactMap { $0 }.sorted()
                            print(String(format: "%@ [%@] vs pgbench -R: median ratio %@ of %d trials with a sustained peer step %@",
                                store, mode.description, measured.isEmpty ? "-" : String(format: "%.2f", measured[measured.count / 2]),
                                measured.count, open.map { $0.map { String(format: "%.2f", $0) } ?? "-" }.description))
                        }
                    }
                }
                return .ok
            }
        }
    }
}
