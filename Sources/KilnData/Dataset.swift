import Foundation
import KilnCore

/// One generated transaction: only scalars (names are indexes into the dataset's tables), so generating and
/// encoding a row allocates nothing.
public struct Transaction: Sendable, Hashable {
    /// Position in the dataset, 0-based; `txnID = index + 1`.
    public var index: Int64
    public var txnID: Int64 { Self.txnID(ofIndex: index) }
    /// The `txnID` of the row at `index`, without generating the row.
    public static func txnID(ofIndex index: Int64) -> Int64 { index + 1 }
    public var userID: Int64
    public var merchantID: Int64
    public var deviceID: Int64
    public var locationID: Int64
    /// Exact amount in minor units (cents), 1 ... 10^13.
    public var amountCents: Int64
    /// Unix milliseconds; non-decreasing in `index`.
    public var timestampMillis: Int64
    /// Index into `Dataset.currencyCodes` (the merchant's currency).
    public var currency: UInt8
    /// Index into `Dataset.channelNames`.
    public var channel: UInt8
    public var declined: Bool
    public var isFraud: Bool
    /// Model score in thousandths: 0...399 for legitimate rows, 600...999 for fraudulent ones.
    public var fraudScoreMillis: Int16
    /// The planted ring this transaction belongs to, or -1.
    public var ringID: Int32

    public init(
        index: Int64, userID: Int64, merchantID: Int64, deviceID: Int64, locationID: Int64, amountCents: Int64,
        timestampMillis: Int64, currency: UInt8, channel: UInt8, declined: Bool, isFraud: Bool,
        fraudScoreMillis: Int16, ringID: Int32
    ) {
        self.index = index
        self.userID = userID
        self.merchantID = merchantID
        self.deviceID = deviceID
        self.locationID = locationID
        self.amountCents = amountCents
        self.timestampMillis = timestampMillis
        self.currency = currency
        self.channel = channel
        self.declined = declined
        self.isFraud = isFraud
        self.fraudScoreMillis = fraudScoreMillis
        self.ringID = ringID
    }
}

/// A planted fraud ring (ground truth): its members, the devices and merchants they share, the window they are
/// active in, and how many transactions it is expected to make.
///
/// Planting: every row draws a candidate ring (alias pick, probability π_r); a row inside its candidate's window
/// becomes a ring transaction with probability g (the same for all rings). With q_r = target_r / rows in window r
/// (target from `share` split by ring size, or from `velocity`), π_r = q_r / Σq and g = min(1, Σq), so ring r
/// makes exactly target_r transactions in expectation whenever Σq ≤ 1 (always for a valid `share`, whatever the
/// diurnal pattern does to a window); beyond that every ring is scaled down by the same factor 1 / Σq.
public struct FraudRing: Sendable, Hashable {
    public var id: Int32
    public var members: [Int64]
    public var devices: [Int64]
    public var merchants: [Int64]
    public var windowStartMillis: Int64
    public var windowEndMillis: Int64
    /// The transactions the spec asks of this ring.
    public var targetTransactions: Double
    /// The expected number of its transactions in the dataset (the target, unless scaled down).
    public var expectedTransactions: Double
}

/// Entities are functions of their id (and the seed): nothing is stored per entity.
public struct User: Sendable, Hashable {
    public var id: Int64
    public var homeLocationID: Int64
    /// Before the dataset's start, within three years.
    public var signupMillis: Int64
    /// The ring this user is a member of, or -1.
    public var ringID: Int32
}

public struct Merchant: Sendable, Hashable {
    public var id: Int64
    /// Index into `DatasetSpec.categories`.
    public var category: UInt8
    /// Index into `Dataset.currencyCodes`.
    public var currency: UInt8
    public var locationID: Int64
}

/// A point in a Europe-sized box (latitude 35°...60°, longitude -10°...30°), in micro-degrees.
public struct Location: Sendable, Hashable {
    public var id: Int64
    public var latitudeMicros: Int32
    public var longitudeMicros: Int32
}

/// A spec compiled for generation with a seed and a row count. Transaction `i` is `transaction(i)`, a pure
/// function of (spec, seed, rows, i) — `rows` matters because the rows are spread over the spec's time span;
/// entities are pure functions of (spec, seed, id). Immutable after init: one instance may be shared by any number
/// of threads. See `RandomStream` for the RNG and `ArrivalSchedule` for the arrival process.
public final class Dataset: Sendable {
    public let spec: DatasetSpec
    public let seed: UInt64
    public let rows: Int64
    /// Planted rings, ground truth; `rings[r].id == r`.
    public let rings: [FraudRing]
    public let channelNames: [String]
    public let currencyCodes: [String]
    public let categoryNames: [String]

    let keys: StreamKeys
    let arena: TableArena
    let tables: GenerationTables

    public struct RowLimitExceeded: Error, CustomStringConvertible {
        public var requested: Int64
        public var limit: Int64
        public var description: String {
            "\(requested) rows requested, but the spec allows \(requested < 0 ? "no negative count" : "at most \(limit) (max_rows)")"
        }
    }

    public init(spec: DatasetSpec, seed: UInt64, rows: Int64? = nil) throws(RowLimitExceeded) {
        let rows = rows ?? spec.defaultRows
        guard rows >= 0, rows <= spec.maximumRows else { throw RowLimitExceeded(requested: rows, limit: spec.maximumRows) }
        self.spec = spec
        self.seed = seed
        self.rows = rows
        channelNames = spec.channels.map(\.name)
        currencyCodes = spec.currencies.map(\.code)
        categoryNames = spec.categories.map(\.name)
        keys = StreamKeys(seed: seed)
        arena = TableArena()
        let schedule = ArrivalSchedule(
            startMillis: spec.startMillis, days: spec.days, diurnal: spec.diurnal, weekly: spec.weekly, rows: rows,
            arena: arena)
        let ringScramble = Scramble(count: spec.users, keys: keys, stream: .ringScramble)
        let (planted, pickWeights, gate) = Self.plantRings(
            spec: spec, keys: keys, schedule: schedule, members: ringScramble)
        rings = planted
        var memberOffsets: [Int64] = [0]
        for ring in planted { memberOffsets.append(memberOffsets[memberOffsets.count - 1] + Int64(ring.members.count)) }
        tables = GenerationTables(
            keys: keys.pointer, schedule: schedule,
            users: ZipfSampler(count: spec.users, exponent: spec.usersZipf, arena: arena),
            merchants: ZipfSampler(count: spec.merchants, exponent: spec.merchantsZipf, arena: arena),
            userRanks: Scramble(count: spec.users, keys: keys, stream: .userScramble),
            merchantRanks: Scramble(count: spec.merchants, keys: keys, stream: .merchantScramble),
            ringMembership: ringScramble,
            amounts: LogNormalTable(
                medianCents: spec.categories.map(\.medianCents), sigmas: spec.categories.map(\.sigma), arena: arena),
            channels: WeightedChoice(spec.channels.map(\.weight), arena: arena),
            categories: WeightedChoice(spec.categories.map(\.weight), arena: arena),
            currencies: WeightedChoice(spec.currencies.map(\.weight), arena: arena),
            singleCurrency: spec.currencies.count == 1,
            userCount: spec.users, merchantCount: spec.merchants, deviceCount: spec.devices,
            locationCount: spec.locations, devicesPerUser: spec.devicesPerUser,
            travelThreshold: UInt32.threshold(probability: spec.travelShare),
            declineThreshold: UInt32.threshold(probability: spec.declineShare),
            backgroundThreshold: UInt32.threshold(probability: spec.backgroundFraudShare),
            ringCount: planted.count,
            ringActiveBuckets: arena.table(Self.activeBuckets(planted, schedule)),
            ringPick: AliasPick(pickWeights.isEmpty ? [1] : pickWeights, arena: arena),
            ringGate: UInt32.threshold(probability: gate),
            ringStarts: arena.table(planted.map(\.windowStartMillis)),
            ringEnds: arena.table(planted.map(\.windowEndMillis)),
            ringMemberOffsets: arena.table(memberOffsets),
            ringMembers: arena.table(planted.flatMap(\.members)),
            ringDevices: arena.table(planted.flatMap(\.devices)),
            ringMerchants: arena.table(planted.flatMap(\.merchants)),
            sharedDevices: spec.rings.sharedDevices, sharedMerchants: spec.rings.sharedMerchants)
    }

    // MARK: arrival

    /// Unix milliseconds of row `index` (0 ≤ index < rows); non-decreasing in the index.
    public func timestamp(of index: Int64) -> Int64 {
        precondition(index >= 0 && index < rows, "row \(index) is outside 0..<\(rows)")
        return tables.schedule.timestamp(of: index)
    }

    /// The rows whose timestamps fall in [from, to) (Unix milliseconds), in O(1).
    public func indexRange(fromMillis from: Int64, toMillis to: Int64) -> Range<Int64> {
        tables.schedule.indexRange(fromMillis: from, toMillis: to)
    }

    // MARK: entities

    public func user(_ id: Int64) -> User {
        precondition(id >= 1 && id <= Int64(spec.users), "user \(id) is outside 1...\(spec.users)")
        let signupSpan: Int64 = 3 * 365 * 86_400_000
        return User(
            id: id, homeLocationID: tables.homeLocation(ofUser: id),
            signupMillis: spec.startMillis - 1 - Int64(Draws(tables.keys, UInt64(id)).below(Int(signupSpan), .userSignup)),
            ringID: Int32(ring(ofUser: id) ?? -1))
    }

    /// The devices a user pays from (`devices_per_user` of them; two users may share one).
    public func devices(ofUser id: Int64) -> [Int64] {
        (0..<spec.devicesPerUser).map { tables.device(ofUser: id, slot: $0) }
    }

    public func merchant(_ id: Int64) -> Merchant {
        precondition(id >= 1 && id <= Int64(spec.merchants), "merchant \(id) is outside 1...\(spec.merchants)")
        return Merchant(
            id: id, category: UInt8(tables.category(ofMerchant: id)), currency: UInt8(tables.currency(ofMerchant: id)),
            locationID: Int64(Draws(tables.keys, UInt64(id)).below(spec.locations, .merchantLocation)) + 1)
    }

    public func location(_ id: Int64) -> Location {
        precondition(id >= 1 && id <= Int64(spec.locations), "location \(id) is outside 1...\(spec.locations)")
        let bits = Draws(tables.keys, UInt64(id)).bits(.locationPoint)
        return Location(
            id: id, latitudeMicros: 35_000_000 + Int32(bits.high32.below(25_000_000)),
            longitudeMicros: -10_000_000 + Int32(bits.low32.below(40_000_000)))
    }

    /// The merchant category (index into `spec.categories`) of a merchant.
    public func category(ofMerchant id: Int64) -> Int { tables.category(ofMerchant: id) }

    /// The ring a user is a member of (ground truth), or nil. O(log rings): membership is the inverse of the
    /// scramble that placed the members.
    public func ring(ofUser id: Int64) -> Int? {
        guard !rings.isEmpty, id >= 1, id <= Int64(spec.users) else { return nil }
        let position = Int64(tables.ringMembership.inverse(Int(id - 1)))
        let offsets = tables.ringMemberOffsets
        guard position < offsets[rings.count] else { return nil }
        var low = 0
        var high = rings.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if offsets[middle] <= position { low = middle } else { high = middle - 1 }
        }
        return low
    }

    static func activeBuckets(_ rings: [FraudRing], _ schedule: ArrivalSchedule) -> [UInt8] {
        var active = Array(repeating: UInt8(0), count: schedule.bucketCount)
        for ring in rings {
            for bucket in schedule.buckets(overlapping: ring.windowStartMillis, ring.windowEndMillis) { active[bucket] = 1 }
        }
        return active
    }

    /// The rings, the candidate weights π and the gate g (see `FraudRing`).
    static func plantRings(spec: DatasetSpec, keys: StreamKeys, schedule: ArrivalSchedule, members: Scramble)
        -> (rings: [FraudRing], pickWeights: [Double], gate: Double)
    {
        let ringSpec = spec.rings
        guard ringSpec.count > 0 else { return ([], [], 0) }
        let spanMillis = Int64(spec.days) * 86_400_000
        let burst = ringSpec.burstMillis
        var offset = 0
        var rings: [FraudRing] = []
        rings.reserveCapacity(ringSpec.count)
        for r in 0..<ringSpec.count {
            let draws = Draws(keys.pointer, UInt64(r))
            let size = ringSpec.minimumSize + draws.below(ringSpec.maximumSize - ringSpec.minimumSize + 1, .ringSize)
            let minutes = Int(max(1, (spanMillis - burst) / 60_000 + 1))
            let start = spec.startMillis + Int64(draws.below(minutes, .ringWindow)) * 60_000
            let devices = (0..<ringSpec.sharedDevices).map {
                Int64(Draws(keys.pointer, UInt64(r) &* 1024 &+ UInt64($0)).below(spec.devices, .ringDevices)) + 1
            }
            let merchants = (0..<ringSpec.sharedMerchants).map {
                Int64(Draws(keys.pointer, UInt64(r) &* 1024 &+ UInt64($0)).below(spec.merchants, .ringMerchants)) + 1
            }
            rings.append(
                FraudRing(
                    id: Int32(r), members: (offset..<offset + size).map { Int64(members($0)) + 1 }, devices: devices,
                    merchants: merchants, windowStartMillis: start, windowEndMillis: start + burst,
                    targetTransactions: 0, expectedTransactions: 0))
            offset += size
        }
        let totalMembers = Double(offset)
        var rates: [Double] = []  // q_r
        for r in rings.indices {
            let windowRows = Double(
                schedule.indexRange(fromMillis: rings[r].windowStartMillis, toMillis: rings[r].windowEndMillis).count)
            let size = Double(rings[r].members.count)
            switch ringSpec.volume {
            case .share(let share): rings[r].targetTransactions = share * Double(schedule.rows) * size / totalMembers
            case .velocity(let perHour): rings[r].targetTransactions = perHour * size * Double(burst) / 3_600_000
            }
            rates.append(windowRows > 0 ? rings[r].targetTransactions / windowRows : 0)
        }
        let total = rates.reduce(0, +)
        guard total > 0 else { return (rings, Array(repeating: 1, count: rings.count), 0) }
        for r in rings.indices { rings[r].expectedTransactions = rings[r].targetTransactions / max(1, total) }
        return (rings, rates, min(1, total))
    }

    // MARK: rows

    /// Transaction `index` (0 ≤ index < rows). Pure, allocation-free, thread-safe.
    @inline(__always)
    public func transaction(_ index: Int64) -> Transaction {
        precondition(index >= 0 && index < rows, "row \(index) is outside 0..<\(rows)")
        return tables.transaction(index)
    }

    /// Generates rows `range` into `buffer[0..<range.count]` (the loop runs inside this module, fully inlined).
    public func generate(_ range: Range<Int64>, into buffer: UnsafeMutableBufferPointer<Transaction>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows && range.count <= buffer.count)
        let tables = self.tables
        var slot = buffer.baseAddress!
        for index in range {
            slot.initialize(to: tables.transaction(index))
            slot += 1
        }
    }
}

/// The tables and constants of the per-row path, read through unsafe buffers owned by the dataset's arena.
struct GenerationTables: @unchecked Sendable {
    // @unchecked: every pointer here points into a TableArena or StreamKeys owned by the same Dataset, written
    // only during its init and never after; GenerationTables is only reachable through that Dataset.
    let keys: UnsafePointer<UInt64>
    let schedule: ArrivalSchedule
    let users: ZipfSampler
    let merchants: ZipfSampler
    let userRanks: Scramble
    let merchantRanks: Scramble
    let ringMembership: Scramble
    let amounts: LogNormalTable
    let channels: WeightedChoice
    let categories: WeightedChoice
    let currencies: WeightedChoice
    let singleCurrency: Bool
    let userCount: Int
    let merchantCount: Int
    let deviceCount: Int
    let locationCount: Int
    let devicesPerUser: Int
    let travelThreshold: UInt64
    let declineThreshold: UInt64
    let backgroundThreshold: UInt64
    let ringCount: Int
    /// 1 for the hour buckets some ring's window overlaps: elsewhere no row can be a ring row, so its ring draw
    /// is skipped (the result is the same, the draw would fail the window test).
    let ringActiveBuckets: UnsafeBufferPointer<UInt8>
    let ringPick: AliasPick
    let ringGate: UInt64
    let ringStarts: UnsafeBufferPointer<Int64>
    let ringEnds: UnsafeBufferPointer<Int64>
    let ringMemberOffsets: UnsafeBufferPointer<Int64>
    let ringMembers: UnsafeBufferPointer<Int64>
    let ringDevices: UnsafeBufferPointer<Int64>
    let ringMerchants: UnsafeBufferPointer<Int64>
    let sharedDevices: Int
    let sharedMerchants: Int

    @inline(__always)
    func category(ofMerchant id: Int64) -> Int {
        categories.pick(Draws(keys, UInt64(id)).bits(.merchantCategory).high32)
    }

    @inline(__always)
    func currency(ofMerchant id: Int64) -> Int {
        singleCurrency ? 0 : currencies.pick(Draws(keys, UInt64(id)).bits(.merchantCurrency).high32)
    }

    /// Slot `slot` (< devices_per_user ≤ 100) of a user's devices.
    @inline(__always)
    func device(ofUser id: Int64, slot: Int) -> Int64 {
        Int64(Draws(keys, UInt64(id) &* 128 &+ UInt64(slot)).below(deviceCount, .userDevice)) + 1
    }

    @inline(__always)
    func homeLocation(ofUser id: Int64) -> Int64 {
        Int64(Draws(keys, UInt64(id)).below(locationCount, .userHomeLocation)) + 1
    }

    @inline(__always)
    func transaction(_ index: Int64) -> Transaction {
        let draws = Draws(keys, UInt64(bitPattern: index))
        let (bucket, time) = schedule.locate(index)
        if ringActiveBuckets[bucket] != 0 {
            let candidate = ringPick.pick(draws.bits(.ring))
            if time >= ringStarts[candidate] && time < ringEnds[candidate]
                && UInt64(draws.bits(.ringGate).high32) < ringGate
            {
                return ringTransaction(index, ring: candidate, time: time, draws: draws)
            }
        }
        let userRank = users.sample(
            draws, stream: RandomStream.user.rawValue, position: RandomStream.userPosition.rawValue,
            retry: RandomStream.userRetry.rawValue)
        let userID = Int64(userRanks(userRank &- 1)) &+ 1
        let merchantRank = merchants.sample(
            draws, stream: RandomStream.merchant.rawValue, position: RandomStream.merchantPosition.rawValue,
            retry: RandomStream.merchantRetry.rawValue)
        let merchantID = Int64(merchantRanks(merchantRank &- 1)) &+ 1
        let deviceBits = draws.bits(.deviceAndBackground)
        let deviceID = device(ofUser: userID, slot: devicesPerUser == 1 ? 0 : deviceBits.high32.below(devicesPerUser))
        let isFraud = UInt64(deviceBits.low32) < backgroundThreshold
        return finish(
            index, draws: draws, time: time, userID: userID, merchantID: merchantID, deviceID: deviceID,
            isFraud: isFraud, ringID: -1)
    }

    @inline(never)
    func ringTransaction(_ index: Int64, ring: Int, time: Int64, draws: Draws) -> Transaction {
        let first = Int(ringMemberOffsets[ring])
        let size = Int(ringMemberOffsets[ring + 1]) - first
        return finish(
            index, draws: draws, time: time, userID: ringMembers[first + draws.below(size, .ringMember)],
            merchantID: ringMerchants[ring * sharedMerchants + draws.below(sharedMerchants, .ringMerchant)],
            deviceID: ringDevices[ring * sharedDevices + draws.below(sharedDevices, .ringDevice)], isFraud: true,
            ringID: Int32(ring))
    }

    /// The fields every row draws the same way: location, amount, currency, channel, status and score.
    @inline(__always)
    func finish(
        _ index: Int64, draws: Draws, time: Int64, userID: Int64, merchantID: Int64, deviceID: Int64, isFraud: Bool,
        ringID: Int32
    ) -> Transaction {
        let travelAndScore = draws.bits(.travelAndScore)
        let travelling = UInt64(travelAndScore.high32) < travelThreshold
        let locationID = travelling
            ? Int64(draws.below(locationCount, .travelLocation)) &+ 1 : homeLocation(ofUser: userID)
        let amount = amounts.cents(category: category(ofMerchant: merchantID), bits: draws.bits(.amount))
        let statusBits = draws.bits(.channelAndStatus)
        let score = Int16(travelAndScore.low32.below(400))
        return Transaction(
            index: index, userID: userID, merchantID: merchantID, deviceID: deviceID, locationID: locationID,
            amountCents: amount, timestampMillis: time, currency: UInt8(truncatingIfNeeded: currency(ofMerchant: merchantID)),
            channel: UInt8(truncatingIfNeeded: channels.pick(statusBits.high32)),
            declined: UInt64(statusBits.low32) < declineThreshold, isFraud: isFraud,
            fraudScoreMillis: isFraud ? 600 + score : score, ringID: ringID)
    }
}
