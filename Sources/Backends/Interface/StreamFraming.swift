/// Cuts a byte stream that arrives in chunks of any size (COPY messages, HTTP reads) into self-delimiting units
/// (a header, a row, a trailer) for the SQL scanners, copying only the bytes of a unit that straddles two chunks.
public enum StreamFraming {
    /// The stream does not have the shape the scanner's query guarantees (truncated, or not rows at all, e.g. an
    /// error text appended by the server). `description` names the store and source, never row values.
    public struct FormatError: Error, CustomStringConvertible {
        public var store: String
        public var source: String
        public var detail: String

        public init(store: String, source: String, detail: String) {
            self.store = store
            self.source = source
            self.detail = detail
        }

        public var description: String { "\(store) scan of \(source): \(detail)" }
    }

    /// Feeds `chunk` to `unit`, one unit at a time. `unit(bytes)` must return the byte count of the complete unit
    /// at the start of `bytes` (after handling it), or nil, without side effects, when `bytes` holds only part
    /// of one. Bytes of a partial unit are kept in `carry` (empty between units) and completed from the next
    /// chunk; `carry` only ever holds one unit, so memory is bounded by the largest unit.
    @inlinable
    public static func feed(
        _ chunk: UnsafeRawBufferPointer, carry: inout [UInt8], _ unit: (UnsafeRawBufferPointer) throws -> Int?
    ) rethrows {
        var position = 0
        if !carry.isEmpty {
            // Grow the partial unit from this chunk until it completes; doubling keeps this linear in its size.
            var step = 256
            while true {
                let take = min(step, chunk.count - position)
                carry.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[position..<(position + take)]))
                position += take
                if let used = try carry.withUnsafeBytes({ try unit($0) }) {
                    // The unit ends inside the bytes just taken (it was incomplete without them).
                    position -= carry.count - used
                    carry.removeAll(keepingCapacity: true)
                    break
                }
                if position == chunk.count {
                    return
                }
                step *= 2
            }
        }
        while position < chunk.count {
            let rest = UnsafeRawBufferPointer(rebasing: chunk[position...])
            guard let used = try unit(rest) else {
                carry.append(contentsOf: rest)
                return
            }
            position += used
        }
    }
}

extension UnsafeRawBufferPointer {
    @inlinable @inline(__always)
    public func bigEndianInt64(at offset: Int) -> Int64 {
        Int64(bigEndian: loadUnaligned(fromByteOffset: offset, as: Int64.self))
    }

    @inlinable @inline(__always)
    public func bigEndianInt32(at offset: Int) -> Int32 {
        Int32(bigEndian: loadUnaligned(fromByteOffset: offset, as: Int32.self))
    }

    @inlinable @inline(__always)
    public func bigEndianInt16(at offset: Int) -> Int16 {
        Int16(bigEndian: loadUnaligned(fromByteOffset: offset, as: Int16.self))
    }

    @inlinable @inline(__always)
    public func littleEndianInt64(at offset: Int) -> Int64 {
        Int64(littleEndian: loadUnaligned(fromByteOffset: offset, as: Int64.self))
    }

    @inlinable @inline(__always)
    public func littleEndianInt32(at offset: Int) -> Int32 {
        Int32(littleEndian: loadUnaligned(fromByteOffset: offset, as: Int32.self))
    }

    /// The bytes `offset..<offset+count` as a String (UTF-8, invalid sequences repaired). Up to 15 bytes this
    /// is a small string, stored inline without a heap allocation.
    @inlinable @inline(__always)
    public func string(at offset: Int, count: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: self[offset..<(offset + count)]), as: UTF8.self)
    }
}
