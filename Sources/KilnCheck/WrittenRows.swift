import Foundation
import KilnStores
import KilnCore

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
        try HistoryFile.forEachEntry(of: file) { lineNumber, entry in
            guard let placeIDs = byOperation[entry.operation.rawValue] else { return }
            // A write that ended before taking a row (`fail("dataset-exhausted")`: the run wrote past the dataset's
            // end) names the row it would have taken and holds none: nothing for any place.
            if entry.rows == 0 { return }
            guard entry.rows >= 0, entry.row >= 0, entry.row <= datasetRows - entry.rows else {
                throw HistoryError(
                    file: file.path, line: lineNumber,
                    reason: "rows \(entry.row)..<\(entry.row &+ entry.rows) outside the dataset's \(datasetRows) rows — wrong dataset for this run?")
            }
            let rows = entry.rowRange
            for placeID in placeIDs {
                switch entry.outcome {
                case .ok: result[placeID]!.ok.insert(rows)
                case .info: result[placeID]!.info.insert(rows)
                case .fail: result[placeID]!.failed.insert(rows)
                }
            }
        }
        return result
    }
}
