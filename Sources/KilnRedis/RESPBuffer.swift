/// The one RESP encoder: writes RESP frames (array headers, bulk strings of bytes, of decimal numbers and of keys
/// `prefix<id>suffix`) through a raw cursor into room its caller has reserved. Used by `RESPBuffer` (the Redis and
/// FalkorDB clients' pipelines) and by KilnData's `RowEncoder` (`kiln generate --format resp`), so both send the
/// same bytes for the same command. Every method assumes room: a frame takes its payload plus at most 32 bytes.
public struct RESPWriter {
    public private(set) var cursor: UnsafeMutablePointer<UInt8>

    @inline(__always)
    public init(_ cursor: UnsafeMutablePointer<UInt8>) { self.cursor = cursor }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        cursor.pointee = value
        cursor += 1
    }

    @inline(__always)
    mutating func copy(_ source: UnsafeRawPointer?, _ length: Int) {
        guard length > 0, let source else { return }
        UnsafeMutableRawPointer(cursor).copyMemory(from: source, byteCount: length)
        cursor += length
    }

    @inline(__always)
    mutating func crlf() {
        byte(0x0D)
        byte(0x0A)
    }

    /// `*<elements>\r\n`
    @inline(__always)
    public mutating func arrayHeader(_ elements: Int) {
        byte(0x2A)
        decimal(Int64(elements))
        crlf()
    }

    /// A bulk string of static text: `$<n>\r\n<text>\r\n`.
    @inline(__always)
    public mutating func bulk(_ text: StaticString) {
        bulk(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// A bulk string of raw bytes.
    @inline(__always)
    public mutating func bulk(_ raw: UnsafeRawBufferPointer) {
        byte(0x24)
        decimal(Int64(raw.count))
        crlf()
        copy(raw.baseAddress, raw.count)
        crlf()
    }

    /// A bulk string holding the decimal digits of `value`.
    @inline(__always)
    public mutating func bulk(_ value: Int64) {
        byte(0x24)
        decimal(Int64(Self.length(of: value)))
        crlf()
        decimal(value)
        crlf()
    }

    /// `$<n>\r\n<prefix><middle><id><suffix>\r\n`; `id` nil writes no number.
    @inline(__always)
    public mutating func bulkKey(
        _ prefix: UnsafeRawBufferPointer, _ middle: StaticString, _ id: Int64?, _ suffix: StaticString
    ) {
        let length = prefix.count + middle.utf8CodeUnitCount + (id.map { Self.length(of: $0) } ?? 0)
            + suffix.utf8CodeUnitCount
        byte(0x24)
        decimal(Int64(length))
        crlf()
        copy(prefix.baseAddress, prefix.count)
        copy(middle.utf8Start, middle.utf8CodeUnitCount)
        if let id { decimal(id) }
        copy(suffix.utf8Start, suffix.utf8CodeUnitCount)
        crlf()
    }

    /// Characters of `value` in decimal (a minus sign included).
    @inline(__always)
    public static func length(of value: Int64) -> Int {
        digitCount(value.magnitude) + (value < 0 ? 1 : 0)
    }

    @inline(__always)
    public static func digitCount(_ value: UInt64) -> Int {
        var rest = value
        var digits = 1
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        return digits
    }

    @inline(__always)
    mutating func decimal(_ value: Int64) {
        if value < 0 { byte(0x2D) }
        var magnitude = value.magnitude
        let end = cursor + Self.digitCount(magnitude)
        var position = end
        repeat {
            position -= 1
            position.pointee = UInt8(truncatingIfNeeded: magnitude % 10) &+ 0x30
            magnitude /= 10
        } while magnitude > 0
        cursor = end
    }
}

/// A growable byte buffer of RESP commands (written by `RESPWriter` into a `GrowableByteBuffer`), sent with
/// `RedisConnection`'s raw pipeline. Owned by one client (not thread-safe); its storage is reused across batches and
/// only grows. Bytes are valid until the next mutation.
public final class RESPBuffer {
    /// Unchecked exclusivity: the class is not thread-safe and no method hands out an access that spans a call back
    /// into it, so the per-frame dynamic check would only cost time on the pipelines' hot path.
    @exclusivity(unchecked) private var storage: GrowableByteBuffer

    public init(capacity: Int = 64 * 1024) {
        storage = GrowableByteBuffer(capacity: max(capacity, 1024))
    }

    public var count: Int { storage.count }

    public func removeAll() { storage.removeAll() }

    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try storage.withBytes(body)
    }

    /// Reserves `payload + 32` bytes and writes one frame at the end.
    @inline(__always)
    private func write(payload: Int, _ body: (inout RESPWriter) -> Void) {
        storage.reserve(payload + 32)
        var writer = RESPWriter(storage.end)
        body(&writer)
        storage.commit(writer.cursor)
    }

    public func arrayHeader(_ elements: Int) { write(payload: 0) { $0.arrayHeader(elements) } }

    public func bulk(_ text: StaticString) { write(payload: text.utf8CodeUnitCount) { $0.bulk(text) } }

    public func bulk(_ raw: UnsafeRawBufferPointer) { write(payload: raw.count) { $0.bulk(raw) } }

    public func bulk(_ value: Int64) { write(payload: 32) { $0.bulk(value) } }

    /// `$<n>\r\n<prefix><middle><id><suffix>\r\n`; `id` nil writes no number.
    public func bulkKey(_ prefix: [UInt8], _ middle: StaticString, _ id: Int64?, _ suffix: StaticString) {
        write(payload: prefix.count + middle.utf8CodeUnitCount + 20 + suffix.utf8CodeUnitCount) { writer in
            prefix.withUnsafeBytes { writer.bulkKey($0, middle, id, suffix) }
        }
    }
}
