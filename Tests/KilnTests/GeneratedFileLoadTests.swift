import Foundation
import KilnData
import KilnStack
import Testing

/// Files from `kiln generate` load with the stock tools into the real servers of the embedded stack, and what
/// the servers hold adds up to what the oracle says.
@Suite("Generated files load with psql, clickhouse-client and kcat")
struct GeneratedFileLoadTests {
    static let rows: Int64 = 100_000
    static let dataset = try! Dataset(spec: Fixtures.spec, seed: 11, rows: rows)
    static let expected = dataset.summary(of: 0..<rows)

    static func generate(_ format: String) throws -> URL {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-gen") + "." + format)
        let outcome = try CommandLineTests.kiln(
            ["generate", "--seed", "11", "--rows", String(rows), "--format", format, "--out", file.path])
        #expect(outcome.status == 0, "\(outcome.output)")
        return file
    }

    static func psql(_ command: String) throws -> String {
        let pg = TestStack.postgres
        return try LocalProcess.run(
            "/usr/bin/psql",
            ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pg.host, "-p", String(pg.port), "-U", pg.user, "-d",
             pg.database, "-c", command])
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
            "SELECT count(*), (sum(amount) * 100)::bigint, count(*) FILTER (WHERE is_fraud), "
                + "min(extract(epoch FROM ts) * 1000)::bigint, count(ring_id) FROM \(table)")
        let cells = answer.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").map { Int64($0) }
        let ringRows = (0..<Self.rows).filter { Self.dataset.transaction($0).ringID >= 0 }.count
        #expect(cells == [Self.expected.count, Self.expected.amountCents, Self.expected.fraudCount,
            Self.dataset.timestamp(of: 0), Int64(ringRows)])
    }

    @Test func clickhouseLoadsTabSeparatedAndAgreesWithTheOracle() throws {
        let file = try Self.generate("tsv")
        defer { try? FileManager.default.removeItem(at: file) }
        let endpoint = TestStack.definition.timeseries.endpoint
        let table = "kiln." + TestStack.uniqueName("gen")
        let client = ["--host", endpoint.host, "--port", String(endpoint.port + 1)]
        _ = try LocalProcess.run("/usr/bin/clickhouse-client", client + ["--query", TransactionSchema.clickhouse(table: table)])
        defer { _ = try? LocalProcess.run("/usr/bin/clickhouse-client", client + ["--query", "DROP TABLE IF EXISTS \(table)"]) }
        _ = try LocalProcess.run(
            "/bin/sh", ["-c", "clickhouse-client \"$@\" < '\(file.path)'", "sh"] + client
                + ["--query", "INSERT INTO \(table) FORMAT TabSeparated"])
        let answer = try LocalProcess.run(
            "/usr/bin/clickhouse-client",
            client + ["--query", "SELECT count(), toInt64(sum(amount) * 100), sum(is_fraud) FROM \(table) FORMAT TabSeparated"])
        let cells = answer.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\t").map { Int64($0) }
        #expect(cells == [Self.expected.count, Self.expected.amountCents, Self.expected.fraudCount])
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
        #expect(Set(lines).count == Int(Self.rows))
    }
}
