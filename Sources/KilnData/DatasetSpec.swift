import Foundation
import KilnScenario

/// A dataset described by a spec file in `Generators/` (see Generators/fraud-platform.yaml). Validated on load:
/// every error names the file, line and field.
public struct DatasetSpec: Sendable {
    public struct Category: Sendable {
        public var name: String
        public var weight: Double
        /// Log-normal: `median * exp(sigma * z)` with z standard normal.
        public var medianCents: Double
        public var sigma: Double
    }

    public struct Rings: Sendable {
        public var count: Int
        public var minimumSize: Int
        public var maximumSize: Int
        public var sharedDevices: Int
        public var sharedMerchants: Int
        public var burstSeconds: Int64
        /// Share of all transactions made by ring members.
        public var share: Double
    }

    public var name: String
    public var defaultRows: Int
    public var maximumRows: Int
    public var users: Int
    public var merchants: Int
    public var devices: Int
    public var locations: Int
    /// Unix milliseconds of the first possible transaction.
    public var startMillis: Int64
    public var days: Int
    /// 24 relative weights, UTC hours.
    public var diurnal: [Double]
    /// 7 relative weights, Monday first.
    public var weekly: [Double]
    public var usersZipf: Double
    public var merchantsZipf: Double
    public var devicesPerUser: Int
    public var currency: String
    public var channels: [(name: String, weight: Double)]
    public var declineShare: Double
    public var categories: [Category]
    public var backgroundFraudShare: Double
    public var rings: Rings
    public var source: String

    public static func load(contentsOf url: URL) throws(SpecError) -> DatasetSpec {
        try parse(YAMLFields.document(contentsOf: url))
    }

    public static func parse(_ text: String, file: String) throws(SpecError) -> DatasetSpec {
        try parse(YAMLFields.document(text, file: file))
    }

    static func parse(_ fields: YAMLFields) throws(SpecError) -> DatasetSpec {
        let name = try fields.optionalString("name") ?? "dataset"
        let maximumRows = try fields.count("max_rows", default: 1_000_000_000, range: 1...4_000_000_000_000)
        let defaultRows = try fields.count("rows", default: 1_000_000, range: 1...Int.max)
        if defaultRows > maximumRows {
            throw fields.error("rows", "\(defaultRows) is beyond max_rows (\(maximumRows))")
        }

        let entities = try fields.mapping("entities")
        let users = try entities.count("users", range: 1...2_000_000_000)
        let merchants = try entities.count("merchants", range: 1...2_000_000_000)
        let devices = try entities.count("devices", range: 1...2_000_000_000)
        let locations = try entities.count("locations", range: 1...2_000_000_000)
        try entities.finish()

        let time = try fields.mapping("time")
        let startText = try time.string("start")
        guard let start = ISO8601DateFormatter().date(from: startText) else {
            throw time.error("start", "expected an ISO 8601 UTC time such as 2026-01-01T00:00:00Z, found '\(startText)'")
        }
        let days = try time.int("days", range: 1...3650)
        let diurnal = time.contains("diurnal") ? try time.doubles("diurnal", length: 24) : Array(repeating: 1, count: 24)
        let weekly = time.contains("weekly") ? try time.doubles("weekly", length: 7) : Array(repeating: 1, count: 7)
        for (key, weights) in [("diurnal", diurnal), ("weekly", weekly)] {
            if weights.contains(where: { $0 < 0 }) || !weights.contains(where: { $0 > 0 }) {
                throw time.error(key, "weights must be non-negative with at least one above zero")
            }
        }
        try time.finish()

        let popularity = try fields.mapping("popularity")
        let usersZipf = try popularity.double("users_zipf", default: 1.0, range: 0.01...5)
        let merchantsZipf = try popularity.double("merchants_zipf", default: 1.0, range: 0.01...5)
        let devicesPerUser = try popularity.int("devices_per_user", default: 1, range: 1...100)
        try popularity.finish()

        let currency = try fields.optionalString("currency") ?? "EUR"
        guard currency.count == 3, currency.allSatisfy({ $0.isASCII && $0.isUppercase }) else {
            throw fields.error("currency", "expected an ISO 4217 code such as EUR, found '\(currency)'")
        }
        let channels = fields.contains("channels") ? try fields.weights("channels") : [("web", 1)]
        guard channels.contains(where: { $0.weight > 0 }) else {
            throw fields.error("channels", "needs at least one channel with a weight above zero")
        }
        let declineShare = try fields.double("decline_share", default: 0.02, range: 0...1)

        var categories: [Category] = []
        for category in try fields.mappings("categories") {
            let amount = try category.mapping("amount")
            let distribution = try amount.string("distribution")
            guard distribution == "lognormal" else {
                throw amount.error("distribution", "unknown distribution '\(distribution)' (supported: lognormal)")
            }
            let median = try amount.double("median", range: 0.01...10_000_000)
            let sigma = try amount.double("sigma", range: 0...4)
            try amount.finish()
            categories.append(
                Category(
                    name: try category.string("name"), weight: try category.double("weight", range: 0...1e9),
                    medianCents: median * 100, sigma: sigma))
            try category.finish()
        }
        guard categories.contains(where: { $0.weight > 0 }) else {
            throw fields.error("categories", "needs at least one category with a weight above zero")
        }

        let fraud = try fields.mapping("fraud")
        let backgroundFraudShare = try fraud.double("background_share", default: 0, range: 0...1)
        let ringFields = try fraud.mapping("rings")
        let count = try ringFields.int("count", default: 0, range: 0...1_000_000)
        let size = try ringFields.mapping("size")
        let minimumSize = try size.int("min", range: 1...1_000_000)
        let maximumSize = try size.int("max", range: 1...1_000_000)
        if maximumSize < minimumSize { throw size.error("max", "is below min (\(minimumSize))") }
        try size.finish()
        let burstHours = try ringFields.double("burst_hours", range: 0.01...Double(days * 24))
        let rings = Rings(
            count: count, minimumSize: minimumSize, maximumSize: maximumSize,
            sharedDevices: try ringFields.int("shared_devices", default: 1, range: 1...1000),
            sharedMerchants: try ringFields.int("shared_merchants", default: 1, range: 1...1000),
            burstSeconds: Int64(burstHours * 3600), share: try ringFields.double("share", default: 0, range: 0...1))
        if count * maximumSize > users {
            throw ringFields.error(
                "size", "rings may need up to \(count) × \(maximumSize) = \(count * maximumSize) users, "
                    + "more than entities.users (\(users))")
        }
        if rings.sharedDevices > devices { throw ringFields.error("shared_devices", "exceeds entities.devices") }
        if rings.sharedMerchants > merchants { throw ringFields.error("shared_merchants", "exceeds entities.merchants") }
        // A ring transaction happens only inside its ring's burst window, so the in-window rate must stay <= 1.
        let spanSeconds = Double(days) * 86_400
        if count > 0, rings.share * spanSeconds / Double(rings.burstSeconds) > 1 {
            throw ringFields.error(
                "share", "\(rings.share) cannot fit in \(burstHours)-hour bursts: at most "
                    + "\(Double(rings.burstSeconds) / spanSeconds) of all transactions can fall inside them")
        }
        try ringFields.finish()
        try fraud.finish()
        try fields.finish()

        return DatasetSpec(
            name: name, defaultRows: defaultRows, maximumRows: maximumRows, users: users, merchants: merchants,
            devices: devices, locations: locations, startMillis: Int64(start.timeIntervalSince1970 * 1000), days: days,
            diurnal: diurnal, weekly: weekly, usersZipf: usersZipf, merchantsZipf: merchantsZipf,
            devicesPerUser: devicesPerUser, currency: currency, channels: channels, declineShare: declineShare,
            categories: categories, backgroundFraudShare: backgroundFraudShare, rings: rings, source: fields.file)
    }
}
