import KilnCore

/// The generator's only source of randomness: counter-based SplitMix64 (KilnCore), keyed by (seed, stream) and
/// indexed by a row or entity number. Value `(stream, index)` is
///
///     SplitMix64.mix(key[stream] &+ index &* 0x9E3779B97F4A7C15),  key[stream] = SplitMix64.mix(seed ^ stream·K)
///
/// which is exactly `SplitMix64.value(seed:index:stream:)`; the keys are computed once per dataset so a draw costs
/// one mix (two multiplies). No state carries from one index to the next, so any index range draws alone and the
/// same on any machine, thread or shard split. Every field uses its own stream (`RandomStream`); a 64-bit value
/// may be split into two 32-bit draws of one row where noted.
///
/// Floating point enters only through IEEE-754 basic operations (exact-rounded, hence the same everywhere) in
/// the per-row path; libm (`exp`, `log`, `pow`, `erfc`) is called while building tables at init and on the rare
/// exact paths (log-normal tails, Zipf rejection tests near the boundary). A libm whose results differ in the
/// last place could in principle move one of those rare rows, never the others.
enum RandomStream: Int {
    // Per transaction (indexed by the row index).
    case ring = 0  // the candidate ring (alias pick); `ringGate` decides, inside the ring's window
    case user = 1, userPosition = 2, merchant = 3, merchantPosition = 4
    case deviceAndBackground = 5  // high: which of the user's devices; low: isolated (background) fraud
    case travelAndScore = 6  // high: travelling gate; low: fraud score. The location comes from `travelLocation`
    case travelLocation = 7
    case amount = 8
    case channelAndStatus = 9  // high: channel; low: declined
    case ringMember = 11, ringDevice = 12, ringMerchant = 13, ringGate = 14
    // Per entity (indexed by the entity id or a derived index).
    case merchantCategory = 20, merchantCurrency = 21, merchantLocation = 22
    case userDevice = 23, userHomeLocation = 24, userSignup = 25
    case deviceKind = 26, locationPoint = 27
    case ringSize = 30, ringWindow = 31, ringDevices = 32, ringMerchants = 33
    case userScramble = 34, merchantScramble = 35, ringScramble = 36
    /// Zipf rejection retries use `userRetry + attempt` (and the position stream `userRetry + 32 + attempt`).
    case userRetry = 64, merchantRetry = 128
    static let count = 192
}

/// The per-stream keys of one seed. Immutable after init; owns its buffer.
final class StreamKeys: Sendable {
    /// Written only in init, freed in deinit: safe to read from any thread.
    nonisolated(unsafe) let keys: UnsafeMutableBufferPointer<UInt64>

    init(seed: UInt64) {
        keys = .allocate(capacity: RandomStream.count)
        for stream in 0..<RandomStream.count {
            keys[stream] = SplitMix64.mix(seed ^ (UInt64(stream) &* 0xD1B5_4A32_D192_ED03))
        }
    }

    deinit { keys.deallocate() }

    var pointer: UnsafePointer<UInt64> { UnsafePointer(keys.baseAddress!) }
}

/// The draws of one index (a row or an entity), all streams. A value type of two words; valid while the
/// `StreamKeys` it points into is alive (the dataset keeps it).
@usableFromInline
struct Draws {
    @usableFromInline let keys: UnsafePointer<UInt64>
    @usableFromInline let index: UInt64

    @inlinable @inline(__always)
    init(_ keys: UnsafePointer<UInt64>, _ index: UInt64) {
        self.keys = keys
        self.index = index
    }

    @inline(__always)
    func bits(_ stream: RandomStream) -> UInt64 { bits(stream.rawValue) }

    @inlinable @inline(__always)
    func bits(_ stream: Int) -> UInt64 {
        SplitMix64.mix(keys[stream] &+ index &* 0x9E37_79B9_7F4A_7C15)
    }

    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always)
    func unit(_ stream: RandomStream) -> Double { Double(Int64(bitPattern: bits(stream) >> 11)) * 0x1.0p-53 }

    /// Uniform in 0..<bound (Lemire's multiply-shift on 64 bits; bias below bound / 2^64).
    @inline(__always)
    func below(_ bound: Int, _ stream: RandomStream) -> Int {
        Int(truncatingIfNeeded: bits(stream).multipliedFullWidth(by: UInt64(bound)).high)
    }
}

/// 32-bit halves of a 64-bit draw, for fields that need no more (bias of `below` is bound / 2^32, so use it for
/// bounds up to a few thousand only).
extension UInt64 {
    @inline(__always) var high32: UInt32 { UInt32(truncatingIfNeeded: self >> 32) }
    @inline(__always) var low32: UInt32 { UInt32(truncatingIfNeeded: self) }
}

extension UInt32 {
    @inline(__always)
    func below(_ bound: Int) -> Int { Int((UInt64(self) &* UInt64(bound)) >> 32) }

    /// A probability as a 32-bit threshold: `draw < threshold` has probability `p` to within 2^-32.
    @inline(__always)
    static func threshold(probability p: Double) -> UInt64 { UInt64((Swift.min(Swift.max(p, 0), 1) * 0x1.0p32).rounded()) }
}
