import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnData
import KilnKafka
import KilnPostgres
import KilnRedis
import KilnScenario
import KilnSmoke
import KilnStack

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks, each against its peer tool on the same server in the same run.",
        subcommands: [Stores.self, Generate.self, Load.self, Capacity.self, HostFaults.self, Elle.self, History.self]
    )

    /// One worker, one connection per store: Kiln's wrappers against psql \copy, redis-benchmark and kcat.
    struct Stores: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bulk write throughput of the C-library wrappers vs psql \\copy, redis-benchmark and kcat.",
            discussion: "Build with -c release for numbers worth recording (scripts/kiln does)."
        )
        @OptionGroup var options: StackOptions
        @Option(help: "Rows/commands/messages per store.") var rows = 1_000_000
        @Option(help: "Commands per Redis pipeline batch (redis-benchmark -P).") var pipeline = 32

        func validate() throws {
            if rows < 1_000 { throw ValidationError("--rows must be at least 1000") }
            if pipeline < 1 { throw ValidationError("--pipeline must be at least 1") }
        }

        func run() throws {
            try exiting {
                let stack = try options.loadStack()
                let bench = StoreBench(stack: stack, paths: options.paths, rows: rows, pipeline: pipeline)
                var table = [["STORE", "KILN", "rows/s", "PEER", "rows/s", "KILN/PEER"]]
                for result in [try bench.postgres(), try bench.redis(), try bench.kafka()] {
                    table.append([
                        result.store, result.kiln, Self.rate(result.kilnRate), result.peer, Self.rate(result.peerRate),
                        String(format: "%.2f", result.kilnRate / result.peerRate),
                    ])
                }
                print(TextTable.render(table))
                return .ok
            }
        }

        static func rate(_ value: Double) -> String { String(format: "%.0f", value) }
    }
}

extension BenchCommand {
    /// Generator speed on one core (release build): rows into an in-memory sink, rows encoded as COPY binary and
    /// CSV into a reused buffer, each against a memcpy of the same bytes (the physical limit); then `kiln generate`
    /// COPY binary to /dev/null as 1 process and as `--shard i/N` over N processes.
    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rows/s of the generator and its encoders on one core vs memcpy; --shard scaling over processes.",
            discussion: "Build with -c release for numbers worth recording.")
        @Option(help: "Rows per in-process measurement (K/M/B allowed).") var rows = "20M"
        @Option(help: "Rows for the /dev/null process runs (0 skips them).") var processRows = "100M"
        @Option(help: "Processes for the --shard run.") var shards = 2
        @Option(help: "Repetitions of each in-process measurement; the fastest is reported.") var repetitions = 3
        @Option(help: "Dataset spec.") var spec: String?
        @Option(help: "Seed.") var seed: UInt64 = 42

        func validate() throws {
            if shards < 1 { throw ValidationError("--shards must be at least 1") }
            if repetitions < 1 { throw ValidationError("--repetitions must be at least 1") }
        }

        func run() throws {
            try exiting {
                try GeneratorBench.run(
                    rows: rows, processRows: processRows, shards: shards, repetitions: repetitions, spec: spec, seed: seed,
                    executable: URL(fileURLWithPath: CommandLine.arguments[0]).path)
            }
        }
    }
}
