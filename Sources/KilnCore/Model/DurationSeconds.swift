/// The one conversion of `Duration` to plain numbers (Kiln's C wrappers and reports take seconds, milliseconds or
/// nanoseconds). Each is exact to the nanosecond and clamps nothing unless it says so.
extension Duration {
    /// Seconds as a `Double` (fractional): `1.5` for 1 500 ms.
    @inlinable
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// Milliseconds as a `Double` (fractional).
    @inlinable
    public var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }

    /// Whole milliseconds (truncated toward zero), for C APIs that take an integer timeout.
    @inlinable
    public var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Nanoseconds, negative durations clamped to 0: the unit of `MonotonicClock`.
    @inlinable
    public var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(max(0, seconds)) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
    }

    /// Seconds with one decimal, for log lines and tables: `3.9 s`.
    public var roundedSeconds: String {
        "\((seconds * 10).rounded() / 10) s"
    }
}
