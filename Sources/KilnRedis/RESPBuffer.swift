/// The one RESP encoder: a growable byte buffer of RESP commands with hand-rolled number formatting, sent with
/// `RedisConnection`'s raw pipeline. Owned by one client (not thread-safe); its storage is reused across batches
/// and only grows. Bytes are valid until the next mutation.
public final class RESPBuffer {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    public private(set) var count = 0

    public init(capacity: Int = 64 * 1024) {
        self.capacity = max(capacity, 1024)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    public func removeAll() { count = 0 }

    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    @inline(__always)
    private func reserve(_ bytes: Int) {
        if capacity - count < bytes { grow(count + bytes) }
    }

    @inline(never)
    private func grow(_ needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        newBase.update(from: base, count: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inline(__always)
    private func byte(_ value: UInt8) {
        base[count] = value
        count += 1
    }

    @inline(__always)
    private func copy(_ source: UnsafeRawPointer?, _ length: Int) {
        guard length > 0, let source else { return }
        UnsafeMutableRawPointer(base + count).copyMemory(from: source, byteCount: length)
        count += length
    }

    @inline(__always)
    private func crlf() {
        byte(0x0D)
        byte(0x0A)
    }

    public func arrayHeader(_ elements: Int) {
        reserve(24)
        byte(0x2A)
        decimal(Int64(elements))
        crlf()
    }

    public func bulk(_ text: StaticString) {
        reserve(text.utf8CodeUnitCount + 32)
        byte(0x24)
        decimal(Int64(text.utf8CodeUnitCount))
        crlf()
        copy(text.utf8Start, text.utf8CodeUnitCount)
        crlf()
    }

    public func bulk(_ raw: UnsafeRawBufferPointer) {
        reserve(raw.count + 32)
        byte(0x24)
        decimal(Int64(raw.count))
        crlf()
        copy(raw.baseAddress, raw.count)
        crlf()
    }

    public func bulk(_ value: Int64) {
        reserve(64)
        byte(0x24)
        decimal(Int64(Self.length(of: value)))
        crlf()
        decimal(value)
        crlf()
    }

    /// `$<n>\r\n<prefix><middle><id><suffix>\r\n`; `id` nil writes no number.
    public func bulkKey(_ prefix: [UInt8], _ middle: StaticString, _ id: Int64?, _ suffix: StaticString) {
        let length = prefix.count + middle.utf8CodeUnitCount + (id.map { Self.length(of: $0) } ?? 0)
            + suffix.utf8CodeUnitCount
        reserve(length + 32)
        byte(0x24)
        decimal(Int64(length))
        crlf()
        prefix.withUnsafeBytes { copy($0.baseAddress, $0.count) }
        copy(middle.utf8Start, middle.utf8CodeUnitCount)
        if let id { decimal(id) }
        copy(suffix.utf8Start, suffix.utf8CodeUnitCount)
        crlf()
    }

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

    /// Writes into reserved room (callers reserve at least 21 bytes).
    @inline(__always)
    private func decimal(_ value: Int64) {
        if value < 0 { byte(0x2D) }
        var magnitude = value.magnitude
        var position = count + Self.digitCount(magnitude)
        count = position
        repeat {
            position -= 1
            base[position] = UInt8(truncatingIfNeeded: magnitude % 10) &+ 0x30
            magnitude /= 10
        } while magnitude > 0
    }
}
