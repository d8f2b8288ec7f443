import Foundation
import KilnData
import KilnScenario
import Testing
import KilnTestSupport

@Suite("Dataset spec")
struct GeneratorSpecTests {
    static func error(_ replacements: [(String, String)]) -> SpecError? {
        do {
            _ = try Fixtures.spec(replacing: replacements)
            return nil
        } catch {
            return error as? SpecError
        }
    }

    static func error(replacing old: String, with new: String) -> SpecError? { error([(old, new)]) }

    @Test func theCheckedInSpecLoads() {
        let spec = Fixtures.spec
        #expect(spec.defaultRows == 100_000_000 && spec.maximumRows == 1_000_000_000)
        #expect(spec.users == 1_000_000 && spec.devices == 1_200_000)
        #expect(spec.categories.count == 6 && spec.categories[4].medianCents == 18_000)
        #expect(spec.rings.volume == .share(0.002) && spec.rings.burstMillis == 6 * 3_600_000)
        #expect(spec.currencies.map(\.code) == ["EUR"] && spec.travelShare == 0.1)
    }

    @Test func negativeCountsNameFileLineAndField() {
        let error = Self.error(replacing: "merchants: 50K", with: "merchants: -5")
        #expect(error?.field == "entities.merchants")
        #expect(error?.line == 9)
        #expect(error?.description.hasPrefix("spec.yaml:9:14: entities.merchants:") == true, "\(String(describing: error))")
        #expect(Self.error(replacing: "count: 200", with: "count: -1")?.field == "fraud.rings.count")
        #expect(Self.error(replacing: "size: {min: 4,", with: "size: {min: -4,")?.field == "fraud.rings.size.min")
    }

    @Test func aRingLargerThanTheUsersIsRejected() {
        let error = Self.error(replacing: "users: 1M", with: "users: 50")
        #expect(error?.field == "fraud.rings.size")
        #expect(error?.message.contains("more than entities.users (50)") == true)
        #expect(Self.error(replacing: "size: {min: 4, max: 25}", with: "size: {min: 9, max: 3}")?.field
            == "fraud.rings.size.max")
        #expect(Self.error(replacing: "shared_devices: 3", with: "shared_devices: 2000")?.field
            == "fraud.rings.shared_devices")
    }

    @Test func anUnknownDistributionIsRejected() {
        let error = Self.error(replacing: "distribution: lognormal, median: 28.00", with: "distribution: pareto, median: 28.00")
        #expect(error?.field == "categories[1].amount.distribution")
        #expect(error?.message.contains("unknown distribution 'pareto'") == true)
        #expect(error?.line == 30)
    }

    @Test func rowsBeyondTheLimitAreRejected() {
        #expect(Self.error(replacing: "max_rows: 1B", with: "max_rows: 1M")?.field == "rows")
        #expect(throws: Dataset.RowLimitExceeded.self) { _ = try Dataset(spec: Fixtures.spec, seed: 1, rows: 2_000_000_000) }
        #expect(throws: Dataset.RowLimitExceeded.self) { _ = try Dataset(spec: Fixtures.spec, seed: 1, rows: -1) }
    }

    @Test func unknownKeysAreErrors() {
        let error = Self.error(replacing: "decline_share: 0.02", with: "decline_share: 0.02\ndecline_rate: 0.1")
        #expect(error?.field == "decline_rate")
        #expect(error?.message.contains("unknown field") == true)
        #expect(Self.error(replacing: "burst_hours: 6", with: "burst_hours: 6\n    burst_days: 1")?.field
            == "fraud.rings.burst_days")
    }

    @Test func otherMistakesNameTheirField() {
        let cases: [(String, String, String)] = [
            ("share: 0.002 ", "share: 0.002\n    velocity: 3 ", "fraud.rings.velocity"),
            ("share: 0.002 ", "share: 0.5 ", "fraud.rings.share"),
            ("currency: EUR", "currency: euro", "currency"),
            ("currency: EUR", "currencies: {EUR: 1, usd: 2}", "currencies"),
            ("currency: EUR", "currency: EUR\ncurrencies: {EUR: 1}", "currencies"),
            ("{web: 35,", "{\"we b\": 35,", "channels"),
            ("{web: 35, mobile: 50, pos: 15}", "{web: 0}", "channels"),
            ("start: 2026-01-01T00:00:00Z", "start: 2026-01-01T00:30:00Z", "time.start"),
            ("start: 2026-01-01T00:00:00Z", "start: yesterday", "time.start"),
            ("weekly: [6, 6, 6, 6, 7, 9, 8]", "weekly: [6, 6, 6]", "time.weekly"),
            ("weekly: [6, 6, 6, 6, 7, 9, 8]", "weekly: [0, 0, 0, 0, 0, 0, 0]", "time.weekly"),
            ("median: 320.00, sigma: 0.8", "median: 320.00, sigma: 7", "categories[5].amount.sigma"),
            ("name: grocery,", "name: \"gro cery\",", "categories[0].name"),
            ("devices_per_user: 2", "devices_per_user: 0", "popularity.devices_per_user"),
            ("users_zipf: 1.05", "users_zipf: fast", "popularity.users_zipf"),
            ("max_rows: 1B", "max_rows: 5000B", "max_rows"),
        ]
        for (old, new, field) in cases {
            let error = Self.error(replacing: old, with: new)
            #expect(error?.field == field, "\(new): \(String(describing: error))")
            #expect((error?.line ?? 0) > 0, "\(new)")
        }
    }

    @Test func hugeAmountsThatCouldOverflowExactSumsAreRejected() {
        let error = Self.error(replacing: "median: 320.00, sigma: 0.8", with: "median: 900000.00, sigma: 3")
        #expect(error?.field == "max_rows")
        #expect(error?.message.contains("overflow") == true)
    }

    @Test func optionalSectionsHaveDefaults() throws {
        let spec = try DatasetSpec.parse(
            """
            entities: {users: 100, merchants: 10, devices: 50, locations: 5}
            time: {start: 2026-03-01T00:00:00Z, days: 2}
            popularity: {}
            categories:
              - {name: misc, weight: 1, amount: {distribution: lognormal, median: 10, sigma: 0.5}}
            fraud: {rings: {count: 0, size: {min: 1, max: 1}, burst_hours: 1}}
            """, file: "small.yaml")
        #expect(spec.defaultRows == 1_000_000 && spec.maximumRows == 1_000_000_000)
        #expect(spec.diurnal == Array(repeating: 1, count: 24) && spec.channels.map(\.name) == ["web"])
        let dataset = try Dataset(spec: spec, seed: 1, rows: 10_000)
        #expect(dataset.rings.isEmpty)
        #expect((0..<10_000).allSatisfy { !dataset.transaction($0).isFraud })
        #expect(dataset.summary(of: 0..<10_000).count == 10_000)
        // Uniform weights: 48 hours, 10,000 rows -> 208 or 209 per hour.
        let perHour = dataset.bucketSummaries(of: 0..<10_000, bucketMillis: 3_600_000).values.map(\.count)
        #expect(perHour.count == 48 && perHour.allSatisfy { $0 == 208 || $0 == 209 })
    }

    @Test func merchantsSettleInTheSpecsCurrencies() throws {
        let spec = try Fixtures.spec(replacing: [("currency: EUR", "currencies: {EUR: 80, GBP: 15, USD: 5}")])
        let dataset = try Dataset(spec: spec, seed: 8, rows: 50_000)
        #expect(dataset.currencyCodes == ["EUR", "GBP", "USD"])
        var counts = [0, 0, 0]
        for id in Int64(1)...50_000 { counts[Int(dataset.merchant(id).currency)] += 1 }
        for (count, share) in zip(counts, [0.80, 0.15, 0.05]) {
            let expected = share * 50_000
            #expect(abs(Double(count) - expected) < 5 * expected.squareRoot(), "\(counts)")
        }
        for index in Int64(0)..<2_000 {
            let row = dataset.transaction(index)
            #expect(row.currency == dataset.merchant(row.merchantID).currency)
        }
    }
}
