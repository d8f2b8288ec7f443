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
                guard let count = CountSuffix.parse(rows), count > 0, let processCount = CountSuffix.parse(processRows)
                else {
                    throw Failure(code: .invalidInput, message: "--rows/--process-rows: expected a count such as 10M")
                }
                let total = Int64(count)
                let dataset = try GenerateCommand.dataset(spec: spec, seed: seed, rows: String(max(count, processCount)))
                print("generator benchmark: \(dataset.spec.name), seed \(seed), \(total) rows per measurement, one core")
                print("measurement                          M rows/s   bytes/row   memcpy of the bytes   share of memcpy")

                // Rows into an in-memory sink: a reused buffer of 16,384 Transaction structs.
                let chunk = 8_192
                let sink = UnsafeMutableBufferPointer<Transaction>.allocate(capacity: chunk)
                defer { sink.deallocate() }
                var checksum: UInt64 = 0
                let generateSeconds = Self.fastest(repetitions) {
                    var index: Int64 = 0
                    while index < total {
                        let end = min(index + Int64(chunk), total)
                        dataset.generate(index..<end, into: sink)
                        checksum &+= UInt64(bitPattern: sink[0].amountCents)
                        index = end
                    }
                }
                let structBytes = MemoryLayout<Transaction>.stride
                Self.report(
                    "generate -> in-memory rows", total: total, seconds: generateSeconds, bytesPerRow: structBytes,
                    memcpy: Self.memcpySeconds(bytes: total * Int64(structBytes), chunk: chunk * structBytes))

                for format in [RowFormat.copyBinary, .csv] {
                    var encoder = RowEncoder(format: format, dataset: dataset, capacity: 8 << 20)
                    var bytes: Int64 = 0
                    var largest = 0
                    let seconds = Self.fastest(repetitions) {
                        bytes = 0
                        var index: Int64 = 0
                        while index < total {
                            let end = min(index + Int64(chunk), total)
                            encoder.append(dataset, rows: index..<end)
                            bytes += Int64(encoder.count)
                            largest = max(largest, encoder.count)
                            checksum &+= encoder.withBytes { UInt64($0[0]) }
                            encoder.removeAll()
                            index = end
                        }
                    }
                    Self.report(
                        "generate + \(format.rawValue) -> buffer", total: total, seconds: seconds,
                        bytesPerRow: Int(bytes / total), memcpy: Self.memcpySeconds(bytes: bytes, chunk: largest))
                }
                print("(checksum \(String(checksum, radix: 16)))")

                guard processCount > 0 else { return .ok }
                let executable = URL(fileURLWithPath: CommandLine.arguments[0]).path
                var arguments = ["generate", "--seed", String(seed), "--rows", String(processCount), "--format",
                    "copy-binary", "--out", "/dev/null"]
                if let spec { arguments += ["--spec", spec] }
                let shardArguments = arguments
                let single = try Self.seconds { try LocalProcess.run(executable, arguments) }
                print(
                    String(
                        format: "kiln generate --rows %d --format copy-binary --out /dev/null: %.2f s = %.2f M rows/s",
                        processCount, single, Double(processCount) / single / 1e6))
                let failures = FailureList()
                let sharded = Self.seconds {
                    DispatchQueue.concurrentPerform(iterations: shards) { shard in
                        do {
                            try LocalProcess.run(executable, shardArguments + ["--shard", "\(shard + 1)/\(shards)"])
                        } catch {
                            failures.append("\(error)")
                        }
                    }
                }
                if let failure = failures.first { throw Failure(code: .internalError, message: failure) }
                print(
                    String(
                        format: "same as --shard i/%d in %d processes: %.2f s wall = %.2f M rows/s, speed-up %.2fx",
                        shards, shards, sharded, Double(processCount) / sharded / 1e6, single / sharded))
                return .ok
            }
        }

        static func report(_ name: String, total: Int64, seconds: Double, bytesPerRow: Int, memcpy: Double) {
            print(
                name.padding(toLength: 36, withPad: " ", startingAt: 0)
                    + String(
                        format: " %8.2f   %9d   %8.0f M rows/s     %.4f", Double(total) / seconds / 1e6, bytesPerRow,
                        Double(total) / memcpy / 1e6, memcpy / seconds))
        }

        /// Time to memcpy `bytes` in chunks of `chunk` bytes between two buffers (cache-resident, like the sink).
        static func memcpySeconds(bytes: Int64, chunk: Int) -> Double {
            let source = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
            let target = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
            defer {
                source.deallocate()
                target.deallocate()
            }
            source.initializeMemory(as: UInt8.self, repeating: 7, count: chunk)
            return fastest(3) {
                var copied: Int64 = 0
                while copied < bytes {
                    target.copyMemory(from: source, byteCount: chunk)
                    copied += Int64(chunk)
                }
            }
        }

        static func fastest(_ repetitions: Int, _ body: () -> Void) -> Double {
            (0..<repetitions).map { _ in seconds(body) }.min()!
        }

        static func seconds(_ body: () throws -> Void) rethrows -> Double {
            let start = ContinuousClock.now
            try body()
            return start.duration(to: .now) / .seconds(1)
        }
    }
}

/// Errors collected from concurrent workers.
final class FailureList: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var messages: [String] = []

    func append(_ message: String) { lock.withLock { messages.append(message) } }
    var first: String? { lock.withLock { messages.first } }
}

/// The measurements behind `kiln bench stores`. Each pair writes the same rows to the same server; the clock
/// covers only the write (input preparation is excluded for both sides).
struct StoreBench {
    struct Result {
        var store: String
        var kiln: String
        var kilnRate: Double
        var peer: String
        var peerRate: Double
    }

    let stack: StackDefinition
    let paths: KilnPaths
    let rows: Int
    let pipeline: Int

    private func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = ContinuousClock.now
        try body()
        let elapsed = start.duration(to: .now)
        return elapsed.seconds
    }

    private func scratchFile(_ name: String, _ bytes: [UInt8]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-bench-\(getpid())-\(name)")
        try Data(bytes).write(to: url)
        return url
    }

    private func csv() -> [UInt8] {
        var text = ""
        text.reserveCapacity(rows * 48)
        for index in 0..<rows {
            let t = SmokeTransaction.make(seed: 1, index: index)
            text += "\(t.txnID),\(t.userID),\(t.merchantID),\(t.amountText),\(t.currency),\(t.timestamp)\n"
        }
        return Array(text.utf8)
    }

    func postgres() throws -> Result {
        let pg = stack.postgres
        let endpoint = PostgresEndpoint(host: pg.primary.host, port: pg.primary.port, database: pg.database, user: pg.user)
        let connection = try PostgresConnection(endpoint)
        let body = csv()
        let file = try scratchFile("pg.csv", body)
        defer { try? FileManager.default.removeItem(at: file) }
        let columns = "(txn_id bigint, user_id bigint, merchant_id bigint, amount numeric(15,2), currency text, ts bigint)"
        try connection.execute("DROP TABLE IF EXISTS kiln_bench_kiln, kiln_bench_psql")
        try connection.execute("CREATE UNLOGGED TABLE kiln_bench_kiln \(columns)")
        try connection.execute("CREATE UNLOGGED TABLE kiln_bench_psql \(columns)")
        defer { _ = try? connection.execute("DROP TABLE IF EXISTS kiln_bench_kiln, kiln_bench_psql") }
        var copied = 0
        let kilnSeconds = try seconds {
            copied = try connection.copyIn("COPY kiln_bench_kiln FROM STDIN (FORMAT csv)") { writer in
                try writer.write(body)
            }
        }
        guard copied == rows else { throw Failure(code: .internalError, message: "COPY reported \(copied) rows") }
        let psqlSeconds = try seconds {
            try LocalProcess.run(
                "/usr/bin/psql",
                [
                    "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", pg.primary.host, "-p", String(pg.primary.port), "-U",
                    pg.user, "-d", pg.database, "-c", "\\copy kiln_bench_psql FROM '\(file.path)' (FORMAT csv)",
                ])
        }
        return Result(
            store: "postgres", kiln: "COPY csv (libpq)", kilnRate: Double(rows) / kilnSeconds, peer: "psql \\copy",
            peerRate: Double(rows) / psqlSeconds)
    }

    func redis() throws -> Result {
        let primary = stack.redis.primary
        let connection = try RedisConnection(host: primary.host, port: primary.port)
        let value = String(repeating: "x", count: 3)  // redis-benchmark's default 3-byte value
        var batches: [[[String]]] = []
        var start = 0
        while start < rows {
            let end = min(start + pipeline, rows)
            batches.append((start..<end).map { ["SET", "kiln:bench:\($0)", value] })
            start = end
        }
        let kilnSeconds = try seconds {
            for batch in batches { _ = try connection.pipeline(batch) }
        }
        _ = try connection.command(["DEL"] + (0..<min(rows, 1000)).map { "kiln:bench:\($0)" })
        var peerRate = 0.0
        let output = try LocalProcess.run(
            "/usr/bin/redis-benchmark",
            ["-h", primary.host, "-p", String(primary.port), "-t", "set", "-n", String(rows), "-P", String(pipeline),
             "-c", "1", "-q", "-r", String(rows)])
        // "SET: 512820.53 requests per second, p50=..."
        if let line = output.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).last(where: { $0.contains("SET:") }),
            let number = line.split(separator: " ").dropFirst().first, let rate = Double(number)
        {
            peerRate = rate
        }
        guard peerRate > 0 else { throw Failure(code: .internalError, message: "cannot read redis-benchmark output") }
        return Result(
            store: "redis", kiln: "SET pipelined ×\(pipeline) (hiredis)", kilnRate: Double(rows) / kilnSeconds,
            peer: "redis-benchmark -P \(pipeline) -c 1", peerRate: peerRate)
    }

    func kafka() throws -> Result {
        let bootstrap = stack.kafka.bootstrapServers
        let lines = (0..<rows).map { SmokeTransaction.make(seed: 1, index: $0).json }
        let values = lines.map { Array($0.utf8) }
        let file = try scratchFile("kafka.jsonl", Array(lines.joined(separator: "\n").utf8) + [0x0A])
        defer { try? FileManager.default.removeItem(at: file) }
        let topic = "kiln-bench-\(getpid())"
        // Same settings on both sides: idempotent (acks=all), same linger; the topic exists before the clock starts.
        let consumer = try KafkaConsumer(bootstrapServers: bootstrap)
        _ = try consumer.partitionCount(topic: topic, timeoutMilliseconds: 10_000)
        _ = try consumer.partitionCount(topic: topic + "-kcat", timeoutMilliseconds: 10_000)
        consumer.close()
        let producer = try KafkaProducer(bootstrapServers: bootstrap, idempotent: true)
        var failures = 0
        let kilnSeconds = try seconds {
            for (index, value) in values.enumerated() {
                try producer.produce(topic: topic, key: nil, value: value, id: UInt64(index))
                if index % 10_000 == 0 { failures += producer.poll().filter { $0.error != nil }.count }
            }
            failures += try producer.flush(timeoutMilliseconds: 120_000).filter { $0.error != nil }.count
        }
        guard failures == 0 else { throw Failure(code: .internalError, message: "\(failures) deliveries failed") }
        let kcatSeconds = try seconds {
            try LocalProcess.run(
                "/usr/bin/env",
                ["LD_LIBRARY_PATH=\(paths.libraries.path)", "kcat", "-P", "-b", bootstrap, "-t", topic + "-kcat",
                 "-X", "enable.idempotence=true", "-X", "linger.ms=5", "-l", file.path])
        }
        return Result(
            store: "kafka", kiln: "produce idempotent (librdkafka)", kilnRate: Double(rows) / kilnSeconds,
            peer: "kcat -P -l (idempotent)", peerRate: Double(rows) / kcatSeconds)
    }
}
