/// The arrival process by index: which instant row `i` happens at, and which rows fall in a time range.
///
/// The span is cut into hour buckets weighted by `diurnal[hour of day] × weekly[weekday]` (UTC). Bucket b receives
/// a fixed number of rows — its share of `rows`, rounded by largest remainder so the counts sum to `rows` exactly —
/// spread evenly over the hour: row `first_b + o` is at `hourStart_b + ⌊o · step_b / 2^32⌋` ms with
/// `step_b = ⌊3,600,000 · 2^32 / count_b⌋`. So timestamps are non-decreasing in the index, index -> time is O(1)
/// (a guide table of the cumulative counts plus a short forward scan) and time -> index is O(1) arithmetic on the
/// bucket of that time. Immutable; the tables belong to the dataset's arena.
struct ArrivalSchedule {
    static let bucketMillis: Int64 = 3_600_000

    let startMillis: Int64
    let rows: Int64
    let bucketCount: Int
    /// First row of each bucket, plus `rows` at the end (bucketCount + 1 entries).
    let bucketStarts: UnsafeBufferPointer<Int64>
    /// Per bucket: milliseconds per row ×2^32.
    let steps: UnsafeBufferPointer<UInt64>
    /// `guide[i >> guideShift]` is a bucket at or before the bucket of row i.
    let guide: UnsafeBufferPointer<Int32>
    let guideShift: Int

    init(startMillis: Int64, days: Int, diurnal: [Double], weekly: [Double], rows: Int64, arena: TableArena) {
        self.startMillis = startMillis
        self.rows = rows
        let hours = days * 24
        bucketCount = hours
        let firstHour = Self.floorDivide(startMillis, Self.bucketMillis)
        var weights: [Double] = []
        weights.reserveCapacity(hours)
        for hour in 0..<Int64(hours) {
            let absolute = firstHour + hour
            let hourOfDay = Int(((absolute % 24) + 24) % 24)
            // 1970-01-01 was a Thursday: weekday 3 with Monday = 0.
            let weekday = Int(((Self.floorDivide(absolute, 24) + 3) % 7 + 7) % 7)
            weights.append(diurnal[hourOfDay] * weekly[weekday])
        }
        let total = weights.reduce(0, +)
        let exact = weights.map { $0 / total * Double(rows) }
        var counts = exact.map { Int64($0.rounded(.down)) }
        var remainder = rows - counts.reduce(0, +)
        // Largest remainder first; ties by hour, so the table is deterministic.
        let order = exact.indices.sorted {
            let left = exact[$0] - Double(counts[$0])
            let right = exact[$1] - Double(counts[$1])
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
        for count in counts { starts.append(starts[starts.count - 1] + count) }
        bucketStarts = arena.table(starts)
        steps = arena.table(counts.map { $0 == 0 ? 0 : (UInt64(Self.bucketMillis) << 32) / UInt64($0) })

        // About four guide entries per bucket; each covers 2^shift rows.
        var shift = 0
        while (rows >> (shift + 1)) >= Int64(4 * hours) { shift += 1 }
        guideShift = shift
        let guideCount = Int(rows >> shift) + 1
        var guideTable: [Int32] = []
        guideTable.reserveCapacity(guideCount)
        var bucket = 0
        for entry in 0..<guideCount {
            let first = Int64(entry) << shift
            while bucket + 1 < hours && starts[bucket + 1] <= first { bucket += 1 }
            guideTable.append(Int32(bucket))
        }
        guide = arena.table(guideTable)
    }

    static func floorDivide(_ x: Int64, _ y: Int64) -> Int64 { x >= 0 ? x / y : -((-x + y - 1) / y) }

    /// The bucket holding row `index` (0 ≤ index < rows).
    @inline(__always)
    func bucket(of index: Int64) -> Int {
        var bucket = Int(guide[Int(truncatingIfNeeded: index >> guideShift)])
        while bucketStarts[bucket &+ 1] <= index { bucket &+= 1 }
        return bucket
    }

    /// Unix milliseconds of row `index` (0 ≤ index < rows).
    @inline(__always)
    func timestamp(of index: Int64) -> Int64 { locate(index).millis }

    /// The bucket of row `index` and its Unix milliseconds (0 ≤ index < rows).
    @inline(__always)
    func locate(_ index: Int64) -> (bucket: Int, millis: Int64) {
        let bucket = bucket(of: index)
        let offset = UInt64(truncatingIfNeeded: index &- bucketStarts[bucket]) &* steps[bucket]
        return (bucket, startMillis &+ Int64(bucket) &* Self.bucketMillis &+ Int64(truncatingIfNeeded: offset >> 32))
    }

    /// Buckets (hours) overlapping [from, to).
    func buckets(overlapping from: Int64, _ to: Int64) -> Range<Int> {
        let first = max(0, min(Int64(bucketCount), Self.floorDivide(from - startMillis, Self.bucketMillis)))
        let last = max(first, min(Int64(bucketCount), Self.floorDivide(to - startMillis - 1, Self.bucketMillis) + 1))
        return Int(first)..<Int(last)
    }

    /// The first row whose timestamp is at or after `millis` (`rows` when there is none).
    func firstIndex(atOrAfter millis: Int64) -> Int64 {
        if millis <= startMillis { return 0 }
        let bucket = Self.floorDivide(millis - startMillis, Self.bucketMillis)
        if bucket >= Int64(bucketCount) { return rows }
        let b = Int(bucket)
        let first = bucketStarts[b]
        let count = bucketStarts[b + 1] - first
        let step = steps[b]
        guard count > 0 else { return first }
        let target = UInt64(millis - startMillis - bucket * Self.bucketMillis)
        func time(_ offset: Int64) -> UInt64 { (UInt64(offset) &* step) >> 32 }
        var offset = Int64(min(UInt64(count), ((target << 32) + step - 1) / step))
        while offset > 0 && time(offset - 1) >= target { offset -= 1 }
        while offset < count && time(offset) < target { offset += 1 }
        return first + offset
    }

    /// Rows with timestamps in [from, to).
    func indexRange(fromMillis from: Int64, toMillis to: Int64) -> Range<Int64> {
        let lower = firstIndex(atOrAfter: from)
        return lower..<max(lower, firstIndex(atOrAfter: to))
    }

    /// Rows of bucket `b` (hour `b` of the span).
    func rows(ofBucket b: Int) -> Range<Int64> { bucketStarts[b]..<bucketStarts[b + 1] }
}
