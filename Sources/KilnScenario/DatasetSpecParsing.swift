import Foundation
import KilnData

/// Reading and validating a dataset spec file (Generators/*.yaml) into a `DatasetSpec`, with the strict YAML reader
/// of every Kiln spec: each error names the file, line, column and dotted field.
extension DatasetSpec {
    public static func load(contentsOf url: URL) throws(SpecError) -> DatasetSpec {
        try parse(YAMLFields.document(contentsOf: url))
    }

    public static func parse(_ text: String, file: String) throws(SpecError) -> DatasetSpec {
        try parse(YAMLFields.document(text, file: file))
    }

    static func parse(_ fields: YAMLFields) throws(SpecError) -> DatasetSpec {
        let name = try fields.optionalString("name") ?? "dataset"
        let maximumRows = try fields.count("max_rows", default: 1_000_000_000, range: 1...1_000_000_000_000)
        let defaultRows = try fields.count("rows", default: 1_000_000, range: 0...Int.max)
        if defaultRows > maximumRows {
            throw fields.error("rows", "\(defaultRows) is beyond max_rows (\(maximumRows))")
        }

        let entities = try fields.mapping("entities")
        let idRange = 1...Int(Int32.max)
        let users = try entities.count("users", range: idRange)
        let merchants = try entities.count("merchants", range: idRange)
        let devices = try entities.count("devices", range: idRange)
        let locations = try entities.count("locations", range: idRange)
        try entities.finish()

        let time = try fields.mapping("time")
        let startText = try time.string("start")
        guard let start = ISO8601DateFormatter().date(from: startText) else {
            throw time.error("start", "expected an ISO 8601 UTC time such as 2026-01-01T00:00:00Z, found '\(startText)'")
        }
        let startMillis = Int64(start.timeIntervalSince1970 * 1000)
        if startMillis % 3_600_000 != 0 { throw time.error("start", "must be a whole hour (arrival buckets are hours)") }
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
        if devicesPerUser > devices {
            throw popularity.error("devices_per_user", "exceeds entities.devices (\(devices))")
        }

        var travelShare = 0.1
        if let geo = try fields.optionalMapping("geo") {
            travelShare = try geo.double("travel_share", default: 0.1, range: 0...1)
            try geo.finish()
        }

        let currencies: [(code: String, weight: Double)]
        if fields.contains("currency") && fields.contains("currencies") {
            throw fields.error("currencies", "give either currency or currencies, not both")
        }
        if fields.contains("currencies") {
            currencies = try fields.weights("currencies").map { (code: $0.name, weight: $0.weight) }
        } else {
            currencies = [(try fields.optionalString("currency") ?? "EUR", 1)]
        }
        for currency in currencies where !Self.isCurrencyCode(currency.code) {
            throw fields.error(
                fields.contains("currencies") ? "currencies" : "currency",
                "expected an ISO 4217 code such as EUR, found '\(currency.code)'")
        }
        try requirePositiveWeight(currencies.map(\.weight), fields, "currencies", "currency")
        let channels = fields.contains("channels") ? try fields.weights("channels") : [("web", 1)]
        try requirePositiveWeight(channels.map(\.weight), fields, "channels", "channel")
        for channel in channels where !Self.isName(channel.name) {
            throw fields.error("channels", "channel names are letters, digits, '_' or '-' (up to 32), found '\(channel.name)'")
        }
        let declineShare = try fields.double("decline_share", default: 0.02, range: 0...1)

        var categories: [Category] = []
        for category in try fields.mappings("categories") {
            let categoryName = try category.string("name")
            if !Self.isName(categoryName) {
                throw category.error("name", "category names are letters, digits, '_' or '-' (up to 32)")
            }
            let weight = try category.double("weight", range: 0...1e9)
            let amount = try category.mapping("amount")
            let distribution = try amount.string("distribution")
            guard distribution == "lognormal" else {
                throw amount.error("distribution", "unknown distribution '\(distribution)' (supported: lognormal)")
            }
            let median = try amount.double("median", range: 0.01...1_000_000)
            let sigma = try amount.double("sigma", range: 0...3)
            try amount.finish()
            try category.finish()
            categories.append(Category(name: categoryName, weight: weight, medianCents: median * 100, sigma: sigma))
        }
        try requirePositiveWeight(categories.map(\.weight), fields, "categories", "category")
        if categories.count > 255 { throw fields.error("categories", "at most 255 categories") }
        if let richest = categories.max(by: { $0.meanCents < $1.meanCents }),
            Double(maximumRows) * richest.meanCents > Self.maximumExpectedTotalCents
        {
            throw fields.error(
                "max_rows", "\(maximumRows) rows of '\(richest.name)' (mean \(Int(richest.meanCents) / 100)) could "
                    + "overflow exact 64-bit sums in cents; lower max_rows or the category's median/sigma")
        }

        let fraud = try fields.mapping("fraud")
        let backgroundFraudShare = try fraud.double("background_share", default: 0, range: 0...1)
        let ringFields = try fraud.mapping("rings")
        let count = try ringFields.count("count", default: 0, range: 0...1_000_000)
        let size = try ringFields.mapping("size")
        let minimumSize = try size.count("min", range: 1...1_000_000)
        let maximumSize = try size.count("max", range: 1...1_000_000)
        if maximumSize < minimumSize { throw size.error("max", "is below min (\(minimumSize))") }
        try size.finish()
        let burstHours = try ringFields.double("burst_hours", range: 1.0 / 60...Double(days * 24))
        let sharedDevices = try ringFields.count("shared_devices", default: 1, range: 1...1000)
        let sharedMerchants = try ringFields.count("shared_merchants", default: 1, range: 1...1000)
        let volume: Rings.Volume
        switch (ringFields.contains("share"), ringFields.contains("velocity")) {
        case (true, true): throw ringFields.error("velocity", "give either share or velocity, not both")
        case (false, true): volume = .velocity(try ringFields.double("velocity", range: 0...1_000_000))
        default: volume = .share(try ringFields.double("share", default: 0, range: 0...1))
        }
        if count * maximumSize > users {
            throw ringFields.error(
                "size", "rings may need up to \(count) × \(maximumSize) = \(count * maximumSize) users, "
                    + "more than entities.users (\(users))")
        }
        if count * maximumSize > Self.maximumRingMembers {
            throw ringFields.error("size", "count × size.max may be at most \(Self.maximumRingMembers)")
        }
        if sharedDevices > devices { throw ringFields.error("shared_devices", "exceeds entities.devices (\(devices))") }
        if sharedMerchants > merchants {
            throw ringFields.error("shared_merchants", "exceeds entities.merchants (\(merchants))")
        }
        // A ring row happens only inside its burst window, at most one in `count` rows of that window; on average
        // that caps the rings' share at burst / span.
        let burstMillis = Int64(burstHours * 3_600_000)
        let spanMillis = Double(days) * 86_400_000
        if count > 0, case .share(let share) = volume, share * spanMillis / Double(burstMillis) > 1 {
            throw ringFields.error(
                "share", "\(share) cannot fit in \(burstHours)-hour bursts: at most "
                    + "\(Double(burstMillis) / spanMillis) of all transactions fall inside them")
        }
        try ringFields.finish()
        try fraud.finish()
        try fields.finish()

        return DatasetSpec(
            name: name, defaultRows: Int64(defaultRows), maximumRows: Int64(maximumRows), users: users,
            merchants: merchants, devices: devices, locations: locations, startMillis: startMillis, days: days,
            diurnal: diurnal, weekly: weekly, usersZipf: usersZipf, merchantsZipf: merchantsZipf,
            devicesPerUser: devicesPerUser, travelShare: travelShare, currencies: currencies, channels: channels,
            declineShare: declineShare, categories: categories, backgroundFraudShare: backgroundFraudShare,
            rings: Rings(
                count: count, minimumSize: minimumSize, maximumSize: maximumSize, sharedDevices: sharedDevices,
                sharedMerchants: sharedMerchants, burstMillis: burstMillis, volume: volume),
            source: fields.file)
    }

    private static func requirePositiveWeight(
        _ weights: [Double], _ fields: YAMLFields, _ key: String, _ what: String
    ) throws(SpecError) {
        guard weights.contains(where: { $0 > 0 }) else {
            throw fields.error(key, "needs at least one \(what) with a weight above zero")
        }
        if weights.count > 255 { throw fields.error(key, "at most 255 entries") }
    }

    /// Names written verbatim into CSV, JSON, RESP and Cypher, so they need no quoting or escaping anywhere.
    static func isName(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 32
            && text.utf8.allSatisfy { $0 == 0x5F || $0 == 0x2D || (0x30...0x39).contains($0) || (0x41...0x5A).contains($0)
                || (0x61...0x7A).contains($0) }
    }

    static func isCurrencyCode(_ text: String) -> Bool {
        text.utf8.count == 3 && text.utf8.allSatisfy { (0x41...0x5A).contains($0) }
    }
}
