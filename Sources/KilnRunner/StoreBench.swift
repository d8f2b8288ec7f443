import Foundation
import KilnCore
import KilnData
import KilnKafka
import KilnPostgres
import KilnRedis
import KilnScenario
import KilnSmoke
import KilnStack

/// Errors collected from concurrent workers.
public final class FailureList: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var messages: [String] = []

    public init() {}

    public func append(_ message: String) { lock.withLock { messages.append(message) } }
    public var first: String? { lock.withLock { messages.first } }
}

/// The measurements behind `kiln bench stores`. Each pair writes the same rows to the same server; the clock
/// covers only the write (input preparation is excluded for both sides).
public struct StoreBench {
    public struct Result {
        public var store: String
        public var kiln: String
        public var kilnRate: Double
        public var peer: String
        public var peerRate: Double
    }

    let stack: StackDefinition
    let paths: KilnPaths
    let rows: Int
    let pipeline: Int

    public init(stack: StackDefinition, paths: KilnPaths, rows: Int, pipeline: Int) {
        self.stack = stack
        self.paths = paths
        self.rows = rows
        self.pipeline = pipeline
    }

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

    public func postgres() throws -> Result {
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

    public func redis() throws -> Result {
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

    public func kafka() throws -> Result {
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
