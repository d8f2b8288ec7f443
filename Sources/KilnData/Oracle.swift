import Dispatch
import KilnCore

/// What any store holding exactly the rows of a range must add up to. Summaries of disjoint ranges add up (`+`),
/// and every field is independent of row order.
public struct RangeSummary: Sendable, Hashable {
    public var count: Int64 = 0
    /// Exact sum of amounts in cents (a valid spec keeps `max_rows × mean amount` below 10^17).
    public var amountCents: Int64 = 0
    public var fraudCount: Int64 = 0
    /// Rows that belong to a planted ring.
    public var ringCount: Int64 = 0
    /// Wrapping sum of the rows' `digest`s.
    public var digest: UInt64 = 0

    public init() {}

    @inline(__always)
    public mutating func add(_ row: Transaction) {
        count += 1
        amountCents += row.amountCents
        if row.isFraud { fraudCount += 1 }
        if row.ringID >= 0 { ringCount += 1 }
        digest &+= row.digest
    }

    public static func + (left: RangeSummary, right: RangeSummary) -> RangeSummary {
        var sum = left
        sum.count += right.count
        sum.amountCents += right.amountCents
        sum.fraudCount += right.fraudCount
        sum.ringCount += right.ringCount
        sum.digest &+= right.digest
        return sum
    }
}

/// Per-key totals for a range (per user, per merchant).
public struct KeyTotals: Sendable, Hashable {
    public var count: Int64 = 0
    public var amountCents: Int64 = 0
    public var fraudCount: Int64 = 0

    public init() {}

    @inline(__always)
    mutating func add(_ row: Transaction) {
        count += 1
        amountCents += row.amountCents
        if row.isFraud { fraudCount += 1 }
    }
}

extension Transaction {
    /// A 64-bit hash of every field, in column order (txn_id, user_id, merchant_id, device_id, location_id,
    /// amount in cents, ts in Unix ms, currency index, channel index, declined, fraud score in thousandths,
    /// is_fraud, ring_id or -1). Each step `h = rotate((h ^ field) · odd)` is a bijection of h and of the field, so
    /// two rows that differ in exactly one field always hash differently; rows differing in several collide with
    /// probability about 2^-64. A checker reading rows back from a store computes the same value from the same
    /// fields.
    @inline(__always)
    public var digest: UInt64 {
        var h: UInt64 = 0x243F_6A88_85A3_08D3
        @inline(__always) func step(_ field: Int64) {
            h = (h ^ UInt64(bitPattern: field)) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
        }
        step(txnID)
        step(userID)
        step(merchantID)
        step(deviceID)
        step(locationID)
        step(amountCents)
        step(timestampMillis)
        step(Int64(currency))
        step(Int64(channel))
        step(declined ? 1 : 0)
        step(Int64(fraudScoreMillis))
        step(isFraud ? 1 : 0)
        step(Int64(ringID))
        return SplitMix64.mix(h)
    }
}

/// The checkers' oracle: expected facts about any index range, recomputed from (spec, seed, rows) in
/// O(rows in range) time — nothing is stored or read back from a store. Out-of-dataset parts of a range are
/// ignored. All methods are thread-safe.
extension Dataset {
    public func summary(of range: Range<Int64>) -> RangeSummary {
        var summary = RangeSummary()
        for index in clamp(range) { summary.add(tables.transaction(index)) }
        return summary
    }

    /// The same as `summary(of:)`, split over `parallelism` threads.
    public func summary(of range: Range<Int64>, parallelism: Int) -> RangeSummary {
        let range = clamp(range)
        let chunks = max(1, min(parallelism * 8, range.count / 100_000))
        guard parallelism > 1, chunks > 1 else { return summary(of: range) }
        let parts = UnsafeMutableBufferPointer<RangeSummary>.allocate(capacity: chunks)
        parts.initialize(repeating: RangeSummary())
        defer { parts.deallocate() }
        let size = Int64(range.count)
        nonisolated(unsafe) let slots = parts  // each chunk writes only its own slot
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let lower = range.lowerBound + size * Int64(chunk) / Int64(chunks)
            let upper = range.lowerBound + size * Int64(chunk + 1) / Int64(chunks)
            slots[chunk] = self.summary(of: lower..<upper)
        }
        return parts.reduce(RangeSummary(), +)
    }

    /// Summaries per time bucket of `bucketMillis` (keyed by the bucket's start, Unix ms, buckets aligned to the
    /// Unix epoch), for bisecting a digest mismatch down to a bucket. Empty buckets are absent.
    public func bucketSummaries(of range: Range<Int64>, bucketMillis: Int64) -> [Int64: RangeSummary] {
        precondition(bucketMillis > 0)
        var buckets: [Int64: RangeSummary] = [:]
        var currentKey = Int64.min
        var current = RangeSummary()
        for index in clamp(range) {
            let row = tables.transaction(index)
            let key = ArrivalSchedule.floorDivide(row.timestampMillis, bucketMillis) * bucketMillis
            if key != currentKey {
                // Timestamps are non-decreasing, so a bucket's rows are contiguous.
                if current.count > 0 { buckets[currentKey] = current }
                currentKey = key
                current = RangeSummary()
            }
            current.add(row)
        }
        if current.count > 0 { buckets[currentKey] = current }
        return buckets
    }

    public func userTotals(of range: Range<Int64>) -> [Int64: KeyTotals] {
        var totals: [Int64: KeyTotals] = [:]
        for index in clamp(range) {
            let row = tables.transaction(index)
            totals[row.userID, default: KeyTotals()].add(row)
        }
        return totals
    }

    public func merchantTotals(of range: Range<Int64>) -> [Int64: KeyTotals] {
        var totals: [Int64: KeyTotals] = [:]
        for index in clamp(range) {
            let row = tables.transaction(index)
            totals[row.merchantID, default: KeyTotals()].add(row)
        }
        return totals
    }

    /// Per planted ring, the summary of its transactions in the range (indexed by ring id).
    public func ringSummaries(of range: Range<Int64>) -> [RangeSummary] {
        var summaries = Array(repeating: RangeSummary(), count: rings.count)
        for index in clamp(range) {
            let row = tables.transaction(index)
            if row.ringID >= 0 { summaries[Int(row.ringID)].add(row) }
        }
        return summaries
    }

    func clamp(_ range: Range<Int64>) -> Range<Int64> {
        let lower = min(max(0, range.lowerBound), rows)
        return lower..<min(rows, max(range.upperBound, lower))
    }
}
