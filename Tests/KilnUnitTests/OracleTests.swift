import Foundation
import KilnData
import Testing
import KilnTestSupport

@Suite("Oracle")
struct OracleTests {
    static let dataset = try! Dataset(spec: Fixtures.spec, seed: 9, rows: 200_000)
    static let range: Range<Int64> = 10_000..<150_000
    static let rows = range.map { dataset.transaction($0) }

    @Test func summariesEqualTheRowsActuallyGenerated() {
        var count: Int64 = 0
        var cents: Int64 = 0
        var fraud: Int64 = 0
        var ring: Int64 = 0
        var digest: UInt64 = 0
        for row in Self.rows {
            count += 1
            cents += row.amountCents
            fraud += row.isFraud ? 1 : 0
            ring += row.ringID >= 0 ? 1 : 0
            digest &+= row.digest
        }
        let summary = Self.dataset.summary(of: Self.range)
        #expect(summary.count == count && count == 140_000)
        #expect(summary.amountCents == cents)
        #expect(summary.fraudCount == fraud)
        #expect(summary.ringCount == ring)
        #expect(summary.digest == digest)
        #expect(Self.dataset.summary(of: Self.range, parallelism: 4) == summary)
    }

    @Test func summariesOfDisjointRangesAddUpAndIgnoreOrder() {
        let dataset = Self.dataset
        let whole = dataset.summary(of: Self.range)
        #expect(dataset.summary(of: 10_000..<80_000) + dataset.summary(of: 80_000..<150_000) == whole)
        // The digest does not depend on the order rows are seen in.
        var shuffled = RangeSummary()
        var generator = SystemRandomNumberGenerator()
        for row in Self.rows.shuffled(using: &generator) { shuffled.add(row) }
        #expect(shuffled == whole)
        // Out-of-dataset parts of a range are ignored.
        #expect(dataset.summary(of: -50..<10) == dataset.summary(of: 0..<10))
        #expect(dataset.summary(of: 199_990..<500_000).count == 10)
        #expect(dataset.summary(of: 300_000..<400_000) == RangeSummary())
    }

    @Test func bucketSummariesPartitionTheRangeByTime() {
        let buckets = Self.dataset.bucketSummaries(of: Self.range, bucketMillis: 3_600_000)
        #expect(buckets.values.reduce(RangeSummary(), +) == Self.dataset.summary(of: Self.range))
        var expected: [Int64: RangeSummary] = [:]
        for row in Self.rows { expected[row.timestampMillis / 3_600_000 * 3_600_000, default: RangeSummary()].add(row) }
        #expect(buckets == expected)
        let minutes = Self.dataset.bucketSummaries(of: Self.range, bucketMillis: 60_000)
        #expect(minutes.count > buckets.count)
        #expect(minutes.values.map(\.count).reduce(0, +) == 140_000)
    }

    @Test func perUserAndPerMerchantTotalsMatchTheRows() {
        var users: [Int64: (Int64, Int64, Int64)] = [:]
        var merchants: [Int64: (Int64, Int64, Int64)] = [:]
        for row in Self.rows {
            let fraud: Int64 = row.isFraud ? 1 : 0
            users[row.userID, default: (0, 0, 0)].0 += 1
            users[row.userID, default: (0, 0, 0)].1 += row.amountCents
            users[row.userID, default: (0, 0, 0)].2 += fraud
            merchants[row.merchantID, default: (0, 0, 0)].0 += 1
            merchants[row.merchantID, default: (0, 0, 0)].1 += row.amountCents
            merchants[row.merchantID, default: (0, 0, 0)].2 += fraud
        }
        let userTotals = Self.dataset.userTotals(of: Self.range)
        #expect(userTotals.count == users.count)
        #expect(userTotals.allSatisfy { users[$0.key]! == ($0.value.count, $0.value.amountCents, $0.value.fraudCount) })
        let merchantTotals = Self.dataset.merchantTotals(of: Self.range)
        #expect(merchantTotals.count == merchants.count)
        #expect(
            merchantTotals.allSatisfy { merchants[$0.key]! == ($0.value.count, $0.value.amountCents, $0.value.fraudCount) })
    }

    @Test func ringSummariesAreTheRingsTransactions() {
        let summaries = Self.dataset.ringSummaries(of: 0..<Self.dataset.rows)
        #expect(summaries.count == Self.dataset.rings.count)
        for ring in Self.dataset.rings.prefix(40) {
            let range = Self.dataset.indexRange(fromMillis: ring.windowStartMillis, toMillis: ring.windowEndMillis)
            var expected = RangeSummary()
            for index in range {
                let row = Self.dataset.transaction(index)
                if row.ringID == ring.id { expected.add(row) }
            }
            #expect(summaries[Int(ring.id)] == expected, "ring \(ring.id)")
        }
    }

    @Test func aChangeInAnyOneFieldChangesTheDigest() {
        let row = Self.dataset.transaction(5)
        let changes: [(inout Transaction) -> Void] = [
            { $0.index += 1 }, { $0.userID += 1 }, { $0.merchantID += 1 }, { $0.deviceID += 1 }, { $0.locationID += 1 },
            { $0.amountCents += 1 }, { $0.timestampMillis += 1 }, { $0.currency &+= 1 }, { $0.channel &+= 1 },
            { $0.declined.toggle() }, { $0.isFraud.toggle() }, { $0.fraudScoreMillis += 1 }, { $0.ringID += 1 },
        ]
        var digests: Set<UInt64> = [row.digest]
        for change in changes {
            var changed = row
            change(&changed)
            #expect(changed.digest != row.digest)
            digests.insert(changed.digest)
        }
        #expect(digests.count == changes.count + 1)
    }

    @Test func timeRangesAnswerThroughIndexRanges() {
        let dataset = Self.dataset
        let from = dataset.spec.startMillis + 20 * 86_400_000
        let to = from + 86_400_000
        let range = dataset.indexRange(fromMillis: from, toMillis: to)
        let byTime = dataset.bucketSummaries(of: 0..<dataset.rows, bucketMillis: 86_400_000)[from]
        #expect(byTime == dataset.summary(of: range))
    }
}
