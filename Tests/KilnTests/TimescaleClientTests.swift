import Foundation
import KilnCore
import KilnData
import KilnPostgres
import Testing

@testable import KilnBackends
@testable import KilnStores

/// Runs against the embedded PostgreSQL, which has no TimescaleDB: the partitioned-table fallback is what runs.
@Suite("TimescaleDB store client (plain PostgreSQL fallback)")
struct TimescaleClientTests {
    private func client() throws -> TimescaleClient {
        let client = try TimescaleClient(context: StoreFixtures.context(namespace: TestStack.uniqueName("kiln_tsc")))
        try client.setup()
        return client
    }

    @Test func fallbackCreatesDailyPartitionsAndBulkLoadsPoints() throws {
        let client = try client()
        defer {
            try? client.teardown()
            client.close()
        }
        try client.setup()  // idempotent
        #expect(!client.usesHypertable)
        let connection = try #require(client.connection)
        let partitions = try connection.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = $1::regclass", [client.table])
        // One per day of the spec plus the default partition.
        #expect(partitions.value(row: 0, column: 0) == String(StoreFixtures.dataset.spec.days + 1))

        let rows: Range<Int64> = 0..<20_000
        #expect(client.invoke(.bulk, Request(rows: rows)) == .ok)
        let totals = try connection.execute(
            "SELECT count(*), (sum(amount) * 100)::bigint, "
                + "count(*) FILTER (WHERE tableoid::regclass::text LIKE '%default') FROM \(client.table)"
        )
        #expect(totals.value(row: 0, column: 0) == "20000")
        #expect(totals.value(row: 0, column: 1) == String(StoreFixtures.cents(rows)))
        #expect(totals.value(row: 0, column: 2) == "0")

        let sample = StoreFixtures.dataset.transaction(4_321)
        let point = try connection.execute(
            "SELECT (extract(epoch FROM time) * 1000)::bigint, merchant_id, amount FROM \(client.table) "
                + "WHERE txn_id = $1",
            [String(sample.txnID)])
        #expect(point.value(row: 0, column: 0) == String(sample.timestampMillis))
        #expect(point.value(row: 0, column: 1) == String(sample.merchantID))
        #expect(point.value(row: 0, column: 2) == PostgresClient.decimal(sample.amountCents, scale: 2))

        // minute-aggregate over (ts - 1 h, ts] for the row's merchant, as the generator says.
        let probe = StoreFixtures.dataset.transaction(15_000)
        #expect(client.invoke(.minuteAggregate, Request(row: 15_000)) == .ok)
        let result = try client.minuteAggregate(row: 15_000)
        let expected = rows.map { StoreFixtures.dataset.transaction($0) }.filter {
            $0.merchantID == probe.merchantID && $0.timestampMillis > probe.timestampMillis - 3_600_000
                && $0.timestampMillis <= probe.timestampMillis
        }
        let counted = (0..<result.rowCount).reduce(0) { $0 + (Int(result.value(row: $1, column: 1) ?? "") ?? 0) }
        let summed = (0..<result.rowCount).reduce(Int64(0)) {
            $0 + (StoreFixtures.cents(result.value(row: $1, column: 2)) ?? 0)
        }
        #expect(counted == expected.count)
        #expect(summed == expected.reduce(0) { $0 + $1.amountCents })
    }

    @Test func insertPointWritesOnceAndRefusesADuplicate() throws {
        let client = try client()
        defer {
            try? client.teardown()
            client.close()
        }
        #expect(client.invoke(.insertPoint, Request(row: 42)) == .ok)
        #expect(client.invoke(.insertPoint, Request(row: 42)) == .fail("sqlstate-23505"))
        let sample = StoreFixtures.dataset.transaction(42)
        let point = try #require(client.connection).execute(
            "SELECT (extract(epoch FROM time) * 1000)::bigint, amount FROM \(client.table) WHERE txn_id = 43")
        #expect(point.value(row: 0, column: 0) == String(sample.timestampMillis))
        #expect(point.value(row: 0, column: 1) == PostgresClient.decimal(sample.amountCents, scale: 2))
    }

    @Test func numericEncodingMatchesPostgres() throws {
        // Amounts with zero groups at either end and several groups, through COPY and back as text.
        let client = try client()
        defer {
            try? client.teardown()
            client.close()
        }
        let connection = try #require(client.connection)
        let table = TestStack.uniqueName("kiln_tsc_num")
        try connection.execute("CREATE TABLE \(table) (amount numeric(15,2))")
        defer { _ = try? connection.execute("DROP TABLE IF EXISTS \(table)") }
        let values: [Int64] = [0, 5, 100, 1_000_000, 100_000_000, 123_456_789_012, 99_990_000_00, 10_000_00, -1205]
        let copied = try connection.copyIn("COPY \(table) FROM STDIN (FORMAT binary)") { writer in
            var bytes: [UInt8] = [
                0x50, 0x47, 0x43, 0x4F, 0x50, 0x59, 0x0A, 0xFF, 0x0D, 0x0A, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
            ]
            try writer.write(bytes)
            for value in values {
                bytes = [0, 1]
                try writer.write(bytes)
                try writer.write(client.numericBytes(value))
            }
            try writer.write([0xFF, 0xFF])
        }
        #expect(copied == values.count)
        let result = try connection.execute("SELECT amount::text FROM \(table)")
        #expect(
            (0..<result.rowCount).map { result.value(row: $0, column: 0) }
                == values.map { PostgresClient.decimal($0, scale: 2) })
    }

    @Test func hypertableSQLText() {
        // Untested against a server: TimescaleDB cannot run on this machine. This pins the statements sent.
        let sql = TimescaleClient.hypertableSQL(table: "ns_points")
        #expect(sql.hasPrefix("CREATE EXTENSION IF NOT EXISTS timescaledb;"))
        #expect(sql.contains("CREATE TABLE IF NOT EXISTS ns_points (time timestamptz NOT NULL"))
        #expect(
            sql.contains(
                "SELECT create_hypertable('ns_points', 'time', chunk_time_interval => interval '1 day', "
                    + "if_not_exists => TRUE);"
            ))
    }

    @Test func partitionBoundsAreUTCDays() {
        let sql = TimescaleClient.partitionedSQL(table: "ns_points", startMillis: 1_767_225_600_000, days: 2)
        #expect(
            sql.contains(
                "ns_points_p20260101 PARTITION OF ns_points "
                    + "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-01-02 00:00:00+00')"
            ))
        #expect(
            sql.contains(
                "ns_points_p20260102 PARTITION OF ns_points "
                    + "FOR VALUES FROM ('2026-01-02 00:00:00+00') TO ('2026-01-03 00:00:00+00')"
            ))
        #expect(!sql.contains("p20260103"))
        #expect(sql.contains("ns_points_default PARTITION OF ns_points DEFAULT"))
    }

    @Test func unreachableServerThrowsNamingTheStore() {
        let context = StoreFixtures.context(
            namespace: TestStack.uniqueName("kiln_tsc"), timeout: .seconds(2), stack: StoreFixtures.unreachableStack)
        #expect {
            _ = try TimescaleClient(context: context)
        } throws: { error in
            String(describing: error).hasPrefix("timescale at 127.0.0.1:9")
        }
    }
}
