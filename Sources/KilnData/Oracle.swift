import KilnCore

/// What any store holding rows of a range must add up to. `digest` is the wrapping sum of the rows' 64-bit hashes,
/// so it is independent of order and summaries of disjoint ranges add up (`+`).
public struct RangeSummary: Sendable, Hashable {
    public var count: Int64 = 0
    /// Exact sum of amounts in cents (Int64: 1B rows of up to 10^7 € each still fit).
    public var amountCents: Int64 = 0
    public var fraudCount: Int64 = 0
    public var digest: UInt64 = 0

    public init() {}

    public mutating func add(_ row: Transaction) {
        count += 1
        amountCents += row.amountCents
        if row.isFraud { fraudCount += 1 }
        digest &+= row.digest
    }

    public static func + (left: RangeSummary, right: RangeSummary) -> RangeSummary {
        var sum = left
        sum.count += right.count
        sum.amountCents += right.amountCents
        sum.fraudCount += right.fraudCount
        sum.digest &+= right.digest
        return sum
    }
}

/// Per-key totals for a range (per user, per merchant).
public struct KeyTotals: Sendable, Hashable {
    public var count: Int64 = 0
    public var amountCents: Int64 = 0
}

extension Transaction {
    /// A 64-bit hash of every field: equal rows hash equal, any changed field changes it (with overwhelming odds).
    public var digest: UInt64 {
        var h = SplitMix64.mix(UInt64(bitPattern: index))
        for field in [
            userID, merchantID, deviceID, locationID, amountCents, timestampMillis, Int64(channel),
            declined ? 1 : 0, Int64(fraudScoreMillis), isFraud ? 1 : 0, Int64(ringID),
        ] {
            h = SplitMix64.mix(h ^ UInt64(bitPattern: field))
        }
        return h
    }
}

/// The checkers' oracle: expected facts about any index range, recomputed from (spec, seed) in O(rows in range)
/// time and O(1) memory (O(keys) for per-key totals) — nothing is stored or read back from a store.
extension Dataset {
    public func summary(of range: Range<Int64>) -> RangeSummary {
        var summary = RangeSummary()
        for index in clamp(range) { summary.add(transaction(index)) }
        return summary
    }

    /// Summaries per time bucket of `bucketMillis` (keyed by the bucket's start, Unix ms), for digest bisection.
    public func bucketSummaries(of range: Range<Int64>, bucketMillis: Int64) -> [Int64: RangeSummary] {
        var buckets: [Int64: RangeSummary] = [:]
        for index in clamp(range) {
            let row = transaction(index)
            let key = row.timestampMillis - ((row.timestampMillis % bucketMillis) + bucketMillis) % bucketMillis
            buckets[key, default: RangeSummary()].add(row)
        }
        return buckets
    }

    public func userTotals(of range: Range<Int64>) -> [Int64: KeyTotals] {
        var totals: [Int64: KeyTotals] = [:]
        for index in clamp(range) {
            let row = transaction(index)
            totals[row.userID, default: KeyTotals()].count += 1
            totals[row.userID, default: KeyTotals()].amountCents += row.amountCents
        }
        return totals
    }

    public func merchantTotals(of range: Range<Int64>) -> [Int64: KeyTotals] {
        var totals: [Int64: KeyTotals] = [:]
        for index in clamp(range) {
            let row = transaction(index)
            totals[row.merchantID, default: KeyTotals()].count += 1
            totals[row.merchantID, default: KeyTotals()].amountCents += row.amountCents
        }
        return totals
    }

    /// The ring a user belongs to (ground truth), or nil.
    public func ring(ofUser user: Int64) -> Int? {
        rings.first { $0.members.contains(user) }?.id
    }

    private func clamp(_ range: Range<Int64>) -> Range<Int64> {
        max(0, range.lowerBound)..<min(rows, max(range.upperBound, max(0, range.lowerBound)))
    }
}
