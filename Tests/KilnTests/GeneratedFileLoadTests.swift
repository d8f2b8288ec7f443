import Foundation
import KilnData
import KilnStack
import Testing

/// Files from `kiln generate` load with the stock tools into the real servers of the embedded stack, and what the
/// servers hold adds up to what the oracle says. A missing server fails these tests (the tools exit non-zero).
@Suite("Generated files load with psql, clickhouse-client, kcat and redis-cli")
struct GeneratedFileLoadTests {
    static let rows: Int64 = 100_000
    static let dataset = try! Dataset(spec: Fixtures.spec, seed: 11, rows: rows)
    static let expected = dataset.summary(of: 0..<rows)

    static func generate(_ format: String, rows: Int64 = rows) throws -> URL {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-gen") + "." + format)
        let outcome = try GeneratorCLI.run(
            ["generate", "--seed", "11", "--rows", String(Self.rows), "--range", "0..\(rows)", "--format", format, "--out",
             file.path])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        return file
    }

    static func psql(_ command: String) throws -> String {
        let pg = TestStack.postgres
        return try LocalProcess.run(
            "/usr/bin/psql",
            ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pg.host, "-p", String(pg.port), "-U", pg.user, "-d",
             pg.database, "-c", command])
    }

    static func numbers(_ text: String, separator: Character) -> [Int64?] {
        text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: separator).map { Int64($0) }
    }

    @Test(arguments: [("csv", "csv"), ("copy-binary", "binary")])
    func postgresLoadsTheFileAndAgreesWithTheOracle(format: String, copyFormat: String) throws {
        let file = try Self.generate(format)
        defer { try? FileManager.default.removeItem(at: file) }
        let table = TestStack.uniqueName("kiln_gen")
        _ = try Self.psql(TransactionSchema.postgres(table: table))
        defer { _ = try? Self.psql("DROP TABLE IF EXISTS \(table)") }
        _ = try Self.psql("\\copy \(table) FROM '\(file.path)' (FORMAT \(copyFormat))")
        let answer = try Self.psql(
            "SELECT count(*), (sum(amount) * 100)::bigint, count(*) FILTER (WHERE is_fraud), count(ring_id), "
                + "min(extract(epoch FROM ts) * 1000)::bigint, max(extract(epoch FROM ts) * 1000)::bigint FROM \(table)")
        #expect(
            Self.numbers(answer, separator: "|") == [
                Self.expected.count, Self.expected.amountCents, Self.expected.fraudCount, Self.expected.ringCount,
                Self.dataset.timestamp(of: 0), Self.dataset.timestamp(of: Self.rows - 1),
            ])
        // Row for row: a sample read back equals the generated rows.
        let sample = try Self.psql(
            "SELECT txn_id, user_id, merchant_id, device_id, location_id, (amount * 100)::bigint, "
                + "(extract(epoch FROM ts) * 1000)::bigint, (fraud_score * 1000)::bigint, coalesce(ring_id, -1) "
                + "FROM \(table) WHERE txn_id % 997 = 0 ORDER BY txn_id")
        for line in sample.split(separator: "\n") {
            let cells = Self.numbers(String(line), separator: "|").compactMap { $0 }
            let row = Self.dataset.transaction(cells[0] - 1)
            #expect(cells == [row.txnID, row.userID, row.merchantID, row.deviceID, row.locationID, row.amountCents,
                row.timestampMillis, Int64(row.fraudScoreMillis), Int64(row.ringID)])
        }
    }

    @Test(arguments: [("tsv", "TabSeparated"), ("rowbinary", "RowBinary")])
    func clickhouseLoadsTheFileAndAgreesWithTheOracle(format: String, clickhouseFormat: String) throws {
        let file = try Self.generate(format)
        defer { try? FileManager.default.removeItem(at: file) }
        let endpoint = TestStack.definition.timeseries.endpoint
        let table = "kiln." + TestStack.uniqueName("gen")
        let client = ["--host", endpoint.host, "--port", String(endpoint.port + 1)]
        _ = try LocalProcess.run("/usr/bin/clickhouse-client", client + ["--query", "CREATE DATABASE IF NOT EXISTS kiln"])
        _ = try LocalProcess.run("/usr/bin/clickhouse-client", client + ["--query", TransactionSchema.clickhouse(table: table)])
        defer { _ = try? LocalProcess.run("/usr/bin/clickhouse-client", client + ["--query", "DROP TABLE IF EXISTS \(table)"]) }
        _ = try LocalProcess.run(
            "/bin/sh", ["-c", "clickhouse-client \"$@\" < '\(file.path)'", "sh"] + client
                + ["--query", "INSERT INTO \(table) FORMAT \(clickhouseFormat)"])
        let answer = try LocalProcess.run(
            "/usr/bin/clickhouse-client",
            client + ["--query", "SELECT count(), toInt64(sum(amount) * 100), sum(is_fraud), count(ring_id), "
                + "min(ts), max(ts), toInt64(min(time)) "
                + "FROM \(table) FORMAT TabSeparated"])
        #expect(
            Self.numbers(answer, separator: "\t") == [
                Self.expected.count, Self.expected.amountCents, Self.expected.fraudCount, Self.expected.ringCount,
                Self.dataset.timestamp(of: 0), Self.dataset.timestamp(of: Self.rows - 1), Self.dataset.timestamp(of: 0) / 1000,
            ])
    }

    @Test func kcatProducesTheJSONLinesFile() throws {
        let file = try Self.generate("jsonl")
        defer { try? FileManager.default.removeItem(at: file) }
        let topic = TestStack.uniqueName("kiln-gen")
        let environment = "LD_LIBRARY_PATH=\(TestStack.paths.libraries.path)"
        _ = try LocalProcess.run(
            "/usr/bin/env", [environment, "kcat", "-P", "-b", TestStack.kafkaBootstrap, "-t", topic, "-l", file.path])
        let consumed = try LocalProcess.run(
            "/usr/bin/env", [environment, "kcat", "-C", "-b", TestStack.kafkaBootstrap, "-t", topic, "-e", "-q"])
        let lines = consumed.split(separator: "\n")
        #expect(lines.count == Int(Self.rows))
        var summary = RangeSummary()
        for line in lines {
            guard let decoded = JSONReader.row(line) else {
                Issue.record("not a transaction: \(line.prefix(200))")
                return
            }
            summary.add(Self.dataset.transaction(decoded.txnID - 1))
            #expect(decoded == DecodedRow(Self.dataset.transaction(decoded.txnID - 1), Self.dataset))
        }
        #expect(summary == Self.expected)
    }

    @Test func kcatKeysTheKafkaFormatByUser() throws {
        let file = try Self.generate("kafka", rows: 20_000)
        defer { try? FileManager.default.removeItem(at: file) }
        let topic = TestStack.uniqueName("kiln-gen-keyed")
        let environment = "LD_LIBRARY_PATH=\(TestStack.paths.libraries.path)"
        _ = try LocalProcess.run(
            "/usr/bin/env",
            [environment, "kcat", "-P", "-b", TestStack.kafkaBootstrap, "-t", topic, "-K", "\t", "-l", file.path])
        let consumed = try LocalProcess.run(
            "/usr/bin/env",
            [environment, "kcat", "-C", "-b", TestStack.kafkaBootstrap, "-t", topic, "-e", "-q", "-f", "%k\t%s\n"])
        let lines = consumed.split(separator: "\n")
        #expect(lines.count == 20_000)
        for line in lines {
            let parts = line.split(separator: "\t", maxSplits: 1)
            guard parts.count == 2, let row = JSONReader.row(parts[1]) else {
                Issue.record("not key<TAB>transaction: \(line.prefix(200))")
                return
            }
            #expect(Int64(parts[0]) == row.userID)
        }
    }

    @Test func redisCliPipesTheRESPCommands() throws {
        let file = try Self.generate("resp", rows: 20_000)
        defer { try? FileManager.default.removeItem(at: file) }
        let redis = TestStack.redisPrimary
        // Database 9 is this test's alone (redis-cli -n selects it before piping).
        let cli = ["-h", redis.host, "-p", String(redis.port), "-n", "9"]
        _ = try LocalProcess.run("/usr/bin/redis-cli", cli + ["FLUSHDB"])
        defer { _ = try? LocalProcess.run("/usr/bin/redis-cli", cli + ["FLUSHDB"]) }
        let piped = try LocalProcess.run("/bin/sh", ["-c", "redis-cli \"$@\" --pipe < '\(file.path)'", "sh"] + cli)
        #expect(piped.contains("errors: 0, replies: 40000"), "\(piped)")
        let users = Set((0..<Int64(20_000)).map { Self.dataset.transaction($0).userID }).count
        let size = try LocalProcess.run("/usr/bin/redis-cli", cli + ["DBSIZE"])
        #expect(Int(size.trimmingCharacters(in: .whitespacesAndNewlines)) == 20_000 + users)
        let sum = try LocalProcess.run(
            "/usr/bin/redis-cli",
            cli + ["EVAL", "local s = 0 for i = 1, tonumber(ARGV[1]) do "
                + "s = s + tonumber(redis.call('HGET', 'txn:' .. i, 'amount_cents')) end return s", "0", "20000"])
        #expect(Int64(sum.trimmingCharacters(in: .whitespacesAndNewlines)) == Self.dataset.summary(of: 0..<20_000).amountCents)
    }

    @Test func falkorDBTakesTheCypherMapsAsUnwindRows() throws {
        let file = try Self.generate("cypher", rows: 2_000)
        defer { try? FileManager.default.removeItem(at: file) }
        let maps = try String(contentsOf: file, encoding: .utf8).split(separator: "\n").joined(separator: ", ")
        let graph = TestStack.uniqueName("kiln_gen")
        let falkor = TestStack.falkordb
        let cli = ["-h", falkor.host, "-p", String(falkor.port)]
        defer { _ = try? LocalProcess.run("/usr/bin/redis-cli", cli + ["GRAPH.DELETE", graph]) }
        // The query (about 600 KB) goes through stdin (`redis-cli -x`): one exec argument is limited to 128 KB.
        let query = FileManager.default.temporaryDirectory.appendingPathComponent(graph + ".cypher")
        defer { try? FileManager.default.removeItem(at: query) }
        try (
            "CYPHER rows=[\(maps)] UNWIND $rows AS r MERGE (u:User {id: r.user_id}) "
                + "CREATE (u)-[:PAID {txn_id: r.txn_id, amount_cents: r.amount_cents}]->(:Merchant {id: r.merchant_id})"
        ).write(to: query, atomically: false, encoding: .utf8)
        let created = try LocalProcess.run(
            "/bin/sh", ["-c", "redis-cli \"$@\" < '\(query.path)'", "sh"] + cli + ["-x", "GRAPH.QUERY", graph])
        #expect(created.contains("Relationships created: 2000"), "\(created.prefix(500))")
        let answer = try LocalProcess.run(
            "/usr/bin/redis-cli", cli + ["GRAPH.QUERY", graph, "MATCH ()-[p:PAID]->() RETURN count(p), toInteger(sum(p.amount_cents))"])
        let summary = Self.dataset.summary(of: 0..<2_000)
        let lines = answer.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(lines.contains("\(summary.count)") && lines.contains("\(summary.amountCents)"), "\(answer)")
    }
}
