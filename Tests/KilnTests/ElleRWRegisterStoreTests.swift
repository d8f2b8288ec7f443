import Foundation
import KilnCheck
import KilnElle
import KilnPostgres
import KilnStores
import Testing

/// Elle's rw-register workload against the shared stack's PostgreSQL 15 at each isolation level and Redis
/// MULTI/EXEC and Lua, checked by `RWRegisterChecker`; key retirement on real servers; and a run directory holding a
/// ledger `history.jsonl` beside an rw-register history, checked as one run.
@Suite(.serialized) struct ElleRWRegisterStoreTests {
    static func postgres(
        _ isolation: EllePostgresWorkload.Isolation, seed: UInt64 = 42, transactions: Int = 1_500,
        maxWritesPerKey: Int? = nil, keyChoice: ListAppendKeyChoice = .uniform
    ) throws -> [ElleTransaction] {
        let primary = TestStack.definition.postgres.primary
        let endpoint = PostgresEndpoint(host: primary.host, port: primary.port, database: "kiln", user: "postgres")
        var workload = EllePostgresWorkload(
            endpoint: endpoint, isolation: isolation,
            table: "kiln_elle_rw_test_\(isolation.rawValue.replacingOccurrences(of: "-", with: "_"))",
            transactions: transactions, concurrency: 10, keys: 5, seed: seed)
        workload.workload = .rwRegister
        workload.maxWritesPerKey = maxWritesPerKey
        workload.keyChoice = keyChoice
        let history = try workload.run()
        #expect(history.count == transactions)
        #expect(history.filter { $0.outcome == .ok }.count > transactions / 5)
        #expect(history.allSatisfy { $0.ops.allSatisfy { if case .write = $0 { true } else if case .readRegister = $0 { true } else { false } } })
        return history
    }

    static func text(_ result: ElleCheckResult) -> String {
        result.summary + "\n" + result.witnesses.prefix(3).map(\.text).joined(separator: "\n")
    }

    @Test func postgresSerializableShowsNoAnomalyUnderContention() throws {
        for seed: UInt64 in [1, 2] {
            let history = try Self.postgres(.serializable, seed: seed)
            let result = RWRegisterChecker(model: .serializable).check(history)
            #expect(result.validity == .valid, "\(Self.text(result))")
            // The history proves orders: there was a graph to search.
            #expect(result.statistics.edges > 500, "\(result.statistics)")
        }
    }

    @Test func postgresRepeatableReadShowsWriteSkew() throws {
        var found = false
        for seed: UInt64 in [1, 2, 3] where !found {
            let history = try Self.postgres(.repeatableRead, seed: seed, transactions: 2_500)
            let serializable = RWRegisterChecker(model: .serializable).check(history)
            let snapshot = RWRegisterChecker(model: .snapshotIsolation).check(history)
            #expect(snapshot.validity == .valid, "\(Self.text(snapshot))")
            found = serializable.counts[.g2Item] != nil
            if found { print(serializable.witnesses.first { $0.kind == .g2Item }!.text) }
        }
        #expect(found, "no G2-item in three repeatable-read runs")
    }

    @Test func postgresReadCommittedShowsWhatItAllows() throws {
        let history = try Self.postgres(.readCommitted)
        let committed = RWRegisterChecker(model: .readCommitted).check(history)
        #expect(committed.validity == .valid, "\(Self.text(committed))")
        let snapshot = RWRegisterChecker(model: .snapshotIsolation).check(history)
        #expect(snapshot.validity == .invalid, "\(Self.text(snapshot))")
        #expect(
            committed.counts[.lostUpdate] != nil || committed.counts[.gSingle] != nil, "\(committed.summary)")
        print(committed.summary)
    }

    /// No key gets more writes than the maximum, and retirement really happens (many keys used) under Zipf.
    @Test func retiredKeysNeverExceedTheirWrites() throws {
        let history = try Self.postgres(
            .readCommitted, transactions: 800, maxWritesPerKey: 3, keyChoice: .zipf(exponent: 1.2))
        var writes: [Int: Int] = [:]
        for transaction in history {
            for case .write(let key, _) in transaction.ops { writes[key, default: 0] += 1 }
        }
        #expect(writes.values.allSatisfy { $0 <= 3 }, "\(writes.filter { $0.value > 3 })")
        #expect(writes.count > 300, "\(writes.count) keys written")
        let primary = TestStack.definition.redis.primary
        var lists = ElleRedisWorkload(
            host: primary.host, port: primary.port, prefix: "kiln:elle-test:\(TestStack.uniqueName("retire"))",
            transactions: 1_000, concurrency: 5, keys: 3)
        lists.maxWritesPerKey = 4
        lists.keyChoice = .zipf(exponent: 1)
        let appended = try lists.run()
        let longest =
            appended.flatMap(\.ops).compactMap { op -> Int? in
                if case .read(_, let values?) = op { values.count } else { nil }
            }.max() ?? 0
        #expect(longest <= 4 && longest > 0, "longest list \(longest)")
        #expect(ListAppendChecker(model: .strictSerializable).check(appended).validity == .valid)
    }

    @Test(arguments: [ElleRedisWorkload.Form.multiExec, .lua])
    func redisTransactionsOnOneNodeAreStrictSerializable(_ form: ElleRedisWorkload.Form) throws {
        let primary = TestStack.definition.redis.primary
        var workload = ElleRedisWorkload(
            host: primary.host, port: primary.port, prefix: "kiln:elle-test:\(TestStack.uniqueName("rw"))",
            transactions: 3_000, concurrency: 10, keys: 6)
        workload.workload = .rwRegister
        workload.form = form
        workload.maxWritesPerKey = 32
        let history = try workload.run()
        #expect(history.count == 3_000)
        #expect(history.allSatisfy { $0.outcome == .ok })
        let reads = history.flatMap(\.ops).compactMap { op -> Int? in
            if case .readRegister(_, let value?) = op { value } else { nil }
        }
        #expect(reads.count > 1_000)
        let result = RWRegisterChecker(model: .strictSerializable).check(history)
        #expect(result.validity == .valid, "\(Self.text(result))")
        #expect(result.statistics.edges > 3_000, "\(result.statistics)")
    }

    /// A `kiln run` ledger load and an rw-register history in one run directory: `kiln check` composes
    /// postgres.rows and elle.rw-register; a clean Elle history keeps the run valid, a planted write skew makes the
    /// whole check invalid (exit 1) while the ledger place stays valid.
    @Test func aLedgerRunAndAnRWRegisterHistoryAreCheckedTogether() throws {
        let namespace = "elle_rw_\(UInt32.random(in: 0...UInt32.max))"
        let scenario = try CommandLineTests.temporaryFile(
            "\(namespace).yaml",
            """
            name: \(namespace)
            stack: \(TestStack.paths.embeddedStackFile.path)
            dataset: {spec: \(Fixtures.specURL.path), seed: 5, rows: 2K}
            namespace: \(namespace)
            phases:
              - {name: load, executor: bulk, rows: 1K, batch: 500, workers: 2, stores: [postgres]}
            """)
        let runs = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("runs"))
        let run = try CommandLineTests.kiln(["run", scenario.path, "--runs-directory", runs.path, "--id", "r"])
        try #require(run.status == 0, "\(run.output)")
        let directory = runs.appendingPathComponent("r")
        let record = try CommandLineTests.kiln([
            "elle", "redis", "--workload", "rw-register", "--transactions", "1000", "--keys", "6",
            "--prefix", "kiln:elle-test:\(namespace)", "--record-run", directory.path,
        ])
        #expect(record.status == 0, "\(record.output)")
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("history.jsonl").path))
        let clean = try CommandLineTests.kiln(["check", directory.path])
        #expect(clean.status == 0, "\(clean.output)")
        let report = try Self.checkJSON(directory)
        #expect(report.validity == .valid)
        #expect(Set(report.places.map(\.place)).isSuperset(of: ["postgres.rows", "elle.rw-register"]))

        // Plant a write skew: the Elle history alone turns the run invalid.
        try ElleTransaction.jsonLines(ElleCommandLineTests.registerG2Item).write(
            to: directory.appendingPathComponent(ListAppendRunDescription.historyFileName(.rwRegister)))
        let planted = try CommandLineTests.kiln(["check", directory.path])
        #expect(planted.status == 1, "\(planted.output)")
        #expect(planted.output.contains("G2-item"), "\(planted.output)")
        let invalid = try Self.checkJSON(directory)
        #expect(invalid.validity == .invalid)
        #expect(invalid.places.first { $0.place == "postgres.rows" }?.validity == .valid)
        #expect(invalid.places.first { $0.place == "elle.rw-register" }?.validity == .invalid)
        #expect(invalid.places.first { $0.place == "elle.rw-register" }?.transactional?.forbiddenFound == ["G2-item"])
    }

    static func checkJSON(_ directory: URL) throws -> CheckReport {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(CheckReport.self, from: Data(contentsOf: directory.appendingPathComponent("check.json")))
    }
}
