import CLibPQ

/// The sink of one `COPY … FROM STDIN`, handed to the closure of ``PostgresConnection/copyIn(_:_:)``.
///
/// Bytes are buffered and sent with `PQputCopyData` in chunks of ``chunkSize`` bytes, so callers may write row
/// by row. The bytes are sent as they are: the caller produces the text, CSV or binary COPY format (for binary,
/// including the `PGCOPY` header and the trailer). Valid only inside that closure and on the connection's
/// thread; a write after the closure returned throws a `closed` error.
///
/// A server-side rejection of the data (bad value, constraint) is reported by `copyIn` when the COPY ends, not
/// by `write`; `write` throws only when the connection breaks.
public final class PostgresCopyWriter {
    /// Size of the chunks handed to libpq.
    public static let chunkSize = 256 * 1024

    private let connection: OpaquePointer
    private let address: String
    private var buffer: [UInt8] = []
    private var finished = false
    /// Bytes accepted so far (buffered or sent).
    public private(set) var byteCount = 0

    init(_ connection: OpaquePointer, address: String) {
        self.connection = connection
        self.address = address
        buffer.reserveCapacity(Self.chunkSize)
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(PostgresError) {
        guard !finished else {
            throw PostgresError(
                .closed, .copyIn, address: address, message: "copy writer used after its copyIn closure returned"
            )
        }
        if buffer.count + bytes.count > Self.chunkSize {
            try flush()
        }
        if bytes.count >= Self.chunkSize {
            try send(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
        byteCount += bytes.count
    }

    public func write(_ bytes: [UInt8]) throws(PostgresError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(PostgresError) in try write(raw) } }.get()
    }

    /// Writes the UTF-8 bytes of `string`.
    public func write(_ string: String) throws(PostgresError) {
        var string = string
        try string.withUTF8 { utf8 in
            Result { () throws(PostgresError) in try write(UnsafeRawBufferPointer(utf8)) }
        }.get()
    }

    /// Sends buffered bytes now.
    func flush() throws(PostgresError) {
        guard !buffer.isEmpty else {
            return
        }
        try buffer.withUnsafeBytes { raw in Result { () throws(PostgresError) in try send(raw) } }.get()
        buffer.removeAll(keepingCapacity: true)
    }

    /// Ends the writer's validity; buffered bytes not flushed are dropped.
    func finish() {
        finished = true
        buffer = []
    }

    private func send(_ bytes: UnsafeRawBufferPointer) throws(PostgresError) {
        var rest = bytes
        while !rest.isEmpty {
            let count = min(rest.count, Int(Int32.max))
            let pointer = rest.baseAddress!.assumingMemoryBound(to: CChar.self)
            guard PQputCopyData(connection, pointer, Int32(count)) == 1 else {
                let message = PQerrorMessage(connection).map { String(cString: $0) } ?? ""
                throw PostgresError(.connectionLost, .copyIn, address: address, message: message)
            }
            rest = UnsafeRawBufferPointer(rebasing: rest[count...])
        }
    }
}
