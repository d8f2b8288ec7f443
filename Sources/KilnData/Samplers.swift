import Foundation
import KilnCore

/// Uniform draws keyed by (seed, index, stream): the only source of randomness of the generator. Every field of
/// row `i` uses its own stream number, so fields are independent and any row is recomputable alone.
@usableFromInline
struct Draw {
    /// `SplitMix64.mix(seed ^ stream·K)` for every stream (the seed-only half of `SplitMix64.value`), computed
    /// once per dataset; `bits(stream)` then equals `SplitMix64.value(seed:index:stream:)` at one mix per draw.
    @usableFromInline let keys: UnsafeBufferPointer<UInt64>
    @usableFromInline let index: UInt64

    @inlinable init(keys: UnsafeBufferPointer<UInt64>, index: UInt64) {
        self.keys = keys
        self.index = index
    }

    @inlinable func bits(_ stream: UInt64) -> UInt64 {
        SplitMix64.mix(keys[Int(stream)] &+ index &* 0x9E37_79B9_7F4A_7C15)
    }

    /// Uniform in [0, 1) with 53 random bits.
    @inlinable func unit(_ stream: UInt64) -> Double { Double(bits(stream) >> 11) * 0x1.0p-53 }

    /// Uniform in 0..<bound (Lemire's multiply-shift; the bias is below 2^-32 for bounds under 2^32).
    @inlinable func below(_ bound: Int, _ stream: UInt64) -> Int {
        Int(truncatingIfNeeded: (bits(stream).multipliedFullWidth(by: UInt64(bound))).high)
    }
}

/// Zipf over 1...n with exponent s by rejection-inversion (Hörmann & Derflinger 1996, as in Apache Commons RNG):
/// O(1) per sample, no table, expected < 1.1 uniforms per sample.
struct ZipfSampler: Sendable {
    let n: Double
    let exponent: Double
    let hIntegralX1: Double
    let hIntegralN: Double
    let s: Double

    init(count: Int, exponent: Double) {
        self.n = Double(count)
        self.exponent = exponent
        hIntegralX1 = Self.hIntegral(1.5, exponent) - 1
        hIntegralN = Self.hIntegral(Double(count) + 0.5, exponent)
        s = 2 - Self.hIntegralInverse(Self.hIntegral(2.5, exponent) - Self.h(2, exponent), exponent)
    }

    /// A rank in 1...n; `uniform(k)` supplies the k-th uniform for this sample (k = 0, 1, … on rejection).
    @inline(__always)
    func sample(_ uniform: (UInt64) -> Double) -> Int {
        var attempt: UInt64 = 0
        while true {
            let u = hIntegralN + uniform(attempt) * (hIntegralX1 - hIntegralN)
            let x = Self.hIntegralInverse(u, exponent)
            var k = (x + 0.5).rounded(.down)
            if k < 1 { k = 1 } else if k > n { k = n }
            if k - x <= s || u >= Self.hIntegral(k + 0.5, exponent) - Self.h(k, exponent) { return Int(k) }
            attempt += 1
        }
    }

    static func h(_ x: Double, _ exponent: Double) -> Double { exp(-exponent * log(x)) }

    static func hIntegral(_ x: Double, _ exponent: Double) -> Double {
        let logX = log(x)
        return helper2((1 - exponent) * logX) * logX
    }

    static func hIntegralInverse(_ x: Double, _ exponent: Double) -> Double {
        var t = x * (1 - exponent)
        if t < -1 { t = -1 }
        return exp(helper1(t) * x)
    }

    /// log1p(x) / x, continuous at 0.
    static func helper1(_ x: Double) -> Double {
        abs(x) > 1e-8 ? log1p(x) / x : 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x))
    }

    /// expm1(x) / x, continuous at 0.
    static func helper2(_ x: Double) -> Double {
        abs(x) > 1e-8 ? expm1(x) / x : 1 + x * 0.5 * (1 + x / 3 * (1 + 0.25 * x))
    }
}

/// The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9): one uniform in, one
/// normal deviate out, so a log-normal amount costs one draw.
enum NormalQuantile {
    static let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
        -3.066479806614716e+01, 2.506628277459239e+00]
    static let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
        -1.328068155288572e+01]
    static let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
        4.374664141464968e+00, 2.938163982698783e+00]
    static let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]

    @inline(__always)
    static func of(_ p: Double) -> Double {
        let p = min(max(p, 1e-15), 1 - 1e-15)
        if p < 0.02425 {
            let q = (-2 * log(p)).squareRoot()
            return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
                / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        }
        if p > 1 - 0.02425 {
            let q = (-2 * log(1 - p)).squareRoot()
            return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
                / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        }
        let q = p - 0.5
        let r = q * q
        return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    }
}

/// Picks an index with probability proportional to its weight: a cumulative table searched linearly (the lists
/// are a handful of channels or categories long).
struct WeightedChoice: Sendable {
    let cumulative: [Double]

    init(_ weights: [Double]) {
        var running = 0.0
        var table: [Double] = []
        for weight in weights {
            running += weight
            table.append(running)
        }
        cumulative = table.map { $0 / running }
    }

    @inline(__always)
    func pick(_ unit: Double) -> Int {
        for (index, bound) in cumulative.enumerated() where unit < bound { return index }
        return cumulative.count - 1
    }
}

/// A bijection of 0..<n (x -> (a·x + b) mod n with gcd(a, n) = 1), used to scatter popularity ranks and ring
/// members over entity ids so that popular users are not simply ids 1, 2, 3.
struct Scramble: Sendable {
    let n: UInt64
    let a: UInt64
    let b: UInt64

    init(count: Int, seed: UInt64, stream: UInt64) {
        n = UInt64(count)
        var candidate = (SplitMix64.value(seed: seed, index: 0, stream: stream) % n) | 1
        func gcd(_ x: UInt64, _ y: UInt64) -> UInt64 { y == 0 ? x : gcd(y, x % y) }
        while n > 1 && gcd(candidate, n) != 1 { candidate = (candidate + 2) % n | 1 }
        a = n == 1 ? 0 : candidate
        b = SplitMix64.value(seed: seed, index: 1, stream: stream) % n
    }

    @inline(__always)
    func callAsFunction(_ x: Int) -> Int {
        Int((UInt64(x).multipliedFullWidth(by: a).low % n &+ b) % n)
    }
}
