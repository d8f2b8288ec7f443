import Foundation
import KilnData
import KilnScenario
import Testing

enum Fixtures {
    static let specURL = TestStack.paths.home.appendingPathComponent("Generators/fraud-platform.yaml")
    static let spec: DatasetSpec = try! DatasetSpec.load(contentsOf: specURL)
    static let million: Dataset = try! Dataset(spec: spec, seed: 42, rows: 1_000_000)
}

@Suite("Generator: determinism")
struct GeneratorDeterminismTests {
    @Test func aRowIsAPureFunctionOfSpecSeedAndIndex() throws {
        let a = try Dataset(spec: Fixtures.spec, seed: 7, rows: 100_000)
        let b = try Dataset(spec: Fixtures.spec, seed: 7, rows: 100_000)
        let forward = (0..<5_000).map { a.transaction(Int64($0)) }
        // Any order, any instance, any split: the same rows.
        let backward = (0..<5_000).reversed().map { b.transaction(Int64($0)) }.reversed()
        #expect(forward == Array(backward))
        #expect(a.transaction(77_777) == b.transaction(77_777))
    }

    @Test func differentSeedsGiveDifferentRows() throws {
        let a = try Dataset(spec: Fixtures.spec, seed: 1, rows: 100_000)
        let b = try Dataset(spec: Fixtures.spec, seed: 2, rows: 100_000)
        let differing = (0..<10_000).filter { a.transaction(Int64($0)).digest != b.transaction(Int64($0)).digest }.count
        #expect(differing > 9_990)
        #expect(a.rings.map(\.members) != b.rings.map(\.members))
    }

    @Test func timestampsAreMonotoneAndTimeRangesMapToIndexRanges() {
        let dataset = Fixtures.million
        var previous = Int64.min
        for index in stride(from: Int64(0), to: dataset.rows, by: 97) {
            let time = dataset.timestamp(of: index)
            #expect(time >= previous)
            previous = time
        }
        let from = dataset.spec.startMillis + 10 * 86_400_000
        let to = from + 86_400_000
        let range = dataset.indexRange(fromMillis: from, toMillis: to)
        #expect(!range.isEmpty)
        #expect(dataset.timestamp(of: range.lowerBound) >= from)
        #expect(dataset.timestamp(of: range.lowerBound - 1) < from)
        #expect(dataset.timestamp(of: range.upperBound - 1) < to)
        #expect(dataset.timestamp(of: range.upperBound) >= to)
        let lastMillis = dataset.spec.startMillis + Int64(dataset.spec.days) * 86_400_000
        #expect(dataset.timestamp(of: dataset.rows - 1) < lastMillis)
    }

    @Test func shardsOfTheCommandLineConcatenateToTheWhole() throws {
        let whole = try CommandLineTests.kiln(["generate", "--rows", "20K", "--format", "csv"])
        #expect(whole.status == 0)
        var parts = ""
        for i in 1...3 {
            let shard = try CommandLineTests.kiln(["generate", "--rows", "20K", "--format", "csv", "--shard", "\(i)/3"])
            parts += shard.output
        }
        #expect(parts == whole.output)
        #expect(whole.output.split(separator: "\n").count == 20_000)
        let ranged = try CommandLineTests.kiln(["generate", "--rows", "20K", "--format", "csv", "--range", "5K..6K"])
        let wholeLines = whole.output.split(separator: "\n").map(String.init)
        let rangedLines = ranged.output.split(separator: "\n").map(String.init)
        #expect(rangedLines == Array(wholeLines[5_000..<6_000]))
    }
}

@Suite("kiln generate output")
struct GenerateOutputTests {
    @Test func writingToADeviceLeavesTheDeviceInPlace() throws {
        let outcome = try CommandLineTests.kiln(["generate", "--rows", "1000", "--format", "csv", "--out", "/dev/null"])
        #expect(outcome.status == 0)
        let type = try FileManager.default.attributesOfItem(atPath: "/dev/null")[.type] as? FileAttributeType
        #expect(type == .typeCharacterSpecial, "/dev/null was replaced by \(String(describing: type))")
    }

    @Test func anExistingFileIsTruncatedNotAppended() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-out") + ".csv")
        defer { try? FileManager.default.removeItem(at: file) }
        try String(repeating: "old\n", count: 100_000).write(to: file, atomically: false, encoding: .utf8)
        let outcome = try CommandLineTests.kiln(["generate", "--rows", "10", "--format", "csv", "--out", file.path])
        #expect(outcome.status == 0)
        let text = try String(contentsOf: file, encoding: .utf8)
        #expect(text.split(separator: "\n").count == 10)
        #expect(!text.contains("old"))
    }
}

@Suite("Generator: distributions on 1M rows")
struct GeneratorDistributionTests {
    @Test func amountsFollowEachCategorysLogNormal() {
        let dataset = Fixtures.million
        var logs: [[Double]] = Array(repeating: [], count: dataset.spec.categories.count)
        for index in stride(from: Int64(0), to: dataset.rows, by: 1) {
            let row = dataset.transaction(index)
            guard row.ringID < 0 else { continue }
            logs[dataset.category(ofMerchant: row.merchantID)].append(log(Double(row.amountCents)))
        }
        for (category, values) in zip(dataset.spec.categories, logs) {
            #expect(values.count > 10_000, "\(category.name)")
            let sorted = values.sorted()
            let median = exp(sorted[sorted.count / 2])
            let mean = values.reduce(0, +) / Double(values.count)
            let deviation = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
            // Tolerances: median within 2 %, log-standard deviation within 3 % (rounding to cents adds a little).
            #expect(abs(median / category.medianCents - 1) < 0.02, "\(category.name) median \(median)")
            #expect(abs(deviation / category.sigma - 1) < 0.03, "\(category.name) sigma \(deviation)")
        }
    }

    @Test func merchantPopularityHasTheSpecsZipfExponent() {
        let dataset = Fixtures.million
        var counts: [Int64: Int] = [:]
        for index in 0..<dataset.rows {
            let row = dataset.transaction(index)
            if row.ringID < 0 { counts[row.merchantID, default: 0] += 1 }
        }
        let ranked = counts.values.sorted(by: >)
        // Least-squares slope of log(frequency) over log(rank) for ranks 1...200: ≈ -exponent.
        let points = (1...200).map { (log(Double($0)), log(Double(ranked[$0 - 1]))) }
        let mx = points.map(\.0).reduce(0, +) / Double(points.count)
        let my = points.map(\.1).reduce(0, +) / Double(points.count)
        let slope = points.map { ($0.0 - mx) * ($0.1 - my) }.reduce(0, +) / points.map { ($0.0 - mx) * ($0.0 - mx) }.reduce(0, +)
        #expect(abs(-slope - dataset.spec.merchantsZipf) < 0.08, "estimated exponent \(-slope)")
    }

    @Test func fraudSharesAndRingsMatchTheSpec() {
        let dataset = Fixtures.million
        let spec = dataset.spec
        var ringRows = 0
        var background = 0
        for index in 0..<dataset.rows {
            let row = dataset.transaction(index)
            if row.ringID >= 0 {
                ringRows += 1
                let ring = dataset.rings[Int(row.ringID)]
                #expect(row.isFraud)
                #expect(row.timestampMillis >= ring.windowStartMillis && row.timestampMillis < ring.windowEndMillis)
                #expect(ring.devices.contains(row.deviceID) && ring.merchants.contains(row.merchantID))
                #expect(ring.members.contains(row.userID))
            } else if row.isFraud {
                background += 1
            }
        }
        let rows = Double(dataset.rows)
        // Ring traffic follows the diurnal pattern inside each window, so its share is looser than the background's.
        #expect(abs(Double(ringRows) / rows / spec.rings.share - 1) < 0.25, "ring share \(Double(ringRows) / rows)")
        #expect(abs(Double(background) / rows / spec.backgroundFraudShare - 1) < 0.15, "background \(background)")
        #expect(dataset.rings.count == spec.rings.count)
        #expect(dataset.rings.allSatisfy { (spec.rings.minimumSize...spec.rings.maximumSize).contains($0.members.count) })
        let members = dataset.rings.flatMap(\.members)
        #expect(Set(members).count == members.count, "a user is in at most one ring")
        #expect(members.allSatisfy { (1...Int64(spec.users)).contains($0) })
        #expect(dataset.ring(ofUser: members[0]) == 0)
    }
}

@Suite("Oracle")
struct OracleTests {
    @Test func summariesEqualTheRowsActuallyGeneratedAndAddUpAcrossSplits() throws {
        let dataset = try Dataset(spec: Fixtures.spec, seed: 9, rows: 200_000)
        var expected = RangeSummary()
        var users: [Int64: Int64] = [:]
        for index in 10_000..<150_000 {
            let row = dataset.transaction(Int64(index))
            expected.count += 1
            expected.amountCents += row.amountCents
            expected.fraudCount += row.isFraud ? 1 : 0
            expected.digest &+= row.digest
            users[row.userID, default: 0] += row.amountCents
        }
        #expect(dataset.summary(of: 10_000..<150_000) == expected)
        #expect(dataset.summary(of: 10_000..<80_000) + dataset.summary(of: 80_000..<150_000) == expected)
        let buckets = dataset.bucketSummaries(of: 10_000..<150_000, bucketMillis: 3_600_000)
        #expect(buckets.values.reduce(RangeSummary(), +) == expected)
        #expect(dataset.userTotals(of: 10_000..<150_000).mapValues(\.amountCents) == users)
        #expect(dataset.merchantTotals(of: 10_000..<150_000).values.reduce(0) { $0 + $1.count } == 140_000)
    }

    @Test func aChangedFieldChangesTheDigest() throws {
        let dataset = try Dataset(spec: Fixtures.spec, seed: 9, rows: 1_000)
        var row = dataset.transaction(5)
        let original = row.digest
        row.amountCents += 1
        #expect(row.digest != original)
    }
}
