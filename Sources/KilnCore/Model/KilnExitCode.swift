/// Process exit codes of every `kiln` command (documented in README.md). Scripts and CI branch on these.
public enum KilnExitCode: Int32, Sendable, CaseIterable {
    /// Everything checked is valid and every threshold held.
    case ok = 0
    /// A consistency anomaly was found (stores disagree with each other or with the oracle).
    case anomaly = 1
    /// A threshold, SLO or regression limit failed.
    case thresholdFailed = 2
    /// A checker could not decide (its result is unknown).
    case unknown = 3
    /// Bad command line, scenario, stack or dataset file (sysexits EX_USAGE).
    case invalidInput = 64
    /// The stack could not be set up or a server could not be reached (sysexits EX_UNAVAILABLE).
    case stackUnavailable = 69
    /// A bug in Kiln itself (sysexits EX_SOFTWARE).
    case internalError = 70
}

/// Counter-based SplitMix64: value `i` of stream `seed` is a pure function of both, so any index range can be
/// generated independently. (Steele, Lea, Flood: "Fast splittable pseudorandom number generators", 2014.)
public enum SplitMix64 {
    @inlinable
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The `index`-th 64-bit value of the stream keyed by `seed` and `stream` (a field number, so that the
    /// fields of one row draw independent values).
    @inlinable
    public static func value(seed: UInt64, index: UInt64, stream: UInt64 = 0) -> UInt64 {
        mix(mix(seed ^ (stream &* 0xD1B5_4A32_D192_ED03)) &+ index &* 0x9E37_79B9_7F4A_7C15)
    }
}
