import Foundation

/// Owns the lookup tables of one dataset. Tables are filled during the dataset's init and never written again,
/// then read through unsafe buffers by any number of threads; they are freed when the arena (and so the dataset)
/// goes away, so a sampler must not outlive the dataset that built it.
final class TableArena: @unchecked Sendable {
    // @unchecked: `allocations` is appended to only during the owning Dataset's init (single thread) and read in
    // deinit; the table contents are immutable once the init returns.
    private var allocations: [UnsafeMutableRawPointer] = []

    func table<Element>(_ values: [Element]) -> UnsafeBufferPointer<Element> {
        let buffer = UnsafeMutableBufferPointer<Element>.allocate(capacity: max(values.count, 1))
        _ = buffer.initialize(from: values)
        allocations.append(UnsafeMutableRawPointer(buffer.baseAddress!))
        return UnsafeBufferPointer(rebasing: buffer[0..<values.count])
    }

    deinit {
        for pointer in allocations { pointer.deallocate() }
    }
}

/// Zipf over ranks 1...n with exponent s (P(k) ∝ k^-s), O(1) per sample with tables of O(log n) entries and no
/// libm call on the common path.
///
/// Ranks are grouped into segments `[a, a + w)` with `w = max(1, a / 64)`: single ranks up to 127, then
/// segments at most 1/64 wide relative to their start (723 segments for n = 10^6, 1,213 for 2·10^9). A segment is
/// picked by Walker/Vose alias from its envelope mass `w · a^-s`; a rank inside it uniformly; the rank is then
/// accepted with probability `(k / a)^-s` (≥ 0.925 for s ≤ 5, ≥ 0.984 for s ≤ 1) — tested first against the
/// tangent bound `1 - s·d` (d = (k - a) / a), calling `pow` only in the sliver between the two — and on rejection
/// the draw repeats with the next retry stream. The result is exactly Zipf up to the rounding of the alias
/// thresholds (2^-64) and a 32-attempt cap (reached with probability < 0.075^32).
struct ZipfSampler {
    struct Column {
        /// Keep this column's own segment when the fraction draw is below this (×2^-64).
        var threshold: UInt64
        var start: UInt32
        var width: UInt32
        var aliasStart: UInt32
        var aliasWidth: UInt32
    }

    let columns: UnsafeBufferPointer<Column>
    let columnCount: UInt64
    let exponent: Double
    let ranks: Int

    init(count: Int, exponent: Double, arena: TableArena) {
        precondition(count >= 1 && count <= Int(UInt32.max))
        self.exponent = exponent
        self.ranks = count
        var segments: [(start: Int, width: Int)] = []
        var start = 1
        while start <= count {
            let width = min(max(1, start >> 6), count - start + 1)
            segments.append((start, width))
            start += width
        }
        let masses = segments.map { Double($0.width) * pow(Double($0.start), -exponent) }
        let (keep, alias) = voseAlias(masses)
        columns = arena.table(
            segments.indices.map { index in
                let other = segments[alias[index]]
                return Column(
                    threshold: keep[index] >= 1 ? UInt64.max : UInt64(keep[index] * 0x1.0p64),
                    start: UInt32(segments[index].start), width: UInt32(segments[index].width),
                    aliasStart: UInt32(other.start), aliasWidth: UInt32(other.width))
            })
        columnCount = UInt64(segments.count)
    }

    /// A rank in 1...n for the draws of one row; `stream` is the first draw, `position` the in-segment draw and
    /// `retry` the base of the retry streams (`retry + attempt`, `retry + 32 + attempt`).
    @inline(__always)
    func sample(_ draws: Draws, stream: Int, position: Int, retry: Int) -> Int {
        var bits = draws.bits(stream)
        var positionStream = position
        var attempt = 0
        while true {
            let (column, fraction) = bits.multipliedFullWidth(by: columnCount)
            let entry = columns[Int(truncatingIfNeeded: column)]
            let keep = fraction < entry.threshold
            let start = keep ? entry.start : entry.aliasStart
            let width = keep ? entry.width : entry.aliasWidth
            // No branch on `width == 1` (taken about half the time, so unpredictable): width 1 gives offset 0,
            // distance 0, always accepted.
            let (offset, acceptance) = draws.bits(positionStream).multipliedFullWidth(by: UInt64(width))
            // Accept with probability (1 + d)^-s, d = offset / start: first against the tangent 1 - s·d, written
            // without a division (u·start + s·offset < start), then exactly.
            let u = Double(Int64(bitPattern: acceptance >> 11)) * 0x1.0p-53
            let startValue = Double(Int64(start))
            let offsetValue = Double(Int64(bitPattern: offset))
            if u * startValue + exponent * offsetValue < startValue || attempt == 31
                || u < pow(1 + offsetValue / startValue, -exponent)
            {
                return Int(start) + Int(offset)
            }
            attempt += 1
            bits = draws.bits(retry + attempt)
            positionStream = retry + 32 + attempt
        }
    }
}

/// Vose's alias construction: column i keeps itself with probability keep[i], else takes alias[i]; each index's
/// total probability is its weight over the sum.
func voseAlias(_ weights: [Double]) -> (keep: [Double], alias: [Int]) {
    let total = weights.reduce(0, +)
    var scaled = weights.map { total > 0 ? $0 * Double(weights.count) / total : 1 }
    var keep = Array(repeating: 1.0, count: weights.count)
    var alias = Array(weights.indices)
    var small = scaled.indices.filter { scaled[$0] < 1 }
    var large = scaled.indices.filter { scaled[$0] >= 1 }
    while let less = small.popLast(), let more = large.last {
        keep[less] = scaled[less]
        alias[less] = more
        scaled[more] -= 1 - scaled[less]
        if scaled[more] < 1 {
            large.removeLast()
            small.append(more)
        }
    }
    // Whatever is left is 1 up to rounding.
    return (keep, alias)
}

/// Picks an index with probability proportional to its weight in O(1) from one 64-bit draw (Walker/Vose alias:
/// the high half picks a column, the low half decides between the column and its alias).
struct AliasPick {
    /// Keep the column when the low half of the draw is below this (×2^32).
    let keep: UnsafeBufferPointer<UInt64>
    let alias: UnsafeBufferPointer<Int32>

    init(_ weights: [Double], arena: TableArena) {
        let (keepProbabilities, aliases) = voseAlias(weights)
        keep = arena.table(keepProbabilities.map { UInt32.threshold(probability: $0) })
        alias = arena.table(aliases.map { Int32($0) })
    }

    @inline(__always)
    func pick(_ bits: UInt64) -> Int {
        let column = bits.high32.below(keep.count)
        return UInt64(bits.low32) < keep[column] ? column : Int(alias[column])
    }
}

/// The standard normal quantile Φ⁻¹(p): Acklam's rational approximation refined by one Halley step on erfc, to
/// about 1e-15 relative. Used to build tables and on the rare exact tail path.
enum NormalQuantile {
    static let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
        -3.066479806614716e+01, 2.506628277459239e+00]
    static let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
        -1.328068155288572e+01]
    static let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
        4.374664141464968e+00, 2.938163982698783e+00]
    static let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]

    static func of(_ probability: Double) -> Double {
        let p = min(max(probability, 0x1.0p-60), 1 - 0x1.0p-53)
        var x: Double
        if p < 0.02425 {
            let q = (-2 * log(p)).squareRoot()
            x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
                / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        } else if p > 1 - 0.02425 {
            let q = (-2 * log(1 - p)).squareRoot()
            x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
                / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        } else {
            let q = p - 0.5
            let r = q * q
            x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
                / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
        }
        // One Halley step: e = Φ(x) - p.
        let e = 0.5 * erfc(-x / 2.0.squareRoot()) - p
        let u = e * (2 * Double.pi).squareRoot() * exp(x * x / 2)
        x -= u / (1 + x * u / 2)
        return x
    }
}

/// Log-normal amounts in cents, one table of quantiles per category: `median · exp(σ · Φ⁻¹(u))` at u = j/4096,
/// linearly interpolated in between, exact (libm) in the outermost cell on each side (u < 1/4096 or
/// u ≥ 4095/4096). Quantiles at the 4,095 grid points are exact; between them the interpolation error is below
/// 1e-3 relative for σ ≤ 1 (the spec allows up to 3). Quantiles are stored as Float (see `quantiles`).
struct LogNormalTable {
    static let cells = 4096
    static let maximumCents: Double = 1e13

    /// Float, not Double: half the cache footprint (the table is read once per row at a random cell) for a
    /// relative error of 6e-8, far below a cent for any plausible amount.
    let quantiles: UnsafeBufferPointer<Float>
    let medians: UnsafeBufferPointer<Double>
    let sigmas: UnsafeBufferPointer<Double>

    init(medianCents: [Double], sigmas sigmaValues: [Double], arena: TableArena) {
        var values: [Float] = []
        values.reserveCapacity(medianCents.count * (Self.cells + 1))
        let grid = (0...Self.cells).map { $0 == 0 || $0 == Self.cells ? 0 : NormalQuantile.of(Double($0) / Double(Self.cells)) }
        for (median, sigma) in zip(medianCents, sigmaValues) {
            for z in grid { values.append(Float(min(median * exp(sigma * z), Self.maximumCents))) }
        }
        quantiles = arena.table(values)
        medians = arena.table(medianCents)
        sigmas = arena.table(sigmaValues)
    }

    /// The amount in cents for category `category` and 64 random bits: the top 12 bits pick the cell, the other
    /// 52 the position inside it. At least 1 cent, at most 10^13 (numeric(15,2)'s range).
    @inline(__always)
    func cents(category: Int, bits: UInt64) -> Int64 {
        let cell = Int(truncatingIfNeeded: bits >> 52)
        let fraction = Double(Int64(bitPattern: bits & 0x000F_FFFF_FFFF_FFFF)) * 0x1.0p-52
        let value: Double
        if cell == 0 || cell == Self.cells - 1 {
            value = tail(category: category, u: (Double(cell) + fraction) / Double(Self.cells))
        } else {
            let base = category &* (Self.cells + 1) &+ cell
            let low = Double(quantiles[base])
            value = low + (Double(quantiles[base + 1]) - low) * fraction
        }
        return max(1, Int64(value + 0.5))
    }

    @inline(never)
    func tail(category: Int, u: Double) -> Double {
        min(medians[category] * exp(sigmas[category] * NormalQuantile.of(u)), Self.maximumCents)
    }
}

/// Picks an index with probability proportional to its weight from a 32-bit draw, exactly as "the number of
/// cumulative thresholds at or below the draw". A 4096-entry guide table answers directly from the draw's top 12
/// bits whenever that slice of the draw range lies inside one entry's interval; only slices holding a threshold
/// (at most one per entry, so below count/4096 of the draws) fall back to a binary search.
struct WeightedChoice {
    /// Cumulative probabilities ×2^32; the last is 2^32.
    let thresholds: UnsafeBufferPointer<UInt64>
    /// The answer for each 2^20-wide slice of the draw range, or 255 when a threshold falls inside the slice.
    let guide: UnsafeBufferPointer<UInt8>

    init(_ weights: [Double], arena: TableArena) {
        precondition(weights.count <= 255)
        let total = weights.reduce(0, +)
        var running = 0.0
        var table: [UInt64] = []
        for weight in weights {
            running += weight
            table.append(UInt64((running / total * 0x1.0p32).rounded()))
        }
        table[table.count - 1] = 1 << 32
        thresholds = arena.table(table)
        guide = arena.table(
            (0..<4096).map { (slice: UInt64) -> UInt8 in
                let first = Self.search(table, slice << 20)
                let last = Self.search(table, (slice << 20) + (1 << 20) - 1)
                return first == last ? UInt8(first) : 255
            })
    }

    static func search(_ thresholds: [UInt64], _ value: UInt64) -> Int {
        thresholds.firstIndex { value < $0 }!
    }

    @inline(__always)
    func pick(_ draw: UInt32) -> Int {
        let guess = guide[Int(draw >> 20)]
        return guess != 255 ? Int(guess) : search(UInt64(draw))
    }

    @inline(never)
    func search(_ value: UInt64) -> Int {
        var low = 0
        var high = thresholds.count - 1
        while low < high {
            let middle = (low + high) / 2
            if value >= thresholds[middle] { low = middle + 1 } else { high = middle }
        }
        return low
    }
}

/// A bijection of 0..<n, x -> (a·x + b) mod n with gcd(a, n) = 1, and its inverse. Scatters popularity ranks and
/// ring members over entity ids so that the most popular user is not simply id 1. n < 2^32, so a·x fits 64 bits.
struct Scramble: Sendable {
    let n: UInt64
    let a: UInt64
    let b: UInt64
    let inverseA: UInt64
    /// ⌊2^64 / n⌋ (Barrett reduction: one multiply instead of a division per call).
    let reciprocal: UInt64

    init(count: Int, keys: StreamKeys, stream: RandomStream) {
        n = UInt64(count)
        let draws = Draws(keys.pointer, 0)
        var candidate = n <= 2 ? 1 : (draws.bits(stream) % (n - 1)) + 1
        func gcd(_ x: UInt64, _ y: UInt64) -> UInt64 { y == 0 ? x : gcd(y, x % y) }
        while gcd(candidate, n) != 1 { candidate = candidate % (n - 1) + 1 }
        a = candidate
        b = Draws(keys.pointer, 1).bits(stream) % n
        inverseA = Self.modularInverse(candidate, n)
        reciprocal = n == 1 ? UInt64.max : UInt64.max / n
    }

    @inline(__always)
    func callAsFunction(_ x: Int) -> Int { Int(reduce(a &* UInt64(x) &+ b)) }

    func inverse(_ y: Int) -> Int { Int((inverseA &* ((UInt64(y) &+ n &- b) % n)) % n) }

    /// y mod n for y < 2^64 and n < 2^32: the quotient estimate is at most 1 low, so one correction suffices
    /// (for n = 1 everything is 0).
    @inline(__always)
    func reduce(_ y: UInt64) -> UInt64 {
        let quotient = y.multipliedFullWidth(by: reciprocal).high
        let remainder = y &- quotient &* n
        return n == 1 ? 0 : remainder >= n ? remainder &- n : remainder
    }

    static func modularInverse(_ value: UInt64, _ modulus: UInt64) -> UInt64 {
        guard modulus > 1 else { return 0 }
        var (oldR, r) = (Int64(value), Int64(modulus))
        var (oldS, s): (Int64, Int64) = (1, 0)
        while r != 0 {
            let q = oldR / r
            (oldR, r) = (r, oldR - q * r)
            (oldS, s) = (s, oldS - q * s)
        }
        return UInt64((oldS % Int64(modulus) + Int64(modulus)) % Int64(modulus))
    }
}
