import Foundation

/// `ok`, `fail` or `info`: how an operation ended, without its error class (`Outcome` carries that).
public enum OutcomeKind: String, Sendable, Codable, CaseIterable {
    case ok, fail, info
}

extension Outcome {
    public var outcomeKind: OutcomeKind {
        switch self {
        case .ok: .ok
        case .fail: .fail
        case .info: .info
        }
    }
}

/// A load operation as the history and the report name it: `store.operation`, e.g. `redis.set`,
/// `postgres.bulk`. The history, the places (`RowPlace.writtenBy`) and the report use this one spelling.
public struct OperationID: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public init(store: String, operation: String) { rawValue = "\(store).\(operation)" }

    /// The part before the first `.` (the whole id when there is none).
    public var store: String {
        rawValue.firstIndex(of: ".").map { String(rawValue[..<$0]) } ?? rawValue
    }

    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// One line of a run directory's `history.jsonl`: one completed write or bulk operation (ARCHITECTURE.md:
/// invoke -> ok | fail | info). The one type the run writes (`appendJSONLine`) and the checkers read (`Codable`,
/// through `HistoryFile`). The format has not changed since the first run directories: keys `phase`, `op`,
/// `worker`, `row`, `rows`, `outcome`, optional `error`, `server` and `partition`, `intended_ns`, `start_ns`, `end_ns`, in that
/// order; `appendJSONLine` writes exactly what `JSONEncoder` would decode back to an equal value.
public struct HistoryEntry: Sendable, Hashable, Codable {
    public var phase: String
    public var operation: OperationID
    public var worker: Int
    /// The dataset row a write concerned, or the first row of a bulk op (-1: none).
    public var row: Int64
    /// Rows of a bulk op (1 for a write).
    public var rows: Int64
    public var outcome: OutcomeKind
    /// The error class of a `fail` or `info` (`timeout`, `sqlstate-23505`…), nil for `ok`.
    public var errorClass: String?
    /// The server that answered, as `host:port`; nil when the client cannot say (and in older histories).
    public var server: String?
    /// The part of the key space the write went to (Redis Cluster: `slot 1234`), nil for a store with one primary,
    /// a write spanning parts, and older histories.
    public var partition: String?
    /// Monotonic nanoseconds since the run started: intended start (open model), actual start, end.
    public var intendedNanos: UInt64
    public var startNanos: UInt64
    public var endNanos: UInt64

    public init(
        phase: String, operation: OperationID, worker: Int, row: Int64, rows: Int64, outcome: OutcomeKind,
        errorClass: String? = nil, server: String? = nil, partition: String? = nil, intendedNanos: UInt64,
        startNanos: UInt64, endNanos: UInt64
    ) {
        self.phase = phase
        self.operation = operation
        self.worker = worker
        self.row = row
        self.rows = rows
        self.outcome = outcome
        self.errorClass = errorClass
        self.server = server
        self.partition = partition
        self.intendedNanos = intendedNanos
        self.startNanos = startNanos
        self.endNanos = endNanos
    }

    /// The rows the entry concerns: `row ..< row + rows`.
    public var rowRange: Range<Int64> { row..<(row &+ max(0, rows)) }

    enum CodingKeys: String, CodingKey {
        case phase, operation = "op", worker, row, rows, outcome, errorClass = "error", server, partition
        case intendedNanos = "intended_ns", startNanos = "start_ns", endNanos = "end_ns"
    }

    /// Appends the entry as one JSON line (with its `\n`) to `buffer` — the history's write path, ~7× as fast as
    /// `JSONEncoder` in a release build (`kiln bench history`, BENCHMARKS.md). Byte-identical to the lines Kiln has
    /// always written; `HistoryEntryTests` proves `JSONDecoder` reads each back to an equal entry.
    public func appendJSONLine(to buffer: inout [UInt8]) {
        buffer.append(contentsOf: #"{"phase":""#.utf8)
        Self.appendEscaped(phase, to: &buffer)
        buffer.append(contentsOf: #"","op":""#.utf8)
        Self.appendEscaped(operation.rawValue, to: &buffer)
        buffer.append(contentsOf: #"","worker":"#.utf8)
        Self.appendDecimal(Int64(worker), to: &buffer)
        buffer.append(contentsOf: #","row":"#.utf8)
        Self.appendDecimal(row, to: &buffer)
        buffer.append(contentsOf: #","rows":"#.utf8)
        Self.appendDecimal(rows, to: &buffer)
        buffer.append(contentsOf: #","outcome":""#.utf8)
        buffer.append(contentsOf: outcome.rawValue.utf8)
        buffer.append(contentsOf: #"","#.utf8)
        if let errorClass {
            buffer.append(contentsOf: #""error":""#.utf8)
            Self.appendEscaped(errorClass, to: &buffer)
            buffer.append(contentsOf: #"","#.utf8)
        }
        if let server {
            buffer.append(contentsOf: #""server":""#.utf8)
            Self.appendEscaped(server, to: &buffer)
            buffer.append(contentsOf: #"","#.utf8)
        }
        if let partition {
            buffer.append(contentsOf: #""partition":""#.utf8)
            Self.appendEscaped(partition, to: &buffer)
            buffer.append(contentsOf: #"","#.utf8)
        }
        buffer.append(contentsOf: #""intended_ns":"#.utf8)
        Self.appendDecimal(intendedNanos, to: &buffer)
        buffer.append(contentsOf: #","start_ns":"#.utf8)
        Self.appendDecimal(startNanos, to: &buffer)
        buffer.append(contentsOf: #","end_ns":"#.utf8)
        Self.appendDecimal(endNanos, to: &buffer)
        buffer.append(contentsOf: "}\n".utf8)
    }

    /// The entry as one JSON line, without the newline.
    public var jsonLine: String {
        var buffer: [UInt8] = []
        appendJSONLine(to: &buffer)
        buffer.removeLast()
        return String(decoding: buffer, as: UTF8.self)
    }

    /// JSON string content (`JSONText`, the one escaper).
    static func appendEscaped(_ text: String, to buffer: inout [UInt8]) {
        JSONText.appendEscaped(text, to: &buffer)
    }

    @inline(__always)
    static func appendDecimal(_ value: Int64, to buffer: inout [UInt8]) {
        if value < 0 {
            buffer.append(UInt8(ascii: "-"))
            appendDecimal(value.magnitude, to: &buffer)
        } else {
            appendDecimal(UInt64(value), to: &buffer)
        }
    }

    @inline(__always)
    static func appendDecimal(_ value: UInt64, to buffer: inout [UInt8]) {
        if value < 10 {
            buffer.append(UInt8(ascii: "0") &+ UInt8(value))
            return
        }
        var divisor: UInt64 = 10
        while divisor <= value / 10 { divisor &*= 10 }
        var rest = value
        while divisor > 0 {
            buffer.append(UInt8(ascii: "0") &+ UInt8(rest / divisor))
            rest %= divisor
            divisor /= 10
        }
    }
}

/// A line of a history file that is not a history entry, or a file that cannot be read: names the file and the
/// 1-based line (0 when the file itself could not be read).
public struct HistoryError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int
    public var reason: String
    public var description: String { "\(file):\(line): \(reason)" }

    public init(file: String, line: Int, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }
}

/// Reads a run's JSON-lines files (`history.jsonl`) in 1 MB chunks, so memory stays flat for any history length.
public enum HistoryFile {
    /// Calls `body` with each line (1-based number, bytes without the newline), in order; a last line without a
    /// newline is passed too. Errors from opening or reading the file, or thrown by `body`, end the read.
    public static func forEachLine(of file: URL, _ body: (Int, Data) throws -> Void) throws {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        var pending = Data()
        var lineNumber = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            pending.append(chunk)
            var start = pending.startIndex
            while let newline = pending[start...].firstIndex(of: 0x0A) {
                lineNumber += 1
                try body(lineNumber, pending[start..<newline])
                start = pending.index(after: newline)
            }
            pending = Data(pending[start...])
        }
        if !pending.isEmpty {
            lineNumber += 1
            try body(lineNumber, pending)
        }
    }

    /// Calls `body` with each entry of `file` and its line number; empty lines are skipped. `accept`, when given,
    /// sees each raw line first and skips it (undecoded) when it returns false — a cheap pre-filter for readers
    /// that need few lines. Throws `HistoryError` naming the file and line for a line that is not a history entry
    /// (malformed, truncated, an unknown outcome) and for a file that cannot be read (line 0).
    public static func forEachEntry(
        of file: URL, accept: ((Data) -> Bool)? = nil, _ body: (Int, HistoryEntry) throws -> Void
    ) throws {
        let decoder = JSONDecoder()
        do {
            try forEachLine(of: file) { lineNumber, line in
                guard !line.isEmpty, accept?(line) ?? true else { return }
                let entry: HistoryEntry
                do {
                    entry = try decoder.decode(HistoryEntry.self, from: line)
                } catch {
                    throw HistoryError(
                        file: file.path, line: lineNumber, reason: "not a history entry (\(Self.describe(error)))")
                }
                try body(lineNumber, entry)
            }
        } catch let error as HistoryError {
            throw error
        } catch {
            throw HistoryError(file: file.path, line: 0, reason: "cannot read (\(error.localizedDescription))")
        }
    }

    /// A decoding error in one short sentence: which key is missing or of the wrong type.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        switch error {
        case .keyNotFound(let key, _): return "no \(key.stringValue)"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
