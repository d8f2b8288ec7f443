import Foundation
import KilnCheck
import KilnCore
import KilnData
import KilnStores
import Logging
import Testing
import KilnTestSupport

/// A scanner over rows held in memory: for testing the checker's logic on hand-built store contents (each real
/// scanner is tested against its real server in its own suite).
final class RowListScanner: StoreScanner {
    let rows: [StoredRow]
    let failAfter: Int?
    var source: String { "memory" }

    init(_ rows: [StoredRow], failAfter: Int? = nil) {
        self.rows = rows
        self.failAfter = failAfter
    }

    struct Broken: Error {}

    func scan(_ body: (StoredRow) throws -> Void) throws {
        for (index, row) in rows.enumerated() {
            if let failAfter, index == failAfter { throw Broken() }
            try body(row)
        }
    }

    func close() {}
}

enum ReconcileFixture {
    static let dataset = try! Dataset(spec: Fixtures.spec, seed: 11, rows: 10_000)
    static let place = RowPlace(store: "memory", name: "rows", writtenBy: ["memory.bulk"])

    /// The stored copy of row `index` as a store keeping every column would return it.
    static func stored(_ index: Int64) -> StoredRow { StoredRow(dataset.transaction(index), in: dataset) }

    static func written(ok: Range<Int64>, info: [Int64] = [], failed: [Int64] = []) -> WrittenRows {
        var written = WrittenRows(place: place, datasetRows: dataset.rows)
        written.ok.insert(ok)
        for index in info { written.info.insert(index) }
        for index in failed { written.failed.insert(index) }
        return written
    }

    static func check(_ rows: [StoredRow], _ written: WrittenRows) -> PlaceResult {
        let checker = ReconcileChecker(written: written, dataset: dataset)
        for row in rows { checker.add(row) }
        return checker.finish(source: "memory", seconds: 0)
    }
}

@Suite("Reconcile checker on hand-built store contents")
struct ReconcileCheckerTests {
    @Test func aCompleteCorrectStoreIsValid() {
        let rows = (0..<2_000).map { ReconcileFixture.stored(Int64($0)) }.shuffled()
        let result = ReconcileFixture.check(rows, ReconcileFixture.written(ok: 0..<2_000))
        #expect(result.validity == .valid)
        #expect(result.anomalies.isEmpty)
        #expect(result.expected == 2_000 && result.scanned == 2_000)
    }

    @Test func tamperingIsReportedWithExactlyTheTamperedKeys() {
        var rows = (0..<2_000).map { ReconcileFixture.stored(Int64($0)) }
        rows.removeAll { [17, 900, 1_999].contains($0.txnID) }  // 3 lost
        rows.append(ReconcileFixture.stored(41))  // txn 42 twice
        rows.append(ReconcileFixture.stored(1_233))  // txn 1234 twice
        let corruptedIndex = rows.firstIndex { $0.txnID == 501 }!
        rows[corruptedIndex].amountCents! += 1  // txn 501 corrupted
        rows.append(ReconcileFixture.stored(5_000))  // txn 5001: a real dataset row never written -> phantom
        var unknown = StoredRow(txnID: 99_999_999)  // not in the dataset -> phantom
        unknown.amountCents = 100
        rows.append(unknown)
        let result = ReconcileFixture.check(rows, ReconcileFixture.written(ok: 0..<2_000))
        #expect(result.validity == .invalid)
        let byKind = Dictionary(grouping: result.anomalies, by: \.kind).mapValues { $0.map(\.txnID).sorted() }
        #expect(byKind[.lost] == [17, 900, 1_999])
        #expect(byKind[.duplicated] == [42, 1_234])
        #expect(byKind[.corrupted] == [501])
        #expect(byKind[.phantom] == [5_001, 99_999_999])
        #expect(result.counts == ["lost": 3, "duplicated": 2, "corrupted": 1, "phantom": 2])
        let corrupted = result.anomalies.first { $0.kind == .corrupted }
        #expect(corrupted?.detail.contains("amount_cents") == true)
    }

    @Test func indeterminateWritesMayBePresentOrAbsentButFailedOnesMustBeAbsent() {
        // Rows 0..<100 ok; 100 and 101 ended info (one present, one absent); 102 failed but is present.
        var rows = (0..<100).map { ReconcileFixture.stored(Int64($0)) }
        rows.append(ReconcileFixture.stored(100))
        rows.append(ReconcileFixture.stored(102))
        let result = ReconcileFixture.check(
            rows, ReconcileFixture.written(ok: 0..<100, info: [100, 101], failed: [102]))
        #expect(result.anomalies.map(\.txnID) == [103])
        #expect(result.anomalies.first?.kind == .phantom)
        #expect(result.indeterminatePresent == 1)
        #expect(result.indeterminate == 2)
    }

    @Test func everyFieldIsCompared() {
        let expected = ReconcileFixture.dataset.transaction(7)
        var row = ReconcileFixture.stored(7)
        row.merchantID! += 1
        row.timestampMillis! -= 1000
        row.status = expected.declined ? "approved" : "declined"
        row.ringID = 12_345
        let differences = ReconcileChecker.differences(row, expected, ReconcileFixture.dataset)
        #expect(differences.count == 4)
        #expect(differences.contains { $0.hasPrefix("merchant_id") })
        #expect(differences.contains { $0.hasPrefix("ts_millis") })
        #expect(differences.contains { $0.hasPrefix("status") })
        #expect(differences.contains { $0.hasPrefix("ring_id") })
        // Fields a store does not keep (nil) are not compared.
        var partial = StoredRow(txnID: 8)
        partial.amountCents = expected.amountCents + 1
        #expect(ReconcileChecker.differences(partial, expected, ReconcileFixture.dataset) == [
            "amount_cents: stored \(expected.amountCents + 1), expected \(expected.amountCents)"
        ])
    }

    @Test func aScanThatFailsMakesThePlaceUnknownNotValid() throws {
        let rows = (0..<100).map { ReconcileFixture.stored(Int64($0)) }
        let dataset = ReconcileFixture.dataset
        let context = ClientContext(
            stack: TestStack.definition, dataset: dataset, environment: [:],
            logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        let place = ReconcileFixture.place
        let check = ConsistencyCheck(
            context: context,
            drivers: [
                ScannerDriver(place: place) { _ in RowListScanner(rows, failAfter: 50) },
                ScannerDriver(place: RowPlace(store: "other", name: "rows", writtenBy: [])) { _ in RowListScanner([]) },
            ])
        let report = check.run(written: [place.id: ReconcileFixture.written(ok: 0..<100)], runName: "t")
        #expect(report.validity == .unknown)
        #expect(report.places[0].validity == .unknown)
        #expect(report.places[0].error?.contains("after 50 rows") == true)
        #expect(report.places[1].validity == .valid)
    }

    @Test func theHistoryOfARunGivesEachPlaceItsRows() throws {
        let file = try TestStack.temporaryFile(
            "history.jsonl",
            """
            {"phase":"load","op":"postgres.bulk","worker":0,"row":0,"rows":100,"outcome":"ok","intended_ns":1,"start_ns":1,"end_ns":2}
            {"phase":"load","op":"postgres.bulk","worker":1,"row":100,"rows":50,"outcome":"info","error":"timeout","intended_ns":1,"start_ns":1,"end_ns":2}
            {"phase":"mixed","op":"postgres.insert","worker":3,"row":150,"rows":1,"outcome":"fail","error":"sqlstate-23505","intended_ns":1,"start_ns":1,"end_ns":2}
            {"phase":"mixed","op":"kafka.produce","worker":3,"row":0,"rows":1,"outcome":"ok","intended_ns":1,"start_ns":1,"end_ns":2}
            {"phase":"mixed","op":"redis.score-incr","worker":3,"row":0,"rows":1,"outcome":"ok","intended_ns":1,"start_ns":1,"end_ns":2}

            """)
        let written = try WrittenRows.fromHistory(file, datasetRows: 1_000)
        #expect(written["postgres.rows"]?.ok.population == 100)
        #expect(written["postgres.rows"]?.info.population == 50)
        #expect(written["postgres.rows"]?.failed.contains(150) == true)
        #expect(written["kafka.messages"]?.ok.population == 1)
        #expect(written["redis.txn-keys"]?.ok.population == 0)
        let broken = try TestStack.temporaryFile("bad.jsonl", "{\"op\": 1}\n")
        #expect(throws: HistoryError.self) { try WrittenRows.fromHistory(broken, datasetRows: 10) }
    }
}

@Suite("Feature checker on hand-built per-user state")
struct FeatureCheckerTests {
    static let dataset = ReconcileFixture.dataset

    /// What a correct Redis would hold after applying `rows` in index order (features and scores).
    static func correct(_ rows: Range<Int64>) -> [Int64: StoredUserFeatures] {
        var users: [Int64: StoredUserFeatures] = [:]
        for index in rows {
            let t = dataset.transaction(index)
            var entry = users[t.userID] ?? StoredUserFeatures(userID: t.userID, fields: [:], score: 0)
            entry.fields["txn_count"] = String(Int64(entry.fields["txn_count"] ?? "0")! + 1)
            entry.fields["amount_cents_total"] = String(Int64(entry.fields["amount_cents_total"] ?? "0")! + t.amountCents)
            entry.fields["last_txn"] = String(t.txnID)
            entry.fields["last_amount_cents"] = String(t.amountCents)
            entry.fields["last_merchant"] = String(t.merchantID)
            entry.fields["last_ts"] = String(t.timestampMillis)
            entry.score = (entry.score ?? 0) + Double(t.fraudScoreMillis)
            users[t.userID] = entry
        }
        return users
    }

    static func written(_ place: RowPlace, ok: Range<Int64>) -> WrittenRows {
        var written = WrittenRows(place: place, datasetRows: dataset.rows)
        written.ok.insert(ok)
        return written
    }

    static func check(_ users: [StoredUserFeatures]) -> PlaceResult {
        let checker = FeatureChecker(
            features: written(RowPlace.redisFeatures, ok: 0..<3_000), scores: written(RowPlace.redisScores, ok: 0..<3_000),
            dataset: dataset)
        for user in users { checker.add(user) }
        return checker.finish(source: "memory", seconds: 0)
    }

    @Test func correctFeaturesAreValid() {
        let result = Self.check(Array(Self.correct(0..<3_000).values))
        #expect(result.validity == .valid, "\(result.anomalies.prefix(3))")
        #expect(result.scanned == result.expected)
    }

    @Test func oneChangedFieldAndOneMissingUserAreNamedExactly() throws {
        var users = Self.correct(0..<3_000)
        let sorted = users.keys.sorted()
        let changed = sorted[10]
        let removed = sorted[20]
        users[changed]!.fields["last_amount_cents"] = "1"
        users[removed] = nil
        let phantom = StoredUserFeatures(userID: 987_654, fields: ["txn_count": "1"], score: nil)
        let result = Self.check(Array(users.values) + [phantom])
        #expect(result.counts == ["corrupted": 1, "lost": 1, "phantom": 1])
        #expect(result.anomalies.first { $0.kind == .corrupted }?.key == "user \(changed)")
        #expect(result.anomalies.first { $0.kind == .corrupted }?.detail.contains("last_amount_cents") == true)
        #expect(result.anomalies.first { $0.kind == .lost }?.key == "user \(removed)")
        #expect(result.anomalies.first { $0.kind == .phantom }?.key == "user 987654")
    }

    @Test func aCountOffByOneIsCorruption() {
        var users = Self.correct(0..<3_000)
        let user = users.keys.sorted()[5]
        users[user]!.fields["txn_count"] = String(Int64(users[user]!.fields["txn_count"]!)! + 1)
        let result = Self.check(Array(users.values))
        #expect(result.counts == ["corrupted": 1])
        #expect(result.anomalies.first?.detail.contains("txn_count") == true)
    }
}

@Suite("Kafka log contiguity")
struct LogContiguityTests {
    @Test func aHoleInAPartitionsOffsetsIsAGap() {
        var rows: [StoredRow] = []
        for index in 0..<300 {
            var row = ReconcileFixture.stored(Int64(index))
            row.partition = Int32(index % 3)
            row.offset = Int64(index / 3)
            rows.append(row)
        }
        let clean = ReconcileFixture.check(rows, ReconcileFixture.written(ok: 0..<300))
        #expect(clean.validity == .valid)
        // Partition 1 loses its message at offset 50 (txn 152): lost in the history's terms and a gap in the log's.
        rows.removeAll { $0.partition == 1 && $0.offset == 50 }
        let holed = ReconcileFixture.check(rows, ReconcileFixture.written(ok: 0..<300))
        #expect(holed.counts == ["lost": 1, "gap": 1])
        #expect(holed.anomalies.first { $0.kind == .gap }?.key == "partition 1")
    }
}
