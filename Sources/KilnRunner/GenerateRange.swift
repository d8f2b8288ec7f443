import Foundation
import KilnCore
import KilnData
import KilnScenario

/// `--range a..b` and `--shard i/n`, validated against the dataset size.
public enum GenerateRange {
    public static func select(rows: Int64, range: String?, shard: String?) throws -> Range<Int64> {
        var selected: Range<Int64> = 0..<rows
        if let range {
            let parts = range.components(separatedBy: "..")
            let start = parts.count == 2 ? (parts[0].isEmpty ? 0 : CountSuffix.parse(parts[0])) : nil
            let end = parts.count == 2 ? (parts[1].isEmpty ? Int(rows) : CountSuffix.parse(parts[1])) : nil
            guard let start, let end, start <= end else {
                throw Failure(
                    code: .invalidInput, message: "--range: expected START..END with START <= END such as 5M..6M, "
                        + "found '\(range)'")
            }
            guard Int64(end) <= rows else {
                throw Failure(code: .invalidInput, message: "--range: \(range) goes beyond the dataset's \(rows) rows")
            }
            selected = Int64(start)..<Int64(end)
        }
        if let shard {
            let parts = shard.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let i = Int64(parts[0]), let n = Int64(parts[1]), n >= 1, (1...n).contains(i) else {
                throw Failure(
                    code: .invalidInput, message: "--shard: expected I/N with 1 <= I <= N such as 2/4, found '\(shard)'")
            }
            let size = Int64(selected.count)
            let lower = selected.lowerBound + size * (i - 1) / n
            let upper = selected.lowerBound + size * i / n
            selected = lower..<upper
        }
        return selected
    }
}
