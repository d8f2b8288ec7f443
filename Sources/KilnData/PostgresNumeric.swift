/// PostgreSQL's binary `numeric` (COPY binary and binary parameters) for `value / 10^scale` — the one encoder, used by
/// the dataset's COPY encoder and the TimescaleDB client.
///
/// Layout (big-endian): Int32 byte length of what follows, Int16 digit-group count, Int16 weight, UInt16 sign
/// (0x0000, or 0x4000 negative), Int16 display scale, then the base-10000 digit groups, most significant first.
/// Zero groups at either end are omitted, as PostgreSQL does; zero is `ndigits 0, weight 0`.
/// Range: scale 2...4 and any Int64 `value` (at most five integer groups and one fraction group).
public enum PostgresNumeric {
    /// The largest field `write` produces: 4 + 8 + 2 × 6 bytes.
    public static let maximumFieldBytes = 24

    /// Calls `int32` once (the field length), then `int16` for each 16-bit word in order; callers write each value
    /// big-endian. Precondition: `scale` is 2, 3 or 4.
    @inline(__always)
    public static func write(
        _ value: Int64, scale: Int, int32: (Int32) -> Void, int16: (UInt16) -> Void
    ) {
        precondition((2...4).contains(scale), "PostgresNumeric scale \(scale) is not 2...4")
        let magnitude = value.magnitude
        let divisor: UInt64 = scale == 2 ? 100 : scale == 3 ? 1000 : 10_000
        let integer = magnitude / divisor
        let fraction = (magnitude % divisor) * (10_000 / divisor)  // one base-10000 group
        var integerGroups = 0
        var rest = integer
        while rest > 0 {
            integerGroups += 1
            rest /= 10_000
        }
        /// Integer group `position` counted from the least significant (0).
        @inline(__always) func group(_ position: Int) -> UInt64 {
            var shifted = integer
            for _ in 0..<position { shifted /= 10_000 }
            return shifted % 10_000
        }
        var dropped = 0
        if fraction == 0 {
            while dropped < integerGroups && group(dropped) == 0 { dropped += 1 }
        }
        let total = integerGroups - dropped + (fraction != 0 ? 1 : 0)
        int32(Int32(8 + 2 * total))
        int16(UInt16(total))
        int16(UInt16(bitPattern: Int16(total == 0 ? 0 : integerGroups - 1)))
        int16(value < 0 ? 0x4000 : 0x0000)
        int16(UInt16(scale))
        var position = integerGroups - 1
        while position >= dropped {
            int16(UInt16(truncatingIfNeeded: group(position)))
            position -= 1
        }
        if fraction != 0 { int16(UInt16(truncatingIfNeeded: fraction)) }
    }

    /// The field bytes (length included) appended to `buffer`.
    public static func append(_ value: Int64, scale: Int, to buffer: inout [UInt8]) {
        write(value, scale: scale) { length in
            withUnsafeBytes(of: length.bigEndian) { buffer.append(contentsOf: $0) }
        } int16: { word in
            withUnsafeBytes(of: word.bigEndian) { buffer.append(contentsOf: $0) }
        }
    }
}
