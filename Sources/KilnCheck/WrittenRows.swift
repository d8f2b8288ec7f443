import Foundation
import KilnStores

/// A fixed-size set of row indexes, one bit each (100M rows = 12.5 MB). Not thread-safe.
public struct RowBitmap: Sendable {
    public private(set) var words: [UInt64]
    public let count: Int64

    public init(count: Int64) {
        self.count = count
        words = Array(repeating: 0, count: Int((count + 63) / 64))
    }

    @inline(__always)
    public func contains(_ index: Int64) -> Bool {
        index >= 0 && index < count && words[Int(index >> 6)] & (1 << UInt64(index & 63)) != 0
    }

    @inline(__always)
    public mutating func insert(_ index: Int64) {
        words[Int(index >> 6)] |= 1 << UInt64(index & 63)
    }

    public mutating func insert(_ range: Range<Int64>) {
        for index in range { insert(index) }
    }

    /// Members, in order.
    public func forEach(_ body: (Int64) throws -> Void) rethrows {
        for (wordIndex, word) in words.enumerated() where word != 0 {
            var bits = word
            while bits != 0 {
                let bit = Int64(bits.trailingZeroBitCount)
                try body(Int64(wordIndex) * 64 + bit)
                bits &= bits - 1
            }
        }
    }

    public var population: Int64 { words.reduce(0) { $0 + Int64($1.nonzeroBitCount) } }

    public func sameMembers(as other: RowBitmap) -> Bool { count == other.count && words == other.words }
}

/// What the history says about one place: rows whose write ended `ok` (must be present exactly once), `info`
/// (may be present once or absent) and `fail` (must be absent). Rows never written must be absent too.
public struct WrittenRows: Sendable {
    public var place: RowPlace
    public var ok: RowBitmap
    public var info: RowBitmap
    public var failed: RowBitmap

    public init(place: RowPlace, datasetRows: Int64) {
        self.place = place
        ok = RowBitmap(count: datasetRows)
        info = RowBitmap(count: datasetRows)
        failed = RowBitmap(count: datasetRows)
    }

    /// All places, from a run directory's `history.jsonl` (one JSON object per write/bulk op).
    public static func fromHistory(
        _ file: URL, datasetRows: Int64, places: [RowPlace] = RowPlace.all + [RowPlace.redisFeatures, RowPlace.redisScores]
    ) throws
        -> [String: WrittenRows]
    {
        var result: [String: WrittenRows] = [:]
        var byOperation: [String: [String]] = [:]
        for place in places {
            result[place.id] = WrittenRows(place: place, datasetRows: datasetRows)
            for operation in place.writtenBy { byOperation[operation, default: []].append(place.id) }
        }
        let decoder = JSONDecoder()
        try HistoryFile.forEachLine(of: file) { lineNumber, line in
            guard !line.isEmpty else { return }
            let entry: HistoryLine
            do {
                entry = try decoder.decode(HistoryLine.self, from: line)
            } catch {
                throw HistoryError(file: file.path, line: lineNumber, reason: "not a history entry (\(error))")
            }
            guard let placeIDs = byOperation[entry.op] else { return }
            let rows = entry.row..<(entry.row + entry.rows)
            guard entry.row >= 0, entry.row + entry.rows <= datasetRows else {
                throw HistoryError(
                    file: file.path, line: lineNumber,
                    reason: "rows \(rows) outside the dataset's \(datasetRows) rows — wrong dataset for this run?")
            }
            for placeID in placeIDs {
                switch entry.outcome {
                case "ok": result[placeID]!.ok.insert(rows)
                case "info": result[placeID]!.info.insert(rows)
                case "fail": result[placeID]!.failed.insert(rows)
                default: throw HistoryError(file: file.path, line: lineNumber, reason: "unknown outcome \(entry.outcome)")
                }
            }
        }
        return result
    }

    struct HistoryLine: Decodable {
        var op: String
        var row: Int64
        var rows: Int64
        var outcome: String
    }
}

public struct HistoryError: Error, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var reason: String
    public var description: String { "\(file):\(line): \(reason)" }
}

/// Reads a run's JSON-lines file (`history.jsonl`) in 1 MB chunks, so memory stays flat for any history length.
enum HistoryFile {
    /// Calls `body` with each line (1-based number, bytes without the newline), in order; a last line without a
    /// newline is passed too. Errors from opening or reading the file, or thrown by `body`, end the read.
    static func forEachLine(of file: URL, _ body: (Int, Data) throws -> Void) throws {
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
}
