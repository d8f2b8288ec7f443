import Foundation
import KilnCore

/// One generated transaction: only scalars, so generating and encoding a row allocates nothing.
public struct Transaction: Sendable, Hashable {
    /// Position in the dataset, 0-based; `txnID = index + 1`.
    public var index: Int64
    public var txnID: Int64 { index + 1 }
    public var userID: Int64
    public var merchantID: Int64
    public var deviceID: Int64
    public var locationID: Int64
    /// Exact amount in minor units (cents).
    public var amountCents: Int64
    /// Unix milliseconds; non-decreasing in `index`.
    public var timestampMillis: Int64
    /// Index into `Dataset.channelNames`.
    public var channel: UInt8
    public var declined: Bool
    /// Model score in thousandths (0...999): high for fraud, low otherwise.
    public var fraudScoreMillis: Int16
    public var isFraud: Bool
    /// The planted ring this transaction belongs to, or -1.
    public var ringID: Int32
}

/// A planted fraud ring: its members, the devices and merchants they share, and the window they are active in.
public struct FraudRing: Sendable, Hashable {
    public var id: Int
    public var members: [Int64]
    public var devices: [Int64]
    public var merchants: [Int64]
    public var windowStartMillis: Int64
    public var windowEndMillis: Int64
}

/// A spec compiled for generation with a seed and a row count: transaction `i` is `transaction(i)`, a pure
/// function of (spec, seed, rows, i). Immutable after init, so one instance may be shared by any number of
/// threads.
///
/// RNG: every random field of row i is `SplitMix64.value(seed:index: i, stream: field)` (KilnCore), a
/// counter-based generator: no state carries from one row to the next, so any index range generates alone and
/// identically on any shard split. Arrival: the time span is cut into hour buckets weighted by the diurnal and
/// weekly patterns; bucket b receives a fixed share of the rows (largest-remainder rounding, so shares sum to
/// `rows` exactly) spread evenly inside the hour, which makes timestamps non-decreasing in i and maps any time
/// range to an index range by binary search.
public final class Dataset: Sendable {
    public let spec: DatasetSpec
    public let seed: UInt64
    public let rows: Int64
    public let rings: [FraudRing]
    public var channelNames: [String] { spec.channels.map(\.name) }

    /// First row index of each hour bucket, plus `rows` at the end.
    let bucketStarts: [Int64]
    let users: ZipfSampler
    let merchants: ZipfSampler
    let userRanks: Scramble
    let merchantRanks: Scramble
    let channels: WeightedChoice
    let categories: WeightedChoice
    let categoryMedians: [Double]
    let categorySigmas: [Double]
    /// Probability that a row inside its candidate ring's window is a ring transaction.
    let ringRateInWindow: Double
    /// Ring windows as flat arrays, read on every row without touching the rings' member arrays.
    let ringWindowStarts: [Int64]
    let ringWindowEnds: [Int64]
    /// Per-stream RNG keys (see `Draw`); allocated once, never freed before the dataset, never written after init.
    nonisolated(unsafe) let streamKeys: UnsafeMutableBufferPointer<UInt64>
    static let streamCount = 2_100

    enum Stream: UInt64 {
        case user = 1, merchant = 2, device = 3, location = 4, amount = 5, channel = 6, status = 7, score = 8
        case background = 9, ringPick = 10, ringGate = 11, ringMember = 12, ringDevice = 13, ringMerchant = 14
        case locationTravel = 15, merchantCategory = 16, deviceOfUser = 17, homeLocation = 18
        // Entity-level streams (keyed by entity id, not row index).
        case ringSize = 100, ringWindow = 101, ringDevices = 102, ringMerchants = 103, userScramble = 104
        case merchantScramble = 105, ringScramble = 106
        // Up to 64 further uniforms for Zipf rejection attempts.
        case zipfUser = 1000, zipfMerchant = 2000
    }

    public struct RowLimitExceeded: Error, CustomStringConvertible {
        public var requested: Int64
        public var limit: Int
        public var description: String { "\(requested) rows requested, but the spec allows at most \(limit) (max_rows)" }
    }

    public init(spec: DatasetSpec, seed: UInt64, rows: Int64? = nil) throws(RowLimitExceeded) {
        let rows = rows ?? Int64(spec.defaultRows)
        guard rows >= 0, rows <= spec.maximumRows else { throw RowLimitExceeded(requested: rows, limit: spec.maximumRows) }
        self.spec = spec
        self.seed = seed
        self.rows = rows
        bucketStarts = Self.arrivalBuckets(spec: spec, rows: rows)
        users = ZipfSampler(count: spec.users, exponent: spec.usersZipf)
        merchants = ZipfSampler(count: spec.merchants, exponent: spec.merchantsZipf)
        userRanks = Scramble(count: spec.users, seed: seed, stream: Stream.userScramble.rawValue)
        merchantRanks = Scramble(count: spec.merchants, seed: seed, stream: Stream.merchantScramble.rawValue)
        channels = WeightedChoice(spec.channels.map(\.weight))
        categories = WeightedChoice(spec.categories.map(\.weight))
        categoryMedians = spec.categories.map(\.medianCents)
        categorySigmas = spec.categories.map(\.sigma)
        let spanMillis = Int64(spec.days) * 86_400_000
        ringRateInWindow = spec.rings.count == 0 ? 0
            : min(1, spec.rings.share * Double(spanMillis) / Double(spec.rings.burstSeconds * 1000))
        let keys = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: Self.streamCount)
        for stream in 0..<Self.streamCount {
            keys[stream] = SplitMix64.mix(seed ^ (UInt64(stream) &* 0xD1B5_4A32_D192_ED03))
        }
        streamKeys = keys
        let planted = Self.plantRings(spec: spec, seed: seed, keys: UnsafeBufferPointer(keys))
        rings = planted
        ringWindowStarts = planted.map(\.windowStartMillis)
        ringWindowEnds = planted.map(\.windowEndMillis)
    }

    deinit {
        streamKeys.deallocate()
    }

    /// The draws of row (or entity) `index`.
    @inline(__always)
    func draw(_ index: UInt64) -> Draw { Draw(keys: UnsafeBufferPointer(streamKeys), index: index) }

    // MARK: arrival

    static func arrivalBuckets(spec: DatasetSpec, rows: Int64) -> [Int64] {
        let hours = spec.days * 24
        // 2026-01-01 is a Thursday; weekday of the start: days since 1970-01-01 (a Thursday) + 3, Monday = 0.
        let startHour = Int(spec.startMillis / 3_600_000)
        var weights: [Double] = []
        weights.reserveCapacity(hours)
        for hour in 0..<hours {
            let absolute = startHour + hour
            let hourOfDay = ((absolute % 24) + 24) % 24
            let weekday = (((absolute / 24) + 3) % 7 + 7) % 7
            weights.append(spec.diurnal[hourOfDay] * spec.weekly[weekday])
        }
        let total = weights.reduce(0, +)
        var counts = weights.map { Int64(($0 / total * Double(rows)).rounded(.down)) }
        var remainder = rows - counts.reduce(0, +)
        // Largest remainder first; ties by hour order, so the table is deterministic.
        let order = weights.indices.sorted {
            let left = weights[$0] / total * Double(rows) - Double(counts[$0])
            let right = weights[$1] / total * Double(rows) - Double(counts[$1])
            return left != right ? left > right : $0 < $1
        }
        var position = 0
        while remainder > 0 {
            counts[order[position % order.count]] += 1
            remainder -= 1
            position += 1
        }
        var starts: [Int64] = [0]
        starts.reserveCapacity(hours + 1)
        for count in counts { starts.append(starts.last! + count) }
        return starts
    }

    /// The bucket holding row `index`: the last b with bucketStarts[b] <= index.
    @inline(__always)
    func bucket(of index: Int64) -> Int {
        var low = 0
        var high = bucketStarts.count - 2
        while low < high {
            let middle = (low + high + 1) / 2
            if bucketStarts[middle] <= index { low = middle } else { high = middle - 1 }
        }
        return low
    }

    /// Unix milliseconds of row `index`: evenly spaced inside its hour, non-decreasing in the index.
    public func timestamp(of index: Int64) -> Int64 {
        let b = bucket(of: index)
        let first = bucketStarts[b]
        let count = bucketStarts[b + 1] - first
        return spec.startMillis + Int64(b) * 3_600_000 + (index - first) * 3_600_000 / max(count, 1)
    }

    /// The rows whose timestamps fall in [from, to) (Unix milliseconds), in O(log rows).
    public func indexRange(fromMillis from: Int64, toMillis to: Int64) -> Range<Int64> {
        func firstIndex(atOrAfter time: Int64) -> Int64 {
            var low: Int64 = 0
            var high = rows
            while low < high {
                let middle = low + (high - low) / 2
                if timestamp(of: middle) < time { low = middle + 1 } else { high = middle }
            }
            return low
        }
        let start = firstIndex(atOrAfter: from)
        return start..<max(start, firstIndex(atOrAfter: to))
    }

    // MARK: entities

    /// The merchant category (index into spec.categories) of a merchant: a function of its id.
    public func category(ofMerchant merchant: Int64) -> Int {
        categories.pick(draw(UInt64(merchant)).unit(Stream.merchantCategory.rawValue))
    }

    /// A user's k-th device (k < devicesPerUser).
    @inline(__always)
    func device(ofUser user: Int64, _ k: Int) -> Int64 {
        Int64(draw(UInt64(user) &* 131 &+ UInt64(k)).below(spec.devices, Stream.deviceOfUser.rawValue)) + 1
    }

    /// A user's home location.
    @inline(__always)
    func homeLocation(ofUser user: Int64) -> Int64 {
        Int64(draw(UInt64(user)).below(spec.locations, Stream.homeLocation.rawValue)) + 1
    }

    static func plantRings(spec: DatasetSpec, seed: UInt64, keys: UnsafeBufferPointer<UInt64>) -> [FraudRing] {
        let ringSpec = spec.rings
        guard ringSpec.count > 0 else { return [] }
        let members = Scramble(count: spec.users, seed: seed, stream: Stream.ringScramble.rawValue)
        let spanMillis = Int64(spec.days) * 86_400_000
        let burstMillis = ringSpec.burstSeconds * 1000
        var offset = 0
        var rings: [FraudRing] = []
        for r in 0..<ringSpec.count {
            let draw = Draw(keys: keys, index: UInt64(r))
            let size = ringSpec.minimumSize + draw.below(ringSpec.maximumSize - ringSpec.minimumSize + 1, Stream.ringSize.rawValue)
            let start = spec.startMillis
                + Int64(draw.below(Int(max(1, spanMillis - burstMillis) / 60_000), Stream.ringWindow.rawValue)) * 60_000
            let devices = (0..<ringSpec.sharedDevices).map {
                Int64(Draw(keys: keys, index: UInt64(r) &* 1024 &+ UInt64($0)).below(spec.devices, Stream.ringDevices.rawValue)) + 1
            }
            let merchants = (0..<ringSpec.sharedMerchants).map {
                Int64(Draw(keys: keys, index: UInt64(r) &* 1024 &+ UInt64($0)).below(spec.merchants, Stream.ringMerchants.rawValue)) + 1
            }
            rings.append(
                FraudRing(
                    id: r, members: (offset..<offset + size).map { Int64(members($0)) + 1 }, devices: devices,
                    merchants: merchants, windowStartMillis: start, windowEndMillis: start + burstMillis))
            offset += size
        }
        return rings
    }

    // MARK: rows

    /// Transaction `index` (0 ≤ index < rows). Pure and allocation-free.
    public func transaction(_ index: Int64) -> Transaction {
        let draw = self.draw(UInt64(index))
        let time = timestamp(of: index)
        var userID: Int64
        var merchantID: Int64
        var deviceID: Int64
        var ringID: Int32 = -1
        var isFraud = false

        let candidate = ringWindowStarts.isEmpty ? -1 : draw.below(ringWindowStarts.count, Stream.ringPick.rawValue)
        if candidate >= 0, time >= ringWindowStarts[candidate], time < ringWindowEnds[candidate],
            draw.unit(Stream.ringGate.rawValue) < ringRateInWindow
        {
            let ring = rings[candidate]
            userID = ring.members[draw.below(ring.members.count, Stream.ringMember.rawValue)]
            deviceID = ring.devices[draw.below(ring.devices.count, Stream.ringDevice.rawValue)]
            merchantID = ring.merchants[draw.below(ring.merchants.count, Stream.ringMerchant.rawValue)]
            ringID = Int32(candidate)
            isFraud = true
        } else {
            let userRank = users.sample { draw.unit(Stream.zipfUser.rawValue &+ $0) }
            userID = Int64(userRanks(userRank - 1)) + 1
            let merchantRank = merchants.sample { draw.unit(Stream.zipfMerchant.rawValue &+ $0) }
            merchantID = Int64(merchantRanks(merchantRank - 1)) + 1
            deviceID = device(ofUser: userID, draw.below(spec.devicesPerUser, Stream.device.rawValue))
            isFraud = draw.unit(Stream.background.rawValue) < spec.backgroundFraudShare
        }
        let travelling = draw.unit(Stream.locationTravel.rawValue) < 0.1
        let locationID = travelling
            ? Int64(draw.below(spec.locations, Stream.location.rawValue)) + 1 : homeLocation(ofUser: userID)
        let category = self.category(ofMerchant: merchantID)
        let z = NormalQuantile.of(draw.unit(Stream.amount.rawValue))
        let amount = max(1, Int64((categoryMedians[category] * exp(categorySigmas[category] * z)).rounded()))
        let scoreDraw = draw.below(400, Stream.score.rawValue)
        return Transaction(
            index: index, userID: userID, merchantID: merchantID, deviceID: deviceID, locationID: locationID,
            amountCents: amount, timestampMillis: time,
            channel: UInt8(channels.pick(draw.unit(Stream.channel.rawValue))),
            declined: draw.unit(Stream.status.rawValue) < spec.declineShare,
            fraudScoreMillis: Int16(isFraud ? 600 + scoreDraw : scoreDraw), isFraud: isFraud, ringID: ringID)
    }
}
