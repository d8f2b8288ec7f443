/// A byte buffer that owns its storage and only grows: a writer `reserve`s room, writes through the raw cursor `end`,
/// then `commit`s the cursor it reached. The one growable buffer behind KilnData's `RowEncoder` and `RESPBuffer`
/// (here, in the lowest module both import). The fast path (`reserve` with room, `end`, `commit`) is inlinable, so
/// the owner's encoding loop compiles as if the fields were its own; only `grow` is an out-of-line call.
///
/// Ownership: noncopyable, so the storage has exactly one owner and is freed with it. Threading: not thread-safe;
/// one owner per thread. Bytes read through `withBytes` are valid until the next mutation.
public struct GrowableByteBuffer: ~Copyable {
    @usableFromInline var base: UnsafeMutablePointer<UInt8>
    @usableFromInline var capacity: Int
    @usableFromInline var used = 0

    /// Allocates `capacity` bytes (at least 1) up front.
    @inlinable
    public init(capacity: Int) {
        self.capacity = max(capacity, 1)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// Bytes written and committed.
    @inlinable
    public var count: Int { used }

    @inlinable
    public var isEmpty: Bool { used == 0 }

    /// Forgets the bytes, keeping the storage.
    @inlinable
    public mutating func removeAll() { used = 0 }

    /// Makes room for `bytes` more bytes after `end` (doubling the storage when it lacks it).
    @inlinable @inline(__always)
    public mutating func reserve(_ bytes: Int) {
        if capacity - used < bytes { grow(used + bytes) }
    }

    /// Where the next byte goes; write at most the room last `reserve`d, then `commit`.
    @inlinable @inline(__always)
    public var end: UnsafeMutablePointer<UInt8> { base + used }

    /// Takes the bytes up to `cursor` (a position reached by writing from `end`).
    @inlinable @inline(__always)
    public mutating func commit(_ cursor: UnsafeMutablePointer<UInt8>) { used = cursor - base }

    /// The committed bytes, valid inside `body` only.
    @inlinable
    public func withBytes<Result, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> Result) throws(E) -> Result {
        try body(UnsafeRawBufferPointer(start: base, count: used))
    }

    /// A copy of the committed bytes (for tests and small outputs).
    public var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: used)) }

    @usableFromInline @inline(never)
    mutating func grow(_ needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        newBase.update(from: base, count: used)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }
}
