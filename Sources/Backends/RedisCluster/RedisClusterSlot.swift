/// The hash slot of a key in a Redis Cluster: CRC16 (XMODEM: polynomial 0x1021, initial 0) of the key — or of its
/// hash tag, the bytes between the first `{` and the next `}` when that span is non-empty — modulo 16384.
///
/// Guaranteed: the same slot `CLUSTER KEYSLOT` returns for the same bytes (tested against a real server).
public enum RedisClusterSlot {
    public static let count = 16_384

    public static func of(_ key: [UInt8]) -> Int {
        Int(crc16(hashedPart(of: key)) % UInt16(count))
    }

    public static func of(_ key: String) -> Int {
        of(Array(key.utf8))
    }

    /// The part of `key` that is hashed: the hash tag when there is a non-empty one, else the whole key.
    static func hashedPart(of key: [UInt8]) -> ArraySlice<UInt8> {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")) else {
            return key[...]
        }
        guard let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 else {
            return key[...]
        }
        return key[(open + 1)..<close]
    }

    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var value = UInt16(index) << 8
        for _ in 0..<8 {
            value = value & 0x8000 != 0 ? (value << 1) ^ 0x1021 : value << 1
        }
        return value
    }
}
