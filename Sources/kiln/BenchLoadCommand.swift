import ArgumentParser
import Foundation
import Histogram
import KilnCore
import KilnRunner
import KilnData
import KilnLoad
import KilnRedis
import KilnScenario
import KilnStack
import KilnStores
import Logging

extension BenchCommand {
    /// The load engine against the peer tools on the same server in the same run (issue 4): each Kiln figure is a
    /// real `kiln run` phase (generator, client, engine, histograms, report), each peer reads pre-generated input.
    struct Load: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The load engine vs psql \\copy / pgbench, redis-benchmark and kcat; open-model accuracy under a stall.",
            discussion: """
                postgres: bulk phase (COPY binary, 1 worker) vs psql \\copy of the same rows from a file into an
                          identical table, and pgbench -i -I dtg at the same row count.
                redis:    bulk-set phase (SET of each row's JSON, pipeline 32, 8 workers) vs redis-benchmark -t set
                          -P 32 -c 8 with the same value size.
                kafka:    bulk phase (idempotent, acks=all, keyed by user) vs kcat -P -K '\\t' -l of the same messages.
                stall:    5,000 ops/s of redis.feature-read for 10 s with the Redis primary SIGSTOPped for 1 s at 4 s;
                          then redis-benchmark across the same stall.
                Build with -c release (scripts/kiln does). The embedded stack must be up.
                """
        )
        @Option(help: "Rows for the PostgreSQL comparison.") var postgresRows = "2M"
        @Option(help: "Rows for the Redis comparison.") var redisRows = "1M"
        @Option(help: "Messages for the Kafka comparison.") var kafkaRows = "1M"
        @Option(help: "Comma-separated subset: postgres,redis,kafka,stall.") var only = "postgres,redis,kafka,stall"
        @Option(help: "Interleaved Kiln/peer trials per store; the medians are reported (this machine is noisy).")
        var trials = 3

        func run() throws {
            try exiting {
                let bench = try LoadBench()
                var table = [["STORE", "KILN", "per s", "PEER", "per s", "KILN/PEER"]]
                func add(_ result: StoreBench.Result) {
                    table.append([
                        result.store, result.kiln, String(format: "%.0f", result.kilnRate), result.peer,
                        String(format: "%.0f", result.peerRate), String(format: "%.2f", result.kilnRate / result.peerRate),
                    ])
                    // Each result as soon as it is measured: a later failure must not lose it.
                    print(table.last!.joined(separator: " | "))
                }
                let selected = Set(only.split(separator: ",").map(String.init))
                func median(_ results: [StoreBench.Result]) -> StoreBench.Result {
                    var result = results[0]
                    let kiln = results.map(\.kilnRate).sorted()
                    let peer = results.map(\.peerRate).sorted()
                    result.kilnRate = kiln[kiln.count / 2]
                    result.peerRate = peer[peer.count / 2]
                    if results.count > 1 {
                        result.kiln += " (median of \(results.count))"
                        print("  trials: kiln \(kiln.map { String(format: "%.0f", $0) }), peer \(peer.map { String(format: "%.0f", $0) })")
                    }
                    return result
                }
                let rounds = max(1, trials)
                if selected.contains("postgres") {
                    var pairs: [[StoreBench.Result]] = []
                    for _ in 0..<rounds { pairs.append(try bench.postgres(rows: try Self.count(postgresRows))) }
                    for index in pairs[0].indices { add(median(pairs.map { $0[index] })) }
                }
                if selected.contains("redis") {
                    add(median(try (0..<rounds).map { _ in try bench.redis(rows: try Self.count(redisRows)) }))
                }
                if selected.contains("kafka") {
                    add(median(try (0..<rounds).map { _ in try bench.kafka(rows: try Self.count(kafkaRows)) }))
                }
                if table.count > 1 { print(TextTable.render(table)) }
                if selected.contains("stall") { print(try bench.stall()) }
                return .ok
            }
        }

        static func count(_ text: String) throws -> Int64 {
            guard let value = CountSuffix.parse(text), value > 0 else {
                throw Failure(code: .invalidInput, message: "expected a count such as 1M, found '\(text)'")
            }
            return Int64(value)
        }
    }
}
