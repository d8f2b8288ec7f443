import ArgumentParser
import Foundation
import Histogram
import KilnCore
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

/// Runs engine phases from scenario text and the peer tools against the embedded stack.
struct LoadBench {
    let paths = KilnPaths.resolve()
    let stack: StackDefinition
    let logger = Logger(label: "kiln.bench") { _ in ConsoleLogHandler(logLevel: .warning) }
    let scratch: URL

    init() throws {
        stack = try StackDefinition.load(contentsOf: paths.embeddedStackFile)
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-bench-load-\(getpid())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    func dataset(rows: Int64) throws -> Dataset {
        let spec = try DatasetSpec.load(contentsOf: paths.home.appendingPathComponent("Generators/fraud-platform.yaml"))
        return try Dataset(spec: spec, seed: 42, rows: rows)
    }

    /// Runs one scenario (phases given as YAML) and returns its report.
    func phase(
        _ name: String, rows: Int64, namespace: String, phases: String, stop: StopFlag = StopFlag(),
        observer: PhaseObserver? = nil, environment: [String: String] = [:]
    ) throws -> RunReport {
        let file = scratch.appendingPathComponent("\(name).yaml")
        try """
        name: bench-\(name)
        stack: \(paths.embeddedStackFile.path)
        dataset: {spec: \(paths.home.path)/Generators/fraud-platform.yaml, seed: 42, rows: \(rows)}
        namespace: \(namespace)
        fresh: true
        phases:
        \(phases)
        """.write(to: file, atomically: true, encoding: .utf8)
        let scenario = try LoadScenario.load(contentsOf: file, knownOperations: LoadRun.knownOperations(),
                knownSinks: LoadRun.knownSinks())
        let directory = try RunDirectory(
            root: scratch.appendingPathComponent("runs"), id: RunDirectory.makeID(scenario: name), scenarioFile: file)
        let run = try LoadRun(
            scenario: scenario, dataset: try dataset(rows: rows), directory: directory, stop: stop,
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 }, revision: nil, logger: logger, progress: observer)
        let report = try run.run()
        for phase in report.phases {
            for operation in phase.operations where operation.fail + operation.info > 0 {
                throw Failure(
                    code: .internalError, message: "\(operation.name): \(operation.fail + operation.info) ops failed: \(operation.errors)")
            }
        }
        return report
    }

    func psql(_ arguments: [String]) throws -> String {
        let pg = stack.postgres
        return try LocalProcess.run(
            "/usr/bin/psql",
            ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pg.primary.host, "-p", String(pg.primary.port),
             "-U", pg.user, "-d", pg.database] + arguments)
    }

    func timed(_ body: () throws -> Void) rethrows -> Double {
        let start = MonotonicClock.now()
        try body()
        return Double(MonotonicClock.now() - start) / 1e9
    }

    /// Encodes rows [0, rows) in `format` into a scratch file.
    func file(_ name: String, rows: Int64, format: RowFormat) throws -> URL {
        let url = scratch.appendingPathComponent(name)
        FileManager.default.createFile(atPath: url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        let data = try dataset(rows: rows)
        var encoder = RowEncoder(format: format, dataset: data, capacity: 8 << 20)
        encoder.header()
        var index: Int64 = 0
        while index < rows {
            let end = min(rows, index + 20_000)
            encoder.append(data, rows: index..<end)
            if index + 20_000 >= rows { encoder.trailer() }
            try encoder.withBytes { try handle.write(contentsOf: Data($0)) }
            encoder.removeAll()
            index = end
        }
        return url
    }

    func postgres(rows: Int64) throws -> [StoreBench.Result] {
        let report = try phase(
            "postgres", rows: rows, namespace: "benchpg",
            phases: "  - {name: load, executor: bulk, rows: \(rows), batch: 100K, workers: 1, stores: [postgres]}")
        let kilnRate = report.phases[0].operations[0].rowsPerSecond ?? 0
        // The same load over two connections: PostgreSQL's COPY is bound by one server core per connection.
        let twoWorkers = try phase(
            "postgres2", rows: rows, namespace: "benchpg",
            phases: "  - {name: load, executor: bulk, rows: \(rows), batch: 100K, workers: 2, stores: [postgres]}")
        let twoWorkerRate = twoWorkers.phases[0].operations[0].rowsPerSecond ?? 0
        let input = try file("pg.bin", rows: rows, format: .copyBinary)
        _ = try psql(["-c", "DROP TABLE IF EXISTS benchpg_peer", "-c",
            "CREATE TABLE benchpg_peer (LIKE benchpg_transactions INCLUDING ALL)"])
        let psqlSeconds = try timed { _ = try psql(["-c", "\\copy benchpg_peer FROM '\(input.path)' (FORMAT binary)"]) }
        let counted = try psql(["-c", "SELECT count(*) FROM benchpg_peer"]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard counted == String(rows) else { throw Failure(code: .internalError, message: "psql loaded \(counted) rows") }
        _ = try psql(["-c", "DROP TABLE IF EXISTS benchpg_peer, benchpg_transactions"])
        try? FileManager.default.removeItem(at: input)
        let scale = max(1, Int(rows / 100_000))
        let pg = stack.postgres
        let pgbenchSeconds = try timed {
            _ = try LocalProcess.run(
                "/usr/bin/pgbench",
                ["-q", "-i", "-s", String(scale), "-I", "dtg", "-h", pg.primary.host, "-p", String(pg.primary.port),
                 "-U", pg.user, pg.database])
        }
        _ = try? LocalProcess.run(
            "/usr/bin/pgbench",
            ["-q", "-i", "-I", "d", "-h", pg.primary.host, "-p", String(pg.primary.port), "-U", pg.user, pg.database])
        return [
            StoreBench.Result(
                store: "postgres", kiln: "bulk COPY binary, 1 worker", kilnRate: kilnRate,
                peer: "psql \\copy binary, same table", peerRate: Double(rows) / psqlSeconds),
            StoreBench.Result(
                store: "postgres", kiln: "bulk COPY binary, 2 workers", kilnRate: twoWorkerRate,
                peer: "psql \\copy binary, same table", peerRate: Double(rows) / psqlSeconds),
            StoreBench.Result(
                store: "postgres", kiln: "bulk COPY binary, 1 worker", kilnRate: kilnRate,
                peer: "pgbench -i -s \(scale) -I dtg", peerRate: Double(scale * 100_000) / pgbenchSeconds),
        ]
    }

    func redis(rows: Int64) throws -> StoreBench.Result {
        let report = try phase(
            "redis", rows: rows, namespace: "benchredis",
            phases: "  - {name: load, executor: bulk, rows: \(rows), batch: 10K, workers: 8, stores: [redis.bulk-set]}")
        let kilnRate = report.phases[0].operations[0].rowsPerSecond ?? 0
        // The same value size as Kiln's SETs: the rows' mean JSON length.
        let data = try dataset(rows: rows)
        var encoder = RowEncoder(format: .jsonl, dataset: data, capacity: 1 << 20)
        encoder.append(data, rows: 0..<min(rows, 10_000))
        let valueSize = max(1, encoder.count / Int(min(rows, 10_000)) - 1)
        let primary = stack.redis.primary
        let output = try LocalProcess.run(
            "/usr/bin/redis-benchmark",
            ["-h", primary.host, "-p", String(primary.port), "-t", "set", "-n", String(rows), "-P", "32", "-c", "8",
             "-d", String(valueSize), "-r", String(rows), "-q"])
        // "SET: 312500.00 requests per second, p50=..."
        guard let range = output.range(of: #"SET: ([0-9.]+) requests per second"#, options: .regularExpression),
            let peerRate = Double(output[range].split(separator: " ")[1])
        else { throw Failure(code: .internalError, message: "cannot read redis-benchmark's output: \(output)") }
        try Self.unlinkKeys(matching: "key:*", host: primary.host, port: primary.port)
        try Self.unlinkKeys(matching: "benchredis:*", host: primary.host, port: primary.port)
        return StoreBench.Result(
            store: "redis", kiln: "bulk-set, pipeline 32, 8 workers", kilnRate: kilnRate,
            peer: "redis-benchmark -t set -P 32 -c 8 -d \(valueSize)", peerRate: peerRate)
    }

    /// Removes the keys of one pattern (redis-benchmark's `key:*`, a bench namespace) — never FLUSHDB, which would
    /// take every other namespace on the server with it.
    static func unlinkKeys(matching pattern: String, host: String, port: Int) throws {
        let connection = try RedisConnection(host: host, port: port)
        var cursor = "0"
        repeat {
            let reply = try connection.command("SCAN", cursor, "MATCH", pattern, "COUNT", "10000")
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array else {
                throw Failure(code: .internalError, message: "unexpected SCAN reply while removing \(pattern)")
            }
            let names = keys.compactMap(\.string)
            if !names.isEmpty { _ = try connection.command(["UNLINK"] + names) }
            cursor = next
        } while cursor != "0"
    }

    func kafka(rows: Int64) throws -> StoreBench.Result {
        let report = try phase(
            "kafka", rows: rows, namespace: "benchkafka",
            phases: "  - {name: load, executor: bulk, rows: \(rows), batch: 1M, workers: 1, stores: [kafka]}")
        let kilnRate = report.phases[0].operations[0].rowsPerSecond ?? 0
        let input = try file("kafka.tsv", rows: rows, format: .kafka)
        defer { try? FileManager.default.removeItem(at: input) }
        let topic = "benchkafka.peer-\(getpid())"
        let seconds = try timed {
            // Debian's kcat links librdkafka 2.0.2, which cannot talk to Tansu; use the 2.x library Kiln uses.
            _ = try LocalProcess.run(
                "/usr/bin/env",
                ["LD_LIBRARY_PATH=\(paths.home.path)/.kiln/lib", "/usr/bin/kcat", "-P", "-b", stack.kafka.bootstrapServers, "-t", topic, "-K", "\t", "-X", "enable.idempotence=true",
                 "-X", "acks=all", "-l", input.path])
        }
        return StoreBench.Result(
            store: "kafka", kiln: "bulk produce, idempotent, acks=all", kilnRate: kilnRate,
            peer: "kcat -P -K '\\t' -l (idempotent, acks=all)", peerRate: Double(rows) / seconds)
    }

    /// 5,000 ops/s of `redis.feature-read` for 10 s; the Redis primary is stopped (SIGSTOP) for 1 s at 4 s.
    /// Then redis-benchmark (closed model, 50 clients) across the same kind of stall.
    func stall() throws -> String {
        let state = paths.stack.appendingPathComponent("state.json")
        guard let data = try? Data(contentsOf: state),
            let pids = try? JSONDecoder().decode([String: Int32].self, from: data), let pid = pids["redis-primary"]
        else { throw Failure(code: .stackUnavailable, message: "no redis-primary pid in \(state.path): is the stack up?") }
        func pause(after delay: UInt32) -> Thread {
            let thread = Thread {
                usleep(delay)
                kill(pid, SIGSTOP)
                usleep(1_000_000)
                kill(pid, SIGCONT)
            }
            thread.start()
            return thread
        }
        defer { kill(pid, SIGCONT) }
        // The features the reads look up are loaded first; the pause starts 4 s into the open phase.
        final class PauseAtOpen: PhaseObserver {
            let start: () -> Void
            init(start: @escaping () -> Void) { self.start = start }
            func phaseStarted(_ phase: LoadScenario.Phase, number: Int, operations: [PlannedOperation]) {
                if phase.name == "open" { start() }
            }
            func secondEnded(
                _ second: TimelineSecond, phase: LoadScenario.Phase, operations: [PlannedOperation], elapsed: Double,
                history: [CompletedOperation]
            ) {}
        }
        let report = try phase(
            "stall", rows: 200_000, namespace: "benchstall",
            phases: """
              - {name: features, executor: bulk, rows: 100K, batch: 10K, workers: 2, stores: [redis]}
              - {name: open, executor: constant-arrival-rate, rate: 5000, duration: 10s, workers: 64, drop_after: 5s, mix: {redis.feature-read: 1}}
            """, observer: PauseAtOpen { _ = pause(after: 4_000_000) })
        let open = report.phases[1]
        let operation = open.operations[0]
        let histogramFile = scratch.appendingPathComponent("runs/\(report.identity.id)/histograms/open/redis.feature-read.json")
        let histogram = try JSONDecoder().decode(Histogram<UInt64>.self, from: Data(contentsOf: histogramFile))
        let affected = histogram.count(within: 100_000...UInt64.max / 4)
        var lines = [
            "open-model accuracy: 5000 ops/s of redis.feature-read for 10 s, Redis primary SIGSTOPped for 1 s",
            String(
                format: "  kiln: ok %lld, dropped %lld, late %lld; latency p50 %.2f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms; ops over 100 ms: %llu (rate × stall = 5000)",
                operation.ok, operation.dropped, operation.late, operation.latencyMs.p50 ?? -1,
                operation.latencyMs.p99 ?? -1, operation.latencyMs.p999 ?? -1, operation.latencyMs.max ?? -1, affected),
            String(format: "  kiln service time (from actual start, what a closed-model tool reports): p99 %.1f ms, max %.1f ms",
                operation.serviceMs.p99 ?? -1, operation.serviceMs.max ?? -1),
        ]
        // redis-benchmark across a 1 s stall 1.5 s into its run.
        let primary = stack.redis.primary
        let stallThread = pause(after: 1_500_000)
        let output = try LocalProcess.run(
            "/usr/bin/redis-benchmark",
            ["-h", primary.host, "-p", String(primary.port), "-t", "get", "-n", "250000", "-c", "50", "--precision", "3"])
        _ = stallThread
        if let range = output.range(of: "latency summary (msec):") {
            let summary = output[range.upperBound...].split(separator: "\n").prefix(3).map { "    \($0)" }
            lines.append("  redis-benchmark -t get -n 250000 -c 50 (closed model, ~5 s) across the same 1 s stall at 1.5 s:")
            lines.append(contentsOf: summary)
            if let throughput = output.range(of: #"throughput summary: [0-9.]+ requests per second"#, options: .regularExpression) {
                lines.append("    \(output[throughput])")
            }
        } else {
            lines.append("  redis-benchmark output:\n\(output)")
        }
        return lines.joined(separator: "\n")
    }
}
