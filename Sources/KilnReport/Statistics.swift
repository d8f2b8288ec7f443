import Foundation

/// Rank statistics for comparing two sets of per-second samples. Pure functions; no state.
public enum RankTest {
    /// Two-sided Mann-Whitney U test (normal approximation with tie correction and continuity correction).
    /// Returns the p-value: the probability of a rank difference at least this large if both samples came from
    /// the same distribution. 1 when either side is empty or every value is tied.
    public static func mannWhitneyP(_ first: [Double], _ second: [Double]) -> Double {
        let n1 = Double(first.count)
        let n2 = Double(second.count)
        guard n1 > 0, n2 > 0 else { return 1 }
        let pooled = (first.map { ($0, 0) } + second.map { ($0, 1) }).sorted { $0.0 < $1.0 }
        var rankSumFirst = 0.0
        var tieTerm = 0.0
        var index = 0
        while index < pooled.count {
            var end = index
            while end + 1 < pooled.count, pooled[end + 1].0 == pooled[index].0 { end += 1 }
            // Ranks are 1-based; tied values share the mean of their ranks.
            let rank = Double(index + end + 2) / 2
            let ties = Double(end - index + 1)
            tieTerm += ties * ties * ties - ties
            for position in index...end where pooled[position].1 == 0 { rankSumFirst += rank }
            index = end + 1
        }
        let n = n1 + n2
        let u = rankSumFirst - n1 * (n1 + 1) / 2
        let mean = n1 * n2 / 2
        let variance = n1 * n2 / 12 * ((n + 1) - tieTerm / (n * (n - 1)))
        guard variance > 0 else { return 1 }
        let z = max(0, abs(u - mean) - 0.5) / variance.squareRoot()
        return min(1, erfc(z / 2.0.squareRoot()))
    }

    public static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}
