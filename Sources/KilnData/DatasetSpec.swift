import Foundation

/// A dataset described by a spec file in `Generators/` (see Generators/fraud-platform.yaml). Validated on load
/// (`DatasetSpec.load`, in KilnScenario with the other spec files): every error is a `SpecError` naming the file,
/// line, column and dotted field. A valid spec can always be
/// generated: entity counts fit 32-bit ids, rings fit in the users and their bursts, and the exact sum of amounts
/// of `max_rows` rows fits 64 bits with a wide margin.
public struct DatasetSpec: Sendable {
    public struct Category: Sendable {
        public var name: String
        public var weight: Double
        /// Log-normal: `median · exp(sigma · z)` with z standard normal, in cents.
        public var medianCents: Double
        public var sigma: Double
        /// E[amount] in cents: `median · exp(sigma² / 2)`.
        public var meanCents: Double { medianCents * exp(sigma * sigma / 2) }

        public init(name: String, weight: Double, medianCents: Double, sigma: Double) {
            self.name = name
            self.weight = weight
            self.medianCents = medianCents
            self.sigma = sigma
        }
    }

    public struct Rings: Sendable {
        public enum Volume: Sendable, Equatable {
            /// This share of all transactions is made by rings, split over rings by size.
            case share(Double)
            /// Each member makes this many transactions per hour of its ring's burst.
            case velocity(Double)
        }

        public var count: Int
        public var minimumSize: Int
        public var maximumSize: Int
        public var sharedDevices: Int
        public var sharedMerchants: Int
        public var burstMillis: Int64
        public var volume: Volume

        public init(
            count: Int, minimumSize: Int, maximumSize: Int, sharedDevices: Int, sharedMerchants: Int,
            burstMillis: Int64, volume: Volume
        ) {
            self.count = count
            self.minimumSize = minimumSize
            self.maximumSize = maximumSize
            self.sharedDevices = sharedDevices
            self.sharedMerchants = sharedMerchants
            self.burstMillis = burstMillis
            self.volume = volume
        }
    }

    public var name: String
    public var defaultRows: Int64
    public var maximumRows: Int64
    public var users: Int
    public var merchants: Int
    public var devices: Int
    public var locations: Int
    /// Unix milliseconds of the first possible transaction (a whole hour).
    public var startMillis: Int64
    public var days: Int
    /// 24 relative weights, UTC hours.
    public var diurnal: [Double]
    /// 7 relative weights, Monday first.
    public var weekly: [Double]
    public var usersZipf: Double
    public var merchantsZipf: Double
    public var devicesPerUser: Int
    /// Share of transactions made away from the user's home location.
    public var travelShare: Double
    /// ISO 4217 codes with weights; each merchant settles in one of them.
    public var currencies: [(code: String, weight: Double)]
    public var channels: [(name: String, weight: Double)]
    public var declineShare: Double
    public var categories: [Category]
    public var backgroundFraudShare: Double
    public var rings: Rings
    public var source: String

    /// Ring members are materialised (rings × max size ≤ this), so ring ground truth stays small.
    public static let maximumRingMembers = 10_000_000
    /// `max_rows × mean amount` must stay below this, so exact sums in cents fit Int64 (9.2·10^18) many times over.
    public static let maximumExpectedTotalCents = 1e17

    /// A spec as given; `DatasetSpec.load`/`parse` (KilnScenario) validate a spec file into one.
    public init(
        name: String, defaultRows: Int64, maximumRows: Int64, users: Int, merchants: Int, devices: Int,
        locations: Int, startMillis: Int64, days: Int, diurnal: [Double], weekly: [Double], usersZipf: Double,
        merchantsZipf: Double, devicesPerUser: Int, travelShare: Double,
        currencies: [(code: String, weight: Double)], channels: [(name: String, weight: Double)],
        declineShare: Double, categories: [Category], backgroundFraudShare: Double, rings: Rings, source: String
    ) {
        self.name = name
        self.defaultRows = defaultRows
        self.maximumRows = maximumRows
        self.users = users
        self.merchants = merchants
        self.devices = devices
        self.locations = locations
        self.startMillis = startMillis
        self.days = days
        self.diurnal = diurnal
        self.weekly = weekly
        self.usersZipf = usersZipf
        self.merchantsZipf = merchantsZipf
        self.devicesPerUser = devicesPerUser
        self.travelShare = travelShare
        self.currencies = currencies
        self.channels = channels
        self.declineShare = declineShare
        self.categories = categories
        self.backgroundFraudShare = backgroundFraudShare
        self.rings = rings
        self.source = source
    }
}
