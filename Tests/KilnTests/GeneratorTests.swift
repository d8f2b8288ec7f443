import Foundation
import KilnScenario
import Testing

@testable import KilnData

/// Runs the `kiln` built next to this test binary (whatever the scratch path), capturing stdout and stderr apart.
enum GeneratorCLI {
    struct Outcome {
        var status: Int32
        var stdout: Data
        var stderr: String
        var text: String { String(decoding: stdout, as: UTF8.self) }
    }

    static let binary: URL = {
        let sibling = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("kiln")
        if FileManager.default.isExecutableFile(atPath: sibling.path) { return sibling }
        return TestStack.paths.home.appendingPathComponent(".build/debug/kiln")
    }()

    static func run(_ arguments: [String]) throws -> Outcome {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let output = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-out"))
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-err"))
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: output)
            try? FileManager.default.removeItem(at: errors)
        }
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        process.waitUntilExit()
        return Outcome(
            status: process.terminationStatus, stdout: try Data(contentsOf: output),
            stderr: try String(contentsOf: errors, encoding: .utf8))
    }
}

@Suite("Generator: determinism")
struct GeneratorDeterminismTests {
    @Test func aRowIsAPureFunctionOfSpecSeedRowsAndIndex() throws {
        let a = try Dataset(spec: Fixtures.spec, seed: 7, rows: 100_000)
        let b = try Dataset(spec: Fixtures.spec, seed: 7, rows: 100_000)
        let forward = (0..<5_000).map { a.transaction(Int64($0)) }
        // Any order, any instance: the same rows.
        let backward = (0..<5_000).reversed().map { b.transaction(Int64($0)) }.reversed()
        #expect(forward == Array(backward))
        #expect(a.transaction(77_777) == b.transaction(77_777))
        // Bulk generation is the same function.
        let buffer = UnsafeMutableBufferPointer<Transaction>.allocate(capacity: 5_000)
        defer { buffer.deallocate() }
        a.generate(0..<5_000, into: buffer)
        #expect(Array(buffer) == forward)
    }

    @Test func anyShardSplitGivesTheSameRows() throws {
        let dataset = try Dataset(spec: Fixtures.spec, seed: 11, rows: 300_000)
        let whole = (0..<dataset.rows).map { dataset.transaction($0).digest }
        for shards in [2, 3, 7] {
            var parts: [UInt64] = []
            // Each shard on its own dataset instance and thread, as separate processes would.
            let results = UnsafeMutableBufferPointer<[UInt64]>.allocate(capacity: shards)
            results.initialize(repeating: [])
            nonisolated(unsafe) let slots = results
            DispatchQueue.concurrentPerform(iterations: shards) { shard in
                let instance = try! Dataset(spec: Fixtures.spec, seed: 11, rows: 300_000)
                let lower = 300_000 * Int64(shard) / Int64(shards)
                let upper = 300_000 * Int64(shard + 1) / Int64(shards)
                slots[shard] = (lower..<upper).map { instance.transaction($0).digest }
            }
            for shard in 0..<shards { parts += results[shard] }
            results.deinitialize()
            results.deallocate()
            #expect(parts == whole, "\(shards) shards")
        }
    }

    @Test func differentSeedsGiveDifferentRowsAndRings() throws {
        let a = try Dataset(spec: Fixtures.spec, seed: 1, rows: 100_000)
        let b = try Dataset(spec: Fixtures.spec, seed: 2, rows: 100_000)
        var sameUser = 0
        var sameAmount = 0
        for index in Int64(0)..<10_000 {
            let left = a.transaction(index)
            let right = b.transaction(index)
            #expect(left.digest != right.digest)
            if left.userID == right.userID { sameUser += 1 }
            if left.amountCents == right.amountCents { sameAmount += 1 }
        }
        // Popular users and common amounts coincide by chance, but rarely.
        #expect(sameUser < 500, "\(sameUser)")
        #expect(sameAmount < 300, "\(sameAmount)")
        #expect(a.rings.map(\.members) != b.rings.map(\.members))
        #expect(a.rings.map(\.windowStartMillis) != b.rings.map(\.windowStartMillis))
    }

    @Test func entitiesArePureFunctionsOfTheirID() throws {
        let a = try Dataset(spec: Fixtures.spec, seed: 5, rows: 1_000)
        let b = try Dataset(spec: Fixtures.spec, seed: 5, rows: 9_000)
        for id in Int64(1)...500 {
            #expect(a.user(id) == b.user(id))
            #expect(a.merchant(id) == b.merchant(id))
            #expect(a.location(id) == b.location(id))
            #expect(a.devices(ofUser: id) == b.devices(ofUser: id))
        }
        let location = a.location(17)
        #expect((35_000_000...60_000_000).contains(location.latitudeMicros))
        #expect((-10_000_000...30_000_000).contains(location.longitudeMicros))
        #expect(a.user(3).signupMillis < Fixtures.spec.startMillis)
    }

    @Test func rowsUseTheirUsersDevicesAndTheMerchantsCategory() {
        let dataset = Fixtures.million
        for row in Fixtures.millionRows.prefix(20_000) where row.ringID < 0 {
            #expect(dataset.devices(ofUser: row.userID).contains(row.deviceID))
            #expect(Int(row.currency) == Int(dataset.merchant(row.merchantID).currency))
        }
    }
}

@Suite("Generator: arrival")
struct GeneratorArrivalTests {
    @Test func timestampsAreMonotoneInsideTheSpan() {
        let dataset = Fixtures.million
        let rows = Fixtures.millionRows
        #expect(zip(rows, rows.dropFirst()).allSatisfy { $0.timestampMillis <= $1.timestampMillis })
        #expect(rows.first!.timestampMillis == dataset.spec.startMillis)
        #expect(rows.last!.timestampMillis < dataset.spec.startMillis + Int64(dataset.spec.days) * 86_400_000)
        #expect(rows.allSatisfy { dataset.timestamp(of: $0.index) == $0.timestampMillis })
    }

    @Test func timeRangesMapExactlyToIndexRanges() {
        let dataset = Fixtures.million
        let rows = Fixtures.millionRows
        let start = dataset.spec.startMillis
        let probes: [(Int64, Int64)] = [
            (start - 5_000, start + 1), (start + 10 * 86_400_000, start + 11 * 86_400_000 + 1_234),
            (start + 3_600_000 - 1, start + 3_600_000 + 1), (start + 40 * 86_400_000 + 77, start + 40 * 86_400_000 + 77),
            (start + 89 * 86_400_000, start + 91 * 86_400_000), (rows[123_456].timestampMillis, rows[654_321].timestampMillis),
        ]
        for (from, to) in probes {
            let range = dataset.indexRange(fromMillis: from, toMillis: to)
            let expected = rows.filter { $0.timestampMillis >= from && $0.timestampMillis < to }.map(\.index)
            #expect(Array(range) == expected, "\(from)..<\(to)")
        }
    }

    @Test func hourlyCountsFollowTheDiurnalAndWeeklyWeights() {
        let dataset = Fixtures.million
        let spec = dataset.spec
        var counts = Array(repeating: 0, count: spec.days * 24)
        for row in Fixtures.millionRows { counts[Int((row.timestampMillis - spec.startMillis) / 3_600_000)] += 1 }
        var weights: [Double] = []
        for hour in 0..<(spec.days * 24) {
            // 2026-01-01 is a Thursday (weekday 3, Monday = 0).
            weights.append(spec.diurnal[hour % 24] * spec.weekly[(hour / 24 + 3) % 7])
        }
        let total = weights.reduce(0, +)
        for hour in counts.indices {
            // Largest-remainder rounding: each hour within one row of its exact share.
            #expect(abs(Double(counts[hour]) - weights[hour] / total * 1_000_000) < 1, "hour \(hour)")
        }
    }
}

@Suite("Generator: distributions on 1M rows")
struct GeneratorDistributionTests {
    @Test func amountsFollowEachCategorysLogNormal() {
        let dataset = Fixtures.million
        var logs: [[Double]] = Array(repeating: [], count: dataset.spec.categories.count)
        var amounts: [[Double]] = Array(repeating: [], count: dataset.spec.categories.count)
        for row in Fixtures.millionRows {
            let category = dataset.category(ofMerchant: row.merchantID)
            logs[category].append(log(Double(row.amountCents)))
            amounts[category].append(Double(row.amountCents))
        }
        for (index, category) in dataset.spec.categories.enumerated() {
            let values = logs[index].sorted()
            #expect(values.count > 20_000, "\(category.name)")
            func quantile(_ p: Double) -> Double { values[Int(p * Double(values.count))] }
            // Tolerances (all categories hold 40K+ rows): the median and the 10 % / 90 % quantiles of ln(amount)
            // within 0.02 (about 2 % of the amount) of median·exp(σ·z_p); the log standard deviation within 3 %;
            // the mean amount within 4 % of median·exp(σ²/2).
            let z = 1.2815515655446004
            let lnMedian = log(category.medianCents)
            #expect(abs(quantile(0.5) - lnMedian) < 0.02, "\(category.name) median")
            #expect(abs(quantile(0.1) - (lnMedian - z * category.sigma)) < 0.02, "\(category.name) q10")
            #expect(abs(quantile(0.9) - (lnMedian + z * category.sigma)) < 0.02, "\(category.name) q90")
            let mean = values.reduce(0, +) / Double(values.count)
            let deviation = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
            #expect(abs(deviation / category.sigma - 1) < 0.03, "\(category.name) sigma \(deviation)")
            let amountMean = amounts[index].reduce(0, +) / Double(amounts[index].count)
            #expect(abs(amountMean / category.meanCents - 1) < 0.04, "\(category.name) mean \(amountMean)")
        }
    }

    @Test func merchantCategoriesFollowTheirWeights() {
        let dataset = Fixtures.million
        let spec = dataset.spec
        var counts = Array(repeating: 0, count: spec.categories.count)
        for id in 1...Int64(spec.merchants) { counts[Int(dataset.merchant(id).category)] += 1 }
        let total = spec.categories.map(\.weight).reduce(0, +)
        for (index, category) in spec.categories.enumerated() {
            let expected = category.weight / total * Double(spec.merchants)
            // 5 standard deviations of a binomial count.
            #expect(abs(Double(counts[index]) - expected) < 5 * expected.squareRoot(), "\(category.name)")
        }
    }

    /// Least-squares slope of log(frequency) over log(rank) for ranks 1...200 (ranked by observed count) ≈ -s.
    static func zipfExponent(_ counts: [Int64: Int]) -> Double {
        let ranked = counts.values.sorted(by: >)
        let points = (1...200).map { (log(Double($0)), log(Double(ranked[$0 - 1]))) }
        let mx = points.map(\.0).reduce(0, +) / Double(points.count)
        let my = points.map(\.1).reduce(0, +) / Double(points.count)
        return -points.map { ($0.0 - mx) * ($0.1 - my) }.reduce(0, +)
            / points.map { ($0.0 - mx) * ($0.0 - mx) }.reduce(0, +)
    }

    @Test func userAndMerchantPopularityHaveTheSpecsZipfExponents() {
        var users: [Int64: Int] = [:]
        var merchants: [Int64: Int] = [:]
        for row in Fixtures.millionRows where row.ringID < 0 {
            users[row.userID, default: 0] += 1
            merchants[row.merchantID, default: 0] += 1
        }
        let spec = Fixtures.spec
        // Tolerance 0.05 on the exponent.
        #expect(abs(Self.zipfExponent(users) - spec.usersZipf) < 0.05, "users \(Self.zipfExponent(users))")
        #expect(abs(Self.zipfExponent(merchants) - spec.merchantsZipf) < 0.05, "merchants \(Self.zipfExponent(merchants))")
    }

    @Test(arguments: [(1_000_000, 1.05), (50_000, 1.2), (1_000, 0.7), (2_000_000_000, 2.5)])
    func theZipfSamplerMatchesExactRankProbabilities(ranks: Int, exponent: Double) throws {
        let arena = TableArena()
        let sampler = ZipfSampler(count: ranks, exponent: exponent, arena: arena)
        let keys = StreamKeys(seed: 99)
        let samples = 1_000_000
        var counts = Array(repeating: 0, count: 301)
        var beyond = 0
        for index in 0..<samples {
            let rank = sampler.sample(
                Draws(keys.pointer, UInt64(index)), stream: RandomStream.user.rawValue,
                position: RandomStream.userPosition.rawValue, retry: RandomStream.userRetry.rawValue)
            #expect(rank >= 1 && rank <= ranks)
            if rank <= 300 { counts[rank] += 1 } else { beyond += 1 }
        }
        // Exact probabilities: k^-s / H(n, s), H summed directly up to 10^6 and by the integral beyond.
        var harmonic = 0.0
        for k in 1...min(ranks, 1_000_000) { harmonic += pow(Double(k), -exponent) }
        if ranks > 1_000_000 {
            harmonic += (pow(Double(ranks) + 0.5, 1 - exponent) - pow(1_000_000.5, 1 - exponent)) / (1 - exponent)
        }
        // Ranks 1...300 cover single-rank segments (< 128) and the first multi-rank ones: every rank within 5
        // standard deviations of its binomial count, and the tail beyond 300 too.
        var tailProbability = 1.0
        for k in 1...min(300, ranks) {
            let p = pow(Double(k), -exponent) / harmonic
            tailProbability -= p
            let expected = p * Double(samples)
            let sd = (expected * (1 - p)).squareRoot()
            #expect(abs(Double(counts[k]) - expected) < max(5 * sd, 3), "rank \(k): \(counts[k]) vs \(expected)")
        }
        let expectedBeyond = max(0, tailProbability) * Double(samples)
        #expect(abs(Double(beyond) - expectedBeyond) < max(5 * expectedBeyond.squareRoot(), 3))
    }

    @Test func fraudSharesAndRingsMatchTheSpec() {
        let dataset = Fixtures.million
        let spec = dataset.spec
        var ringRows = Array(repeating: 0, count: dataset.rings.count)
        var background = 0
        var declined = 0
        var channels = Array(repeating: 0, count: spec.channels.count)
        for row in Fixtures.millionRows {
            channels[Int(row.channel)] += 1
            if row.declined { declined += 1 }
            if row.ringID >= 0 {
                ringRows[Int(row.ringID)] += 1
                let ring = dataset.rings[Int(row.ringID)]
                #expect(row.isFraud && row.fraudScoreMillis >= 600)
                #expect(row.timestampMillis >= ring.windowStartMillis && row.timestampMillis < ring.windowEndMillis)
                #expect(ring.devices.contains(row.deviceID) && ring.merchants.contains(row.merchantID))
                #expect(ring.members.contains(row.userID))
            } else if row.isFraud {
                background += 1
                #expect(row.fraudScoreMillis >= 600)
            } else {
                #expect(row.fraudScoreMillis < 400)
            }
        }
        let rows = 1_000_000.0
        // Counts are Poisson-like: tolerances are 5 standard deviations.
        func within(_ actual: Int, _ expected: Double) -> Bool { abs(Double(actual) - expected) < 5 * expected.squareRoot() + 1 }
        #expect(within(background, rows * spec.backgroundFraudShare * (1 - spec.rings.volumeShare)), "background \(background)")
        #expect(within(declined, rows * spec.declineShare), "declined \(declined)")
        let channelTotal = spec.channels.map(\.weight).reduce(0, +)
        for (index, channel) in spec.channels.enumerated() {
            let p = channel.weight / channelTotal
            #expect(abs(Double(channels[index]) - rows * p) < 5 * (rows * p * (1 - p)).squareRoot(), "\(channel.name)")
        }
        // Every ring gets its target (share split by size) — planting is exact in expectation per ring.
        let target = rows * spec.rings.volumeShare
        #expect(abs(dataset.rings.map(\.expectedTransactions).reduce(0, +) - target) < 1e-6 * target)
        #expect(within(ringRows.reduce(0, +), target), "ring rows \(ringRows.reduce(0, +)) vs \(target)")
        for ring in dataset.rings {
            #expect(within(ringRows[Int(ring.id)], ring.expectedTransactions), "ring \(ring.id)")
        }
        // Sizes uniform in min...max: all in range, mean within 5 standard errors, a user in at most one ring.
        let sizes = dataset.rings.map { Double($0.members.count) }
        let (low, high) = (Double(spec.rings.minimumSize), Double(spec.rings.maximumSize))
        #expect(sizes.allSatisfy { (low...high).contains($0) })
        let standardError = ((high - low + 1) * (high - low + 1) - 1).squareRoot() / 12.0.squareRoot()
            / Double(sizes.count).squareRoot()
        #expect(abs(sizes.reduce(0, +) / Double(sizes.count) - (low + high) / 2) < 5 * standardError)
        let members = dataset.rings.flatMap(\.members)
        #expect(Set(members).count == members.count)
        #expect(members.allSatisfy { (1...Int64(spec.users)).contains($0) })
    }

    @Test func ringMembershipIsTheInverseOfPlanting() {
        let dataset = Fixtures.million
        for ring in dataset.rings {
            for member in ring.members {
                #expect(dataset.ring(ofUser: member) == Int(ring.id))
                #expect(dataset.user(member).ringID == ring.id)
            }
        }
        let members = Set(dataset.rings.flatMap(\.members))
        let outsiders = (Int64(1)...20_000).filter { !members.contains($0) }
        #expect(outsiders.allSatisfy { dataset.ring(ofUser: $0) == nil })
        #expect(dataset.ring(ofUser: 0) == nil && dataset.ring(ofUser: Int64(dataset.spec.users) + 1) == nil)
    }

    @Test func velocityRingsMakeTheirTransactionsPerMemberHour() throws {
        let spec = try Fixtures.spec(replacing: [("share: 0.002 ", "velocity: 0.5 ")])
        let dataset = try Dataset(spec: spec, seed: 3, rows: 2_000_000)
        for ring in dataset.rings {
            #expect(abs(ring.targetTransactions - 0.5 * Double(ring.members.count) * 6) < 1e-9)
        }
        let summaries = dataset.ringSummaries(of: 0..<dataset.rows)
        let total = summaries.map(\.count).reduce(0, +)
        let expected = dataset.rings.map(\.expectedTransactions).reduce(0, +)
        #expect(abs(Double(total) - expected) < 5 * expected.squareRoot(), "\(total) vs \(expected)")
    }
}

extension DatasetSpec.Rings {
    /// The share of all rows made by rings (for the `share` form).
    var volumeShare: Double {
        if case .share(let share) = volume { return share }
        return 0
    }
}

@Suite("kiln generate")
struct GenerateCommandTests {
    @Test func shardsAndRangesOfTheCommandLineConcatenateToTheWhole() throws {
        let whole = try GeneratorCLI.run(["generate", "--rows", "20K", "--format", "csv"])
        #expect(whole.status == 0, "\(whole.stderr)")
        var parts = Data()
        for i in 1...3 {
            let shard = try GeneratorCLI.run(["generate", "--rows", "20K", "--format", "csv", "--shard", "\(i)/3"])
            parts += shard.stdout
        }
        #expect(parts == whole.stdout)
        let lines = whole.text.split(separator: "\n")
        #expect(lines.count == 20_000)
        let ranged = try GeneratorCLI.run(["generate", "--rows", "20K", "--format", "csv", "--range", "5K..6K"])
        #expect(ranged.text.split(separator: "\n") == Array(lines[5_000..<6_000]))
        let tail = try GeneratorCLI.run(["generate", "--rows", "20K", "--range", "19990..", "--shard", "2/2"])
        #expect(tail.text.split(separator: "\n") == Array(lines[19_995..<20_000]))
    }

    @Test func copyBinaryShardsCarryOneHeaderEach() throws {
        let shard = try GeneratorCLI.run(["generate", "--rows", "1000", "--format", "copy-binary", "--shard", "2/2"])
        #expect(shard.status == 0)
        let rows = try CopyBinaryReader.rows(shard.stdout)
        #expect(rows.count == 500)
        #expect(rows.first?.txnID == 501)  // row 500
    }

    @Test func describePrintsEntitiesTotalsAndRingsFromTheOracle() throws {
        let outcome = try GeneratorCLI.run(["generate", "--rows", "200K", "--seed", "4", "--describe"])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        let dataset = try Dataset(spec: Fixtures.spec, seed: 4, rows: 200_000)
        let summary = dataset.summary(of: 0..<200_000)
        let text = outcome.text
        #expect(text.contains("1000000 users, 50000 merchants, 1200000 devices, 5000 locations"))
        #expect(text.contains("\(summary.count) rows, amount \(summary.amountCents / 100)."))
        #expect(text.contains(String(format: "digest %016llx", summary.digest)))
        #expect(text.contains("\(summary.fraudCount) fraudulent (\(summary.ringCount) in rings)"))
        #expect(text.contains("rings       200 with \(dataset.rings.map(\.members.count).reduce(0, +)) members"))
    }

    @Test(arguments: [
        (["--shard", "3/2"], "--shard"), (["--shard", "0/2"], "--shard"), (["--shard", "1/0"], "--shard"),
        (["--shard", "a"], "--shard"), (["--range", "10..5"], "--range"), (["--range", "5"], "--range"),
        (["--range", "1..2..3"], "--range"), (["--range", "0..30K"], "beyond"), (["--rows", "-5"], "--rows"),
        (["--rows", "2B"], "max_rows"), (["--rows", "ten"], "--rows"), (["--format", "xml"], "--format"),
        (["--out", "/nonexistent-dir/x.csv"], "cannot write /nonexistent-dir/x.csv"),
        (["--out", "/tmp"], "cannot write /tmp"), (["--spec", "/nonexistent.yaml"], "/nonexistent.yaml"),
    ])
    func badInputIsAUsageError(arguments: [String], message: String) throws {
        let outcome = try GeneratorCLI.run(["generate", "--rows", "20K"] + arguments)
        #expect(outcome.status == 64, "\(arguments): \(outcome.stderr)")
        #expect(outcome.stderr.contains(message), "\(arguments): \(outcome.stderr)")
        #expect(outcome.stdout.isEmpty)
    }

    @Test func aSpecErrorNamesFileLineAndField() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-spec"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("bad.yaml")
        try Fixtures.specText.replacingOccurrences(of: "users: 1M", with: "users: -3").write(
            to: file, atomically: true, encoding: .utf8)
        let outcome = try GeneratorCLI.run(["generate", "--spec", file.path, "--rows", "10"])
        #expect(outcome.status == 64)
        #expect(outcome.stderr.contains("\(file.path):8:10: entities.users:"), "\(outcome.stderr)")
    }

    @Test func writingToADeviceLeavesTheDeviceInPlace() throws {
        let outcome = try GeneratorCLI.run(["generate", "--rows", "1000", "--format", "csv", "--out", "/dev/null"])
        #expect(outcome.status == 0)
        let type = try FileManager.default.attributesOfItem(atPath: "/dev/null")[.type] as? FileAttributeType
        #expect(type == .typeCharacterSpecial, "/dev/null was replaced by \(String(describing: type))")
    }

    @Test func anExistingFileIsTruncatedNotAppended() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-out") + ".csv")
        defer { try? FileManager.default.removeItem(at: file) }
        try String(repeating: "old\n", count: 100_000).write(to: file, atomically: false, encoding: .utf8)
        let outcome = try GeneratorCLI.run(["generate", "--rows", "10", "--format", "csv", "--out", file.path])
        #expect(outcome.status == 0)
        let text = try String(contentsOf: file, encoding: .utf8)
        #expect(text.split(separator: "\n").count == 10)
        #expect(!text.contains("old"))
    }

    @Test func noProgressLineWhenStderrIsNotATerminal() throws {
        let outcome = try GeneratorCLI.run(["generate", "--rows", "300K", "--format", "tsv", "--out", "/dev/null"])
        #expect(outcome.status == 0)
        #expect(outcome.stderr.isEmpty)
    }
}
